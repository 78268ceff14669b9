use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::download::{client, download, fetch_text, DownloadError, HttpOptions};
use crate::extract::{extract, ExtractError};
use crate::hash::sha256_file;
use crate::kernel_dir::{KernelDir, ReleaseError};
use crate::lock::{Lock, LockedDir, LockedFiles, LockedRelease};
use crate::pins::{pins, release_name, Pin};
use nanoimg_elf::Arch;

/// Largest release tarball accepted.
const MAX_TARBALL: u64 = 1 << 30;

/// How releases may be obtained.
#[derive(Clone, Debug, Default)]
pub struct ReleaseOptions {
    /// Never open a connection.
    pub offline: bool,
    /// Refuse any release or file that is not already in the lock.
    pub locked: bool,
    /// Record a `--kernel-dir` folder whose files changed instead of refusing it (as
    /// `cargo update` rewrites Cargo.lock). Never applies to pinned releases or the cache.
    pub update_lock: bool,
    /// Base URL replacing the official download location.
    pub mirror: Option<String>,
    /// Allow versions that are not pinned.
    pub allow_unpinned: bool,
    pub http: HttpOptions,
}

/// Why a release cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "Nanos {version} is not pinned (pinned: {pinned}); pass --allow-unpinned to use it anyway"
    )]
    Unpinned { version: String, pinned: String },
    #[error("Nanos {version} is not in the cache ({cache}) and --offline forbids downloading it; run `{fetch}` where the network is reachable, or use --kernel-dir")]
    Offline {
        version: String,
        cache: PathBuf,
        /// The command that fetches it.
        fetch: String,
    },
    #[error("Nanos {version} is not in {lock} and --locked forbids adding it; run without --locked once to record it")]
    NotLocked { version: String, lock: String },
    #[error("the pin of Nanos {version} says sha256 {pin} but nanoimg.lock says {lock}")]
    PinLockConflict {
        version: String,
        pin: String,
        lock: String,
    },
    #[error("{source}; to build without the network use --kernel-dir DIR, a reachable --mirror URL, or `{fetch}` beforehand")]
    Download {
        version: String,
        source: DownloadError,
        /// The command that fetches it.
        fetch: String,
    },
    #[error("{url} does not hold an MD5 checksum")]
    BadMd5File { url: String },
    #[error("checksum mismatch for {url}: the published .md5 says {published}, the download has {actual}; nothing was cached")]
    Md5Mismatch {
        url: String,
        published: String,
        actual: String,
    },
    #[error("checksum mismatch for {url}: SHA-256 {actual} does not match {source_of_truth} ({expected}); nothing was cached")]
    Sha256Mismatch {
        url: String,
        source_of_truth: &'static str,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("Nanos {version}: {file} in the release cache ({dir}) does not match nanoimg.lock ({detail}); the cached copy changed after it was verified: remove {dir} and run again to download and verify it anew")]
    CacheChanged {
        version: String,
        dir: PathBuf,
        file: String,
        detail: String,
    },
    #[error("Nanos {version}: nanoimg.lock records other files than its verified tarball holds ({file}: {detail}); the lock was edited: restore it, or delete its [[release]] entry for {version} to record the release again")]
    LockEdited {
        version: String,
        file: String,
        detail: String,
    },
    #[error("{file} in the kernel folder {dir} does not match nanoimg.lock ({detail}); if you changed the kernel on purpose, run again with --update-lock to record the new files")]
    KernelDirChanged {
        dir: PathBuf,
        file: String,
        detail: String,
    },
    #[error("{file} in the kernel folder {dir} does not match nanoimg.lock ({detail}), and --locked refuses any change; run once without --locked, with --update-lock, to record it")]
    KernelDirChangedLocked {
        dir: PathBuf,
        file: String,
        detail: String,
    },
    #[error("release cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Release(#[from] ReleaseError),
}

/// A release ready to use.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub kernel_dir: KernelDir,
    /// What the lock now says about it.
    pub locked: LockedRelease,
    /// Whether it was downloaded now (rather than found in the cache).
    pub downloaded: bool,
    /// Whether its SHA-256 was trusted on first use (no pin or lock to check it against).
    pub trusted_on_first_use: bool,
}

/// The command line that fetches `pin`'s release.
fn fetch_command(pin: &Pin) -> String {
    match pin.arch {
        Arch::X86_64 => format!("nanoimg kernel fetch {}", pin.version),
        a => format!(
            "nanoimg kernel fetch {} --arch {}",
            pin.version,
            a.ops_name()
        ),
    }
}

/// Finds releases in the cache or fetches them.
#[derive(Clone, Debug)]
pub struct Releases {
    cache: Cache,
    options: ReleaseOptions,
    pins: Vec<Pin>,
}

