//! Packing a whole root, the image tree seen as the guest will see it, and the summary of
//! what was packed.
//!
//! [`walk_root`] copies every entry of a root folder into an image tree at the same path:
//! folders, regular files (a hard link is one more file), symbolic links kept exactly as
//! written (the guest resolves them in the same tree); device files, FIFOs and sockets are
//! skipped. It reads names and sizes only (one `lstat` per entry, through the open folder),
//! iteratively (no recursion however deep the tree), in sorted order.
//!
//! [`overlay`] then puts the program's and the config's entries over that tree: each path
//! is resolved through the root's links, as the guest will; an entry naming the root's own
//! file there is the root's (packed once), any other one replaces the root's entry at that
//! path.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nanoimg_elf::{ImageView, InImage};
use nanoimg_tfs::{Dir, FileSource, Node};

use crate::PlanError;

/// Entries of one kind of source: how many files (and their bytes), links and folders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Count {
    pub files: u64,
    pub bytes: u64,
    pub links: u64,
    pub dirs: u64,
}

impl Count {
    /// What `self` has more than `before` (each field, never below zero).
    pub fn since(self, before: Count) -> Count {
        Count {
            files: self.files.saturating_sub(before.files),
            bytes: self.bytes.saturating_sub(before.bytes),
            links: self.links.saturating_sub(before.links),
            dirs: self.dirs.saturating_sub(before.dirs),
        }
    }

    fn add_file(&mut self, len: u64) {
        self.files += 1;
        self.bytes += len;
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        *self == Count::default()
    }
}

impl std::ops::Add for Count {
    type Output = Count;

    /// Both counts together.
    fn add(self, other: Count) -> Count {
        Count {
            files: self.files + other.files,
            bytes: self.bytes + other.bytes,
            links: self.links + other.links,
            dirs: self.dirs + other.dirs,
        }
    }
}

impl std::fmt::Display for Count {
    /// `12 files (3.4 MiB), 2 links, 1 folder`; links and folders only when there are any.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{} ({})",
            plural(self.files, "file", "files"),
            size(self.bytes)
        )?;
        if self.links > 0 {
            write!(f, ", {}", plural(self.links, "link", "links"))?;
        }
        if self.dirs > 0 {
            write!(f, ", {}", plural(self.dirs, "folder", "folders"))?;
        }
        Ok(())
    }
}

/// Bytes in the largest binary unit that keeps a number ≥ 1, one decimal (`512 B`, `3.4 MiB`).
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What the image's root filesystem holds, by the source that brought it in (each entry
/// counted once, for the first source that packed it, in this order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Packed {
    /// The program, its interpreter and libraries, and the config's `Libraries`.
    pub program: Count,
    /// The config's `Files`, `Dirs` and `MapDirs` (with the folders they imply).
    pub config: Count,
    /// Libraries the other packed ELF files need that the image lacked, found in the root
    /// (empty with `pack_root`: the root is already there).
    pub needed: Count,
    /// The whole target root (`pack_root`): what the sources above did not already pack.
    pub root: Count,
    /// ELF files examined for the libraries they need, besides the program's closure.
    pub elf_files: u64,
}

impl Packed {
    /// Everything counted.
    pub fn total(&self) -> Count {
        [self.program, self.config, self.needed, self.root]
            .into_iter()
            .fold(Count::default(), |a, b| a + b)
    }
}

impl std::fmt::Display for Packed {
    /// One line: `packed 1204 files (61.2 MiB), 310 links, 90 folders: program and
    /// libraries 5 files (3.1 MiB); config 2 files (10 B); whole root 1197 files (58.1 MiB),
    /// 310 links, 88 folders; 640 ELF files checked for the libraries they need`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "packed {}: program and libraries {}",
            self.total(),
            self.program
        )?;
        if !self.config.is_empty() {
            write!(f, "; config {}", self.config)?;
        }
        if !self.needed.is_empty() {
            write!(f, "; libraries other ELF files need {}", self.needed)?;
        }
        if !self.root.is_empty() {
            write!(f, "; whole root {}", self.root)?;
        }
        if self.elf_files > 0 {
            write!(
                f,
                "; {} ELF {} checked for the libraries {}",
                self.elf_files,
                if self.elf_files == 1 { "file" } else { "files" },
                if self.elf_files == 1 {
                    "it needs"
                } else {
                    "they need"
                }
            )?;
        }
        Ok(())
    }
}

