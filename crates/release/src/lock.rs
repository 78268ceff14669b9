use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nanoimg_elf::Arch;
use serde::{Deserialize, Serialize};

fn is_x86_64(a: &Arch) -> bool {
    *a == Arch::X86_64
}

/// `Arch` as ops spells it (`amd64`, `arm64`).
mod ops_arch {
    use nanoimg_elf::Arch;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Arch, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.ops_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// File name (relative to the release folder, e.g. `klibs/tls`) → SHA-256.
pub type LockedFiles = BTreeMap<String, String>;

/// One release as the project uses it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedRelease {
    pub version: String,
    /// `arm64` for the aarch64 (`-virt`) release; absent for x86_64, so locks written before
    /// arm64 support read the same.
    #[serde(default, skip_serializing_if = "is_x86_64", with = "ops_arch")]
    pub arch: Arch,
    /// The official URL of the tarball (mirrors do not change the lock).
    pub url: String,
    pub sha256: String,
    #[serde(default)]
    pub files: LockedFiles,
}

/// A release folder given with `--kernel-dir`, recorded by the hashes of its files.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedDir {
    pub files: LockedFiles,
}

/// A container image used as a sysroot (`TargetRoot`), recorded by its manifest digest.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The image as the config or the command line names it (file, and `:REF` if given).
    pub source: String,
    /// `os/architecture` the manifest was chosen for.
    pub platform: String,
    /// `sha256:...` of the manifest (for a docker archive, of the image config).
    pub digest: String,
}

/// `nanoimg.lock`: exactly which kernel bytes a project's images are built from.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    #[serde(default, rename = "release", skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<LockedRelease>,
    #[serde(default, rename = "image", skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<LockedImage>,
    #[serde(
        default,
        rename = "kernel-dir",
        skip_serializing_if = "Option::is_none"
    )]
    pub kernel_dir: Option<LockedDir>,
    /// The `--kernel-dir` folder of aarch64 builds (a project may build for both).
    #[serde(
        default,
        rename = "kernel-dir-arm64",
        skip_serializing_if = "Option::is_none"
    )]
    pub kernel_dir_arm64: Option<LockedDir>,
}

/// A lock file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lock file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lock file {path} is not valid (line {line}: {message}); restore it from version control, or delete it to record the kernel again")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no lock file at {path}; `nanoimg build` and `nanoimg kernel fetch` write one, or give its path with --lock")]
    NotFound { path: PathBuf },
    #[error("cannot write lock file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A sysroot image that does not match the lock.
#[derive(Debug, thiserror::Error)]
pub enum ImageLockError {
    #[error("the sysroot image {image} is not in nanoimg.lock and --locked forbids adding it; run once without --locked to record it")]
    NotLocked { image: String },
    #[error("the sysroot image {image} has manifest {found}, but nanoimg.lock records {recorded}; {}", if *locked { "--locked refuses any change" } else { "if you changed the image on purpose, run again with --update-lock to record it" })]
    Changed {
        image: String,
        recorded: String,
        found: String,
        locked: bool,
    },
}

const HEADER: &str = "# nanoimg.lock: the Nanos releases this project builds with, by SHA-256.\n# Written by nanoimg; commit it. A build whose kernel files do not match it fails.\n\n";

