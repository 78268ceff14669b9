use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Largest single member accepted (a kernel is a few MiB).
const MAX_MEMBER: u64 = 512 << 20;
/// Largest total accepted.
const MAX_TOTAL: u64 = 2 << 30;
/// Most members accepted.
const MAX_MEMBERS: usize = 10_000;

/// A release tarball that cannot be extracted safely.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("release tarball {tarball}: member {member:?} refused: {reason}")]
    Unsafe {
        tarball: PathBuf,
        member: String,
        reason: &'static str,
    },
    #[error("release tarball {tarball} is larger than allowed: {reason}")]
    TooLarge { tarball: PathBuf, reason: String },
    #[error("release tarball {tarball} is corrupt: {source}")]
    Corrupt { tarball: PathBuf, source: io::Error },
    #[error("cannot extract {tarball} into {dest}: {source}")]
    Write {
        tarball: PathBuf,
        dest: PathBuf,
        source: io::Error,
    },
}

/// A relative path with no `..`, no root, and `.` components removed; `None` if unsafe.
fn safe_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The tarball being extracted and where to: the errors it gives.
struct Extraction<'a> {
    tarball: &'a Path,
    dest: &'a Path,
}

impl Extraction<'_> {
    fn corrupt(&self, source: io::Error) -> ExtractError {
        ExtractError::Corrupt {
            tarball: self.tarball.to_path_buf(),
            source,
        }
    }

    fn write(&self, source: io::Error) -> ExtractError {
        ExtractError::Write {
            tarball: self.tarball.to_path_buf(),
            dest: self.dest.to_path_buf(),
            source,
        }
    }

    fn refused(&self, member: &str, reason: &'static str) -> ExtractError {
        ExtractError::Unsafe {
            tarball: self.tarball.to_path_buf(),
            member: member.to_string(),
            reason,
        }
    }

    fn too_large(&self, reason: String) -> ExtractError {
        ExtractError::TooLarge {
            tarball: self.tarball.to_path_buf(),
            reason,
        }
    }

    /// Extracts the member `entry`, named `member`, at the safe relative path `rel`;
    /// `total` counts the bytes of regular files so far.
    fn member<R: Read>(
        &self,
        entry: &mut tar::Entry<R>,
        member: &str,
        rel: &Path,
        total: &mut u64,
    ) -> Result<(), ExtractError> {
        let target = self.dest.join(rel);
        let parent = target.parent().unwrap_or(self.dest).to_path_buf();
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(|e| self.write(e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.file(entry, member, &target, &parent, total)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                self.link(entry, kind, member, rel, &target, &parent)?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            _ => return Err(self.refused(member, "not a regular file, directory or link")),
        }
        Ok(())
    }

    /// Writes a regular file member to `target`, its size (and the running `total`)
    /// bounded before any of it is read.
    fn file<R: Read>(
        &self,
        entry: &mut tar::Entry<R>,
        member: &str,
        target: &Path,
        parent: &Path,
        total: &mut u64,
    ) -> Result<(), ExtractError> {
        let size = entry.header().size().map_err(|e| self.corrupt(e))?;
        if size > MAX_MEMBER {
            return Err(self.too_large(format!("{member} is {size} bytes")));
        }
        *total += size;
        if *total > MAX_TOTAL {
            return Err(self.too_large(format!("more than {MAX_TOTAL} bytes in all")));
        }
        std::fs::create_dir_all(parent).map_err(|e| self.write(e))?;
        let mut out = File::create(target).map_err(|e| self.write(e))?;
        let copied = io::copy(&mut entry.take(size), &mut out).map_err(|e| self.corrupt(e))?;
        if copied != size {
            return Err(self.corrupt(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{member} ends after {copied} of {size} bytes"),
            )));
        }
        out.flush().map_err(|e| self.write(e))
    }

    /// Makes a symbolic or hard link member at `target`, refused if its target leaves the
    /// release folder.
    fn link<R: Read>(
        &self,
        entry: &mut tar::Entry<R>,
        kind: tar::EntryType,
        member: &str,
        rel: &Path,
        target: &Path,
        parent: &Path,
    ) -> Result<(), ExtractError> {
        let link = entry
            .link_name()
            .map_err(|e| self.corrupt(e))?
            .ok_or_else(|| self.refused(member, "link without a target"))?
            .into_owned();
        // The target, resolved from where the link sits (hard links: from the top).
        let base = if kind == tar::EntryType::Symlink {
            rel.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            PathBuf::new()
        };
        let depth = resolve_link(&base, &link)
            .ok_or_else(|| self.refused(member, "link leaves the release folder"))?;
        std::fs::create_dir_all(parent).map_err(|e| self.write(e))?;
        if kind == tar::EntryType::Symlink {
            std::os::unix::fs::symlink(&link, target).map_err(|e| self.write(e))?;
        } else {
            let source: PathBuf = depth.iter().collect();
            std::fs::hard_link(self.dest.join(source), target).map_err(|e| self.write(e))?;
        }
        Ok(())
    }
}

