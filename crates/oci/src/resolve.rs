//! Finding the one manifest, its config and layers.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::escape::escape;
use crate::store::{blob_name, clean_name, hex, sha256_hex, Store};
use crate::{Format, Layer, OciError, Platform, Resolved, Source};

/// Largest JSON blob accepted (index, manifest, config, manifest.json).
pub(crate) const MAX_JSON: u64 = 8 << 20;
/// Most layers accepted.
pub(crate) const MAX_LAYERS: usize = 256;
/// Deepest nesting of indexes accepted.
const MAX_NESTING: usize = 4;
/// Most manifests looked at in all.
const MAX_CANDIDATES: usize = 1024;
/// Most index entries examined in all: `index.json`'s, and each nested index's every time
/// it is listed (a docker-archive: `manifest.json`'s entries).
pub(crate) const MAX_INDEX_ENTRIES: usize = 100_000;
/// Most bytes of JSON blobs (indexes, manifests, configs) read in all; each is read once.
pub(crate) const MAX_JSON_TOTAL: u64 = 64 << 20;
/// Most images listed in a "no image matches" or "several match" error.
const MAX_LISTED: usize = 20;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<PlatformJson>,
}

#[derive(Deserialize, Clone)]
struct PlatformJson {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl From<PlatformJson> for Platform {
    fn from(p: PlatformJson) -> Platform {
        Platform {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant.filter(|v| !v.is_empty()),
        }
    }
}

/// A manifest or a nested index (told by `manifests`): one type, so that a blob listed
/// without a media type is parsed once whatever it turns out to be.
#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    /// Present in an index.
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    rootfs: Option<RootFs>,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    config: crate::Application,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl Config {
    fn platform(&self) -> Option<Platform> {
        (!self.os.is_empty() && !self.architecture.is_empty()).then(|| Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        })
    }
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn corrupt(image: &Path, member: &str, reason: impl std::fmt::Display) -> OciError {
    OciError::Corrupt {
        image: image.to_path_buf(),
        member: escape(member),
        reason: reason.to_string(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    image: &Path,
    member: &str,
    bytes: &[u8],
) -> Result<T, OciError> {
    serde_json::from_slice(bytes).map_err(|e| {
        corrupt(
            image,
            member,
            format!("bad JSON: {}", escape(&e.to_string())),
        )
    })
}

/// The JSON blobs of one image, each read, verified and parsed once (as a [`Manifest`],
/// which covers nested indexes too, or as a [`Config`]), however often indexes list it;
/// with the totals bounded ([`MAX_JSON_TOTAL`], [`MAX_INDEX_ENTRIES`]).
struct Blobs<'a> {
    store: &'a Store,
    image: &'a Path,
    /// (digest, size, type) → the parsed blob.
    parsed: HashMap<(String, u64, TypeId), Rc<dyn Any>>,
    /// Bytes of JSON read so far.
    read: u64,
    /// Index entries examined so far.
    entries: usize,
    /// Manifests found so far (digest, label, platform): one listed again is not a new
    /// candidate.
    found: std::collections::HashSet<(String, String, Option<Platform>)>,
}

impl<'a> Blobs<'a> {
    fn new(store: &'a Store, image: &'a Path) -> Blobs<'a> {
        Blobs {
            store,
            image,
            parsed: HashMap::new(),
            read: 0,
            entries: 0,
            found: std::collections::HashSet::new(),
        }
    }

    /// The image's top-level list `member` (`index.json`, `manifest.json`), already read as
    /// `bytes`: counted as JSON read, then parsed.
    fn parse_listing<T: serde::de::DeserializeOwned>(
        &mut self,
        member: &str,
        bytes: &[u8],
    ) -> Result<T, OciError> {
        self.count_read(bytes.len())?;
        parse(self.image, member, bytes)
    }

    /// Counts `bytes` more of JSON read.
    fn count_read(&mut self, bytes: usize) -> Result<(), OciError> {
        self.read += bytes as u64;
        if self.read > MAX_JSON_TOTAL {
            return Err(OciError::TooLarge {
                image: self.image.to_path_buf(),
                reason: format!(
                    "more than {MAX_JSON_TOTAL} bytes of JSON (indexes, manifests, configs) in all"
                ),
            });
        }
        Ok(())
    }

    /// Counts `n` more index entries examined.
    fn examine(&mut self, n: usize) -> Result<(), OciError> {
        self.entries = self.entries.saturating_add(n);
        if self.entries > MAX_INDEX_ENTRIES {
            return Err(OciError::TooLarge {
                image: self.image.to_path_buf(),
                reason: format!("more than {MAX_INDEX_ENTRIES} index entries examined in all"),
            });
        }
        Ok(())
    }

    /// The blob `d` names, as a `T`, verified.
    fn get<T: serde::de::DeserializeOwned + 'static>(
        &mut self,
        d: &Descriptor,
    ) -> Result<Rc<T>, OciError> {
        let key = (d.digest.clone(), d.size, TypeId::of::<T>());
        if let Some(v) = self.parsed.get(&key) {
            if let Ok(v) = Rc::clone(v).downcast::<T>() {
                return Ok(v);
            }
        }
        let bytes = self
            .store
            .read_blob(self.image, &d.digest, Some(d.size), MAX_JSON)?;
        self.count_read(bytes.len())?;
        let v: Rc<T> = Rc::new(parse(
            self.image,
            &blob_name(self.image, &d.digest)?,
            &bytes,
        )?);
        self.parsed.insert(key, v.clone());
        Ok(v)
    }
}