impl Lock {
    /// Reads `path`; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Lock, LockError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e: toml::de::Error| {
                let at = e.span().map_or(0, |s| s.start).min(text.len());
                LockError::Parse {
                    path: path.to_path_buf(),
                    line: text[..at].matches('\n').count() + 1,
                    message: e.message().replace('\n', " "),
                }
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock::default()),
            Err(source) => Err(LockError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the lock to `path` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), LockError> {
        let err = |source| LockError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut sorted = self.clone();
        sorted
            .releases
            .sort_by_key(|r| (crate::pins::version_key(&r.version), r.arch));
        let text = toml::to_string(&sorted).map_err(|e| err(std::io::Error::other(e)))?;
        let mut tmp = nanoimg_atomic::TempFile::beside(path).map_err(err)?;
        std::io::Write::write_all(tmp.as_file_mut(), format!("{HEADER}{text}").as_bytes())
            .map_err(err)?;
        tmp.persist(path).map_err(err)
    }

    /// Reads `path`, which must exist.
    pub fn load_existing(path: &Path) -> Result<Lock, LockError> {
        if !path.exists() {
            return Err(LockError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Self::load(path)
    }

    /// The `--kernel-dir` entry for `arch` (`[kernel-dir]` for x86_64, `[kernel-dir-arm64]`).
    pub fn kernel_dir_mut(&mut self, arch: Arch) -> &mut Option<LockedDir> {
        match arch {
            Arch::X86_64 => &mut self.kernel_dir,
            Arch::Aarch64 => &mut self.kernel_dir_arm64,
        }
    }

    /// The entry for `version` on `arch`.
    pub fn release(&self, version: &str, arch: Arch) -> Option<&LockedRelease> {
        self.releases
            .iter()
            .find(|r| r.version == version && r.arch == arch)
    }

    /// The entry for the sysroot image named `source` on `platform`.
    pub fn image(&self, source: &str, platform: &str) -> Option<&LockedImage> {
        self.images
            .iter()
            .find(|i| i.source == source && i.platform == platform)
    }

    /// Checks the sysroot image `source` (on `platform`) whose manifest has `digest` against
    /// the lock and records it: a new image is added unless `locked`; a changed digest is an
    /// error unless `update` accepts it.
    pub fn lock_image(
        &mut self,
        source: &str,
        platform: &str,
        digest: &str,
        locked: bool,
        update: bool,
    ) -> Result<(), ImageLockError> {
        match self.image(source, platform) {
            Some(i) if i.digest == digest => return Ok(()),
            Some(i) if locked || !update => {
                return Err(ImageLockError::Changed {
                    image: source.to_string(),
                    recorded: i.digest.clone(),
                    found: digest.to_string(),
                    locked,
                })
            }
            None if locked => {
                return Err(ImageLockError::NotLocked {
                    image: source.to_string(),
                })
            }
            _ => {}
        }
        self.images
            .retain(|i| !(i.source == source && i.platform == platform));
        self.images.push(LockedImage {
            source: source.to_string(),
            platform: platform.to_string(),
            digest: digest.to_string(),
        });
        self.images
            .sort_by(|a, b| (&a.source, &a.platform).cmp(&(&b.source, &b.platform)));
        Ok(())
    }

    /// Adds or replaces the entry for `release.version` on `release.arch`.
    pub fn set_release(&mut self, release: LockedRelease) {
        self.releases
            .retain(|r| !(r.version == release.version && r.arch == release.arch));
        self.releases.push(release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nanoimg.lock");
        assert_eq!(Lock::load(&p).unwrap(), Lock::default());
        let mut l = Lock::default();
        for v in ["0.1.55", "0.1.9"] {
            l.set_release(LockedRelease {
                version: v.into(),
                arch: Arch::X86_64,
                url: format!("https://x/{v}"),
                sha256: "ab".repeat(32),
                files: [("kernel.img".to_string(), "cd".repeat(32))].into(),
            });
        }
        l.save(&p).unwrap();
        let back = Lock::load(&p).unwrap();
        assert_eq!(back.releases[0].version, "0.1.9");
        assert_eq!(
            back.release("0.1.55", Arch::X86_64).unwrap().files["kernel.img"],
            "cd".repeat(32)
        );
        std::fs::write(&p, "[[release]]\nversion = 1\n").unwrap();
        let e = Lock::load(&p).unwrap_err().to_string();
        assert!(e.contains("nanoimg.lock is not valid (line 2: "), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(e.ends_with("delete it to record the kernel again"), "{e}");
        let mut l = Lock::default();
        l.lock_image("sys.tar", "linux/amd64", "sha256:aa", false, false)
            .unwrap();
        l.lock_image("sys.tar", "linux/amd64", "sha256:aa", true, false)
            .unwrap();
        let e = l.lock_image("sys.tar", "linux/amd64", "sha256:bb", false, false);
        assert!(e.unwrap_err().to_string().contains("--update-lock"));
        let e = l.lock_image("sys.tar", "linux/amd64", "sha256:bb", true, false);
        assert!(e.unwrap_err().to_string().contains("--locked refuses"));
        let e = l.lock_image("other.tar", "linux/amd64", "sha256:cc", true, false);
        assert!(e.unwrap_err().to_string().contains("not in nanoimg.lock"));
        l.lock_image("sys.tar", "linux/amd64", "sha256:bb", false, true)
            .unwrap();
        assert_eq!(
            l.image("sys.tar", "linux/amd64").unwrap().digest,
            "sha256:bb"
        );
        l.save(&p).unwrap();
        assert_eq!(Lock::load(&p).unwrap(), l);
        let e = Lock::load_existing(&d.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no lock file at "), "{e}");
    }
}
