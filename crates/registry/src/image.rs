//! Container images pulled into the cache, one OCI image layout per platform manifest.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use nanoimg_oci::{escape, Platform};
use oci_client::RegistryOperation;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Options, Session};
use crate::reference::is_sha256;
use crate::{media, Reference, RegistryError};

/// Most layers accepted (as `nanoimg-oci`).
const MAX_LAYERS: usize = 256;
/// Deepest nesting of indexes followed.
const MAX_NESTING: usize = 4;
/// Most bytes of blobs in one image (as `nanoimg-oci`'s 64 GiB of files in all).
const MAX_IMAGE_BYTES: u64 = 64 << 30;

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<PlatformJson>,
}

#[derive(Deserialize, Clone)]
pub(crate) struct PlatformJson {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl PlatformJson {
    fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

/// A manifest or an index (told by `manifests`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestJson {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

pub(crate) fn parse_manifest(
    reference: &Reference,
    what: &str,
    body: &[u8],
) -> Result<ManifestJson, RegistryError> {
    serde_json::from_slice(body).map_err(|e| RegistryError::Invalid {
        reference: reference.to_string(),
        what: what.to_string(),
        reason: format!("not a manifest or index ({})", escape(&e.to_string())),
    })
}

/// An image in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// `sha256:…` of the platform's image manifest: what `nanoimg.lock` records.
    pub manifest_digest: String,
    /// The OCI image layout holding exactly that manifest (`index.json` lists it alone),
    /// as `nanoimg_oci::Source::new(layout, None)` reads it.
    pub layout: PathBuf,
    /// Bytes downloaded (0 when everything was in the cache).
    pub downloaded: u64,
}

/// `CACHE/registry/images/<hex>`: the layout of the image whose manifest is `digest`.
pub fn image_layout(cache_root: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    cache_root.join("registry/images").join(hex)
}

/// `CACHE/registry/blobs/sha256`: every verified blob, shared (by hard links) between the
/// images' layouts.
pub fn blob_store(cache_root: &Path) -> PathBuf {
    cache_root.join("registry/blobs/sha256")
}

/// The layout of the image with manifest `digest` if it is fully in the cache (no
/// network): its folder is renamed into place only once every blob is in it and verified,
/// and its config and layers are all there.
pub fn cached_image(cache_root: &Path, digest: &str) -> Option<PathBuf> {
    if !is_sha256(digest) {
        return None;
    }
    let layout = image_layout(cache_root, digest);
    let blobs = layout.join("blobs/sha256");
    if !layout.join("index.json").is_file() {
        return None;
    }
    let manifest = std::fs::read(blobs.join(&digest[7..])).ok()?;
    let m: ManifestJson = serde_json::from_slice(&manifest).ok()?;
    let config = m.config?;
    let all_there = std::iter::once(&config)
        .chain(m.layers.iter().flatten())
        .all(|d| {
            is_sha256(&d.digest)
                && std::fs::metadata(blobs.join(&d.digest[7..])).is_ok_and(|f| f.len() == d.size)
        });
    all_there.then_some(layout)
}

fn cache_io(path: &Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// A platform's image manifest as the registry gave it, once any indexes are followed.
struct Resolved {
    body: Vec<u8>,
    digest: String,
    /// The media type the index entry (or else the registry's answer) gave, if any.
    media_type: Option<String>,
    /// The platform of the index entry that led to it (none when there was no index).
    platform: Option<PlatformJson>,
    manifest: ManifestJson,
}

/// Pulls the image `reference` for `platform` into the cache under `cache_root` (unless
/// it is there) and gives its layout. A tag is resolved to a digest once; an index is
/// narrowed to the platform's manifest, and only that manifest's config and layers are
/// fetched. Every blob is verified (size and SHA-256) as it streams into a temporary
/// folder under `CACHE/tmp/` (a `nanoimg-atomic` `TempDir`, removed on error and on
/// SIGINT/SIGTERM/SIGHUP), which is renamed into `CACHE/registry/images/<hex>` when all
/// of it is verified; its blobs are then linked into the shared store. A reference by
/// digest that is in the cache needs no network at all.
pub fn pull_image(
    reference: &Reference,
    platform: &Platform,
    cache_root: &Path,
    opts: &Options,
) -> Result<Pulled, RegistryError> {
    if let Some(d) = &reference.digest {
        if let Some(pulled) = cached_pull(cache_root, d) {
            return Ok(pulled);
        }
    }
    let session = Session::open(reference, opts, RegistryOperation::Pull)?;
    let resolved = resolve_manifest(&session, reference, platform)?;
    if let Some(pulled) = cached_pull(cache_root, &resolved.digest) {
        return Ok(pulled);
    }
    let media_type = image_media_type(reference, &resolved)?;
    let blobs = image_blobs(reference, &resolved)?;

    // Everything goes into a temporary layout first.
    let tmp = cache_root.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(cache_io(&tmp))?;
    let store = blob_store(cache_root);
    let staged = nanoimg_atomic::TempDir::in_dir(&tmp, "registry-").map_err(cache_io(&tmp))?;
    let dir = staged.path().to_path_buf();
    let sha_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&sha_dir).map_err(cache_io(&sha_dir))?;
    let digest = resolved.digest.clone();
    write_file(&dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write_file(
        &dir,
        &format!("blobs/sha256/{}", &digest[7..]),
        &resolved.body,
    )?;
    let downloaded = fetch_blobs(&session, &sha_dir, &store, &blobs)?;
    let index = layout_index(&resolved, &media_type);
    write_file(
        &dir,
        "index.json",
        &serde_json::to_vec(&index).map_err(|e| invalid(reference, &digest, e.to_string()))?,
    )?;
    let layout = persist_layout(staged, cache_root, &digest)?;
    share_blobs(&layout, &store, &blobs);
    Ok(Pulled {
        manifest_digest: digest,
        layout,
        downloaded,
    })
}

/// The pull of the image with manifest `digest` when it is fully in the cache.
fn cached_pull(cache_root: &Path, digest: &str) -> Option<Pulled> {
    cached_image(cache_root, digest).map(|layout| Pulled {
        manifest_digest: digest.to_string(),
        layout,
        downloaded: 0,
    })
}

/// The manifest `reference` names, followed through at most [`MAX_NESTING`] indexes to
/// `platform`'s image manifest.
fn resolve_manifest(
    session: &Session,
    reference: &Reference,
    platform: &Platform,
) -> Result<Resolved, RegistryError> {
    let (body, digest, media_type) = session.manifest(reference.selector())?;
    let manifest = parse_manifest(reference, "its manifest", &body)?;
    let mut resolved = Resolved {
        body,
        digest,
        media_type,
        platform: None,
        manifest,
    };
    for depth in 0.. {
        let Some(entries) = &resolved.manifest.manifests else {
            break;
        };
        if depth >= MAX_NESTING {
            return Err(RegistryError::Invalid {
                reference: reference.to_string(),
                what: "its index".into(),
                reason: format!("indexes nested more than {MAX_NESTING} deep"),
            });
        }
        let chosen = choose_entry(reference, entries, platform)?;
        let (body, digest, media_type) = fetch_entry(session, reference, &chosen)?;
        let manifest = parse_manifest(reference, "its platform manifest", &body)?;
        resolved = Resolved {
            body,
            digest,
            media_type: chosen.media_type.clone().or(media_type),
            platform: chosen.platform.clone(),
            manifest,
        };
    }
    Ok(resolved)
}

/// The first of an index's `entries` whose platform satisfies `platform`; the error
/// lists (escaped, at most 20) the platforms it has otherwise.
fn choose_entry(
    reference: &Reference,
    entries: &[Descriptor],
    platform: &Platform,
) -> Result<Descriptor, RegistryError> {
    let chosen = entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.platform().satisfies(platform))
        })
        .cloned();
    let Some(chosen) = chosen else {
        let mut available: Vec<String> = entries
            .iter()
            .filter_map(|e| e.platform.as_ref())
            .map(|p| escape(&p.platform().to_string()).to_string())
            .collect();
        available.dedup();
        available.truncate(20);
        return Err(RegistryError::NoPlatform {
            reference: reference.to_string(),
            platform: platform.to_string(),
            available: if available.is_empty() {
                "no platforms".into()
            } else {
                available.join(", ")
            },
        });
    };
    Ok(chosen)
}