/// `items` joined for a message, at most [`MAX_LISTED`] of them.
fn listed(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_LISTED {
        out.push_str(&format!(" and {} more", items.len() - MAX_LISTED));
    }
    out
}

/// Finds the one image `source` names: see the crate docs.
pub fn resolve(source: &Source) -> Result<Resolved, OciError> {
    let image = source.path.as_path();
    let store = Store::open(image)?;
    if let Some(index) = store.read_small(image, "index.json", MAX_JSON)? {
        let format = if store.is_archive() {
            Format::OciArchive
        } else {
            Format::OciLayout
        };
        return resolve_oci(source, &store, &index, format);
    }
    if let Some(manifest) = store.read_small(image, "manifest.json", MAX_JSON)? {
        return resolve_docker(source, &store, &manifest);
    }
    Err(OciError::NotAnImage {
        image: image.to_path_buf(),
    })
}

/// What the user asked for, for messages.
fn wanted(source: &Source) -> String {
    match &source.reference {
        Some(r) => format!(
            "reference \"{}\" and platform {}",
            escape(r),
            escape(&source.platform.to_string())
        ),
        None => format!("platform {}", escape(&source.platform.to_string())),
    }
}

/// `alpine` → `docker.io/library/alpine:latest`; digests and other registries kept.
pub(crate) fn normalize_reference(r: &str) -> String {
    let (name, suffix) = match r.find('@') {
        Some(i) => (&r[..i], r[i..].to_string()),
        None => {
            let slash = r.rfind('/').map_or(0, |i| i + 1);
            match r[slash..].find(':') {
                Some(i) => (&r[..slash + i], r[slash + i..].to_string()),
                None => (r, ":latest".to_string()),
            }
        }
    };
    let name = match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => name.into(),
        Some(_) => format!("docker.io/{name}"),
    };
    format!("{name}{suffix}")
}

fn reference_matches(wanted: &str, have: &str) -> bool {
    wanted == have || normalize_reference(wanted) == normalize_reference(have)
}

/// One manifest found in an index, with what is known about it.
struct Candidate {
    desc: Descriptor,
    label: String,
    platform: Option<Platform>,
}

impl Candidate {
    /// Its label, platform and digest, escaped, for messages.
    fn describe(&self) -> String {
        format!(
            "{} {} {}",
            escape(&self.label),
            escape(&platform_label(self.platform.as_ref())),
            escape(&self.desc.digest)
        )
    }
}

fn is_index_type(media_type: &str) -> bool {
    media_type.ends_with("image.index.v1+json") || media_type.ends_with("manifest.list.v2+json")
}

/// Resolves an OCI layout or archive from its `index.json` (`index`, already read).
fn resolve_oci(
    source: &Source,
    store: &Store,
    index: &[u8],
    format: Format,
) -> Result<Resolved, OciError> {
    let image = source.path.as_path();
    let mut blobs = Blobs::new(store, image);
    let index: Index = blobs.parse_listing("index.json", index)?;
    blobs.examine(index.manifests.len())?;
    let (mut all, labels) = oci_candidates(&mut blobs, source, index)?;
    // Judge entries without a platform by their config.
    for c in &mut all {
        if c.platform.is_none() {
            let (_, _, cfg) = load_manifest(&mut blobs, &c.desc)?;
            c.platform = cfg.platform();
        }
    }
    let (hits, misses): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|c| fits(c.platform.as_ref(), &source.platform));
    // The same manifest under several names (tags, or a tag and an index entry) is one image.
    let mut hits = hits;
    let mut seen = std::collections::HashSet::new();
    hits.retain(|c| seen.insert(c.desc.digest.clone()));
    let chosen = choose_one(image, source, hits, Candidate::describe, || {
        let available: Vec<String> = misses.iter().map(Candidate::describe).collect();
        if available.is_empty() {
            labels
        } else {
            available
        }
    })?;
    let (manifest, config_digest, config) = load_manifest(&mut blobs, &chosen.desc)?;
    let platform = config
        .platform()
        .or(chosen.platform.clone())
        .unwrap_or_else(|| source.platform.clone());
    if !platform.satisfies(&source.platform) {
        return Err(OciError::NoMatch {
            image: image.to_path_buf(),
            wanted: wanted(source),
            available: Candidate {
                platform: Some(platform),
                ..chosen
            }
            .describe(),
        });
    }
    let layers = oci_layers(image, &manifest, &config_digest, &config)?;
    Ok(Resolved {
        format,
        manifest_digest: chosen.desc.digest,
        config_digest,
        layers,
        platform,
        application: config.config.clone(),
    })
}

