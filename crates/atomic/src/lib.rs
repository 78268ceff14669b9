//! Outputs that are complete or absent.
//!
//! Every file or folder nanoimg writes (images, volumes, extracted trees, release cache
//! entries, the lock) is first made under a temporary name beside its target — a
//! [`TempFile`] or a [`TempDir`] — and renamed into place only when it is complete. A
//! temporary that is dropped is removed, so an error leaves nothing behind; one that still
//! exists when the process is interrupted by SIGINT, SIGTERM or SIGHUP is removed by the
//! handler that [`interrupt::install`] sets up, before the process exits with the signal's
//! conventional status (130, 143, 129).
//!
//! Temporaries are created with the mode any new file or folder gets (`0666` or `0777` less
//! the umask), so what is renamed into place has the permissions a plain `open`/`mkdir`
//! would have given it, as ops's outputs do.
//!
//! Creating, renaming into place and the handler's removal all happen under one lock (the
//! registry's), so a signal either comes before a rename — the temporary is removed and the
//! target never appears — or after it, and the complete result stays.

pub mod interrupt;
mod registry;

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use registry::Registration;

/// The prefix of every temporary beside a target (`.nanoimg-XXXXXX.tmp`).
pub const PREFIX: &str = ".nanoimg-";
/// The suffix of every temporary beside a target.
pub const SUFFIX: &str = ".tmp";

/// The folder a target lives in (`.` for a bare file name).
pub fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The OS error alone: tempfile adds the random temporary name, which callers replace
/// with the path the user gave.
fn plain(e: io::Error) -> io::Error {
    if e.raw_os_error().is_some() {
        return e;
    }
    // tempfile's own error: "<OS error> at path <temporary name>".
    let text = e.to_string();
    match text.split_once(" at path ") {
        Some((os, _)) => io::Error::new(e.kind(), os.to_string()),
        None => e,
    }
}

/// A temporary file, removed when dropped or when the process is interrupted, until
/// [`TempFile::persist`] renames it into place.
#[derive(Debug)]
pub struct TempFile {
    file: tempfile::NamedTempFile,
    registration: Registration,
}

impl TempFile {
    /// A temporary file beside `target` (in the same folder, so the final rename is atomic).
    pub fn beside(target: &Path) -> io::Result<TempFile> {
        Self::in_dir(&parent_dir(target), PREFIX)
    }

    /// A temporary file in `dir` whose name starts with `prefix`.
    pub fn in_dir(dir: &Path, prefix: &str) -> io::Result<TempFile> {
        registry::create(|| {
            let file = tempfile::Builder::new()
                .prefix(prefix)
                .suffix(SUFFIX)
                .permissions(std::fs::Permissions::from_mode(0o666))
                .tempfile_in(dir)
                .map_err(plain)?;
            let path = file.path().to_path_buf();
            Ok((file, path))
        })
        .map(|(file, registration)| TempFile { file, registration })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn as_file(&self) -> &File {
        self.file.as_file()
    }

    pub fn as_file_mut(&mut self) -> &mut File {
        self.file.as_file_mut()
    }

    /// Renames the file to `target`, replacing any file there. On failure the temporary is
    /// removed.
    pub fn persist(self, target: &Path) -> io::Result<()> {
        let TempFile { file, registration } = self;
        registration.persist(|| file.persist(target).map(drop).map_err(|e| e.error))
    }
}

/// A temporary folder, removed with its content when dropped or when the process is
/// interrupted, until [`TempDir::persist`] renames it into place.
#[derive(Debug)]
pub struct TempDir {
    dir: Option<tempfile::TempDir>,
    registration: Registration,
}

impl TempDir {
    /// A temporary folder beside `target` (in the same parent, so the final rename is atomic).
    pub fn beside(target: &Path) -> io::Result<TempDir> {
        Self::in_dir(&parent_dir(target), PREFIX)
    }