/// The manifest an index entry names (its digest and size checked before it is fetched,
/// its length after): its bytes, digest and media type.
fn fetch_entry(
    session: &Session,
    reference: &Reference,
    chosen: &Descriptor,
) -> Result<(Vec<u8>, String, Option<String>), RegistryError> {
    if !is_sha256(&chosen.digest) {
        return Err(RegistryError::Invalid {
            reference: reference.to_string(),
            what: "its index".into(),
            reason: format!(
                "digest \"{}\" is not sha256:<64 hex>",
                escape(&chosen.digest)
            ),
        });
    }
    if chosen.size > crate::client::MAX_MANIFEST {
        return Err(RegistryError::TooLarge {
            reference: reference.to_string(),
            what: format!("manifest {}", chosen.digest),
            limit: crate::client::MAX_MANIFEST,
        });
    }
    let (body, digest, media_type) = session.manifest(&chosen.digest)?;
    if body.len() as u64 != chosen.size {
        return Err(RegistryError::Size {
            reference: reference.to_string(),
            blob: format!("manifest {}", chosen.digest),
            expected: chosen.size.to_string(),
            actual: body.len().to_string(),
        });
    }
    Ok((body, digest, media_type))
}

/// The error for an image manifest `digest` that is not one nanoimg pulls.
fn invalid(reference: &Reference, digest: &str, reason: String) -> RegistryError {
    RegistryError::Invalid {
        reference: reference.to_string(),
        what: format!("manifest {digest}"),
        reason,
    }
}

