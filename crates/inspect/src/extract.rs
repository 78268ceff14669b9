use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::Path;

use nanoimg_disk::{DiskImage, ImageFs};
use nanoimg_tfs::{Entry, FileEntry};

use crate::report::InspectError;

/// What [`extract`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExtractStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub skipped: u64,
    pub bytes: u64,
}

/// Writes the root tree of the image (or volume) at `image` into `dest`, which must not
/// exist or be empty: directories, files, and symlinks as symlinks with the target the image
/// gives. The tree is written into a temporary folder beside `dest` and renamed to `dest`
/// only when complete, so an error or an interrupt leaves `dest` as it was. Nothing is ever
/// written outside that folder: entry names must be plain names (no `/`, NUL, `.` or `..`),
/// every directory is created fresh and every file with `create_new`, so no write goes
/// through a link.
pub fn extract(image: &Path, dest: &Path) -> Result<ExtractStats, InspectError> {
    let write = |p: &Path| {
        let path = p.to_path_buf();
        move |source| InspectError::Write { path, source }
    };
    if dest.exists() && !dest.is_dir() {
        return Err(InspectError::NotAFolder {
            path: dest.to_path_buf(),
        });
    }
    if dest.exists() {
        let mut entries = std::fs::read_dir(dest).map_err(write(dest))?;
        if entries.next().is_some() {
            return Err(InspectError::Unsafe {
                path: dest.to_path_buf(),
                reason: "the target folder is not empty; give a new or empty folder".into(),
            });
        }
    }
    let img = DiskImage::open(image)?;
    let mut fs = img.root_fs()?;
    let tree = fs.tree().map_err(|source| InspectError::Read {
        path: image.to_path_buf(),
        what: "root filesystem",
        source,
    })?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write(parent))?;
    }
    let staged = nanoimg_atomic::TempDir::beside(dest).map_err(write(dest))?;
    let mut stats = ExtractStats::default();
    let dirs = Dirs {
        staged: staged.path(),
        shown: dest,
    };
    write_dir(&mut fs, image, &tree, dirs, "", &mut stats)?;
    // (Each file's claimed length is bounded in write_dir, the total by `stats.bytes` there.)
    staged.persist(dest).map_err(write(dest))?;
    Ok(stats)
}

/// Where a folder (or a file) is written (inside the temporary folder), and where it will
/// be once renamed into place (for messages).
#[derive(Clone, Copy)]
struct Dirs<'a> {
    staged: &'a Path,
    shown: &'a Path,
}

fn write_dir(
    fs: &mut ImageFs,
    image: &Path,
    dir: &BTreeMap<Vec<u8>, Entry>,
    host: Dirs<'_>,
    prefix: &str,
    stats: &mut ExtractStats,
) -> Result<(), InspectError> {
    use std::os::unix::ffi::OsStrExt;
    for (name, entry) in dir {
        let shown = format!("{prefix}/{}", String::from_utf8_lossy(name));
        check_name(name, image, &shown)?;
        let name = std::ffi::OsStr::from_bytes(name);
        let target = host.staged.join(name);
        let shown_target = host.shown.join(name);
        let write = |source| InspectError::Write {
            path: shown_target.clone(),
            source,
        };
        match entry {
            Entry::Dir(d) => {
                std::fs::create_dir(&target).map_err(write)?;
                stats.dirs += 1;
                let sub = Dirs {
                    staged: &target,
                    shown: &shown_target,
                };
                write_dir(fs, image, d, sub, &shown, stats)?;
            }
            Entry::File(f) => {
                let at = Dirs {
                    staged: &target,
                    shown: &shown_target,
                };
                write_file(fs, image, f, at, shown, stats)?;
            }
            Entry::Symlink(t) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), &target)
                    .map_err(write)?;
                stats.symlinks += 1;
            }
            Entry::Other(_) => stats.skipped += 1,
        }
    }
    Ok(())
}

/// Refuses an entry name that is not a plain file name (empty, with `/` or NUL, `.`, `..`);
/// `shown` is its path in the image, for the message.
fn check_name(name: &[u8], image: &Path, shown: &str) -> Result<(), InspectError> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".."
    {
        return Err(InspectError::Unsafe {
            path: image.to_path_buf(),
            reason: format!("entry {shown:?} is not a plain file name; refusing to extract"),
        });
    }
    Ok(())
}

/// Writes the file `f` (`shown` in the image) as a new file at `at.staged` (`at.shown` once
/// renamed into place), sparse, after checking its claimed length is plausible.
fn write_file(
    fs: &mut ImageFs,
    image: &Path,
    f: &FileEntry,
    at: Dirs<'_>,
    shown: String,
    stats: &mut ExtractStats,
) -> Result<(), InspectError> {
    let write = |source| InspectError::Write {
        path: at.shown.to_path_buf(),
        source,
    };
    let claimed = stats.bytes.saturating_add(f.len);
    if f.len > fs.size().saturating_add(4 << 30) || claimed > fs.size().saturating_add(16 << 30) {
        return Err(InspectError::Implausible {
            path: image.to_path_buf(),
            file: shown,
            len: f.len,
        });
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(at.staged)
        .map_err(write)?;
    let mut sparse = Sparse {
        file: &mut out,
        pos: 0,
        error: None,
    };
    let copied = fs.copy_file(f, &mut sparse);
    if let Some(e) = sparse.error.take() {
        return Err(write(e));
    }
    stats.bytes += copied.map_err(|source| InspectError::Read {
        path: image.to_path_buf(),
        what: "reading a file",
        source,
    })?;
    let len = sparse.pos;
    out.set_len(len).map_err(write)?;
    stats.files += 1;
    Ok(())
}

/// Writes a file leaving holes where the data is zeros (files in images are often mostly
/// holes), remembering the first write error so it is reported as a write, not a read.
struct Sparse<'a> {
    file: &'a mut File,
    pos: u64,
    error: Option<std::io::Error>,
}

impl std::io::Write for Sparse<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if buf.iter().any(|&b| b != 0) {
            if let Err(e) = self.file.write_all_at(buf, self.pos) {
                let kind = e.kind();
                self.error = Some(e);
                return Err(kind.into());
            }
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