/// The counts of a whole tree.
pub(crate) fn totals(tree: &Dir) -> Count {
    let mut c = Count::default();
    let mut stack = vec![tree];
    while let Some(dir) = stack.pop() {
        for node in dir.entries().values() {
            match node {
                Node::File(f) => c.add_file(f.len()),
                Node::Symlink(_) => c.links += 1,
                Node::Dir(d) => {
                    c.dirs += 1;
                    stack.push(d);
                }
            }
        }
    }
    c
}

/// `/`-joined image path of components.
fn join(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// What the root walk skipped.
#[derive(Default)]
pub(crate) struct Skipped {
    pub count: u64,
    pub first: Option<PathBuf>,
}

/// Every entry under `root` (a host folder) as an image tree, at the same paths (see the
/// module's docs).
pub(crate) fn walk_root(root: &Path, skipped: &mut Skipped) -> Result<Dir, PlanError> {
    let mut tree = Dir::new();
    let err = |host: &Path, guest: &[u8], source| PlanError::Missing {
        field: "the whole root",
        entry: String::from_utf8_lossy(guest).into_owned(),
        host: host.to_path_buf(),
        source,
    };
    // (host folder, its image path)
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((host, guest)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&host)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| err(&host, &guest, e))?;
        entries.sort_by_cached_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            let name = e.file_name();
            let mut path = guest.clone();
            path.push(b'/');
            path.extend_from_slice(name.as_bytes());
            let host_path = e.path();
            let meta = e.metadata().map_err(|s| err(&host_path, &path, s))?;
            let kind = meta.file_type();
            let node = if kind.is_symlink() {
                let target =
                    std::fs::read_link(&host_path).map_err(|s| err(&host_path, &path, s))?;
                Node::Symlink(target.as_os_str().as_bytes().to_vec())
            } else if kind.is_dir() {
                subdirs.push((host_path, path.clone()));
                Node::Dir(Dir::new())
            } else if kind.is_file() {
                Node::File(FileSource::Host {
                    path: host_path,
                    len: meta.len(),
                })
            } else {
                skipped.count += 1;
                skipped.first.get_or_insert(host_path);
                continue;
            };
            tree.insert(&path, node)?;
        }
        // Popped in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(tree)
}

/// Where a path leads in an image tree.
enum Walked<'a> {
    /// The real path (no link among its components but possibly the last, when not
    /// followed) and the node there.
    Found(Vec<Vec<u8>>, &'a Node),
    /// A missing entry (or folder on the way): its path, real up to what exists, as written
    /// after; whether a link was followed on the way.
    Missing(Vec<Vec<u8>>, bool),
    /// A file where a folder is needed, or too many links.
    Blocked,
}

/// Follows `path` in `tree` as the guest's lookup would: links (absolute from the tree's
/// root) resolved in the tree, `..` stopping at the root, at most 40 links; the last
/// component followed when `follow_last`.
fn walk<'a>(tree: &'a Dir, path: &[u8], follow_last: bool) -> Walked<'a> {
    let mut pending: Vec<Vec<u8>> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .rev()
        .map(<[u8]>::to_vec)
        .collect();
    let mut real: Vec<Vec<u8>> = Vec::new();
    // The folders of `real`, so no step walks from the top again.
    let mut dirs: Vec<&Dir> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == b".." {
            real.pop();
            dirs.pop();
            continue;
        }
        let last = pending.is_empty();
        let dir = dirs.last().copied().unwrap_or(tree);
        match dir.entries().get(&c) {
            None => {
                // Nothing there: the rest of the path is taken as written.
                real.push(c);
                while let Some(c) = pending.pop() {
                    if c == b".." {
                        real.pop();
                    } else {
                        real.push(c);
                    }
                }
                return Walked::Missing(real, links > 0);
            }
            Some(Node::Symlink(target)) if !last || follow_last => {
                links += 1;
                if links > nanoimg_chroot::MAX_LINKS {
                    return Walked::Blocked;
                }
                if target.first() == Some(&b'/') {
                    real.clear();
                    dirs.clear();
                }
                pending.extend(
                    target
                        .split(|&b| b == b'/')
                        .filter(|c| !c.is_empty() && *c != b".")
                        .rev()
                        .map(<[u8]>::to_vec),
                );
            }
            Some(node) => {
                real.push(c);
                if last {
                    return Walked::Found(real, node);
                }
                match node {
                    Node::Dir(d) => dirs.push(d),
                    _ => return Walked::Blocked,
                }
            }
        }
    }
    // The root itself.
    Walked::Blocked
}

