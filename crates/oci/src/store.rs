//! Reading the members of an image: files of a folder, or members of an uncompressed tar
//! read in place (indexed once by offset, never extracted), with streaming SHA-256.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::escape::escape;
use crate::tarball::{self, Seekable, TarError, MAX_LONG_NAME};
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
        let file = open_image(image)?;
        let corrupt = |e: TarError| OciError::Corrupt {
            image: image.to_path_buf(),
            member: "the archive".into(),
            reason: format!("not a readable tar archive: {e}"),
        };
        let input = Seekable::new(file).map_err(|e| read_err(image, ".", e))?;
        let mut archive = tarball::Reader::new(input);
        let mut members = HashMap::new();
        let mut count = 0usize;
        while let Some(entry) = archive.next().map_err(|e| match e {
            TarError::Oversized { .. } => OciError::TooLarge {
                image: image.to_path_buf(),
                reason: format!("archive {e}"),
            },
            e => corrupt(e),
        })? {
            count += 1;
            if count > MAX_ARCHIVE_MEMBERS {
                return Err(OciError::TooLarge {
                    image: image.to_path_buf(),
                    reason: format!("more than {MAX_ARCHIVE_MEMBERS} archive members"),
                });
            }
            if entry.path.len() as u64 > MAX_LONG_NAME {
                continue; // never looked up
            }
            let Some(name) = clean_name(Path::new(OsStr::from_bytes(&entry.path))) else {
                continue; // never looked up
            };
            let kind = entry.header.entry_type();
            let member = match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.offset,
                    size: entry.size,
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(target) = &entry.link else {
                        continue;
                    };
                    let target = Path::new(OsStr::from_bytes(target));
                    // Symbolic links are relative to the member's folder, hard links to the top.
                    let joined = match (kind, Path::new(&name).parent()) {
                        (tar::EntryType::Symlink, Some(dir)) => dir.join(target),
                        _ => target.to_path_buf(),
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
                match open_regular(image, &path, name) {
                    Ok((file, len)) => Ok(Some((Box::new(file), len))),
                    Err(Unopened::Absent) => Ok(None),
                    Err(Unopened::Refused(e)) => Err(e),
                }
            }
            Store::Tar { file, members } => {
                let mut name = name.to_string();
                for _ in 0..=MAX_MEMBER_LINKS {
                    match members.get(&name) {
                        None => return Ok(None),
                        Some(Member::Link(t)) => name = t.clone(),
                        Some(&Member::File { offset, size }) => {
                            let mut f = open_image(file)?;
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
                reason: format!("{} is {size} bytes, more than {max}", escape(name)),
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
        member: escape(member),
        source,
    }
}

/// Why [`open_regular`] gave no file.
pub(crate) enum Unopened {
    /// Nothing there, or a folder: the member is not in the image.
    Absent,
    /// Something else (a FIFO, a device, a socket), or it could not be opened.
    Refused(OciError),
}

/// The image file itself as [`open_regular`] opens it (it was just seen to exist).
fn open_image(image: &Path) -> Result<File, OciError> {
    match open_regular(image, image, "the image path") {
        Ok((file, _)) => Ok(file),
        Err(Unopened::Absent) => Err(OciError::NotFound {
            image: image.to_path_buf(),
        }),
        Err(Unopened::Refused(e)) => Err(e),
    }
}

/// Opens `path` (named `member` in messages) if it is a regular file: with `O_NONBLOCK`, so
/// that a FIFO never blocks, then checked with `fstat`; anything but a regular file is
/// refused at once, without reading. Gives the file and its length.
pub(crate) fn open_regular(
    image: &Path,
    path: &Path,
    member: &str,
) -> Result<(File, u64), Unopened> {
    let refuse = |kind: &str| {
        Unopened::Refused(OciError::NotAFile {
            image: image.to_path_buf(),
            member: escape(member),
            kind: kind.to_string(),
        })
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Unopened::Absent),
        Err(e) => {
            // A socket cannot be opened at all (ENXIO): say what it is.
            return match std::fs::metadata(path) {
                Ok(m) if !m.is_file() && !m.is_dir() => {
                    Err(refuse(nanoimg_chroot::kind_of(&m.file_type())))
                }
                _ => Err(Unopened::Refused(read_err(image, member, e))),
            };
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| Unopened::Refused(read_err(image, member, e)))?;
    if meta.is_dir() {
        return Err(Unopened::Absent);
    }
    if !meta.is_file() {
        return Err(refuse(nanoimg_chroot::kind_of(&meta.file_type())));
    }
    Ok((file, meta.len()))
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
            member: format!("digest \"{}\"", escape(digest)),
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
