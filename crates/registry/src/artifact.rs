//! nanoimg images as OCI artifacts: pushed from a file, streamed; pulled into a file,
//! verified as it streams, atomically.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nanoimg_oci::escape;
use oci_client::RegistryOperation;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::client::{hex, Options, Session};
use crate::image::{parse_manifest, ManifestJson};
use crate::reference::is_sha256;
use crate::{annotation, media, Reference, RegistryError};

/// What is said about an image pushed as an artifact (its annotations).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// The file name (`org.opencontainers.image.title`).
    pub title: String,
    /// nanoimg's name of the disk format (`raw`, `qcow2`, `vhd`, `vmdk`, `vhdx`, `gce`):
    /// the layer's media type is [`media::image_layer`] of it.
    pub format: String,
    /// The Nanos version of the kernel in the image ("" when not known).
    pub nanos_version: String,
    /// As ops spells it: `amd64`, `arm64`.
    pub arch: String,
}

/// An artifact pushed or pulled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// `sha256:…` of the artifact's manifest.
    pub manifest_digest: String,
    /// `sha256:…` of the image file (the layer).
    pub layer_digest: String,
    /// The image file's size.
    pub size: u64,
    /// The layer's media type.
    pub media_type: String,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// SHA-256 and BLAKE3 (hex) and size of a file, read once in 1 MiB pieces.
fn hash_file(path: &Path) -> Result<(String, String, u64), RegistryError> {
    let read = |source| RegistryError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read)?;
    let meta = f.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(read(std::io::Error::other("not a regular file")));
    }
    let (mut sha, mut b3) = (Sha256::new(), blake3::Hasher::new());
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read(e)),
        };
        sha.update(&buf[..n]);
        b3.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        hex(&sha.finalize()),
        b3.finalize().to_hex().to_string(),
        size,
    ))
}

/// The artifact manifest of an image file: OCI 1.1 artifact guidance, `artifactType`
/// [`media::ARTIFACT_TYPE`], the empty config, one layer. Deterministic: the same file
/// and info give the same manifest (no creation time).
pub fn artifact_manifest(
    info: &ArtifactInfo,
    sha256: &str,
    blake3: &str,
    size: u64,
) -> serde_json::Value {
    let mut annotations = BTreeMap::new();
    annotations.insert(annotation::TITLE, info.title.clone());
    annotations.insert(annotation::SHA256, sha256.to_string());
    annotations.insert(annotation::BLAKE3, blake3.to_string());
    annotations.insert(annotation::NANOS_VERSION, info.nanos_version.clone());
    annotations.insert(annotation::ARCH, info.arch.clone());
    annotations.insert(annotation::FORMAT, info.format.clone());
    json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": media::ARTIFACT_TYPE,
        "config": {
            "mediaType": media::EMPTY,
            "digest": media::EMPTY_DIGEST,
            "size": 2,
        },
        "layers": [{
            "mediaType": media::image_layer(&info.format),
            "digest": format!("sha256:{sha256}"),
            "size": size,
            "annotations": {annotation::TITLE: info.title},
        }],
        "annotations": annotations,
    })
}

/// Uploads the image file `path` to `reference` (which needs a tag) as an OCI artifact:
/// the file is hashed (SHA-256 and BLAKE3) in one pass, then streamed as the one layer
/// (never held in memory); the empty config and the manifest follow. Gives the
/// manifest's digest.
pub fn push_artifact(
    reference: &Reference,
    path: &Path,
    info: &ArtifactInfo,
    opts: &Options,
) -> Result<Artifact, RegistryError> {
    if reference.tag.is_none() {
        return Err(RegistryError::Reference {
            text: reference.to_string(),
            reason: "a push needs a tag (docker://HOST/REPO:TAG); the digest is known only once the manifest is made".into(),
        });
    }
    let (sha256, blake3, size) = hash_file(path)?;
    let manifest = artifact_manifest(info, &sha256, &blake3, size);
    let body = serde_json::to_vec(&manifest).map_err(|e| RegistryError::Client(e.to_string()))?;
    let manifest_digest = format!("sha256:{}", hex(&Sha256::digest(&body)));
    let session = Session::open(reference, opts, RegistryOperation::Push)?;
    let layer_digest = format!("sha256:{sha256}");
    session.push_file(path, size, &layer_digest)?;
    session.push_bytes(b"{}".to_vec(), media::EMPTY_DIGEST)?;
    session.push_manifest(body, media::OCI_MANIFEST)?;
    let annotations = manifest["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Artifact {
        manifest_digest,
        layer_digest,
        size,
        media_type: media::image_layer(&info.format),
        annotations,
    })
}

