use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::download::{client, download, fetch_text, DownloadError, Downloaded, HttpOptions};
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

/// A release [`Releases::get`] is after: its pin, release name, lock entry, and the
/// SHA-256 its tarball must have (the pin's, else the lock's), if any.
struct Wanted<'a> {
    pin: &'a Pin,
    /// The release name (`0.1.55`, `0.1.55-virt`).
    version: &'a str,
    arch: Arch,
    locked: Option<LockedRelease>,
    expected: Option<String>,
}

impl Wanted<'_> {
    /// The files the lock records for it, when it records any.
    fn locked_files(&self) -> Option<&LockedFiles> {
        self.locked
            .as_ref()
            .filter(|l| !l.files.is_empty())
            .map(|l| &l.files)
    }

    /// Its lock entry, for a tarball of SHA-256 `sha256` holding `files`.
    fn entry(&self, sha256: String, files: LockedFiles) -> LockedRelease {
        LockedRelease {
            version: self.pin.version.clone(),
            arch: self.arch,
            url: self.pin.url.clone(),
            sha256,
            files,
        }
    }

    /// The download must have the expected SHA-256, if there is one.
    fn check_sha256(&self, url: &str, got: &Downloaded) -> Result<(), FetchError> {
        if let Some(want) = &self.expected {
            if *want != got.sha256 {
                return Err(FetchError::Sha256Mismatch {
                    url: url.to_string(),
                    source_of_truth: if self.pin.sha256.is_some() {
                        "the pin"
                    } else {
                        "nanoimg.lock"
                    },
                    expected: want.clone(),
                    actual: got.sha256.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The download of `url` must have the MD5 that `md5_text` (the `.md5` file at `md5_url`)
/// publishes as its first word of 32 hex digits.
fn check_md5(md5_text: &str, md5_url: &str, url: &str, got: &Downloaded) -> Result<(), FetchError> {
    let published = md5_text
        .split_whitespace()
        .next()
        .filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| FetchError::BadMd5File {
            url: md5_url.to_string(),
        })?;
    if published != got.md5 {
        return Err(FetchError::Md5Mismatch {
            url: url.to_string(),
            published,
            actual: got.md5.clone(),
        });
    }
    Ok(())
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
        let want = self.wanted(&pin, &release, arch, locked)?;

        // In the cache already?
        if let Some(fetched) = self.cached_release(&want, lock)? {
            return Ok(fetched);
        }
        if self.options.offline {
            return Err(FetchError::Offline {
                version: want.version.into(),
                cache: self.cache.root().to_path_buf(),
                fetch: fetch_command(&pin),
            });
        }

        let (url, md5_url) = match &self.options.mirror {
            Some(m) => pin.mirrored(m),
            None => (pin.url.clone(), pin.md5_url.clone()),
        };
        let tmp = self.cache.tmp().map_err(cache_err(self.cache.root()))?;
        let (tarball, got) = self.download_checked(&want, &tmp, &url, &md5_url)?;
        self.install_release(&want, &tmp, tarball.path(), got, lock)
    }

    /// What the pin and the lock say of the release `version` (its release name): refused
    /// when they disagree, or when `--locked` and the lock has no entry for it.
    fn wanted<'a>(
        &self,
        pin: &'a Pin,
        version: &'a str,
        arch: Arch,
        locked: Option<LockedRelease>,
    ) -> Result<Wanted<'a>, FetchError> {
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
        Ok(Wanted {
            pin,
            version,
            arch,
            locked,
            expected,
        })
    }

    /// The release from the cache (by its expected SHA-256, else the cache index), its
    /// files re-hashed and checked against the lock and recorded in `lock`; `None` when it
    /// is not cached.
    fn cached_release(
        &self,
        want: &Wanted,
        lock: &mut Lock,
    ) -> Result<Option<Fetched>, FetchError> {
        let Some(sha) = want
            .expected
            .clone()
            .or_else(|| self.cache.indexed(want.version))
        else {
            return Ok(None);
        };
        let dir = self.cache.release_dir(&sha);
        if !dir.is_dir() {
            return Ok(None);
        }
        let files = hash_tree(&dir).map_err(cache_err(&dir))?;
        if let Some(recorded) = want.locked_files() {
            check_cached(want.version, &dir, &files, recorded)?;
        }
        let entry = want.entry(sha, files);
        lock.set_release(entry.clone());
        Ok(Some(Fetched {
            kernel_dir: KernelDir::open_for(&dir, want.arch, want.version)?,
            locked: entry,
            downloaded: false,
            trusted_on_first_use: want.expected.is_none(),
        }))
    }

    /// Downloads the tarball `url` into a temporary file in `tmp` (at most
    /// [`MAX_TARBALL`]) and checks it against the published `md5_url` and the expected
    /// SHA-256.
    fn download_checked(
        &self,
        want: &Wanted,
        tmp: &Path,
        url: &str,
        md5_url: &str,
    ) -> Result<(nanoimg_atomic::TempFile, Downloaded), FetchError> {
        let unreachable = |source| FetchError::Download {
            version: want.version.to_string(),
            source,
            fetch: fetch_command(want.pin),
        };
        let http = client(&self.options.http, url).map_err(unreachable)?;
        let mut tarball =
            nanoimg_atomic::TempFile::in_dir(tmp, "download-").map_err(cache_err(tmp))?;
        let got = download(
            &http,
            url,
            tarball.as_file_mut(),
            MAX_TARBALL,
            &self.options.http,
        )
        .map_err(unreachable)?;
        let md5_text = fetch_text(&http, md5_url, &self.options.http).map_err(unreachable)?;
        check_md5(&md5_text, md5_url, url, &got)?;
        want.check_sha256(url, &got)?;
        Ok((tarball, got))
    }

    /// Extracts the checked `tarball` into a temporary folder in `tmp`, checks it is a
    /// kernel folder whose files match the lock's, installs it in the cache under its
    /// SHA-256, indexes it, and records it in `lock`.
    fn install_release(
        &self,
        want: &Wanted,
        tmp: &Path,
        tarball: &Path,
        got: Downloaded,
        lock: &mut Lock,
    ) -> Result<Fetched, FetchError> {
        let staged = nanoimg_atomic::TempDir::in_dir(tmp, "extract-").map_err(cache_err(tmp))?;
        extract(tarball, staged.path())?;
        KernelDir::open_for(staged.path(), want.arch, want.version)?;
        let files = hash_tree(staged.path()).map_err(cache_err(staged.path()))?;
        if let Some(recorded) = want.locked_files() {
            if let Some((file, detail)) = changed_file(&files, recorded) {
                return Err(FetchError::LockEdited {
                    version: want.version.into(),
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
            .set_index(want.version, &got.sha256)
            .map_err(cache_err(self.cache.root()))?;
        let entry = want.entry(got.sha256, files);
        lock.set_release(entry.clone());
        Ok(Fetched {
            kernel_dir: KernelDir::open_for(&dir, want.arch, want.version)?,
            locked: entry,
            downloaded: true,
            trusted_on_first_use: want.expected.is_none(),
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
