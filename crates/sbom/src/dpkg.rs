//! Which Debian package owns a file: a root's dpkg database (`var/lib/dpkg/status` for the
//! installed packages, `var/lib/dpkg/info/<pkg>.list` or, multi-arch,
//! `info/<pkg>:<arch>.list` for their files), read through `nanoimg-chroot` so that no link
//! in the root leads outside it, every file bounded ([`crate::limits`]).
//!
//! Paths are matched through the usr-merge both ways: `/lib/x86_64-linux-gnu/libc.so.6`
//! (as bookworm's lists say) and `/usr/lib/x86_64-linux-gnu/libc.so.6` (as trixie's do, and
//! as a link-resolved path reads) are one key ([`canonical`]).
//!
//! The license is read cheaply from `usr/share/doc/<pkg>/copyright` when that is in
//! Debian's machine-readable format: the `License:` of the `Files: *` paragraph, kept when
//! it is (or maps to, `GPL-2+` → `GPL-2.0-or-later`) an SPDX license identifier; anything
//! else is `None` (`NOASSERTION` in the documents).

use std::collections::BTreeMap;
use std::path::Path;

use crate::{limits, purl, SbomError};

/// A distribution package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// An SPDX license identifier or expression, when the package says so cheaply.
    pub license: Option<String>,
    /// `pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64`.
    pub purl: String,
}

/// A root's dpkg database: each listed path's owner.
#[derive(Clone, Debug, Default)]
pub struct Database {
    packages: Vec<Package>,
    /// [`canonical`] path → index into `packages`.
    owners: BTreeMap<String, usize>,
}

/// The usr-merged folders: `/lib/...` and `/usr/lib/...` are one file.
const MERGED: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// `path` (absolute) as one key whichever side of the usr-merge it is written on: a
/// leading `/usr` before a merged folder dropped.
pub fn canonical(path: &str) -> String {
    let p = format!("/{}", path.trim_start_matches('/'));
    if let Some(rest) = p.strip_prefix("/usr/") {
        let first = rest.split('/').next().unwrap_or("");
        if MERGED.contains(&first) {
            return format!("/{rest}");
        }
    }
    p
}

/// A root's files, read by their absolute path in the root: a folder on the host
/// ([`HostRoot`]) or a filesystem inside an image (in the CLI, through `nanoimg-inspect`).
pub trait RootFiles {
    /// The whole file at `guest` (links resolved inside the root), `None` when there is
    /// no such regular file; [`SbomError::Limit`] when it is longer than `max` bytes.
    fn read(&mut self, guest: &str, max: u64) -> Result<Option<Vec<u8>>, SbomError>;
}

/// A root folder on the build host (`/` for the host itself), read through
/// `nanoimg-chroot`.
pub struct HostRoot<'a>(pub &'a Path);

impl RootFiles for HostRoot<'_> {
    fn read(&mut self, guest: &str, max: u64) -> Result<Option<Vec<u8>>, SbomError> {
        read_in_root(self.0, guest, max)
    }
}