/// An image tree seen as the guest will see it, for library lookups ([`ImageView`]).
pub(crate) struct TreeView<'a>(pub &'a Dir);

impl ImageView for TreeView<'_> {
    fn file(&self, guest: &str) -> InImage {
        match walk(self.0, guest.as_bytes(), true) {
            Walked::Found(_, Node::File(FileSource::Host { path, .. })) => {
                InImage::File(path.clone())
            }
            Walked::Found(..) | Walked::Blocked => InImage::Other,
            // Behind a link, the root's file at the unresolved path cannot be added: the
            // guest follows the link.
            Walked::Missing(_, true) => InImage::Other,
            Walked::Missing(_, false) => InImage::Absent,
        }
    }
}

/// Every leaf of `tree` (files, links, empty folders) with its image path, in order.
fn leaves(tree: &Dir) -> Vec<(Vec<u8>, &Node)> {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<u8>, &Dir)> = vec![(Vec::new(), tree)];
    while let Some((prefix, dir)) = stack.pop() {
        let mut subdirs = Vec::new();
        for (name, node) in dir.entries() {
            let mut path = prefix.clone();
            path.push(b'/');
            path.extend_from_slice(name);
            match node {
                Node::Dir(d) if !d.is_empty() => subdirs.push((path, d)),
                _ => out.push((path, node)),
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    out
}

/// Puts the `explicit` tree (program, libraries, config entries, mount points) over the
/// whole root's tree `base`: see the module's docs. Gives the tree and the paths where an
/// explicit entry replaced the root's.
pub(crate) fn overlay(base: Dir, explicit: &Dir) -> Result<(Dir, Vec<String>), PlanError> {
    // The real path in `base` of each explicit leaf that differs from the root's entry.
    let mut replace: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
    for (path, node) in leaves(explicit) {
        let conflict = || PlanError::Conflict {
            path: String::from_utf8_lossy(&path).into_owned(),
        };
        // A folder (a mount point) through a link to a folder is that folder.
        let follow = matches!(node, Node::Dir(_));
        match walk(&base, &path, follow) {
            Walked::Found(real, existing) => {
                let same = existing == node
                    || matches!((existing, node), (Node::Dir(_), Node::Dir(_)))
                    || match (existing, node) {
                        // The root's link to the very file given (a program named by a link).
                        (Node::Symlink(_), Node::File(FileSource::Host { path: given, .. })) => {
                            matches!(walk(&base, &path, true),
                                Walked::Found(_, Node::File(FileSource::Host { path: p, .. })) if p == given)
                        }
                        _ => false,
                    };
                if !same {
                    replace.insert(join(&real), node.clone());
                }
            }
            Walked::Missing(real, _) => {
                replace.insert(join(&real), node.clone());
            }
            Walked::Blocked => return Err(conflict()),
        }
    }
    if replace.is_empty() {
        return Ok((base, Vec::new()));
    }
    // Rebuild once: the root's entries except those replaced (and what was under them).
    let mut out = Dir::new();
    let mut replaced = Vec::new();
    let mut stack: Vec<(Vec<u8>, &Dir)> = vec![(Vec::new(), &base)];
    while let Some((prefix, dir)) = stack.pop() {
        for (name, node) in dir.entries() {
            let mut path = prefix.clone();
            path.push(b'/');
            path.extend_from_slice(name);
            if replace.contains_key(&path) {
                replaced.push(String::from_utf8_lossy(&path).into_owned());
                continue;
            }
            match node {
                Node::Dir(d) => {
                    out.insert(&path, Node::Dir(Dir::new()))?;
                    stack.push((path, d));
                }
                other => out.insert(&path, other.clone())?,
            }
        }
    }
    for (path, node) in replace {
        match node {
            Node::Dir(_) => out.create_dir_all(&path)?,
            node => out.insert(&path, node)?,
        }
    }
    replaced.sort();
    Ok((out, replaced))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> Node {
        Node::File(FileSource::Host {
            path: PathBuf::from(name),
            len: 1,
        })
    }

    #[test]
    fn the_tree_is_seen_as_the_guest_sees_it() {
        let mut t = Dir::new();
        t.insert(b"/usr/lib/x/libc.so.6", file("libc")).unwrap();
        t.insert(b"/lib", Node::Symlink(b"usr/lib".to_vec()))
            .unwrap();
        t.insert(b"/usr/lib/x/up", Node::Symlink(b"../../lib/x".to_vec()))
            .unwrap();
        t.insert(b"/abs", Node::Symlink(b"/lib/x/libc.so.6".to_vec()))
            .unwrap();
        t.insert(b"/loop", Node::Symlink(b"/loop".to_vec()))
            .unwrap();
        t.insert(b"/gone", Node::Symlink(b"/nowhere/x".to_vec()))
            .unwrap();
        t.insert(b"/etc/passwd", Node::File(FileSource::Bytes(b"x".to_vec())))
            .unwrap();
        let v = TreeView(&t);
        let libc = InImage::File(PathBuf::from("libc"));
        assert_eq!(v.file("/lib/x/libc.so.6"), libc);
        assert_eq!(v.file("/usr/lib/x/up/libc.so.6"), libc);
        assert_eq!(v.file("/abs"), libc);
        // `..` after a link is the target's parent, as in the kernel: /lib/.. is /usr.
        assert_eq!(v.file("/lib/../lib/x/libc.so.6"), libc);
        assert_eq!(v.file("/lib/../usr/lib/x/libc.so.6"), InImage::Other);
        assert_eq!(v.file("/loop"), InImage::Other);
        assert_eq!(v.file("/usr/lib"), InImage::Other);
        assert_eq!(v.file("/etc/passwd"), InImage::Other);
        assert_eq!(v.file("/etc/passwd/x"), InImage::Other);
        // Missing: addable where no link was followed, not behind one.
        assert_eq!(v.file("/usr/lib/x/libm.so.6"), InImage::Absent);
        assert_eq!(v.file("/opt/lib/libm.so.6"), InImage::Absent);
        assert_eq!(v.file("/lib/x/libm.so.6"), InImage::Other);
        assert_eq!(v.file("/gone"), InImage::Other);
    }

    #[test]
    fn explicit_entries_go_over_the_root_through_its_links() {
        let mut base = Dir::new();
        base.insert(b"/usr/lib/x/libc.so.6", file("root/libc"))
            .unwrap();
        base.insert(b"/usr/lib/x/libz.so.1", file("root/libz"))
            .unwrap();
        base.insert(b"/lib", Node::Symlink(b"usr/lib".to_vec()))
            .unwrap();
        let mut explicit = Dir::new();
        // The root's own file through its link: packed once, the link kept.
        explicit
            .insert(b"/lib/x/libc.so.6", file("root/libc"))
            .unwrap();
        // Another file at a root path (through the link): it replaces the root's.
        explicit
            .insert(b"/lib/x/libz.so.1", file("host/libz"))
            .unwrap();
        explicit.insert(b"/app/prog", file("host/prog")).unwrap();
        // A mount point through a link to a folder: that folder, the link kept.
        base.insert(b"/var/run", Node::Symlink(b"/run".to_vec()))
            .unwrap();
        base.insert(b"/run", Node::Dir(Dir::new())).unwrap();
        explicit.insert(b"/var/run", Node::Dir(Dir::new())).unwrap();
        let (tree, replaced) = overlay(base, &explicit).unwrap();
        assert_eq!(replaced, ["/usr/lib/x/libz.so.1"]);
        assert_eq!(tree.get(b"/lib"), Some(&Node::Symlink(b"usr/lib".to_vec())));
        assert_eq!(tree.get(b"/usr/lib/x/libc.so.6"), Some(&file("root/libc")));
        assert_eq!(tree.get(b"/usr/lib/x/libz.so.1"), Some(&file("host/libz")));
        assert_eq!(tree.get(b"/app/prog"), Some(&file("host/prog")));
        assert_eq!(
            tree.get(b"/var/run"),
            Some(&Node::Symlink(b"/run".to_vec()))
        );
        assert_eq!(
            totals(&tree),
            Count {
                files: 3,
                bytes: 3,
                links: 2,
                dirs: 6
            }
        );
    }
}
