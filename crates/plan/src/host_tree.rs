//! Adding host files and directories to the image tree: ops's `Files`, `Dirs` and `MapDirs`.

use std::path::{Path, PathBuf};

use nanoimg_tfs::{Dir, FileSource, Node};

use crate::PlanError;

/// An image path for a config path: made absolute and cleaned; `..` that would climb above
/// the image root is an error naming the entry.
pub(crate) fn image_path_of(field: &'static str, entry: &str) -> Result<String, PlanError> {
    let mut parts: Vec<&str> = Vec::new();
    for c in entry.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PlanError::Escapes {
                        field,
                        entry: entry.to_string(),
                    });
                }
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Adds `node` at `path`; a path already holding the same thing is fine, another is an
/// error (ops would silently overwrite one with the other).
pub(crate) fn add(root: &mut Dir, path: &str, node: Node) -> Result<(), PlanError> {
    match root.get(path.as_bytes()) {
        Some(existing) if *existing == node => Ok(()),
        Some(Node::Dir(_)) if matches!(node, Node::Dir(_)) => Ok(()),
        Some(_) => Err(PlanError::Conflict {
            path: path.to_string(),
        }),
        None => Ok(root.insert(path.as_bytes(), node)?),
    }
}

/// The entries of a host directory, sorted by name (readdir order is not stable).
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_cached_key(|e| e.file_name());
    Ok(entries)
}

fn host_file(host: &Path, entry: &str, field: &'static str) -> Result<Node, PlanError> {
    let meta = std::fs::metadata(host).map_err(|source| PlanError::Missing {
        field,
        entry: entry.to_string(),
        host: host.to_path_buf(),
        source,
    })?;
    Ok(Node::File(FileSource::Host {
        path: host.to_path_buf(),
        len: meta.len(),
    }))
}

/// `Files`: each entry is copied from `<cwd>/<entry>` to `/<entry>` (ops resolves even
/// absolute entries under the working directory).
pub(crate) fn add_files(root: &mut Dir, files: &[String], cwd: &Path) -> Result<(), PlanError> {
    for f in files {
        let image = image_path_of("Files", f)?;
        let host = cwd.join(image.trim_start_matches('/'));
        let node = host_file(&host, f, "Files")?;
        add(root, &image, node)?;
    }
    Ok(())
}

/// Walks `host` (a directory) into the image at `image`, in sorted order: directories,
/// files, and symlinks as symlinks. Broken symlinks and special files are skipped, with a
/// note, as ops does.
fn add_tree(
    root: &mut Dir,
    host: &Path,
    image: &str,
    notes: &mut Vec<String>,
    field: &'static str,
) -> Result<(), PlanError> {
    add(root, image, Node::Dir(Dir::new()))?;
    add_children(root, host, image, image, notes, field)
}

/// Adds the entries of the host directory `host` under the image directory `image` (`entry`
/// names the config entry in errors), as [`add_tree`] describes.
fn add_children(
    root: &mut Dir,
    host: &Path,
    image: &str,
    entry: &str,
    notes: &mut Vec<String>,
    field: &'static str,
) -> Result<(), PlanError> {
    let entries = sorted_entries(host).map_err(|source| PlanError::Missing {
        field,
        entry: entry.to_string(),
        host: host.to_path_buf(),
        source,
    })?;
    for e in entries {
        let name = e.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| PlanError::NonUtf8 { path: e.path() })?;
        let image_child = format!("{}/{name}", image.trim_end_matches('/'));
        // The entry's own metadata (fstatat relative to the open directory: no path walk).
        let meta = e.metadata().ok();
        add_entry(root, &e.path(), meta, &image_child, notes, field)?;
    }
    Ok(())
}

fn add_entry(
    root: &mut Dir,
    host: &Path,
    known: Option<std::fs::Metadata>,
    image: &str,
    notes: &mut Vec<String>,
    field: &'static str,
) -> Result<(), PlanError> {
    let lmeta = match known {
        Some(m) => m,
        None => std::fs::symlink_metadata(host).map_err(|source| PlanError::Missing {
            field,
            entry: image.to_string(),
            host: host.to_path_buf(),
            source,
        })?,
    };
    if lmeta.file_type().is_symlink() {
        if std::fs::metadata(host).is_err() {
            notes.push(format!("skipping broken symlink {}", host.display()));
            return Ok(());
        }
        let target = std::fs::read_link(host).map_err(|source| PlanError::Missing {
            field,
            entry: image.to_string(),
            host: host.to_path_buf(),
            source,
        })?;
        let target = target.to_str().ok_or_else(|| PlanError::NonUtf8 {
            path: host.to_path_buf(),
        })?;
        return add(root, image, Node::Symlink(target.as_bytes().to_vec()));
    }
    if lmeta.is_dir() {
        return add_tree(root, host, image, notes, field);
    }
    if lmeta.is_file() {
        return add(
            root,
            image,
            Node::File(FileSource::Host {
                path: host.to_path_buf(),
                len: lmeta.len(),
            }),
        );
    }
    notes.push(format!("skipping special file {}", host.display()));
    Ok(())
}

