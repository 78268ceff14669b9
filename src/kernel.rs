//! Where a build's kernel comes from: `--kernel-dir`, or a pinned Nanos release from the
//! cache or the network, recorded in the lock.

use std::path::{Path, PathBuf};

use nanoimg_config::Config;
use nanoimg_elf::Arch;
use nanoimg_plan::PlanError;
use nanoimg_release::{Cache, KernelDir, Lock, ReleaseOptions, Releases};

use crate::BuildError;

/// Where the kernel comes from, and how a release may be obtained.
#[derive(Clone, Debug, Default)]
pub struct KernelOptions {
    /// An unpacked Nanos release folder; bypasses the cache (still recorded in the lock).
    pub kernel_dir: Option<PathBuf>,
    /// The release to use (else the config's `NanosVersion`, else the newest pin).
    pub nanos_version: Option<String>,
    /// The lock file (else `nanoimg.lock` next to the config, else in the current directory).
    pub lock: Option<PathBuf>,
    pub release: ReleaseOptions,
}

/// The lock file to use.
pub fn lock_path(explicit: Option<&Path>, config: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match config.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("nanoimg.lock"),
        _ => PathBuf::from("nanoimg.lock"),
    }
}

/// The release cache (`$NANOIMG_CACHE`, else the XDG cache directory).
pub fn cache() -> Result<Cache, BuildError> {
    Cache::from_env().ok_or(BuildError::NoCache)
}

/// The Nanos version a build uses: `--nanos-version`, else the config's `NanosVersion`, else
/// the newest pin — except that a `--kernel-dir` folder has no known version ("").
pub(crate) fn nanos_version(options: &KernelOptions, config: &Config, arch: Arch) -> String {
    options
        .nanos_version
        .clone()
        .or_else(|| config.nanos_version.clone())
        .unwrap_or_else(|| match options.kernel_dir {
            Some(_) => String::new(),
            None => nanoimg_release::default_pin(arch).version,
        })
}

/// Finds the kernel folder for a build: `--kernel-dir`, or a pinned release for `arch` from
/// the cache or the network. Records what was used in `lock`; says on stderr when a
/// download's SHA-256 is trusted on first use.
pub fn kernel(
    options: &KernelOptions,
    config: &Config,
    program: &Path,
    arch: Arch,
    lock: &mut Lock,
) -> Result<KernelDir, BuildError> {
    if let Some(dir) = &options.kernel_dir {
        let k = KernelDir::open(dir)?;
        // Before the lock is consulted: a folder of the wrong architecture is the problem
        // to report, not that the lock recorded another one.
        if k.arch != arch {
            return Err(PlanError::ArchMismatch {
                program: program.to_path_buf(),
                program_arch: arch,
                kernel: k.kernel,
                kernel_arch: k.arch,
            }
            .into());
        }
        nanoimg_release::lock_kernel_dir(
            &k,
            lock,
            options.release.locked,
            options.release.update_lock,
        )?;
        return Ok(k);
    }
    let version = nanos_version(options, config, arch);
    let releases = Releases::new(cache()?, options.release.clone());
    let fetched = releases.get(&version, arch, lock)?;
    if fetched.trusted_on_first_use {
        eprintln!(
            "nanoimg: Nanos {} has no pinned SHA-256; trusting it on first use: sha256 {} (recorded in the lock)",
            nanoimg_release::release_name(&version, arch),
            fetched.locked.sha256
        );
    }
    Ok(fetched.kernel_dir)
}
