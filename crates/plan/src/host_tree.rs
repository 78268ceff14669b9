//! Adding host files and directories to the image tree: ops's `Files`, `Dirs` and `MapDirs`.
//!
//! Entries are read from the build host (relative to the working directory or the config's
//! folder, as ops does) or from inside the target root (`MapDirs` keys that are absolute,
//! and absolute `Files`/`Dirs` entries when the root is a container image). Inside a root,
//! every path is resolved chroot-style by `nanoimg-chroot`: a link on the way, absolute or
//! with `..`, is resolved inside the root, never on the host; links found while walking
//! are kept as links, and judged broken or not inside the root.

use std::path::{Path, PathBuf};

use nanoimg_chroot::{ChrootError, Follow, Resolver};
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
    if !meta.is_file() {
        return Err(PlanError::Missing {
            field,
            entry: entry.to_string(),
            host: host.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        });
    }
    Ok(Node::File(FileSource::Host {
        path: host.to_path_buf(),
        len: meta.len(),
    }))
}

/// Where config entries naming image paths are read from.
pub(crate) struct Sources<'a> {
    /// The working directory: `Files` and `Dirs` are relative to it (ops resolves even
    /// absolute entries under it).
    pub cwd: &'a Path,
    /// The target root when it is a container image's: absolute `Files` and `Dirs` entries
    /// name paths inside it.
    pub image_root: Option<&'a Path>,
}

impl Sources<'_> {
    /// The host path of a `Files`/`Dirs` entry, resolved inside the image root when the
    /// entry is absolute and the root is an image's (following links there, never on the
    /// host), else under the working directory.
    fn host_path(
        &self,
        field: &'static str,
        entry: &str,
        image: &str,
    ) -> Result<PathBuf, PlanError> {
        match self.image_root {
            Some(r) if entry.starts_with('/') => in_root(r, field, entry, Follow::Last),
            _ => Ok(self.cwd.join(image.trim_start_matches('/'))),
        }
    }
}

/// `guest` resolved inside `root` (see the module's docs); a path that is not there is
/// [`PlanError::Missing`] naming the entry.
fn in_root(
    root: &Path,
    field: &'static str,
    entry: &str,
    follow: Follow,
) -> Result<PathBuf, PlanError> {
    Resolver::new(root)
        .resolve(Path::new(entry), follow)
        .map_err(|e| chroot_error(field, entry, root, e))
}

fn chroot_error(field: &'static str, entry: &str, root: &Path, e: ChrootError) -> PlanError {
    let kind = if e.is_not_found() {
        std::io::ErrorKind::NotFound
    } else {
        std::io::ErrorKind::InvalidInput
    };
    PlanError::Missing {
        field,
        entry: entry.to_string(),
        host: root.to_path_buf(),
        source: std::io::Error::new(kind, e.to_string()),
    }
}

/// `Files`: each entry is copied from `<cwd>/<entry>` to `/<entry>` (ops resolves even
/// absolute entries under the working directory), or from the image root (see
/// [`Sources`]).
pub(crate) fn add_files(root: &mut Dir, files: &[String], from: &Sources) -> Result<(), PlanError> {
    for f in files {
        let image = image_path_of("Files", f)?;
        let host = from.host_path("Files", f, &image)?;
        let node = host_file(&host, f, "Files")?;
        add(root, &image, node)?;
    }
    Ok(())
}

/// A walk of host folders into the image tree.
struct Walk<'a> {
    notes: &'a mut Vec<String>,
    field: &'static str,
    /// When the folders walked are inside a root: the root, where links are judged.
    inside: Option<Resolver>,
}

impl Walk<'_> {
    /// Whether the link at `host` leads nowhere: on the host, or inside the root when
    /// walking one (an absolute target is then taken from the root, not from `/`).
    fn is_broken_link(&mut self, host: &Path) -> bool {
        match &mut self.inside {
            Some(r) => match host.strip_prefix(r.root()) {
                Ok(guest) => r.resolve(guest, Follow::Last).is_err(),
                Err(_) => true,
            },
            None => std::fs::metadata(host).is_err(),
        }
    }
}