/// The components of `link` followed from the folder `base`; `None` if it climbs out of
/// the top or is absolute.
fn resolve_link(base: &Path, link: &Path) -> Option<Vec<std::ffi::OsString>> {
    let mut depth: Vec<std::ffi::OsString> = base
        .components()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    for c in link.components() {
        match c {
            Component::Normal(n) => depth.push(n.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                depth.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(depth)
}

/// Extracts the gzip'd tarball into the empty directory `dest`, refusing absolute paths,
/// `..`, links that leave `dest`, device files and anything too large.
pub(crate) fn extract(tarball: &Path, dest: &Path) -> Result<(), ExtractError> {
    let x = Extraction { tarball, dest };
    let file = File::open(tarball).map_err(|e| x.corrupt(e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut total, mut count) = (0u64, 0usize);
    for entry in archive.entries().map_err(|e| x.corrupt(e))? {
        let mut entry = entry.map_err(|e| x.corrupt(e))?;
        let raw = entry.path().map_err(|e| x.corrupt(e))?.into_owned();
        let member = raw.display().to_string();
        count += 1;
        if count > MAX_MEMBERS {
            return Err(x.too_large(format!("more than {MAX_MEMBERS} members")));
        }
        let rel = safe_relative(&raw)
            .ok_or_else(|| x.refused(&member, "absolute path or .. component"))?;
        if rel.as_os_str().is_empty() {
            continue; // "./"
        }
        x.member(&mut entry, &member, &rel, &mut total)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "../tests/tarball/mod.rs"]
mod tarball;

#[cfg(test)]
mod tests {
    use super::tarball::tarball;
    use super::*;

    fn try_extract(bytes: &[u8]) -> (tempfile::TempDir, Result<(), ExtractError>) {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("r.tar.gz");
        std::fs::write(&t, bytes).unwrap();
        let dest = d.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        let r = extract(&t, &dest);
        (d, r)
    }

    #[test]
    fn extracts_a_release_layout() {
        let (d, r) = try_extract(&tarball(&[("kernel.img", b"k"), ("./klibs/tls", b"t")]));
        r.unwrap();
        assert_eq!(std::fs::read(d.path().join("out/klibs/tls")).unwrap(), b"t");
    }

    #[test]
    fn refuses_escaping_members() {
        for bad in ["../evil", "/etc/evil", "klibs/../../evil"] {
            let (d, r) = try_extract(&tarball(&[("kernel.img", b"k"), (bad, b"x")]));
            let e = r.unwrap_err().to_string();
            assert!(e.contains(&format!("member {bad:?} refused")), "{e}");
            assert!(!d.path().join("evil").exists());
        }
    }

    #[test]
    fn refuses_links_leaving_the_folder_and_devices() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "klibs/x", "../../etc/passwd")
            .unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let (_d, r) = try_extract(&gz.finish().unwrap());
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("link leaves the release folder"));

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_size(0);
        h.set_path("null").unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let (_d, r) = try_extract(&gz.finish().unwrap());
        assert!(r.unwrap_err().to_string().contains("not a regular file"));
    }

    #[test]
    fn refuses_garbage() {
        let (_d, r) = try_extract(b"not a tarball");
        assert!(matches!(r, Err(ExtractError::Corrupt { .. })));
    }
}
