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

/// Extracts the gzip'd tarball into the empty directory `dest`, refusing absolute paths,
/// `..`, links that leave `dest`, device files and anything too large.
pub(crate) fn extract(tarball: &Path, dest: &Path) -> Result<(), ExtractError> {
    let corrupt = |source| ExtractError::Corrupt {
        tarball: tarball.to_path_buf(),
        source,
    };
    let write = |source| ExtractError::Write {
        tarball: tarball.to_path_buf(),
        dest: dest.to_path_buf(),
        source,
    };
    let file = File::open(tarball).map_err(corrupt)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut total, mut count) = (0u64, 0usize);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let member = raw.display().to_string();
        let unsafe_ = |reason| ExtractError::Unsafe {
            tarball: tarball.to_path_buf(),
            member: member.clone(),
            reason,
        };
        count += 1;
        if count > MAX_MEMBERS {
            return Err(ExtractError::TooLarge {
                tarball: tarball.to_path_buf(),
                reason: format!("more than {MAX_MEMBERS} members"),
            });
        }
        let rel = safe_relative(&raw).ok_or_else(|| unsafe_("absolute path or .. component"))?;
        if rel.as_os_str().is_empty() {
            continue; // "./"
        }
        let target = dest.join(&rel);
        let parent = target.parent().unwrap_or(dest).to_path_buf();
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(write)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(corrupt)?;
                if size > MAX_MEMBER {
                    return Err(ExtractError::TooLarge {
                        tarball: tarball.to_path_buf(),
                        reason: format!("{member} is {size} bytes"),
                    });
                }
                total += size;
                if total > MAX_TOTAL {
                    return Err(ExtractError::TooLarge {
                        tarball: tarball.to_path_buf(),
                        reason: format!("more than {MAX_TOTAL} bytes in all"),
                    });
                }
                std::fs::create_dir_all(&parent).map_err(write)?;
                let mut out = File::create(&target).map_err(write)?;
                let copied = io::copy(&mut (&mut entry).take(size), &mut out).map_err(corrupt)?;
                if copied != size {
                    return Err(corrupt(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{member} ends after {copied} of {size} bytes"),
                    )));
                }
                out.flush().map_err(write)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_("link without a target"))?
                    .into_owned();
                // The target, resolved from where the link sits (hard links: from the top).
                let base = if kind == tar::EntryType::Symlink {
                    rel.parent().map(Path::to_path_buf).unwrap_or_default()
                } else {
                    PathBuf::new()
                };
                let mut depth: Vec<std::ffi::OsString> = base
                    .components()
                    .map(|c| c.as_os_str().to_owned())
                    .collect();
                for c in link.components() {
                    match c {
                        Component::Normal(n) => depth.push(n.to_owned()),
                        Component::CurDir => {}
                        Component::ParentDir => {
                            if depth.pop().is_none() {
                                return Err(unsafe_("link leaves the release folder"));
                            }
                        }
                        Component::RootDir | Component::Prefix(_) => {
                            return Err(unsafe_("link leaves the release folder"))
                        }
                    }
                }
                std::fs::create_dir_all(&parent).map_err(write)?;
                if kind == tar::EntryType::Symlink {
                    std::os::unix::fs::symlink(&link, &target).map_err(write)?;
                } else {
                    let source: PathBuf = depth.iter().collect();
                    std::fs::hard_link(dest.join(source), &target).map_err(write)?;
                }
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            _ => return Err(unsafe_("not a regular file, directory or link")),
        }
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