/// The manifests `index` lists (nested indexes expanded; only the entries `source`'s
/// reference names, if it names one), and the labels of all its entries, escaped.
fn oci_candidates(
    blobs: &mut Blobs,
    source: &Source,
    index: Index,
) -> Result<(Vec<Candidate>, Vec<String>), OciError> {
    let mut all = Vec::new();
    let mut labels = Vec::new();
    for d in index.manifests {
        let name = d
            .annotations
            .get(REF_NAME)
            .or_else(|| d.annotations.get(CONTAINERD_NAME))
            .cloned()
            .unwrap_or_else(|| "(untagged)".into());
        labels.push(escape(&name));
        if let Some(r) = &source.reference {
            let hit = d.annotations.get(REF_NAME).is_some_and(|n| n == r)
                || d.annotations
                    .get(CONTAINERD_NAME)
                    .is_some_and(|n| reference_matches(r, n));
            if !hit {
                continue;
            }
        }
        expand(blobs, d, &name, 0, &mut all)?;
    }
    Ok((all, labels))
}

/// The layers `manifest` lists, with the diff_ids of its config (`config`, whose digest is
/// `config_digest`).
fn oci_layers(
    image: &Path,
    manifest: &Manifest,
    config_digest: &str,
    config: &Config,
) -> Result<Vec<Layer>, OciError> {
    let descs = manifest.layers.clone().unwrap_or_default();
    let diff_ids = diff_ids(image, config, descs.len())?;
    if !diff_ids.is_empty() && diff_ids.len() != descs.len() {
        return Err(corrupt(
            image,
            config_digest,
            format!(
                "the config lists {} layers, the manifest {}",
                diff_ids.len(),
                descs.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (i, d) in descs.into_iter().enumerate() {
        let member = blob_name(image, &d.digest)?;
        layers.push(Layer {
            media_type: d.media_type.unwrap_or_default(),
            size: d.size,
            member,
            diff_id: diff_ids.get(i).cloned(),
            digest: d.digest,
        });
    }
    Ok(layers)
}

/// Adds the manifests `d` names (itself, or those of the index it is) to `out`.
fn expand(
    blobs: &mut Blobs,
    d: Descriptor,
    label: &str,
    depth: usize,
    out: &mut Vec<Candidate>,
) -> Result<(), OciError> {
    let image = blobs.image;
    let media = d.media_type.clone().unwrap_or_default();
    let nested = if is_index_type(&media) {
        true
    } else if media.is_empty() {
        // No media type: look inside.
        blobs.get::<Manifest>(&d)?.manifests.is_some()
    } else {
        false
    };
    if !nested {
        let platform = d.platform.clone().map(Platform::from);
        let key = (d.digest.clone(), label.to_string(), platform.clone());
        if !blobs.found.insert(key) {
            return Ok(()); // listed again
        }
        if out.len() >= MAX_CANDIDATES {
            return Err(OciError::TooLarge {
                image: image.to_path_buf(),
                reason: format!("more than {MAX_CANDIDATES} manifests"),
            });
        }
        out.push(Candidate {
            desc: d,
            label: label.to_string(),
            platform,
        });
        return Ok(());
    }
    if depth >= MAX_NESTING {
        return Err(OciError::TooLarge {
            image: image.to_path_buf(),
            reason: format!("indexes nested more than {MAX_NESTING} deep"),
        });
    }
    let index = blobs.get::<Manifest>(&d)?;
    let inner_entries = index.manifests.as_deref().unwrap_or_default();
    blobs.examine(inner_entries.len())?;
    for inner in inner_entries {
        // Skip attestations and other non-image entries.
        if let Some(p) = &inner.platform {
            if p.os == "unknown" {
                continue;
            }
        }
        expand(blobs, inner.clone(), label, depth + 1, out)?;
    }
    Ok(())
}

/// The manifest `d` names and its config (digest, parsed), both verified.
fn load_manifest(
    blobs: &mut Blobs,
    d: &Descriptor,
) -> Result<(Rc<Manifest>, String, Rc<Config>), OciError> {
    let image = blobs.image;
    let name = blob_name(image, &d.digest)?;
    let m = blobs.get::<Manifest>(d)?;
    let Some(cd) = &m.config else {
        return Err(corrupt(image, &name, "a manifest without a config"));
    };
    if m.layers.is_none() {
        return Err(corrupt(image, &name, "a manifest without layers"));
    }
    let config = blobs.get::<Config>(cd)?;
    let digest = cd.digest.clone();
    Ok((m, digest, config))
}

/// One docker-archive entry whose platform fits, with its config.
struct DockerHit {
    entry: DockerEntry,
    /// `sha256:<hex>` of its config.
    digest: String,
    config: Rc<Config>,
    platform: Option<Platform>,
    /// Its label, platform and config digest, escaped, for messages.
    describe: String,
}

/// Resolves a docker-archive from its `manifest.json` (`manifest`, already read).
fn resolve_docker(source: &Source, store: &Store, manifest: &[u8]) -> Result<Resolved, OciError> {
    let image = source.path.as_path();
    let mut blobs = Blobs::new(store, image);
    let entries: Vec<DockerEntry> = blobs.parse_listing("manifest.json", manifest)?;
    blobs.examine(entries.len())?;
    let (candidates, all) = docker_candidates(source, entries);
    let (hits, misses) = docker_hits(&mut blobs, source, candidates)?;
    let hit = choose_one(
        image,
        source,
        hits,
        |h| h.describe.clone(),
        || if misses.is_empty() { all } else { misses },
    )?;
    let layers = docker_layers(image, store, &hit.entry, &hit.config)?;
    Ok(Resolved {
        format: Format::DockerArchive,
        manifest_digest: hit.digest.clone(),
        config_digest: hit.digest,
        layers,
        platform: hit.platform.unwrap_or_else(|| source.platform.clone()),
        application: hit.config.config.clone(),
    })
}

/// The entries of `manifest.json` that `source`'s reference names (all if it names none),
/// each with its label (its tags, escaped); and a description of every entry, for messages.
fn docker_candidates(
    source: &Source,
    entries: Vec<DockerEntry>,
) -> (Vec<(DockerEntry, String)>, Vec<String>) {
    let mut candidates = Vec::new();
    let mut all = Vec::new();
    for e in entries {
        let tags = e.repo_tags.clone().unwrap_or_default();
        let label = if tags.is_empty() {
            "(untagged)".to_string()
        } else {
            escape(&tags.join(" "))
        };
        all.push(format!("{label} {}", escape(&e.config)));
        if let Some(r) = &source.reference {
            if !tags.iter().any(|t| reference_matches(r, t)) {
                continue;
            }
        }
        candidates.push((e, label));
    }
    (candidates, all)
}

/// The `candidates` whose platform fits `source`'s, judged by their configs; and the
/// descriptions of those that do not.
fn docker_hits(
    blobs: &mut Blobs,
    source: &Source,
    candidates: Vec<(DockerEntry, String)>,
) -> Result<(Vec<DockerHit>, Vec<String>), OciError> {
    let image = blobs.image;
    // Read each candidate's config (small, verified, once however often it is listed) to
    // judge its platform.
    let mut configs: HashMap<String, (String, Rc<Config>)> = HashMap::new();
    let mut hits = Vec::new();
    let mut misses = Vec::new();
    for (e, label) in candidates {
        let config_member = clean_name(Path::new(&e.config)).ok_or_else(|| {
            corrupt(
                image,
                "manifest.json",
                format!("bad Config \"{}\"", escape(&e.config)),
            )
        })?;
        let (digest, config) = match configs.get(&config_member) {
            Some(c) => c.clone(),
            None => {
                let c = docker_config(blobs, &config_member)?;
                configs.insert(config_member.clone(), c.clone());
                c
            }
        };
        let platform = config.platform();
        let describe = format!(
            "{label} {} {digest}",
            escape(&platform_label(platform.as_ref()))
        );
        if fits(platform.as_ref(), &source.platform) {
            hits.push(DockerHit {
                entry: e,
                digest,
                config,
                platform,
                describe,
            });
        } else {
            misses.push(describe);
        }
    }
    Ok((hits, misses))
}

/// The layers of the docker-archive `entry`, with the diff_ids of its config (`config`),
/// each found in `store`.
fn docker_layers(
    image: &Path,
    store: &Store,
    entry: &DockerEntry,
    config: &Config,
) -> Result<Vec<Layer>, OciError> {
    let diff_ids = diff_ids(image, config, entry.layers.len())?;
    if diff_ids.len() != entry.layers.len() {
        return Err(corrupt(
            image,
            &entry.config,
            format!(
                "the config lists {} layers (rootfs.diff_ids), manifest.json {}",
                diff_ids.len(),
                entry.layers.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (member, diff_id) in entry.layers.iter().zip(diff_ids) {
        let member = clean_name(Path::new(member)).ok_or_else(|| {
            corrupt(
                image,
                "manifest.json",
                format!("bad layer \"{}\"", escape(member)),
            )
        })?;
        if sha256_hex(&diff_id).is_none() {
            blob_name(image, &diff_id)?; // the error
        }
        let (_, size) = store
            .member(image, &member)?
            .ok_or_else(|| OciError::MissingBlob {
                image: image.to_path_buf(),
                member: escape(&member),
            })?;
        layers.push(Layer {
            digest: diff_id.clone(),
            media_type: DOCKER_LAYER.into(),
            size,
            member,
            diff_id: Some(diff_id),
        });
    }
    Ok(layers)
}

/// The docker-archive config `member`: its digest and content, verified against its name
/// when it is named by its digest (`<hex>.json`, `blobs/sha256/<hex>`).
fn docker_config(blobs: &mut Blobs, member: &str) -> Result<(String, Rc<Config>), OciError> {
    let image = blobs.image;
    let bytes = blobs
        .store
        .read_small(image, member, MAX_JSON)?
        .ok_or_else(|| OciError::MissingBlob {
            image: image.to_path_buf(),
            member: escape(member),
        })?;
    blobs.count_read(bytes.len())?;
    let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
    let stem = member
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".json")
        .to_string();
    if sha256_hex(&format!("sha256:{stem}")).is_some() && digest != format!("sha256:{stem}") {
        return Err(OciError::Digest {
            image: image.to_path_buf(),
            member: escape(member),
            expected: format!("sha256:{stem}"),
            actual: digest,
        });
    }
    let config: Config = parse(image, member, &bytes)?;
    Ok((digest, Rc::new(config)))
}

/// No image in `image` matches `source`; `available` describes what it holds.
fn no_match(image: &Path, source: &Source, available: &[String]) -> OciError {
    OciError::NoMatch {
        image: image.to_path_buf(),
        wanted: wanted(source),
        available: if available.is_empty() {
            "nothing".into()
        } else {
            listed(available)
        },
    }
}

/// Whether an image of `platform` (`None`: unknown, which fits any) fits `wanted`.
fn fits(platform: Option<&Platform>, wanted: &Platform) -> bool {
    match platform {
        Some(p) => p.satisfies(wanted),
        None => true,
    }
}

/// `platform` for messages (not escaped).
fn platform_label(platform: Option<&Platform>) -> String {
    platform.map_or("unknown platform".into(), |p| p.to_string())
}

/// The one image of `hits`: several are ambiguous (listed by `describe`), none is no match
/// (listing what `available` gives).
fn choose_one<T>(
    image: &Path,
    source: &Source,
    mut hits: Vec<T>,
    describe: impl Fn(&T) -> String,
    available: impl FnOnce() -> Vec<String>,
) -> Result<T, OciError> {
    if hits.len() > 1 {
        return Err(OciError::Ambiguous {
            image: image.to_path_buf(),
            wanted: wanted(source),
            candidates: listed(&hits.iter().map(describe).collect::<Vec<_>>()),
        });
    }
    match hits.pop() {
        Some(hit) => Ok(hit),
        None => Err(no_match(image, source, &available())),
    }
}

/// The config's `rootfs.diff_ids`, once the manifest's count of `layers` is checked against
/// [`MAX_LAYERS`].
fn diff_ids(image: &Path, config: &Config, layers: usize) -> Result<Vec<String>, OciError> {
    if layers > MAX_LAYERS {
        return Err(OciError::TooLarge {
            image: image.to_path_buf(),
            reason: format!("{layers} layers, more than {MAX_LAYERS}"),
        });
    }
    Ok(config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_as_docker_does() {
        assert_eq!(
            normalize_reference("alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(normalize_reference("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            normalize_reference("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert!(reference_matches("t", "docker.io/library/t:latest"));
        assert!(!reference_matches("t:2", "docker.io/library/t:latest"));
    }
}
