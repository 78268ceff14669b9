//! Sysroots that are container images: `TargetRoot` / `--target-root` naming an OCI image
//! layout, an OCI archive or a docker-archive (with `:REF` to pick a tag), and `--from-image`.
//! The image is an input like the kernel: its manifest digest is checked against and
//! recorded in `nanoimg.lock`, every blob is verified as it is read, and the unpacked root is
//! cached by digest (`nanoimg-oci`).

use std::path::{Path, PathBuf};

use nanoimg_oci::{Platform, Root, Source};
use nanoimg_release::Lock;

use crate::BuildError;

/// The target root as given: `--target-root`, else the config's `TargetRoot`.
pub fn target_spec(explicit: Option<&Path>, config: &nanoimg_config::Config) -> Option<String> {
    explicit
        .map(|p| p.to_string_lossy().into_owned())
        .or_else(|| config.target_root.clone())
}

/// Whether `spec` names a container image rather than a plain folder: a file (an archive),
/// or a folder holding an OCI layout (`oci-layout` or `index.json`) or a docker-archive's
/// `manifest.json`.
pub fn is_image(spec: &str) -> bool {
    let path = Source::parse(spec).path;
    if path.is_file() {
        return true;
    }
    ["oci-layout", "index.json", "manifest.json"]
        .iter()
        .any(|f| path.join(f).is_file())
}

/// The root of the image `spec`, unpacked into the release cache's folder (or found there),
/// after checking its manifest digest against `lock` and recording it.
pub fn open(
    spec: &str,
    platform: Option<&Platform>,
    lock: &mut Lock,
    locked: bool,
    update: bool,
) -> Result<Root, BuildError> {
    let mut source = Source::parse(spec);
    if let Some(p) = platform {
        source = source.with_platform(p.clone());
    }
    let resolved = nanoimg_oci::resolve(&source).map_err(Box::new)?;
    let platform = format!(
        "{}/{}",
        resolved.platform.os, resolved.platform.architecture
    );
    lock.lock_image(spec, &platform, &resolved.manifest_digest, locked, update)?;
    let cache = crate::cache()?;
    Ok(nanoimg_oci::unpack(&resolved, &source, cache.root()).map_err(Box::new)?)
}

/// Where `program` (a path inside the image, like `/usr/local/bin/prover`) is in `root`:
/// resolved chroot-style, so links on the way (`/usr/bin/awk -> /etc/alternatives/awk ->
/// /usr/bin/mawk`) lead to the image's files, never the host's.
pub fn program_in(root: &Root, program: &Path) -> Result<PathBuf, BuildError> {
    let not_in = |reason: String| BuildError::NotInImage {
        program: program.to_path_buf(),
        reason,
    };
    let host = nanoimg_chroot::resolve(&root.dir, program).map_err(|e| not_in(e.to_string()))?;
    match host.symlink_metadata() {
        Ok(m) if m.is_file() => Ok(host),
        Ok(_) => Err(not_in("not a regular file".into())),
        Err(e) => Err(not_in(e.to_string())),
    }
}