fn read_in_root(root: &Path, guest: &str, max: u64) -> Result<Option<Vec<u8>>, SbomError> {
    let host = match nanoimg_chroot::resolve(root, Path::new(guest)) {
        Ok(h) => h,
        Err(_) => return Ok(None),
    };
    match nanoimg_chroot::read_regular(&host, max) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(SbomError::Limit {
            path: guest.to_string(),
            what: "its size",
            limit: max,
        }),
        Err(e) => Err(SbomError::InRoot {
            root: root.to_path_buf(),
            path: guest.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// The fields of a deb822 paragraph (continuation lines dropped: none of the fields read
/// here has them).
fn paragraphs(text: &str) -> impl Iterator<Item = BTreeMap<&str, &str>> {
    text.split("\n\n").map(|p| {
        p.lines()
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect()
    })
}

/// The distribution's id from `etc/os-release` (`ID=debian`), else `debian`.
fn distro(root: &mut dyn RootFiles) -> Result<String, SbomError> {
    for f in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(bytes) = root.read(f, limits::OS_RELEASE)? {
            let text = String::from_utf8_lossy(&bytes);
            let id = text
                .lines()
                .filter_map(|l| l.strip_prefix("ID="))
                .map(|v| v.trim().trim_matches('"').to_ascii_lowercase())
                .find(|v| !v.is_empty());
            if let Some(id) = id {
                return Ok(id);
            }
        }
    }
    Ok("debian".into())
}

/// The first of a package's file lists (`/var/lib/dpkg/info/NAME.list`, by the names to try
/// in order) that the root has.
fn file_list(root: &mut dyn RootFiles, lists: &[String]) -> Result<Option<Vec<u8>>, SbomError> {
    for l in lists {
        if !valid_name(l) {
            continue;
        }
        let guest = format!("/var/lib/dpkg/info/{l}");
        if let Some(bytes) = root.read(&guest, limits::LIST)? {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

impl Database {
    /// The dpkg database of the root folder `root` (`/` for the build host), or `None` when
    /// it has no `var/lib/dpkg/status`.
    pub fn read(root: &Path) -> Result<Option<Database>, SbomError> {
        Database::read_from(&mut HostRoot(root))
    }

    /// The dpkg database of any root's files, or `None` when it has no
    /// `/var/lib/dpkg/status`.
    pub fn read_from(root: &mut dyn RootFiles) -> Result<Option<Database>, SbomError> {
        let Some(status) = root.read("/var/lib/dpkg/status", limits::STATUS)? else {
            return Ok(None);
        };
        let distro = distro(root)?;
        let text = String::from_utf8_lossy(&status);
        let mut db = Database::default();
        let mut total = 0u64;
        for p in paragraphs(&text) {
            let (Some(name), Some(version)) = (p.get("Package"), p.get("Version")) else {
                continue;
            };
            if !p
                .get("Status")
                .is_some_and(|s| s.ends_with(" installed") && s.starts_with("install "))
            {
                continue;
            }
            if db.packages.len() >= limits::PACKAGES {
                return Err(SbomError::Limit {
                    path: "/var/lib/dpkg/status".into(),
                    what: "the number of packages",
                    limit: limits::PACKAGES as u64,
                });
            }
            let arch = p.get("Architecture").copied().unwrap_or("all");
            let multi_arch = p.get("Multi-Arch").is_some_and(|m| *m == "same");
            let lists = if multi_arch {
                [format!("{name}:{arch}.list"), format!("{name}.list")]
            } else {
                [format!("{name}.list"), format!("{name}:{arch}.list")]
            };
            let list = file_list(root, &lists)?;
            let license = license(root, name)?;
            let index = db.packages.len();
            db.packages.push(Package {
                name: name.to_string(),
                version: version.to_string(),
                architecture: arch.to_string(),
                license,
                purl: format!(
                    "pkg:deb/{}/{}@{}?arch={}",
                    purl::encode(&distro),
                    purl::encode(name),
                    purl::encode(version),
                    purl::encode(arch)
                ),
            });
            let Some(list) = list else { continue };
            total += list.len() as u64;
            if total > limits::LISTS_TOTAL {
                return Err(SbomError::Limit {
                    path: "/var/lib/dpkg/info".into(),
                    what: "the size of all file lists",
                    limit: limits::LISTS_TOTAL,
                });
            }
            for line in String::from_utf8_lossy(&list).lines() {
                if line.starts_with('/') && line != "/." {
                    // The first owner listed keeps a path (folders are listed by many).
                    db.owners.entry(canonical(line)).or_insert(index);
                }
            }
        }
        Ok(Some(db))
    }

    /// The package owning the file at `path` in the root (absolute, either side of the
    /// usr-merge).
    pub fn owner(&self, path: &str) -> Option<&Package> {
        self.owners
            .get(&canonical(path))
            .and_then(|&i| self.packages.get(i))
    }

    /// The installed packages, in the status file's order.
    pub fn packages(&self) -> &[Package] {
        &self.packages
    }
}

/// A package name or list file name that cannot leave `info/`.
fn valid_name(name: &str) -> bool {
    !name.contains('/') && !name.starts_with('.')
}

/// Debian's license short names that are not SPDX identifiers, and theirs.
const DEBIAN_TO_SPDX: &[(&str, &str)] = &[
    ("GPL-1", "GPL-1.0-only"),
    ("GPL-1+", "GPL-1.0-or-later"),
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("AGPL-3", "AGPL-3.0-only"),
    ("AGPL-3+", "AGPL-3.0-or-later"),
    ("Apache-2.0", "Apache-2.0"),
    ("Artistic", "Artistic-1.0-Perl"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSD-4-clause", "BSD-4-Clause"),
    ("BSL-1.0", "BSL-1.0"),
    ("CC0-1.0", "CC0-1.0"),
    ("Expat", "MIT"),
    ("MIT", "MIT"),
    ("ISC", "ISC"),
    ("MPL-2.0", "MPL-2.0"),
    ("OpenSSL", "OpenSSL"),
    ("public-domain", ""),
    ("Zlib", "Zlib"),
    ("zlib", "Zlib"),
];

/// The SPDX identifier for a Debian `License:` value, if it is one short name this knows.
pub fn spdx_license(debian: &str) -> Option<&'static str> {
    let v = debian.trim();
    DEBIAN_TO_SPDX
        .iter()
        .find(|(d, _)| d.eq_ignore_ascii_case(v))
        .map(|(_, s)| *s)
        .filter(|s| !s.is_empty())
}

/// The package's license from its machine-readable copyright file, if cheaply known.
fn license(root: &mut dyn RootFiles, name: &str) -> Result<Option<String>, SbomError> {
    if !valid_name(name) {
        return Ok(None);
    }
    let guest = format!("/usr/share/doc/{name}/copyright");
    // A copyright file too big to read cheaply is no license, not an error.
    let bytes = match root.read(&guest, limits::COPYRIGHT) {
        Ok(Some(b)) => b,
        Ok(None) | Err(SbomError::Limit { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&bytes);
    if !text.starts_with("Format:") {
        return Ok(None);
    }
    let found = paragraphs(&text)
        .find(|p| p.get("Files").is_some_and(|f| *f == "*"))
        .and_then(|p| p.get("License").copied())
        .and_then(spdx_license);
    Ok(found.map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let host = t.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(host, text).unwrap();
        }
        t
    }

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n continued line\n\nPackage: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\nPackage: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4\n";

    #[test]
    fn owners_through_multi_arch_lists_and_the_usr_merge() {
        let t = root_with(&[
            ("/var/lib/dpkg/status", STATUS),
            (
                "/var/lib/dpkg/info/libc6:amd64.list",
                "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libc.so.6\n",
            ),
            ("/var/lib/dpkg/info/base-files.list", "/.\n/usr/bin/x\n"),
            ("/etc/os-release", "NAME=\"Debian\"\nID=debian\n"),
            (
                "/usr/share/doc/libc6/copyright",
                "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: x\nLicense: LGPL-2.1+\n",
            ),
        ]);
        let db = Database::read(t.path()).unwrap().unwrap();
        let libc = db.owner("/usr/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        assert_eq!(libc.name, "libc6");
        assert_eq!(
            libc.purl,
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"
        );
        assert_eq!(libc.license.as_deref(), Some("LGPL-2.1-or-later"));
        assert_eq!(db.owner("/lib/x86_64-linux-gnu/libc.so.6"), Some(libc));
        assert_eq!(db.owner("/bin/x").unwrap().name, "base-files");
        assert_eq!(db.owner("/bin/x").unwrap().license, None);
        assert!(db.owner("/etc/os-release").is_none());
        assert_eq!(
            db.packages().len(),
            2,
            "the deinstalled one is not installed"
        );
    }

    #[test]
    fn no_database_is_none_and_a_huge_status_is_refused() {
        let t = root_with(&[("/etc/os-release", "ID=debian\n")]);
        assert!(Database::read(t.path()).unwrap().is_none());
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("var/lib/dpkg")).unwrap();
        let f = std::fs::File::create(t.path().join("var/lib/dpkg/status")).unwrap();
        f.set_len(limits::STATUS + 1).unwrap();
        assert!(matches!(
            Database::read(t.path()),
            Err(SbomError::Limit { .. })
        ));
    }

    #[test]
    fn a_link_in_the_root_stays_in_the_root() {
        // var/lib/dpkg -> /etc: read as the root's /etc, never the host's.
        let t = root_with(&[("/etc/status", STATUS)]);
        std::fs::create_dir_all(t.path().join("var/lib")).unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("var/lib/dpkg")).unwrap();
        let db = Database::read(t.path()).unwrap().unwrap();
        assert_eq!(db.packages().len(), 2);
    }

    #[test]
    fn canonical_paths() {
        assert_eq!(canonical("/usr/lib/a"), "/lib/a");
        assert_eq!(canonical("/lib/a"), "/lib/a");
        assert_eq!(canonical("/usr/share/a"), "/usr/share/a");
        assert_eq!(canonical("/usr/sbin"), "/sbin");
    }
}
