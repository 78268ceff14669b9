use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::Path;

use nanoimg_disk::DiskImage;
use nanoimg_tfs::{Entry, Tfs};

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
/// gives. Nothing is ever written outside `dest`: entry names must be plain names (no `/`,
/// NUL, `.` or `..`), every directory is created fresh and every file with `create_new`, so
/// no write goes through a link.
pub fn extract(image: &Path, dest: &Path) -> Result<ExtractStats, InspectError> {
    let write = |p: &Path| {
        let path = p.to_path_buf();
        move |source| InspectError::Write { path, source }
    };
    if dest.exists() {
        let mut entries = std::fs::read_dir(dest).map_err(write(dest))?;
        if entries.next().is_some() {
            return Err(InspectError::Unsafe {
                path: dest.to_path_buf(),
                reason: "the target folder is not empty".into(),
            });
        }
    } else {
        std::fs::create_dir_all(dest).map_err(write(dest))?;
    }
    let img = DiskImage::open(image)?;
    let mut fs = img.root_fs()?;
    let tree = fs.tree().map_err(|source| InspectError::Read {
        path: image.to_path_buf(),
        what: "root filesystem",
        source,
    })?;
    let mut stats = ExtractStats::default();
    write_dir(&mut fs, image, &tree, dest, "", &mut stats)?;
    // (Each file's claimed length is bounded in write_dir, the total by `stats.bytes` there.)
    Ok(stats)
}

fn write_dir(
    fs: &mut Tfs<File>,
    image: &Path,
    dir: &BTreeMap<Vec<u8>, Entry>,
    host: &Path,
    prefix: &str,
    stats: &mut ExtractStats,
) -> Result<(), InspectError> {
    use std::os::unix::ffi::OsStrExt;
    for (name, entry) in dir {
        let shown = format!("{prefix}/{}", String::from_utf8_lossy(name));
        if name.is_empty()
            || name.contains(&b'/')
            || name.contains(&0)
            || name.as_slice() == b"."
            || name.as_slice() == b".."
        {
            return Err(InspectError::Unsafe {
                path: image.to_path_buf(),
                reason: format!("entry {shown:?} is not a plain file name; refusing to extract"),
            });
        }
        let target = host.join(std::ffi::OsStr::from_bytes(name));
        let write = |source| InspectError::Write {
            path: target.clone(),
            source,
        };
        match entry {
            Entry::Dir(d) => {
                std::fs::create_dir(&target).map_err(write)?;
                stats.dirs += 1;
                write_dir(fs, image, d, &target, &shown, stats)?;
            }
            Entry::File(f) => {
                let claimed = stats.bytes.saturating_add(f.len);
                if f.len > fs.size().saturating_add(4 << 30)
                    || claimed > fs.size().saturating_add(16 << 30)
                {
                    return Err(InspectError::Implausible {
                        path: image.to_path_buf(),
                        file: shown,
                        len: f.len,
                    });
                }
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(write)?;
                stats.bytes += fs
                    .copy_file(f, &mut out)
                    .map_err(|source| InspectError::Read {
                        path: image.to_path_buf(),
                        what: "reading a file",
                        source,
                    })?;
                stats.files += 1;
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
