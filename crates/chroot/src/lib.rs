//! Paths inside a root folder, resolved as `chroot(2)` would resolve them.
//!
//! A container image's root, or a sysroot folder, is a tree of strangers' names: its
//! symbolic links may be absolute (`/usr/bin/awk -> /etc/alternatives/awk`), may climb
//! with `..`, may loop. Resolving such a path with the host's own lookup follows those
//! links **on the build host**, so an image could make nanoimg read (and pack) any file of
//! the build machine. Every path nanoimg takes from inside a root goes through
//! [`Resolver`] instead:
//!
//! - each component is looked up with `lstat` relative to the root; a symbolic link's
//!   target is read and resolved in its place, an absolute target from the root, never
//!   from the host's `/`;
//! - `..` stops at the root;
//! - at most [`MAX_LINKS`] links are followed in one lookup (as Linux's `MAXSYMLINKS`);
//! - every component's resolution is memoised by (real folder, name), so resolving many
//!   paths under the same folders, or through the same links, costs each link once: work is
//!   linear in the paths and link targets read, whatever chains the tree holds. A caller
//!   that changes the tree calls [`Resolver::forget`].
//!
//! The result is a host path whose every component below the root is a real folder (no
//! link), with the last one resolved as asked ([`Follow`]).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed in one lookup before it fails, as the kernel's `MAXSYMLINKS`.
pub const MAX_LINKS: usize = 40;

/// Why a path cannot be resolved inside the root.
#[derive(Debug, thiserror::Error)]
pub enum ChrootError {
    /// A component does not exist (`at` is the real path, inside the root, that is
    /// missing).
    #[error("{path} does not exist in {root} (no {at})")]
    NotFound {
        root: PathBuf,
        path: String,
        at: String,
    },
    /// A component on the way is a file, not a folder.
    #[error("{path} in {root}: {at} is not a folder")]
    NotAFolder {
        root: PathBuf,
        path: String,
        at: String,
    },
    /// More than [`MAX_LINKS`] links.
    #[error("{path} in {root}: more than {MAX_LINKS} symbolic links (a loop?)")]
    TooManyLinks { root: PathBuf, path: String },
    /// `lstat` or `readlink` failed for another reason.
    #[error("{path} in {root}: reading {at}: {source}")]
    Io {
        root: PathBuf,
        path: String,
        at: String,
        #[source]
        source: io::Error,
    },
}

impl ChrootError {
    /// Whether the path simply does not exist (as opposed to a loop or a bad component).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ChrootError::NotFound { .. })
    }
}

/// How the last component is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// A link there is followed, like `stat` (the default for opening a file).
    Last,
    /// A link there is left as it is, like `lstat`: the parents are resolved and the last
    /// name is returned as found (it may be a link, or missing).
    NotLast,
    /// Followed, and it must be a folder (a missing one may be created, [`Missing`]).
    Folder,
}

/// What the caller wants done when a folder on the way is missing.
pub enum Missing<'a> {
    /// It is an error ([`ChrootError::NotFound`]).
    Fail,
    /// `create(real)` is called with the missing folder's real path relative to the root;
    /// it makes the folder (and returns `Ok(())`), after which the lookup goes on.
    Create(&'a mut dyn FnMut(&Path) -> io::Result<()>),
}

/// A cached component: its real path relative to the root and the links it took.
#[derive(Clone)]
struct Step {
    real: PathBuf,
    links: usize,
    is_dir: bool,
}

/// Resolves paths inside one root, remembering what it found.
pub struct Resolver {
    root: PathBuf,
    memo: HashMap<(PathBuf, OsString), Step>,
    /// Bytes of path handled so far (see [`Resolver::work`]).
    work: u64,
}

impl Resolver {
    /// A resolver for paths inside `root` (a host folder).
    pub fn new(root: impl Into<PathBuf>) -> Resolver {
        Resolver {
            root: root.into(),
            memo: HashMap::new(),
            work: 0,
        }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How much work the lookups so far took: the bytes of the paths handled, one
    /// component at a time (a lookup of depth `d` costs about `d²` name bytes when nothing
    /// is memoised). A caller resolving paths from a stranger's tree bounds this against
    /// the size of its input, so that no arrangement of links and replacements makes the
    /// work grow faster than the input.
    pub fn work(&self) -> u64 {
        self.work
    }

    /// Forgets what was found: call after changing the tree (removing or replacing a
    /// folder or link) so later lookups see the change.
    pub fn forget(&mut self) {
        self.memo.clear();
    }

    /// The host path of `guest` (absolute, or relative to the root: the same), every link
    /// resolved inside the root; with [`Follow::NotLast`] the last component is not
    /// followed and need not exist.
    pub fn resolve(&mut self, guest: &Path, follow: Follow) -> Result<PathBuf, ChrootError> {
        let real = self.resolve_relative(guest, follow, Missing::Fail)?;
        Ok(self.root.join(real))
    }

    /// As [`Resolver::resolve`], but gives the real path relative to the root, and lets
    /// the caller create missing folders on the way ([`Missing::Create`]).
    pub fn resolve_relative(
        &mut self,
        guest: &Path,
        follow: Follow,
        mut missing: Missing<'_>,
    ) -> Result<PathBuf, ChrootError> {
        let parts = components(guest);
        let mut links = 0;
        self.walk(
            PathBuf::new(),
            &parts,
            follow,
            &mut missing,
            &mut links,
            guest,
        )
    }

    /// Resolves `parts` from the real folder `start`.
    fn walk(
        &mut self,
        start: PathBuf,
        parts: &[OsString],
        follow: Follow,
        missing: &mut Missing<'_>,
        links: &mut usize,
        guest: &Path,
    ) -> Result<PathBuf, ChrootError> {
        let mut cur = start;
        for (i, c) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            self.work += (cur.as_os_str().len() + c.len() + 1) as u64;
            if c == ".." {
                cur.pop();
                continue;
            }
            if last && follow == Follow::NotLast {
                cur.push(c);
                break;
            }
            let key = (cur, c.clone());
            let want_dir = !last || follow == Follow::Folder;
            if let Some(step) = self.memo.get(&key) {
                *links += step.links;
                if *links > MAX_LINKS {
                    return Err(self.too_many(guest));
                }
                if want_dir && !step.is_dir {
                    return Err(self.not_a_folder(guest, &step.real));
                }
                cur = step.real.clone();
                continue;
            }
            let (dir, name) = key;
            let before = *links;
            let (real, is_dir) = self.lookup(&dir, &name, want_dir, missing, links, guest)?;
            self.memo.insert(
                (dir, name),
                Step {
                    real: real.clone(),
                    links: *links - before,
                    is_dir,
                },
            );
            cur = real;
        }
        Ok(cur)
    }

