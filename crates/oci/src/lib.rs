//! Container images read from files, without a daemon, root or network.
//!
//! An image is one of:
//!
//! - an **OCI image layout** folder (`oci-layout`, `index.json`, `blobs/sha256/…`), as
//!   `umoci init` or `skopeo copy … oci:DIR:TAG` make;
//! - an **OCI archive**: a tar of such a folder (`skopeo copy … oci-archive:FILE:TAG`);
//! - a **docker-archive**: `manifest.json` plus a config and layer tars, as `docker save`,
//!   `podman save` and `skopeo copy … docker-archive:FILE:TAG` write (a folder holding its
//!   extracted content works too). An archive that has both `index.json` and
//!   `manifest.json` (docker 25+) is read as OCI.
//!
//! Archives are read in place: their members are indexed once and read at their offsets,
//! nothing is extracted.
//!
//! Three steps:
//!
//! 1. [`Source::parse`] reads `PATH` or `PATH:REF` (see there for how a `:` in a path is
//!    told from the one before a reference); the platform defaults to `linux/amd64`.
//! 2. [`resolve`] finds the one manifest: for OCI, `index.json`'s entries whose
//!    `org.opencontainers.image.ref.name` (or `io.containerd.image.name`) annotation is the
//!    reference, if one was given; nested and multi-platform indexes are opened and their
//!    entries filtered by platform (an entry without a platform is judged by its config).
//!    Exactly one manifest must remain, else the error lists what the image holds. For a
//!    docker-archive, the `manifest.json` entry whose `RepoTags` has the reference
//!    (`alpine` = `alpine:latest` = `docker.io/library/alpine:latest`). The result,
//!    [`Resolved`], names the manifest digest (for a docker-archive, which has no manifest
//!    blob: the SHA-256 of the config, i.e. the image ID), the config digest, the platform
//!    and the layers.
//! 3. [`unpack`] gives the root filesystem, a [`Root`]: the cache entry
//!    `CACHE/rootfs/<manifest hex>/` if there is one (nothing is read), else the layers are
//!    applied in order into a temporary folder under `CACHE/tmp/` (a `nanoimg-atomic`
//!    `TempDir`: removed on error and on SIGINT/SIGTERM/SIGHUP) that is renamed into place
//!    when complete. The entry holds `root/` (the filesystem) and `layers.json` (which layer
//!    each path came from: [`Root::layer_of`]).
//!
//! # Verification
//!
//! Every blob is checked against its SHA-256 digest and size as it is read, streaming
//! (layers are never held in memory): the index, manifests and config before they are
//! parsed, each layer as it is applied, also against the config's `rootfs.diff_ids` (the
//! digest of the uncompressed tar) when the config lists them. For a docker-archive, whose
//! layers are named by those uncompressed digests, the config is checked against its file
//! name and each layer against its `diff_id`. A mismatch is an [`OciError::Digest`] naming
//! the blob and both digests; since layers are applied into the temporary folder, nothing
//! is cached.
//!
//! # Applying layers
//!
//! As a container runtime does: gzip'd or uncompressed tars (told by their first bytes,
//! whatever the media type says; zstd is refused as unsupported); `.wh.NAME` removes
//! `NAME` of lower layers; `.wh..wh..opq` makes its folder opaque (everything lower layers
//! put in it goes; what the same layer puts there stays, whatever the member order); a
//! member replaces what lower layers had at its path, except that a folder over a folder
//! merges. Regular files, folders, symbolic links (target kept exactly as written, never
//! followed when written) and hard links (to a path inside the root) are created.
//!
//! Tars are read by the crate's own member loop (the `tar` crate decodes each header):
//! GNU long names and long links (`././@LongLink`, types `L`, `K`) and PAX extended
//! headers (`x`: its `path`, `linkpath` and `size` records apply to the next member) are
//! read only after their size is checked, so a header claiming gigabytes is refused before
//! anything is read; PAX global headers (`g`) are read the same way and ignored.
//!
//! A member's *parent* path is resolved inside the root, as `chroot` would, by
//! `nanoimg-chroot`'s `Resolver`: a symbolic link on the way (e.g. `lib -> usr/lib`) is
//! followed, with `..` stopping at the root and an absolute target starting again from the
//! root, so nothing is ever written outside the root; missing parent folders are created
//! (never for a whiteout or a hard link's target: a missing one means there is nothing to
//! hide, or a refused link).
//!
//! Kept: the rwx permission bits of files and links' targets as written. Folders always
//! keep owner `rwx` besides their own bits (so the cache entry can be written and removed
//! without root). Not kept: owners, set-id and sticky bits, times, extended attributes.
//!
//! Skipped: device files and FIFOs (Nanos has no use for them, and they cannot be made
//! without root). What lower layers had at such a member's path goes, as the member
//! replaces it, and nothing is made; each layer that had some gives one line in
//! [`Root::notes`] (`skipped 3 device files and FIFOs in layer sha256:…: Nanos has no use
//! for them (first: dev/null)`) for the caller to print. A cached root has no notes.
//!
//! Refused (an [`OciError::Unsafe`] naming the layer and member): absolute member paths and
//! any `..` component, a NUL byte in a name or link target, hard links whose target is
//! missing or a folder, GNU sparse members, any other member type, a parent that is a
//! regular file, more than 40 links on a path, GNU long names or links over 4096 bytes and
//! PAX headers over 1 MiB (naming the size claimed). Refused at once without reading
//! ([`OciError::NotAFile`]): an image path, `index.json`, `manifest.json` or blob that is
//! a FIFO, device or socket (opened with `O_NONBLOCK`, then checked with `fstat`, so a
//! FIFO never blocks). Limits ([`OciError::TooLarge`]): 256 layers, 2,000,000 members in
//! all, 16 GiB per file, 64 GiB in all, 8 MiB per JSON blob and 64 MiB of JSON in all,
//! 100,000 index entries examined in all, 1,024 manifests, indexes nested 4 deep,
//! 4096-byte paths and link targets, in an image archive 1,000,000 members and the same
//! long-name and PAX header limits as in layers.
//!
//! # Linear work
//!
//! Hostile layers cost time in proportion to their size, not its square
//! (`cargo xtask bench-hostile` times each case beside a baseline writing the same files):
//!
//! - a folder is pruned at most once per layer: one made opaque (directly, or as part of
//!   an ancestor's prune) holds only what this layer wrote, so further `.wh..wh..opq`
//!   markers in it cost nothing (10,000 markers over a folder of 10,000 files of the same
//!   layer add nothing measurable to writing the files; before, they took a minute);
//! - parent resolution is memoised by (real folder, name) and by the parent path as
//!   written, so a member under a chain of links costs the chain once (a 10,000-link chain
//!   with 100,000 members under it) and a deep folder is walked once (1,800 nested folders
//!   with a file in each: about a second, against minutes before). Removing or replacing
//!   a folder or link forgets what was found through links, and of the paths found without
//!   any, those under it; a member reached through a link after that walks again (at most
//!   40 links and 4096-byte paths, but every step is a host `lstat` of a path as deep as
//!   the folder: a layer alternating link replacements with members under a link to a
//!   folder 1,800 deep costs about 0.2 s per member on the build machine);
//! - each JSON blob is read, verified and parsed once, however often indexes list it, and
//!   the entries examined in all are bounded; a manifest listed again under the same name
//!   is one candidate.
//!
//! # Messages
//!
//! Text from an image (member names, references, annotations, platforms, media types,
//! link targets) reaches an [`OciError`] only through [`escape`]: control characters as
//! `\n`, `\t`, `\x1b`, …, invisible Unicode formatting characters as `\u{…}`, cut to
//! [`MAX_SHOWN`] characters with `…`, so every error is one line of bounded length.

