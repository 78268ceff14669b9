//! What an image holds, for a bill of materials: every regular file of both filesystems
//! with its SHA-256 and SHA-1, the image file's own SHA-256, the root tuple, and the root
//! filesystem kept open so that small files (a package database) can be read by path, with
//! links resolved inside the image's tree, never on the host.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nanoimg_disk::{DiskImage, ImageFs};
use nanoimg_tfs::{Entry, FileEntry};
use nanoimg_tuple::Tuple;
use sha2::{Digest, Sha256};

use crate::report::{copy_bounded, hex, Totals};
use crate::InspectError;

/// Links followed at most while resolving one path (as Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// One regular file of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentFile {
    /// `boot` or `root`.
    pub filesystem: &'static str,
    /// Its path in that filesystem, from `/`.
    pub path: String,
    pub size: u64,
    /// Hex digests of its contents.
    pub sha256: String,
    pub sha1: String,
}

/// What an image holds; see the module docs.
pub struct Contents {
    /// The container the image is stored in (`raw`, `qcow2`, …).
    pub format: String,
    /// SHA-256 of the image file as stored (hex).
    pub file_sha256: String,
    /// Every regular file, boot filesystem first, each in path order.
    pub files: Vec<ContentFile>,
    /// The root filesystem's root tuple without `children` (the manifest).
    pub manifest: Tuple,
    root: ImageFs,
    root_tree: BTreeMap<Vec<u8>, Entry>,
    path: PathBuf,
}

struct Hashes(Sha256, sha1::Sha1);

impl Write for Hashes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        self.1.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_err(path: &Path, what: &'static str) -> impl Fn(nanoimg_tfs::ReadError) -> InspectError {
    let path = path.to_path_buf();
    move |source| InspectError::Read {
        path: path.clone(),
        what,
        source,
    }
}

/// The regular files under `dir` (named from `prefix`), hashed, in path order.
fn hash_files(
    fs: &mut ImageFs,
    path: &Path,
    filesystem: &'static str,
    dir: &BTreeMap<Vec<u8>, Entry>,
    prefix: &str,
    totals: &mut Totals,
    out: &mut Vec<ContentFile>,
) -> Result<(), InspectError> {
    for (name, entry) in dir {
        let p = format!("{prefix}/{}", String::from_utf8_lossy(name));
        match entry {
            Entry::Dir(d) => hash_files(fs, path, filesystem, d, &p, totals, out)?,
            Entry::File(f) => {
                let mut h = Hashes(Sha256::new(), sha1::Sha1::new());
                copy_bounded(fs, path, &p, f, totals, &mut h)?;
                out.push(ContentFile {
                    filesystem,
                    path: p,
                    size: f.len,
                    sha256: hex(&h.0.finalize()),
                    sha1: hex(&h.1.finalize()),
                });
            }
            Entry::Symlink(_) | Entry::Other(_) => {}
        }
    }
    Ok(())
}

fn filesystem_files(
    fs: &mut ImageFs,
    path: &Path,
    filesystem: &'static str,
    what: &'static str,
    out: &mut Vec<ContentFile>,
) -> Result<BTreeMap<Vec<u8>, Entry>, InspectError> {
    let tree = fs.tree().map_err(read_err(path, what))?;
    let mut totals = Totals {
        used: 0,
        claimed: 0,
    };
    let mut files = Vec::new();
    hash_files(fs, path, filesystem, &tree, "", &mut totals, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    out.extend(files);
    Ok(tree)
}

/// The SHA-256 of the file at `path`, read in 1 MiB pieces.
fn file_sha256(path: &Path) -> Result<String, InspectError> {
    let open = |source| InspectError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(open)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(open)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Reads the image (or raw TFS volume) at `path`: every file hashed, once.
pub fn contents(path: &Path) -> Result<Contents, InspectError> {
    let image = DiskImage::open(path)?;
    let mut files = Vec::new();
    if let Some(mut fs) = image.boot_fs()? {
        filesystem_files(&mut fs, path, "boot", "boot filesystem", &mut files)?;
    }
    let mut root = image.root_fs()?;
    let root_tree = filesystem_files(&mut root, path, "root", "root filesystem", &mut files)?;
    let manifest = root
        .root()
        .iter()
        .filter(|(k, _)| k.as_slice() != b"children")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Contents {
        format: image.format().to_string(),
        file_sha256: file_sha256(path)?,
        files,
        manifest,
        root,
        root_tree,
        path: path.to_path_buf(),
    })
}

/// What a path names in a tree.
enum Found<'a> {
    File(&'a FileEntry),
    Absent,
}

/// The folder at `names` (each a folder, already resolved) from `tree`.
fn folder<'a>(
    tree: &'a BTreeMap<Vec<u8>, Entry>,
    names: &[Vec<u8>],
) -> Option<&'a BTreeMap<Vec<u8>, Entry>> {
    let mut dir = tree;
    for n in names {
        match dir.get(n) {
            Some(Entry::Dir(d)) => dir = d,
            _ => return None,
        }
    }
    Some(dir)
}