    /// Looks up `name` in the real folder `dir` (not memoised): gives its real path (a link
    /// resolved in its place) and whether it is a folder; a missing folder is created if
    /// `missing` says so and a folder is wanted (`want_dir`).
    fn lookup(
        &mut self,
        dir: &Path,
        name: &OsStr,
        want_dir: bool,
        missing: &mut Missing<'_>,
        links: &mut usize,
        guest: &Path,
    ) -> Result<(PathBuf, bool), ChrootError> {
        let candidate = dir.join(name);
        let abs = self.root.join(&candidate);
        match abs.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => {
                self.follow_link(dir, &candidate, want_dir, missing, links, guest)
            }
            Ok(m) if m.is_dir() => Ok((candidate, true)),
            Ok(_) if !want_dir => Ok((candidate, false)),
            Ok(_) => Err(self.not_a_folder(guest, &candidate)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match missing {
                Missing::Create(create) if want_dir => {
                    create(&candidate).map_err(|e| self.io(guest, &candidate, e))?;
                    Ok((candidate, true))
                }
                _ => Err(ChrootError::NotFound {
                    root: self.root.clone(),
                    path: display(guest),
                    at: display(&candidate),
                }),
            },
            Err(e) => Err(self.io(guest, &candidate, e)),
        }
    }

    /// Resolves the symbolic link `link` (its real path, in the real folder `dir`) in its
    /// place, counted in `links`: gives the real path it leads to and whether that is a
    /// folder (it must be if `want_dir`).
    fn follow_link(
        &mut self,
        dir: &Path,
        link: &Path,
        want_dir: bool,
        missing: &mut Missing<'_>,
        links: &mut usize,
        guest: &Path,
    ) -> Result<(PathBuf, bool), ChrootError> {
        *links += 1;
        if *links > MAX_LINKS {
            return Err(self.too_many(guest));
        }
        let abs = self.root.join(link);
        let target = std::fs::read_link(&abs).map_err(|e| self.io(guest, link, e))?;
        let from = if target.is_absolute() {
            PathBuf::new()
        } else {
            dir.to_path_buf()
        };
        let target_parts = components(&target);
        let then = if want_dir {
            Follow::Folder
        } else {
            Follow::Last
        };
        let real = self.walk(from, &target_parts, then, missing, links, guest)?;
        let is_dir = want_dir
            || self
                .root
                .join(&real)
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir());
        Ok((real, is_dir))
    }

    fn not_a_folder(&self, guest: &Path, at: &Path) -> ChrootError {
        ChrootError::NotAFolder {
            root: self.root.clone(),
            path: display(guest),
            at: display(at),
        }
    }

    fn too_many(&self, guest: &Path) -> ChrootError {
        ChrootError::TooManyLinks {
            root: self.root.clone(),
            path: display(guest),
        }
    }

    fn io(&self, guest: &Path, at: &Path, source: io::Error) -> ChrootError {
        ChrootError::Io {
            root: self.root.clone(),
            path: display(guest),
            at: display(at),
            source,
        }
    }
}

/// The host path of `guest` inside `root`, every link followed inside the root (a
/// one-off [`Resolver::resolve`] with [`Follow::Last`]).
pub fn resolve(root: &Path, guest: &Path) -> Result<PathBuf, ChrootError> {
    Resolver::new(root).resolve(guest, Follow::Last)
}

/// Opens `path` for reading only if it is a regular file: opened with `O_NONBLOCK` (so a
/// FIFO or a device a root holds cannot block the open), then checked with `fstat`; anything
/// else is an `InvalidInput` error saying what it is.
pub fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}, not a regular file", kind_of(&kind)),
    ))
}

/// What a file that is not regular is, for messages: "a FIFO", "a character device", "a
/// block device", "a socket", "a folder" (else "not a regular file").
pub fn kind_of(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Reads the regular file at `path` ([`open_regular`]), refusing one longer than `max`
/// bytes before reading it.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, more than the {max} read at most"),
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("grew beyond the {max} bytes read at most"),
        ));
    }
    Ok(out)
}

/// The components of `path` that matter: names and `..` (the root, `.` and empty ones
/// dropped), so `/a/./b/../c` is `a`, `b`, `..`, `c`.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// `path` as `/`-rooted text for messages.
fn display(path: &Path) -> String {
    let text = String::from_utf8_lossy(path.as_os_str().as_bytes());
    if text.starts_with('/') {
        text.into_owned()
    } else {
        format!("/{text}")
    }
}

/// `path` with `.` and `..` applied lexically, as an absolute guest path (`..` stops at
/// `/`).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests;