mod error;
mod escape;
mod resolve;
mod store;
mod tarball;
mod unpack;

use std::path::{Path, PathBuf};

pub use error::OciError;
pub use escape::{escape, Escaped, MAX_SHOWN};
pub use resolve::resolve;
pub use unpack::{unpack, Root};

/// An image on disk and which image in it (reference and platform).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The layout folder, OCI archive or docker-archive.
    pub path: PathBuf,
    /// The tag (OCI `ref.name`, docker `RepoTags` entry); `None` if the image holds one.
    pub reference: Option<String>,
    /// The platform wanted when the image holds several.
    pub platform: Platform,
}

impl Source {
    /// The image at `path`, reference `reference`, platform linux/amd64.
    pub fn new(path: impl Into<PathBuf>, reference: Option<String>) -> Source {
        Source {
            path: path.into(),
            reference,
            platform: Platform::default(),
        }
    }

    /// The same image, for `platform`.
    pub fn with_platform(mut self, platform: Platform) -> Source {
        self.platform = platform;
        self
    }

    /// Reads `PATH` or `PATH:REF`. Paths may contain `:`, so the file system decides: if
    /// the whole text names an existing file or folder, it is the path (no reference);
    /// else it is split at the last `:` whose left side names an existing file or folder
    /// and whose right side is not empty (so `x.tar:docker.io/library/alpine:3` is
    /// `x.tar` with reference `docker.io/library/alpine:3`, and `a:b:t` with a folder `a:b`
    /// is `a:b` with `t`); else the whole text is the path, and [`resolve`] reports it
    /// missing.
    pub fn parse(text: &str) -> Source {
        let exists = |p: &str| !p.is_empty() && Path::new(p).symlink_metadata().is_ok();
        if exists(text) {
            return Source::new(text, None);
        }
        for (i, _) in text.rmatch_indices(':') {
            let (path, reference) = (&text[..i], &text[i + 1..]);
            if !reference.is_empty() && exists(path) {
                return Source::new(path, Some(reference.to_string()));
            }
        }
        Source::new(text, None)
    }
}