/// Walks `host` (a directory) into the image at `image`, in sorted order: directories,
/// files, and symlinks as symlinks. Broken symlinks and special files are skipped, with a
/// note, as ops does.
fn add_tree(root: &mut Dir, host: &Path, image: &str, walk: &mut Walk) -> Result<(), PlanError> {
    add(root, image, Node::Dir(Dir::new()))?;
    add_children(root, host, image, image, walk)
}

/// Adds the entries of the host directory `host` under the image directory `image` (`entry`
/// names the config entry in errors), as [`add_tree`] describes.
fn add_children(
    root: &mut Dir,
    host: &Path,
    image: &str,
    entry: &str,
    walk: &mut Walk,
) -> Result<(), PlanError> {
    let entries = sorted_entries(host).map_err(|source| PlanError::Missing {
        field: walk.field,
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
        add_entry(root, &e.path(), meta, &image_child, walk)?;
    }
    Ok(())
}

fn add_entry(
    root: &mut Dir,
    host: &Path,
    known: Option<std::fs::Metadata>,
    image: &str,
    walk: &mut Walk,
) -> Result<(), PlanError> {
    let field = walk.field;
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
        if walk.is_broken_link(host) {
            walk.notes
                .push(format!("skipping broken symlink {}", host.display()));
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
        return add_tree(root, host, image, walk);
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
    walk.notes
        .push(format!("skipping special file {}", host.display()));
    Ok(())
}

/// `Dirs`: each directory (relative to the working directory, or in the image root, see
/// [`Sources`]) is copied recursively to the same path in the image.
pub(crate) fn add_dirs(
    root: &mut Dir,
    dirs: &[String],
    from: &Sources,
    notes: &mut Vec<String>,
) -> Result<(), PlanError> {
    for d in dirs {
        let image = image_path_of("Dirs", d)?;
        let host = from.host_path("Dirs", d, &image)?;
        let inside = match from.image_root {
            Some(r) if d.starts_with('/') => Some(Resolver::new(r)),
            _ => None,
        };
        if !host.is_dir() {
            return Err(PlanError::Missing {
                field: "Dirs",
                entry: d.clone(),
                host,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let mut walk = Walk {
            notes: &mut *notes,
            field: "Dirs",
            inside,
        };
        add_entry(root, &host, None, &image, &mut walk)?;
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
        let (parent, glob_text) = match pattern.trim_end_matches('/').rsplit_once('/') {
            Some((p, g)) => (p, g),
            None => ("", pattern.trim_end_matches('/')),
        };
        let glob = glob::Pattern::new(glob_text).map_err(|e| PlanError::BadGlob {
            pattern: pattern.clone(),
            reason: e.to_string(),
        })?;
        // An absolute pattern inside the target root: its folder is resolved there, links
        // on the way included (`/var/run/*` with `/var/run -> /run` is the root's `/run`).
        let (dir, inside) = match (pattern.starts_with('/'), target_root) {
            (true, Some(r)) => {
                let guest = if parent.is_empty() { "/" } else { parent };
                let mut resolver = Resolver::new(r);
                let dir = resolver
                    .resolve(Path::new(guest), Follow::Folder)
                    .map_err(|e| chroot_error("MapDirs", pattern, r, e))?;
                (dir, Some(resolver))
            }
            (true, None) => (
                PathBuf::from(if parent.is_empty() { "/" } else { parent }),
                None,
            ),
            (false, _) => (config_dir.join(parent), None),
        };
        if !dir.is_dir() {
            return Err(PlanError::Missing {
                field: "MapDirs",
                entry: pattern.clone(),
                host: dir,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let dest = image_path_of("MapDirs", dest)?;
        let mut walk = Walk {
            notes: &mut *notes,
            field: "MapDirs",
            inside,
        };
        map_walk(root, &dir, &dir, &glob, &dest, &mut walk)?;
    }
    Ok(())
}

fn map_walk(
    root: &mut Dir,
    top: &Path,
    dir: &Path,
    glob: &glob::Pattern,
    dest: &str,
    walk: &mut Walk,
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
                walk.notes
                    .push(format!("skipping special file {}", path.display()));
            }
        }
        if meta.is_dir() {
            map_walk(root, top, &path, glob, dest, walk)?;
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
    let mut walk = Walk {
        notes: &mut notes,
        field: "volume source",
        inside: None,
    };
    add_children(&mut root, host, "/", &host.display().to_string(), &mut walk)?;
    Ok((root, notes))
}