/// The media type of the image manifest (its own, else the registry's, else OCI's),
/// which must be an OCI or Docker image manifest.
fn image_media_type(reference: &Reference, r: &Resolved) -> Result<String, RegistryError> {
    let media_type = r
        .manifest
        .media_type
        .clone()
        .or(r.media_type.clone())
        .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
    if media_type != media::OCI_MANIFEST && media_type != media::DOCKER_MANIFEST {
        return Err(invalid(
            reference,
            &r.digest,
            format!(
                "media type \"{}\" is not an image manifest",
                escape(&media_type)
            ),
        ));
    }
    Ok(media_type)
}

/// The image manifest's config: present, a container image config (not a nanoimg
/// artifact's), and no bigger than a manifest.
fn image_config(reference: &Reference, r: &Resolved) -> Result<Descriptor, RegistryError> {
    let config = r
        .manifest
        .config
        .clone()
        .ok_or_else(|| invalid(reference, &r.digest, "it has no config".into()))?;
    let config_type = config.media_type.clone().unwrap_or_default();
    if r.manifest.artifact_type.as_deref() == Some(media::ARTIFACT_TYPE)
        || (config_type != media::OCI_CONFIG && config_type != media::DOCKER_CONFIG)
    {
        return Err(invalid(reference, &r.digest, format!(
            "its config is \"{}\", not a container image config (a nanoimg image pushed with `nanoimg push` is fetched with `nanoimg pull`)",
            escape(&config_type)
        )));
    }
    // The config is JSON that nanoimg-oci reads whole: bounded as manifests are.
    if config.size > crate::client::MAX_MANIFEST {
        return Err(RegistryError::TooLarge {
            reference: reference.to_string(),
            what: format!("config {}", escape(&config.digest)),
            limit: crate::client::MAX_MANIFEST,
        });
    }
    Ok(config)
}

/// The blobs to fetch: the config, then each distinct layer (at most [`MAX_LAYERS`]),
/// every digest `sha256:<hex>` and [`MAX_IMAGE_BYTES`] in all.
fn image_blobs(reference: &Reference, r: &Resolved) -> Result<Vec<Descriptor>, RegistryError> {
    let config = image_config(reference, r)?;
    let layers = r.manifest.layers.clone().unwrap_or_default();
    if layers.len() > MAX_LAYERS {
        return Err(invalid(
            reference,
            &r.digest,
            format!("{} layers, more than {MAX_LAYERS}", layers.len()),
        ));
    }
    let mut blobs: Vec<Descriptor> = vec![config];
    for l in layers {
        if !blobs.iter().any(|b| b.digest == l.digest) {
            blobs.push(l);
        }
    }
    let mut total = 0u64;
    for b in &blobs {
        if !is_sha256(&b.digest) {
            return Err(invalid(
                reference,
                &r.digest,
                format!(
                    "blob digest \"{}\" is not sha256:<64 lower-case hex digits>",
                    escape(&b.digest)
                ),
            ));
        }
        total = total.saturating_add(b.size);
    }
    if total > MAX_IMAGE_BYTES {
        return Err(RegistryError::TooLarge {
            reference: reference.to_string(),
            what: format!("the image's {total} bytes of blobs"),
            limit: MAX_IMAGE_BYTES,
        });
    }
    Ok(blobs)
}

/// Writes `bytes` as the file `name` of the staged layout `dir`.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RegistryError> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).map_err(cache_io(&p))
}