/// An OCI platform: `os/architecture[/variant]` (`linux/amd64`, `linux/arm64/v8`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    /// When `None` in a wanted platform, any variant matches.
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl Platform {
    /// Whether an image for `self` serves one wanted as `wanted`: same OS and
    /// architecture, and the same variant if `wanted` names one (`arm64` without a
    /// variant is `arm64/v8`, as in containerd).
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        let variant = |p: &Platform| match (p.architecture.as_str(), &p.variant) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.clone(),
        };
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || variant(self) == variant(wanted))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    /// `os/architecture` or `os/architecture/variant`.
    fn from_str(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: parts
                    .get(2)
                    .filter(|v| !v.is_empty())
                    .map(|v| v.to_string()),
            }),
            _ => Err(format!(
                "platform {s:?}: expected OS/ARCHITECTURE[/VARIANT], e.g. linux/arm64"
            )),
        }
    }
}

/// What kind of file an image was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OciLayout,
    OciArchive,
    DockerArchive,
}

/// One layer of a resolved image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:<hex>`: the blob's digest (OCI), or the uncompressed tar's digest, the
    /// `diff_id` (docker-archive, which names layers so).
    pub digest: String,
    /// As the manifest says (docker-archive: `application/vnd.docker.image.rootfs.diff.tar`).
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The member holding it in the image (`blobs/sha256/<hex>`, `<id>/layer.tar`, …).
    pub member: String,
    /// The uncompressed tar's digest, from the config's `rootfs.diff_ids`, if listed.
    pub diff_id: Option<String>,
}

/// The one image [`resolve`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub format: Format,
    /// `sha256:<hex>` of the manifest; for a docker-archive, of the config (the image ID).
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config.
    pub config_digest: String,
    /// Lowest first.
    pub layers: Vec<Layer>,
    /// The image's platform (from the config, else from the index entry).
    pub platform: Platform,
    /// How the image says its application runs (the config's `config` object).
    pub application: Application,
}

/// The application an image describes: its config's `Entrypoint`, `Cmd`, `Env` and
/// `WorkingDir`, as `docker run` would use them. Empty when the config has none.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Application {
    #[serde(rename = "Entrypoint", default, deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default, deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries, in the image's order.
    #[serde(rename = "Env", default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// The working directory (empty: none given).
    #[serde(rename = "WorkingDir", default, deserialize_with = "null_as_default")]
    pub working_dir: String,
}

/// `null` (which docker writes for an empty list) read as the type's default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
