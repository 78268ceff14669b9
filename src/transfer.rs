//! `nanoimg push IMAGE docker://HOST/REPO:TAG` and `nanoimg pull docker://… -o FILE`: built
//! images as OCI artifacts in a registry (`nanoimg-registry`).

use std::path::{Path, PathBuf};

use nanoimg::registry::{self, Reference};

/// Why a push or pull failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Registry(#[from] Box<registry::RegistryError>),
    #[error("{path} is not a nanoimg image: {reason}")]
    NotAnImage { path: PathBuf, reason: String },
    #[error(transparent)]
    Build(#[from] nanoimg::BuildError),
}

impl From<registry::RegistryError> for TransferError {
    fn from(e: registry::RegistryError) -> Self {
        TransferError::Registry(Box::new(e))
    }
}

/// What the image says about itself: format, architecture, Nanos version.
fn describe(image: &Path) -> Result<registry::ArtifactInfo, TransferError> {
    let not = |reason: String| TransferError::NotAnImage {
        path: image.to_path_buf(),
        reason,
    };
    let disk = nanoimg::disk::DiskImage::open(image).map_err(|e| not(e.to_string()))?;
    let facts = nanoimg::run::image_facts(image).map_err(|e| not(e.to_string()))?;
    let fs = disk.root_fs().map_err(|e| not(e.to_string()))?;
    let version = fs
        .root()
        .get(&b"environment"[..])
        .and_then(nanoimg::tuple::Value::as_tuple)
        .and_then(|e| e.get(&b"NANOS_VERSION"[..]))
        .and_then(nanoimg::tuple::Value::as_bytes)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    Ok(registry::ArtifactInfo {
        title: image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        format: disk.format().name().to_string(),
        nanos_version: version,
        arch: facts.arch.ops_name().to_string(),
    })
}

fn options(insecure: &[String]) -> registry::Options {
    registry::Options::from_env(insecure.to_vec())
}

/// `nanoimg push`.
pub fn push(
    image: &Path,
    reference: &str,
    insecure: &[String],
    json: bool,
) -> Result<(), TransferError> {
    let reference = Reference::parse(reference)?;
    let info = describe(image)?;
    let a = registry::push_artifact(&reference, image, &info, &options(insecure))?;
    let by_digest = reference.with_digest(&a.manifest_digest);
    if json {
        let value = serde_json::json!({
            "reference": reference.to_string(),
            "pinned": by_digest.to_string(),
            "digest": a.manifest_digest,
            "media_type": a.media_type,
            "artifact_type": registry::media::ARTIFACT_TYPE,
            "size": a.size,
            "annotations": a.annotations,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    println!("Pushed: {reference}");
    println!("Format: {}, {} ({} bytes)", info.format, info.arch, a.size);
    println!("Digest: {}", a.manifest_digest);
    println!("Pull it with: nanoimg pull {by_digest} -o {}", info.title);
    Ok(())
}

/// `nanoimg pull`.
pub fn pull(
    reference: &str,
    output: &Path,
    insecure: &[String],
    json: bool,
) -> Result<(), TransferError> {
    let reference = Reference::parse(reference)?;
    if output.is_dir() {
        return Err(nanoimg::BuildError::OutputIsDir {
            path: output.to_path_buf(),
        }
        .into());
    }
    let dir = nanoimg::atomic::parent_dir(output);
    if !dir.is_dir() {
        return Err(nanoimg::BuildError::NoOutputDir {
            path: output.to_path_buf(),
            dir,
        }
        .into());
    }
    let (a, path) = registry::pull_artifact(
        &reference,
        registry::Destination::File(output),
        &options(insecure),
    )?;
    let path = nanoimg::display_path(&path);
    if json {
        let value = serde_json::json!({
            "reference": reference.to_string(),
            "digest": a.manifest_digest,
            "layer_digest": a.layer_digest,
            "media_type": a.media_type,
            "size": a.size,
            "annotations": a.annotations,
            "path": path,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    println!("Digest: {}", a.manifest_digest);
    println!("Image size: {} bytes", a.size);
    println!("SHA-256: {}", &a.layer_digest[7..]);
    println!("Image file:{}", path.display());
    Ok(())
}

/// `nanoimg run docker://…`: the image artifact pulled into the cache (by its layer's
/// digest; one already there is not fetched again), and the path of that file.
pub fn pull_to_cache(reference: &str, insecure: &[String]) -> Result<PathBuf, TransferError> {
    let reference = Reference::parse(reference)?;
    let cache = nanoimg::cache()?;
    let (_, path) = registry::pull_artifact(
        &reference,
        registry::Destination::Cache(cache.root()),
        &options(insecure),
    )?;
    Ok(path)
}
