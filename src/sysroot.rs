//! Sysroots that are container images: `TargetRoot` / `--target-root` naming an OCI image
//! layout, an OCI archive or a docker-archive (with `:REF` to pick a tag), and `--from-image`.
//! The image is an input like the kernel: its manifest digest is checked against and
//! recorded in `nanoimg.lock`, every blob is verified as it is read, and the unpacked root is
//! cached by digest (`nanoimg-oci`). A spec starting with `docker://` is an image in a
//! registry: pulled into the cache by digest (`nanoimg-registry`), or with `--offline`
//! taken from the cache by the digest the reference or the lock gives, then read the same
//! way.

use std::path::{Path, PathBuf};

use nanoimg_oci::{Platform, Root, Source};
use nanoimg_registry::Reference;
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
    if nanoimg_registry::is_reference(spec) {
        return true;
    }
    let path = Source::parse(spec).path;
    if path.is_file() {
        return true;
    }
    ["oci-layout", "index.json", "manifest.json"]
        .iter()
        .any(|f| path.join(f).is_file())
}

/// How images in registries are reached (`docker://` specs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Access<'a> {
    /// `--offline`: no network; the image must be in the cache.
    pub offline: bool,
    /// `--insecure-registry HOST:PORT`: registries spoken to over plain HTTP.
    pub insecure: &'a [String],
    /// An image the lock has an entry for is pulled by that digest, not by its tag.
    pub by_locked_digest: bool,
}

/// The root of the image `spec`, unpacked into the release cache's folder (or found there),
/// after checking its manifest digest against `lock` and recording it.
pub fn open(
    spec: &str,
    platform: Option<&Platform>,
    lock: &mut Lock,
    locked: bool,
    update: bool,
    access: &Access<'_>,
) -> Result<Root, BuildError> {
    if nanoimg_registry::is_reference(spec) {
        return open_registry(spec, platform, lock, locked, update, access);
    }
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

/// The image `spec` (`docker://…`): pulled into the cache (a tag resolved to the platform
/// manifest's digest), or with `--offline` found there by the digest of the reference's
/// `@sha256:` or of the lock's entry; then checked against the lock and unpacked as an
/// image layout.
fn open_registry(
    spec: &str,
    platform: Option<&Platform>,
    lock: &mut Lock,
    locked: bool,
    update: bool,
    access: &Access<'_>,
) -> Result<Root, BuildError> {
    let mut reference = Reference::parse(spec).map_err(Box::new)?;
    let wanted = platform.cloned().unwrap_or_default();
    let cache = crate::cache()?;
    let lock_platform = format!("{}/{}", wanted.os, wanted.architecture);
    let locked_digest = lock.image(spec, &lock_platform).map(|i| i.digest.clone());
    if access.by_locked_digest {
        if let Some(d) = &locked_digest {
            reference = reference.with_digest(d);
        }
    }
    let (layout, digest) = if access.offline {
        let candidates: Vec<String> = locked_digest
            .iter()
            .chain(reference.digest.iter())
            .cloned()
            .collect();
        let found = candidates
            .iter()
            .find_map(|d| nanoimg_registry::cached_image(cache.root(), d).map(|l| (l, d.clone())));
        match found {
            Some(f) => f,
            None => {
                let what = match candidates.first() {
                    Some(d) => format!("its manifest {d} is not in the cache"),
                    None => "its digest is not known: the reference has no @sha256: and nanoimg.lock has no entry for it".to_string(),
                };
                return Err(BuildError::NotCached {
                    image: spec.to_string(),
                    what,
                });
            }
        }
    } else {
        let opts = nanoimg_registry::Options::from_env(access.insecure.to_vec());
        let pulled = nanoimg_registry::pull_image(&reference, &wanted, cache.root(), &opts)
            .map_err(Box::new)?;
        (pulled.layout, pulled.manifest_digest)
    };
    let source = Source::new(&layout, None).with_platform(wanted);
    let resolved = nanoimg_oci::resolve(&source).map_err(Box::new)?;
    let platform = format!(
        "{}/{}",
        resolved.platform.os, resolved.platform.architecture
    );
    lock.lock_image(spec, &platform, &digest, locked, update)?;
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