/// `Dirs`: each directory (relative to the working directory) is copied recursively to the
/// same path in the image.
pub(crate) fn add_dirs(
    root: &mut Dir,
    dirs: &[String],
    cwd: &Path,
    notes: &mut Vec<String>,
) -> Result<(), PlanError> {
    for d in dirs {
        let image = image_path_of("Dirs", d)?;
        let host = cwd.join(d);
        if !host.is_dir() {
            return Err(PlanError::Missing {
                field: "Dirs",
                entry: d.clone(),
                host,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        add_entry(root, &host, None, &image, notes, "Dirs")?;
    }
    Ok(())
}

/// `MapDirs`: `{host pattern: image dir}`. The pattern's last component is a glob; every
/// entry under its directory whose name matches goes to `<image dir>/<relative dir>/<name>`.
/// Relative patterns are relative to the config's directory, absolute ones to `TargetRoot`.
pub(crate) fn add_map_dirs(
    root: &mut Dir,
    map: &std::collections::BTreeMap<String, String>,
    config_dir: &Path,
    target_root: Option<&Path>,
    args: &[String],
    notes: &mut Vec<String>,
) -> Result<(), PlanError> {
    for (pattern, dest) in map {
        let base = Path::new(dest)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if args.iter().any(|a| a == base) {
            return Err(PlanError::MapDirNamedLikeArg { dest: dest.clone() });
        }
        let host: PathBuf = if Path::new(pattern).is_absolute() {
            match target_root {
                Some(r) => r.join(pattern.trim_start_matches('/')),
                None => PathBuf::from(pattern),
            }
        } else {
            config_dir.join(pattern)
        };
        let dir = host.parent().map(Path::to_path_buf).unwrap_or_default();
        let glob_text = host.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let glob = glob::Pattern::new(glob_text).map_err(|e| PlanError::BadGlob {
            pattern: pattern.clone(),
            reason: e.to_string(),
        })?;
        if !dir.is_dir() {
            return Err(PlanError::Missing {
                field: "MapDirs",
                entry: pattern.clone(),
                host: dir,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let dest = image_path_of("MapDirs", dest)?;
        map_walk(root, &dir, &dir, &glob, &dest, notes)?;
    }
    Ok(())
}

fn map_walk(
    root: &mut Dir,
    top: &Path,
    dir: &Path,
    glob: &glob::Pattern,
    dest: &str,
    notes: &mut Vec<String>,
) -> Result<(), PlanError> {
    let read = |source| PlanError::Missing {
        field: "MapDirs",
        entry: dest.to_string(),
        host: dir.to_path_buf(),
        source,
    };
    for e in sorted_entries(dir).map_err(read)? {
        let path = e.path();
        let name = e.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| PlanError::NonUtf8 { path: path.clone() })?;
        let rel = dir.strip_prefix(top).unwrap_or(Path::new(""));
        let meta = std::fs::symlink_metadata(&path).map_err(read)?;
        if glob.matches(name) {
            let image = image_path_of(
                "MapDirs",
                &format!("{dest}/{}/{name}", rel.to_string_lossy()),
            )?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(read)?;
                let target = target
                    .to_str()
                    .ok_or_else(|| PlanError::NonUtf8 { path: path.clone() })?;
                add(root, &image, Node::Symlink(target.as_bytes().to_vec()))?;
            } else if meta.is_dir() {
                add(root, &image, Node::Dir(Dir::new()))?;
            } else if meta.is_file() {
                add(root, &image, host_file(&path, name, "MapDirs")?)?;
            } else {
                notes.push(format!("skipping special file {}", path.display()));
            }
        }
        if meta.is_dir() {
            map_walk(root, top, &path, glob, dest, notes)?;
        }
    }
    Ok(())
}

/// The whole content of a host folder as an image tree (its entries at the root), as `Dirs`
/// copies folders: sorted, symlinks kept, broken ones and special files skipped with a note.
pub fn folder_tree(host: &Path) -> Result<(Dir, Vec<String>), PlanError> {
    match std::fs::metadata(host) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(PlanError::VolumeSource {
                path: host.to_path_buf(),
                reason: "is not a folder",
            })
        }
        Err(_) => {
            return Err(PlanError::VolumeSource {
                path: host.to_path_buf(),
                reason: "does not exist",
            })
        }
    }
    let mut root = Dir::new();
    let mut notes = Vec::new();
    add_children(
        &mut root,
        host,
        "/",
        &host.display().to_string(),
        &mut notes,
        "volume source",
    )?;
    Ok((root, notes))
}