fn cache_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Cache {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 of every file under `dir`, by `/`-separated relative path, in sorted order.
pub(crate) fn hash_tree(dir: &Path) -> std::io::Result<LockedFiles> {
    fn walk(dir: &Path, prefix: &str, out: &mut LockedFiles) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if e.path().is_dir() {
                walk(&e.path(), &rel, out)?;
            } else {
                out.insert(rel, sha256_file(&e.path())?);
            }
        }
        Ok(())
    }
    let mut out = LockedFiles::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

/// Compares the files of a release folder with what the lock recorded: the first file that
/// differs, and how.
fn changed_file(found: &LockedFiles, recorded: &LockedFiles) -> Option<(String, String)> {
    for (file, want) in recorded {
        match found.get(file) {
            None => return Some((file.clone(), "missing".into())),
            Some(got) if got != want => {
                return Some((file.clone(), format!("sha256 {got}, recorded {want}")))
            }
            _ => {}
        }
    }
    found
        .keys()
        .find(|f| !recorded.contains_key(*f))
        .map(|extra| (extra.clone(), "not recorded".into()))
}

/// Checks a cached release against the lock.
fn check_cached(
    version: &str,
    dir: &Path,
    found: &LockedFiles,
    recorded: &LockedFiles,
) -> Result<(), FetchError> {
    match changed_file(found, recorded) {
        None => Ok(()),
        Some((file, detail)) => Err(FetchError::CacheChanged {
            version: version.to_string(),
            dir: dir.to_path_buf(),
            file,
            detail,
        }),
    }
}

impl Releases {
    /// Releases from `cache`, with the embedded pins.
    pub fn new(cache: Cache, options: ReleaseOptions) -> Releases {
        Releases {
            cache,
            options,
            pins: pins(),
        }
    }

