//! Reading the members of an image: files of a folder, or members of an uncompressed tar
//! read in place (indexed once by offset, never extracted), with streaming SHA-256.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::OciError;

/// Most members accepted in an image archive.
const MAX_ARCHIVE_MEMBERS: usize = 1_000_000;
/// Most symbolic links followed to find one archive member.
const MAX_MEMBER_LINKS: usize = 8;

/// An open member: its reader and size.
pub(crate) type Opened = (Box<dyn Read>, u64);

/// Where an image's members are.
pub(crate) enum Store {
    Dir(PathBuf),
    Tar {
        file: PathBuf,
        members: HashMap<String, Member>,
    },
}

pub(crate) enum Member {
    /// Data at this offset of the archive, this long.
    File { offset: u64, size: u64 },
    /// A symbolic or hard link to this member name.
    Link(String),
}

/// `name` as a clean relative member name (`a/b`), or `None` if absolute or with `..`.
pub(crate) fn clean_name(name: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

impl Store {
    /// Opens an image folder or archive; `image` must exist.
    pub(crate) fn open(image: &Path) -> Result<Store, OciError> {
        let meta = std::fs::metadata(image).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OciError::NotFound {
                image: image.to_path_buf(),
            },
            _ => read_err(image, ".", e),
        })?;
        if meta.is_dir() {
            return Ok(Store::Dir(image.to_path_buf()));
        }
        let file = File::open(image).map_err(|e| read_err(image, ".", e))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let corrupt = |e: io::Error| OciError::Corrupt {
            image: image.to_path_buf(),
            member: "the archive".into(),
            reason: format!("not a readable tar archive: {e}"),
        };
        for entry in archive.entries_with_seek().map_err(corrupt)? {
            let entry = entry.map_err(corrupt)?;
            if members.len() >= MAX_ARCHIVE_MEMBERS {
                return Err(OciError::TooLarge {
                    image: image.to_path_buf(),
                    reason: format!("more than {MAX_ARCHIVE_MEMBERS} archive members"),
                });
            }
            let path = entry.path().map_err(corrupt)?.into_owned();
            let Some(name) = clean_name(&path) else {
                continue; // never looked up
            };
            let kind = entry.header().entry_type();
            let member = match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(target) = entry.link_name().map_err(corrupt)? else {
                        continue;
                    };
                    // Symbolic links are relative to the member's folder, hard links to the top.
                    let joined = match (kind, Path::new(&name).parent()) {
                        (tar::EntryType::Symlink, Some(dir)) => dir.join(&target),
                        _ => target.into_owned(),
                    };
                    match normalize(&joined) {
                        Some(t) => Member::Link(t),
                        None => continue,
                    }
                }
                _ => continue,
            };
            members.insert(name, member);
        }
        Ok(Store::Tar {
            file: image.to_path_buf(),
            members,
        })
    }

    /// Whether this is an archive (not a folder).
    pub(crate) fn is_archive(&self) -> bool {
        matches!(self, Store::Tar { .. })
    }

    /// Opens the member `name` (a clean relative name): its reader and size, `None` if
    /// there is no such member.
    pub(crate) fn member(&self, image: &Path, name: &str) -> Result<Option<Opened>, OciError> {
        match self {
            Store::Dir(dir) => {
                let path = dir.join(name);
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(read_err(image, name, e)),
                };
                let meta = file.metadata().map_err(|e| read_err(image, name, e))?;
                if !meta.is_file() {
                    return Ok(None);
                }
                Ok(Some((Box::new(file), meta.len())))
            }
            Store::Tar { file, members } => {
                let mut name = name.to_string();
                for _ in 0..=MAX_MEMBER_LINKS {
                    match members.get(&name) {
                        None => return Ok(None),
                        Some(Member::Link(t)) => name = t.clone(),
                        Some(&Member::File { offset, size }) => {
                            let mut f = File::open(file).map_err(|e| read_err(image, &name, e))?;
                            f.seek(SeekFrom::Start(offset))
                                .map_err(|e| read_err(image, &name, e))?;
                            return Ok(Some((Box::new(f.take(size)), size)));
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    /// The whole member `name`, at most `max` bytes; `None` if there is no such member.
    pub(crate) fn read_small(
        &self,
        image: &Path,
        name: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, OciError> {
        let Some((r, size)) = self.member(image, name)? else {
            return Ok(None);
        };
        if size > max {
            return Err(OciError::TooLarge {
                image: image.to_path_buf(),
                reason: format!("{name} is {size} bytes, more than {max}"),
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.take(max)
            .read_to_end(&mut buf)
            .map_err(|e| read_err(image, name, e))?;
        Ok(Some(buf))
    }

    /// The blob with this digest and size, whole (for JSON), verified.
    pub(crate) fn read_blob(
        &self,
        image: &Path,
        digest: &str,
        size: Option<u64>,
        max: u64,
    ) -> Result<Vec<u8>, OciError> {
        let name = blob_name(image, digest)?;
        let bytes = self
            .read_small(image, &name, max)?
            .ok_or_else(|| OciError::MissingBlob {
                image: image.to_path_buf(),
                member: name.clone(),
            })?;
        if let Some(size) = size {
            if bytes.len() as u64 != size {
                return Err(OciError::Size {
                    image: image.to_path_buf(),
                    member: name,
                    expected: size,
                    actual: bytes.len() as u64,
                });
            }
        }
        let actual = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        if actual != digest {
            return Err(OciError::Digest {
                image: image.to_path_buf(),
                member: name,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }
}

/// `a/./b/../c` → `a/c`; `None` if it climbs above the top or is absolute.
fn normalize(p: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

pub(crate) fn read_err(image: &Path, member: &str, source: io::Error) -> OciError {
    OciError::Read {
        image: image.to_path_buf(),
        member: member.to_string(),
        source,
    }
}

/// The hex part of a `sha256:<64 lower-case hex>` digest, `None` if it is not one.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// The member name of the blob with this digest (`blobs/sha256/<hex>`).
pub(crate) fn blob_name(image: &Path, digest: &str) -> Result<String, OciError> {
    match sha256_hex(digest) {
        Some(hex) => Ok(format!("blobs/sha256/{hex}")),
        None => Err(OciError::Unsupported {
            image: image.to_path_buf(),
            member: format!("digest {digest:?}"),
            what: "a digest other than sha256:<64 lower-case hex digits>".into(),
        }),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts and hashes what is read through it.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads what is left, up to `max` bytes more (an error beyond), so the digest covers it all.
    pub(crate) fn drain(&mut self, max: u64) -> io::Result<()> {
        let n = io::copy(&mut (&mut *self).take(max), &mut io::sink())?;
        if n == max && self.read(&mut [0u8; 1])? != 0 {
            return Err(io::Error::other(format!(
                "more than {max} bytes after the end of the archive"
            )));
        }
        Ok(())
    }

    /// `sha256:<hex>` of what was read, and how many bytes.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex(&self.hasher.finalize())),
            self.count,
        )
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