    /// A temporary folder in `dir` whose name starts with `prefix`.
    pub fn in_dir(dir: &Path, prefix: &str) -> io::Result<TempDir> {
        registry::create(|| {
            let dir = tempfile::Builder::new()
                .prefix(prefix)
                .suffix(SUFFIX)
                .permissions(std::fs::Permissions::from_mode(0o777))
                .tempdir_in(dir)
                .map_err(plain)?;
            let path = dir.path().to_path_buf();
            Ok((dir, path))
        })
        .map(|(dir, registration)| TempDir {
            dir: Some(dir),
            registration,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// Renames the folder to `target`, which must not exist or be an empty folder (as
    /// `rename(2)` allows). On failure the temporary folder is removed.
    pub fn persist(mut self, target: &Path) -> io::Result<()> {
        let dir = self.dir.take();
        let registration = std::mem::take(&mut self.registration);
        registration.persist(|| match dir {
            Some(d) => {
                std::fs::rename(d.path(), target)?;
                let _ = d.keep();
                Ok(())
            }
            None => Err(io::Error::other("temporary folder already persisted")),
        })
    }
}

/// Writes a new file at `target` atomically: `write` fills a temporary file beside it,
/// which is synced and renamed into place only if that succeeded (else it is removed).
/// `err` turns an I/O error of creating, syncing or renaming into the caller's error type.
pub fn write_file<T, E>(
    target: &Path,
    write: impl FnOnce(&mut File) -> Result<T, E>,
    err: impl Fn(Stage, io::Error) -> E,
) -> Result<T, E> {
    let mut temp = TempFile::beside(target).map_err(|e| err(Stage::Create, e))?;
    let value = write(temp.as_file_mut())?;
    temp.as_file()
        .sync_all()
        .map_err(|e| err(Stage::Persist, e))?;
    temp.persist(target).map_err(|e| err(Stage::Persist, e))?;
    Ok(value)
}

/// Which step of [`write_file`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Creating the temporary file beside the target.
    Create,
    /// Syncing it or renaming it into place.
    Persist,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(PREFIX))
            .collect()
    }

    #[test]
    fn a_dropped_file_is_removed_and_a_persisted_one_stays() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.img");
        let t = TempFile::beside(&target).unwrap();
        assert!(t
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(PREFIX));
        assert_eq!(leftovers(d.path()).len(), 1);
        drop(t);
        assert!(leftovers(d.path()).is_empty());
        assert!(!target.exists());

        let mut t = TempFile::beside(&target).unwrap();
        io::Write::write_all(t.as_file_mut(), b"image").unwrap();
        let temp = t.path().to_path_buf();
        assert!(registry::registered().contains(&temp));
        t.persist(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"image");
        assert!(leftovers(d.path()).is_empty());
        // (Other tests run in parallel, so only this path is checked.)
        assert!(!registry::registered().contains(&temp));
    }

    #[test]
    fn write_file_leaves_nothing_on_error() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.img");
        let r: Result<(), String> = write_file(
            &target,
            |f| {
                io::Write::write_all(f, b"half").unwrap();
                Err("failed".to_string())
            },
            |_, e| e.to_string(),
        );
        assert_eq!(r, Err("failed".into()));
        assert!(!target.exists());
        assert!(leftovers(d.path()).is_empty());
        let r: Result<u8, String> = write_file(
            &target,
            |f| {
                io::Write::write_all(f, b"whole")
                    .map(|_| 7)
                    .map_err(|e| e.to_string())
            },
            |_, e| e.to_string(),
        );
        assert_eq!(r, Ok(7));
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
    }

    #[test]
    fn folders_are_renamed_onto_missing_or_empty_targets_only() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("tree");
        let t = TempDir::beside(&target).unwrap();
        std::fs::write(t.path().join("a"), b"1").unwrap();
        t.persist(&target).unwrap();
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"1");

        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let t = TempDir::beside(&empty).unwrap();
        std::fs::write(t.path().join("b"), b"2").unwrap();
        t.persist(&empty).unwrap();
        assert_eq!(std::fs::read(empty.join("b")).unwrap(), b"2");

        // Onto a non-empty folder: refused, and the temporary is gone.
        let t = TempDir::beside(&target).unwrap();
        std::fs::write(t.path().join("c"), b"3").unwrap();
        assert!(t.persist(&target).is_err());
        assert!(leftovers(d.path()).is_empty());
        assert!(!target.join("c").exists());

        let t = TempDir::beside(&target).unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        drop(t);
        assert!(leftovers(d.path()).is_empty());
    }

    /// Outputs get the mode a new file or folder gets: 0666 / 0777 less the umask. (The
    /// umask is process-wide, so all of it is checked in one test.)
    #[test]
    fn modes_follow_the_umask() {
        let d = tempfile::tempdir().unwrap();
        for (umask, file_mode, dir_mode) in [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)] {
            // SAFETY: umask only changes the process's file creation mask.
            let old = unsafe { libc::umask(umask) };
            let f = d.path().join(format!("f{umask:o}"));
            write_file(&f, |_| Ok::<_, io::Error>(()), |_, e| e).unwrap();
            let t = TempDir::beside(&f).unwrap();
            let dir = d.path().join(format!("d{umask:o}"));
            t.persist(&dir).unwrap();
            unsafe { libc::umask(old) };
            assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, file_mode);
            assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, dir_mode);
        }
    }
}