/// `guest` (absolute or not, from the root) resolved in `tree` as the guest would: links
/// (absolute ones from the root) and `..` never leave it, at most [`MAX_LINKS`] links.
fn resolve<'a>(tree: &'a BTreeMap<Vec<u8>, Entry>, guest: &[u8]) -> Found<'a> {
    let mut pending: Vec<Vec<u8>> = guest
        .split(|&b| b == b'/')
        .rev()
        .map(<[u8]>::to_vec)
        .collect();
    let mut at: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        match name.as_slice() {
            b"" | b"." => continue,
            b".." => {
                at.pop();
                continue;
            }
            _ => {}
        }
        let Some(dir) = folder(tree, &at) else {
            return Found::Absent;
        };
        match dir.get(&name) {
            Some(Entry::Dir(_)) => at.push(name),
            Some(Entry::File(f)) if pending.iter().all(|n| n.is_empty() || n == b".") => {
                return Found::File(f)
            }
            Some(Entry::Symlink(target)) => {
                links += 1;
                if links > MAX_LINKS {
                    return Found::Absent;
                }
                if target.first() == Some(&b'/') {
                    at.clear();
                }
                pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
            }
            _ => return Found::Absent,
        }
    }
    Found::Absent
}

impl Contents {
    /// The whole regular file at `guest` in the root filesystem (links resolved inside the
    /// image), `None` when there is none; [`InspectError::TooLarge`] when it is longer than
    /// `max` bytes (checked before reading).
    pub fn read_root_file(
        &mut self,
        guest: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, InspectError> {
        let f = match resolve(&self.root_tree, guest.as_bytes()) {
            Found::File(f) => f.clone(),
            Found::Absent => return Ok(None),
        };
        if f.len > max {
            return Err(InspectError::TooLarge {
                path: self.path.clone(),
                file: guest.to_string(),
                len: f.len,
                limit: max,
            });
        }
        let mut totals = Totals {
            used: 0,
            claimed: 0,
        };
        let mut bytes = Vec::with_capacity(f.len as usize);
        copy_bounded(
            &mut self.root,
            &self.path,
            guest,
            &f,
            &mut totals,
            &mut bytes,
        )?;
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(len: u64) -> Entry {
        Entry::File(FileEntry {
            len,
            extents: Vec::new(),
        })
    }

    fn dir(entries: Vec<(&str, Entry)>) -> Entry {
        Entry::Dir(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    fn found_len(tree: &BTreeMap<Vec<u8>, Entry>, p: &str) -> Option<u64> {
        match resolve(tree, p.as_bytes()) {
            Found::File(f) => Some(f.len),
            Found::Absent => None,
        }
    }

    #[test]
    fn links_resolve_inside_the_tree() {
        let Entry::Dir(tree) = dir(vec![
            ("lib", Entry::Symlink(b"usr/lib".to_vec())),
            (
                "usr",
                dir(vec![(
                    "lib",
                    dir(vec![
                        ("os-release", file(7)),
                        (
                            "up",
                            Entry::Symlink(b"../../../../usr/lib/os-release".to_vec()),
                        ),
                        ("abs", Entry::Symlink(b"/lib/os-release".to_vec())),
                        ("loop", Entry::Symlink(b"loop".to_vec())),
                    ]),
                )]),
            ),
            (
                "etc",
                dir(vec![(
                    "os-release",
                    Entry::Symlink(b"../usr/lib/os-release".to_vec()),
                )]),
            ),
        ]) else {
            unreachable!()
        };
        assert_eq!(found_len(&tree, "/etc/os-release"), Some(7));
        assert_eq!(found_len(&tree, "/lib/os-release"), Some(7));
        assert_eq!(
            found_len(&tree, "/usr/lib/up"),
            Some(7),
            "`..` stops at the root"
        );
        assert_eq!(found_len(&tree, "/usr/lib/abs"), Some(7));
        assert_eq!(found_len(&tree, "/usr/lib/loop"), None, "a loop ends");
        assert_eq!(found_len(&tree, "/usr/lib/os-release/x"), None);
        assert_eq!(found_len(&tree, "/usr/lib"), None, "a folder is not a file");
        assert_eq!(found_len(&tree, "/nothing"), None);
    }
}