/// Where [`pull_artifact`] writes.
pub enum Destination<'a> {
    /// This file (a temporary file beside it, renamed into place when verified).
    File(&'a Path),
    /// The cache's blob store, `CACHE/registry/blobs/sha256/<hex>` (`nanoimg run
    /// docker://…`); an image already there is not fetched again.
    Cache(&'a Path),
}

/// Fetches the image artifact `reference` (a manifest with one layer, as
/// [`push_artifact`] makes) into `dest`, verified against the layer's size and digest as
/// it streams; nothing is left at the destination unless all of it was verified. Gives
/// the artifact and the file written.
pub fn pull_artifact(
    reference: &Reference,
    dest: Destination<'_>,
    opts: &Options,
) -> Result<(Artifact, PathBuf), RegistryError> {
    let session = Session::open(reference, opts, RegistryOperation::Pull)?;
    let (body, manifest_digest, _) = session.manifest(reference.selector())?;
    let manifest = parse_manifest(reference, "its manifest", &body)?;
    let artifact = artifact_of(reference, &manifest_digest, &manifest)?;
    let label = manifest
        .annotations
        .get(annotation::TITLE)
        .map(|t| escape(t).to_string())
        .unwrap_or_else(|| artifact.layer_digest[..19].to_string());
    let (temp, target) = open_destination(dest, &artifact)?;
    let Some(mut temp) = temp else {
        return Ok((artifact, target));
    };
    let temp_path = temp.path().to_path_buf();
    session.blob_to(
        &artifact.layer_digest,
        artifact.size,
        temp.as_file_mut(),
        &temp_path,
        &label,
    )?;
    temp.as_file_mut().flush().map_err(write_err(&target))?;
    temp.as_file().sync_all().map_err(write_err(&target))?;
    temp.persist(&target).map_err(write_err(&target))?;
    Ok((artifact, target))
}

/// The error for a failed write of `path`.
fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError {
    let p = path.to_path_buf();
    move |source| RegistryError::Write { path: p, source }
}

/// The artifact the manifest `manifest_digest` describes: not an index, exactly one
/// layer, whose digest is `sha256:<hex>`.
fn artifact_of(
    reference: &Reference,
    manifest_digest: &str,
    manifest: &ManifestJson,
) -> Result<Artifact, RegistryError> {
    let invalid = |reason: String| RegistryError::Invalid {
        reference: reference.to_string(),
        what: format!("manifest {manifest_digest}"),
        reason,
    };
    if manifest.manifests.is_some() {
        return Err(invalid(
            "it is an index (a container image?), not an image pushed with `nanoimg push`".into(),
        ));
    }
    let layers = manifest.layers.clone().unwrap_or_default();
    let [layer] = &layers[..] else {
        return Err(invalid(format!(
            "it has {} layers; an image artifact has one",
            layers.len()
        )));
    };
    if !is_sha256(&layer.digest) {
        return Err(invalid(format!(
            "layer digest \"{}\" is not sha256:<64 lower-case hex digits>",
            escape(&layer.digest)
        )));
    }
    Ok(Artifact {
        manifest_digest: manifest_digest.to_string(),
        layer_digest: layer.digest.clone(),
        size: layer.size,
        media_type: layer.media_type.clone().unwrap_or_default(),
        annotations: manifest.annotations.clone(),
    })
}

/// The file the layer goes to, and the temporary file it is written to first: none when
/// the destination is the cache and its blob store has it already (at its size).
fn open_destination(
    dest: Destination<'_>,
    artifact: &Artifact,
) -> Result<(Option<nanoimg_atomic::TempFile>, PathBuf), RegistryError> {
    match dest {
        Destination::File(out) => Ok((
            Some(nanoimg_atomic::TempFile::beside(out).map_err(write_err(out))?),
            out.to_path_buf(),
        )),
        Destination::Cache(root) => {
            let store = crate::image::blob_store(root);
            let target = store.join(&artifact.layer_digest[7..]);
            if std::fs::metadata(&target).is_ok_and(|m| m.is_file() && m.len() == artifact.size) {
                return Ok((None, target));
            }
            let tmp = root.join("tmp");
            std::fs::create_dir_all(&tmp).map_err(write_err(&tmp))?;
            std::fs::create_dir_all(&store).map_err(write_err(&store))?;
            Ok((
                Some(nanoimg_atomic::TempFile::in_dir(&tmp, "registry-").map_err(write_err(&tmp))?),
                target,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_an_oci_1_1_artifact() {
        let info = ArtifactInfo {
            title: "prover.img".into(),
            format: "qcow2".into(),
            nanos_version: "0.1.55".into(),
            arch: "amd64".into(),
        };
        let m = artifact_manifest(&info, &"ab".repeat(32), &"cd".repeat(32), 42);
        assert_eq!(m["artifactType"], "application/vnd.nanoimg.image.v1");
        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        assert_eq!(
            m["config"]["digest"],
            format!("sha256:{}", hex(&Sha256::digest(b"{}")))
        );
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.nanoimg.image.v1.qcow2"
        );
        assert_eq!(m["layers"][0]["size"], 42);
        let a = &m["annotations"];
        assert_eq!(a["org.opencontainers.image.title"], "prover.img");
        assert_eq!(a["dev.nanoimg.image.sha256"], "ab".repeat(32));
        assert_eq!(a["dev.nanoimg.image.blake3"], "cd".repeat(32));
        assert_eq!(a["dev.nanoimg.nanos.version"], "0.1.55");
        assert_eq!(a["dev.nanoimg.image.arch"], "amd64");
        assert_eq!(a["dev.nanoimg.image.format"], "qcow2");
        // Deterministic.
        assert_eq!(
            serde_json::to_vec(&m).unwrap(),
            serde_json::to_vec(&artifact_manifest(
                &info,
                &"ab".repeat(32),
                &"cd".repeat(32),
                42
            ))
            .unwrap()
        );
    }

    #[test]
    fn files_are_hashed_in_one_pass() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        std::fs::write(&f, b"abc").unwrap();
        let (sha, b3, size) = hash_file(&f).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(b3, blake3::hash(b"abc").to_hex().to_string());
        assert_eq!(size, 3);
        let e = hash_file(&d.path().join("none")).unwrap_err().to_string();
        assert!(e.contains("none"), "{e}");
    }
}