/// Puts each of `blobs` (the config first) in `sha_dir`: linked from the shared `store`
/// when it has it at the right size, else downloaded, verified and synced as a hidden
/// `.partial` file that is renamed into place. Gives the bytes downloaded.
fn fetch_blobs(
    session: &Session,
    sha_dir: &Path,
    store: &Path,
    blobs: &[Descriptor],
) -> Result<u64, RegistryError> {
    let mut downloaded = 0u64;
    for (i, b) in blobs.iter().enumerate() {
        let hex = &b.digest[7..];
        let target = sha_dir.join(hex);
        let shared = store.join(hex);
        if std::fs::metadata(&shared).is_ok_and(|m| m.is_file() && m.len() == b.size)
            && std::fs::hard_link(&shared, &target).is_ok()
        {
            continue;
        }
        let partial = sha_dir.join(format!(".{hex}.partial"));
        let mut f = std::fs::File::create(&partial).map_err(cache_io(&partial))?;
        let label = if i == 0 {
            "config".to_string()
        } else {
            format!("layer {}", &b.digest[..19])
        };
        session.blob_to(&b.digest, b.size, &mut f, &partial, &label)?;
        f.flush().map_err(cache_io(&partial))?;
        f.sync_all().map_err(cache_io(&partial))?;
        std::fs::rename(&partial, &target).map_err(cache_io(&target))?;
        downloaded += b.size;
    }
    Ok(downloaded)
}

/// The layout's `index.json`: the image manifest alone, with the index entry's platform
/// when one led to it.
fn layout_index(r: &Resolved, media_type: &str) -> serde_json::Value {
    let mut entry = json!({
        "mediaType": media_type,
        "digest": r.digest,
        "size": r.body.len(),
    });
    if let Some(p) = &r.platform {
        let mut pj = json!({"os": p.os, "architecture": p.architecture});
        if let Some(v) = p.variant.as_ref().filter(|v| !v.is_empty()) {
            pj["variant"] = json!(v);
        }
        entry["platform"] = pj;
    }
    json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [entry],
    })
}

/// Renames the staged layout to `CACHE/registry/images/<hex>` and gives that path.
fn persist_layout(
    staged: nanoimg_atomic::TempDir,
    cache_root: &Path,
    digest: &str,
) -> Result<PathBuf, RegistryError> {
    let layout = image_layout(cache_root, digest);
    let images = layout.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&images).map_err(cache_io(&images))?;
    match staged.persist(&layout) {
        Ok(()) => {}
        // Another process put the same image there first.
        Err(_) if layout.join("index.json").is_file() => {}
        Err(e) => return Err(cache_io(&layout)(e)),
    }
    Ok(layout)
}

/// Share the blobs with later pulls (a failure only loses the sharing).
fn share_blobs(layout: &Path, store: &Path, blobs: &[Descriptor]) {
    if std::fs::create_dir_all(store).is_ok() {
        for b in blobs {
            let hex = &b.digest[7..];
            let _ = std::fs::hard_link(layout.join("blobs/sha256").join(hex), store.join(hex));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn put(blobs: &Path, bytes: &[u8]) -> (String, usize) {
        let d = format!("sha256:{}", crate::client::hex(&Sha256::digest(bytes)));
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    }

    #[test]
    fn cached_image_is_a_complete_layout_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        assert_eq!(cached_image(root, "sha256:00"), None);
        let config = b"{}";
        let layer = b"layer bytes";
        let scratch = root.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let (cd, cs) = put(&scratch, config);
        let (ld, ls) = put(&scratch, layer);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "config": {"mediaType": media::OCI_CONFIG, "digest": cd, "size": cs},
            "layers": [{"mediaType": "x", "digest": ld, "size": ls}],
        }))
        .unwrap();
        let (md, _) = put(&scratch, &manifest);
        let layout = image_layout(root, &md);
        assert!(layout.ends_with(format!("registry/images/{}", &md[7..])));
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(layout.join("index.json"), b"{}").unwrap();
        put(&blobs, &manifest);
        put(&blobs, config);
        // The layer is missing: not cached.
        assert_eq!(cached_image(root, &md), None);
        put(&blobs, b"layer bytez!");
        std::fs::rename(
            blobs.join(crate::client::hex(&Sha256::digest(b"layer bytez!"))),
            blobs.join(&ld[7..]),
        )
        .unwrap();
        // A blob of the wrong size: not cached.
        assert_eq!(cached_image(root, &md), None);
        put(&blobs, layer);
        assert_eq!(cached_image(root, &md), Some(layout));
        assert_eq!(cached_image(root, "not a digest"), None);
    }
}