    /// Replaces the pins (for tests and for tools that carry their own).
    pub fn with_pins(mut self, pins: Vec<Pin>) -> Releases {
        self.pins = pins;
        self
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The pin of `version` for `arch`, or an unpinned one where that is allowed.
    pub fn pin(&self, version: &str, arch: Arch) -> Result<Pin, FetchError> {
        if let Some(p) = self
            .pins
            .iter()
            .find(|p| p.version == version && p.arch == arch)
        {
            return Ok(p.clone());
        }
        if self.options.allow_unpinned {
            return Ok(Pin::unpinned(version, arch));
        }
        Err(FetchError::Unpinned {
            version: release_name(version, arch),
            pinned: self
                .pins
                .iter()
                .map(Pin::name)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Makes `version` for `arch` available: from the cache (re-hashed against `lock`) or
    /// downloaded and checked; records it in `lock`. Messages and the cache index call it by
    /// its release name (`0.1.55`, `0.1.55-virt`).
    pub fn get(&self, version: &str, arch: Arch, lock: &mut Lock) -> Result<Fetched, FetchError> {
        let pin = self.pin(version, arch)?;
        let locked = lock.release(version, arch).cloned();
        let release = pin.name();
        let version = release.as_str();
        if let (Some(p), Some(l)) = (&pin.sha256, &locked) {
            if !p.eq_ignore_ascii_case(&l.sha256) {
                return Err(FetchError::PinLockConflict {
                    version: version.into(),
                    pin: p.clone(),
                    lock: l.sha256.clone(),
                });
            }
        }
        if self.options.locked && locked.is_none() {
            return Err(FetchError::NotLocked {
                version: version.into(),
                lock: "nanoimg.lock".into(),
            });
        }
        let expected = pin
            .sha256
            .clone()
            .map(|s| s.to_ascii_lowercase())
            .or_else(|| locked.as_ref().map(|l| l.sha256.clone()));

        // In the cache already?
        if let Some(sha) = expected.clone().or_else(|| self.cache.indexed(version)) {
            let dir = self.cache.release_dir(&sha);
            if dir.is_dir() {
                let files = hash_tree(&dir).map_err(cache_err(&dir))?;
                if let Some(l) = locked.as_ref().filter(|l| !l.files.is_empty()) {
                    check_cached(version, &dir, &files, &l.files)?;
                }
                let entry = LockedRelease {
                    version: pin.version.clone(),
                    arch,
                    url: pin.url.clone(),
                    sha256: sha,
                    files,
                };
                lock.set_release(entry.clone());
                return Ok(Fetched {
                    kernel_dir: KernelDir::open_for(&dir, arch, version)?,
                    locked: entry,
                    downloaded: false,
                    trusted_on_first_use: expected.is_none(),
                });
            }
        }
        if self.options.offline {
            return Err(FetchError::Offline {
                version: version.into(),
                cache: self.cache.root().to_path_buf(),
                fetch: fetch_command(&pin),
            });
        }

        let (url, md5_url) = match &self.options.mirror {
            Some(m) => pin.mirrored(m),
            None => (pin.url.clone(), pin.md5_url.clone()),
        };
        let tmp = self.cache.tmp().map_err(cache_err(self.cache.root()))?;
        let unreachable = |source| FetchError::Download {
            version: version.to_string(),
            source,
            fetch: fetch_command(&pin),
        };
        let http = client(&self.options.http, &url).map_err(unreachable)?;
        let mut tarball =
            nanoimg_atomic::TempFile::in_dir(&tmp, "download-").map_err(cache_err(&tmp))?;
        let got = download(
            &http,
            &url,
            tarball.as_file_mut(),
            MAX_TARBALL,
            &self.options.http,
        )
        .map_err(unreachable)?;
        let md5_text = fetch_text(&http, &md5_url, &self.options.http).map_err(unreachable)?;
        let published = md5_text
            .split_whitespace()
            .next()
            .filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| FetchError::BadMd5File {
                url: md5_url.clone(),
            })?;
        if published != got.md5 {
            return Err(FetchError::Md5Mismatch {
                url,
                published,
                actual: got.md5,
            });
        }
        if let Some(want) = &expected {
            if *want != got.sha256 {
                return Err(FetchError::Sha256Mismatch {
                    url,
                    source_of_truth: if pin.sha256.is_some() {
                        "the pin"
                    } else {
                        "nanoimg.lock"
                    },
                    expected: want.clone(),
                    actual: got.sha256,
                });
            }
        }
        let staged = nanoimg_atomic::TempDir::in_dir(&tmp, "extract-").map_err(cache_err(&tmp))?;
        extract(tarball.path(), staged.path())?;
        KernelDir::open_for(staged.path(), arch, version)?;
        let files = hash_tree(staged.path()).map_err(cache_err(staged.path()))?;
        if let Some(l) = locked.as_ref().filter(|l| !l.files.is_empty()) {
            if let Some((file, detail)) = changed_file(&files, &l.files) {
                return Err(FetchError::LockEdited {
                    version: version.into(),
                    file,
                    detail,
                });
            }
        }
        let dir = self
            .cache
            .install(staged, &got.sha256)
            .map_err(cache_err(self.cache.root()))?;
        self.cache
            .set_index(version, &got.sha256)
            .map_err(cache_err(self.cache.root()))?;
        let entry = LockedRelease {
            version: pin.version.clone(),
            arch,
            url: pin.url.clone(),
            sha256: got.sha256,
            files,
        };
        lock.set_release(entry.clone());
        Ok(Fetched {
            kernel_dir: KernelDir::open_for(&dir, arch, version)?,
            locked: entry,
            downloaded: true,
            trusted_on_first_use: expected.is_none(),
        })
    }

    /// Re-hashes the cached files of every release in `lock`: `None` when a release is not
    /// cached, else whether it matches.
    pub fn verify(&self, lock: &Lock) -> Vec<(String, Option<Result<(), FetchError>>)> {
        lock.releases
            .iter()
            .map(|r| {
                let dir = self.cache.release_dir(&r.sha256);
                let result = dir.is_dir().then(|| {
                    let files = hash_tree(&dir).map_err(cache_err(&dir))?;
                    check_cached(&release_name(&r.version, r.arch), &dir, &files, &r.files)
                });
                (release_name(&r.version, r.arch), result)
            })
            .collect()
    }
}

/// Records a `--kernel-dir` release folder in the lock by the hashes of its files, or checks
/// it against what the lock recorded before. With `update`, files that changed are recorded
/// anew instead of refused; with `locked`, any change is refused.
pub fn lock_kernel_dir(
    dir: &KernelDir,
    lock: &mut Lock,
    locked: bool,
    update: bool,
) -> Result<(), FetchError> {
    // Only what a build can take from the folder: kernel, bootloaders, klibs.
    let mut files = LockedFiles::new();
    let mut add = |rel: String, path: &Path| -> Result<(), FetchError> {
        files.insert(rel, sha256_file(path).map_err(cache_err(path))?);
        Ok(())
    };
    add("kernel.img".into(), &dir.kernel)?;
    if let Some(boot) = &dir.boot {
        add("boot.img".into(), boot)?;
    }
    if let Some(efi) = &dir.uefi_loader {
        add(dir.arch.uefi_loader().into(), efi)?;
    }
    if let Some(klibs) = &dir.klibs {
        for (rel, sha) in hash_tree(klibs).map_err(cache_err(klibs))? {
            files.insert(format!("klibs/{rel}"), sha);
        }
    }
    let changed = match lock.kernel_dir_mut(dir.arch) {
        Some(recorded) => changed_file(&files, &recorded.files),
        None if locked => {
            return Err(FetchError::NotLocked {
                version: format!("the kernel folder {}", dir.dir.display()),
                lock: "nanoimg.lock".into(),
            })
        }
        None => None,
    };
    match changed {
        Some((file, detail)) if locked => Err(FetchError::KernelDirChangedLocked {
            dir: dir.dir.clone(),
            file,
            detail,
        }),
        Some((file, detail)) if !update => Err(FetchError::KernelDirChanged {
            dir: dir.dir.clone(),
            file,
            detail,
        }),
        _ => {
            *lock.kernel_dir_mut(dir.arch) = Some(LockedDir { files });
            Ok(())
        }
    }
}
