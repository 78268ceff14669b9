//! Software bills of materials for nanoimg images: what an image holds, and where each file
//! came from, as an [SPDX 2.3](https://spdx.github.io/spdx-spec/v2.3/) or a
//! [CycloneDX 1.5](https://cyclonedx.org/docs/1.5/json/) JSON document.
//!
//! The input is a [`Description`]: the image (name, SHA-256), the Nanos release (version,
//! architecture, kernel and klibs as the boot filesystem's files), every packed file (image
//! path, SHA-256, SHA-1, size, [`Origin`]: a host path, or a container image's layer) and
//! the container images used as roots. [`dpkg::Database`] adds the distribution package
//! owning each file when the root has a dpkg database (`var/lib/dpkg/status` and
//! `info/*.list`, multi-arch names included, usr-merge paths matched both ways); apk
//! (`lib/apk/db/installed`) and rpm databases are not read yet.
//!
//! # Determinism
//!
//! The same description gives the same bytes: files are sorted by filesystem and path,
//! packages by PURL, identifiers are derived from positions in those orders, the SPDX
//! `documentNamespace` is `https://nanoimg.dev/spdx/<image sha256>` and the CycloneDX
//! `serialNumber` a `urn:uuid:` made from the image's SHA-256. The one time stamp (SPDX's
//! mandatory `created`, CycloneDX's `metadata.timestamp`) is `SOURCE_DATE_EPOCH` when set,
//! else the Unix epoch `1970-01-01T00:00:00Z`: the wall clock would make two builds of the
//! same image give different documents, and SPDX requires the field, so a fixed value says
//! "not recorded" while staying valid.

pub mod cyclonedx;
pub mod dpkg;
mod purl;
pub mod spdx;

use std::path::PathBuf;

pub use dpkg::{Database, HostRoot, Package, RootFiles};

/// Why a document cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} in the root {root}: {reason}")]
    InRoot {
        root: PathBuf,
        path: String,
        reason: String,
    },
    #[error("{path}: {what} exceeds nanoimg's limit of {limit}")]
    Limit {
        path: String,
        what: &'static str,
        limit: u64,
    },
    #[error("SOURCE_DATE_EPOCH {value:?} is not a number of seconds since 1970-01-01 (up to the end of year 9999)")]
    SourceDateEpoch { value: String },
}

/// What an image is and holds.
#[derive(Clone, Debug, Default)]
pub struct Description {
    /// The image's name (ops's image name).
    pub name: String,
    /// The image file's SHA-256, hex.
    pub sha256: String,
    /// The Nanos release the boot filesystem's files come from.
    pub nanos: Nanos,
    /// Every regular file of both filesystems.
    pub files: Vec<File>,
    /// The container images used as roots.
    pub containers: Vec<Container>,
    /// Seconds since the epoch for the documents' creation time ([`created`]).
    pub created: u64,
    /// The version of the tool writing the document.
    pub tool_version: String,
}

/// The Nanos release.
#[derive(Clone, Debug, Default)]
pub struct Nanos {
    /// The release (`0.1.54`); empty when not known (`--kernel-dir`).
    pub version: String,
    /// ops's name of the architecture (`amd64`, `arm64`).
    pub arch: String,
    /// Where the release tarball is published (its pin's URL), when known.
    pub download: Option<String>,
    /// The release tarball's SHA-256 (hex), from its pin or `nanoimg.lock`, when known.
    pub tarball_sha256: Option<String>,
}

/// A container image used as a root.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Container {
    /// As given (`app.tar:latest`, `docker://debian:12`).
    pub reference: String,
    /// `sha256:<hex>` of its manifest.
    pub manifest_digest: String,
}

/// Where a packed file came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A host file (relative to the build's folder when inside it).
    Host(String),
    /// A container image's root: the image (an index into [`Description::containers`]),
    /// its path in that root and the layer that last wrote it (when known).
    Layer {
        container: usize,
        path: String,
        layer: Option<String>,
    },
    /// Written by nanoimg (`/etc/passwd`, `/etc/resolv.conf`, the hostname).
    Generated,
    /// Read from a finished image (`nanoimg sbom IMAGE`), which does not record where its
    /// files came from.
    Unrecorded,
}

/// One packed file.
#[derive(Clone, Debug)]
pub struct File {
    /// `boot` or `root`.
    pub filesystem: String,
    /// Its path in that filesystem (`/lib/x86_64-linux-gnu/libc.so.6`).
    pub path: String,
    pub size: u64,
    /// Hex digests.
    pub sha256: String,
    pub sha1: String,
    pub origin: Origin,
    /// The distribution package owning it, if known.
    pub package: Option<Package>,
}

impl File {
    /// Whether the file is part of the Nanos release (the boot filesystem: kernel, klibs).
    pub fn is_nanos(&self) -> bool {
        self.filesystem == "boot"
    }
}

/// Limits on what is read from a root.
pub mod limits {
    /// Most bytes of `var/lib/dpkg/status`.
    pub const STATUS: u64 = 64 << 20;
    /// Most bytes of one `info/*.list`.
    pub const LIST: u64 = 16 << 20;
    /// Most bytes of all lists together.
    pub const LISTS_TOTAL: u64 = 512 << 20;
    /// Most packages read from a status file.
    pub const PACKAGES: usize = 100_000;
    /// Most bytes of one `usr/share/doc/<pkg>/copyright` read for its license.
    pub const COPYRIGHT: u64 = 256 << 10;
    /// Most bytes of `etc/os-release`.
    pub const OS_RELEASE: u64 = 64 << 10;
}

/// The documents' creation time: `SOURCE_DATE_EPOCH` (`value`, from the environment) when
/// set, else 0 (see the crate docs for why not the clock).
pub fn created(value: Option<&str>) -> Result<u64, SbomError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v
            .parse()
            .ok()
            .filter(|s| *s <= LAST_RFC3339_SECOND)
            .ok_or_else(|| SbomError::SourceDateEpoch {
                value: v.to_string(),
            }),
    }
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
pub const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// `secs` after the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`); at most
/// [`LAST_RFC3339_SECOND`] (later is written as that).
pub fn rfc3339(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.min(LAST_RFC3339_SECOND));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The Nanos release's PURL (`pkg:github/nanovms/nanos@0.1.54`).
pub fn nanos_purl(nanos: &Nanos) -> Option<String> {
    (!nanos.version.is_empty())
        .then(|| format!("pkg:github/nanovms/nanos@{}", purl::encode(&nanos.version)))
}

/// A container image's PURL: `pkg:oci/<name>@sha256%3A<hex>` with `repository_url` when the
/// reference names a registry.
pub fn container_purl(c: &Container) -> String {
    let (name, repository) = container_name(&c.reference);
    let mut p = format!(
        "pkg:oci/{}@{}",
        purl::encode(&name.to_ascii_lowercase()),
        purl::encode(&c.manifest_digest)
    );
    if let Some(r) = repository {
        p.push_str("?repository_url=");
        p.push_str(&purl::encode(&r));
    }
    p
}

/// The image's last path component without tag (`debian` of `docker://docker.io/library/
/// debian:12`, `app` of `/x/app.tar:latest`), and its repository for a registry reference.
fn container_name(reference: &str) -> (String, Option<String>) {
    if let Some(rest) = reference.strip_prefix("docker://") {
        let no_digest = rest.split('@').next().unwrap_or(rest);
        let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
        let name = last.split(':').next().unwrap_or(last);
        let repo = no_digest
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(no_digest, |(r, _)| r);
        return (name.to_string(), Some(repo.to_string()));
    }
    let path = reference
        .strip_prefix("oci-archive:")
        .or_else(|| reference.strip_prefix("oci:"))
        .or_else(|| reference.strip_prefix("docker-archive:"))
        .unwrap_or(reference);
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path);
    let name = last.split(':').next().unwrap_or(last);
    let name = name
        .strip_suffix(".tar")
        .or_else(|| name.strip_suffix(".tar.gz"))
        .unwrap_or(name);
    let name = if name.is_empty() { "image" } else { name };
    (name.to_string(), None)
}

/// The files in the documents' order: by filesystem (boot first), then path.
pub(crate) fn sorted_files(d: &Description) -> Vec<&File> {
    let mut files: Vec<&File> = d.files.iter().collect();
    files.sort_by(|a, b| (&a.filesystem, &a.path).cmp(&(&b.filesystem, &b.path)));
    files
}

/// The distinct packages owning files, by PURL.
pub(crate) fn packages(d: &Description) -> Vec<&Package> {
    let mut by_purl = std::collections::BTreeMap::new();
    for f in &d.files {
        if let Some(p) = &f.package {
            by_purl.entry(p.purl.as_str()).or_insert(p);
        }
    }
    by_purl.into_values().collect()
}

/// Hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 and SHA-1 (hex) of the file at `path`, read in 1 MiB pieces.
pub fn digest_file(path: &std::path::Path) -> std::io::Result<(String, String)> {
    use sha1::Digest;
    use std::io::Read;
    let mut file = nanoimg_chroot::open_regular(path)?;
    let mut s256 = sha2::Sha256::new();
    let mut s1 = sha1::Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s256.update(&buf[..n]);
        s1.update(&buf[..n]);
    }
    Ok((hex(&s256.finalize()), hex(&s1.finalize())))
}

/// The SHA-256 and SHA-1 (hex) of `bytes`.
pub fn digest_bytes(bytes: &[u8]) -> (String, String) {
    use sha1::Digest;
    (
        hex(&sha2::Sha256::digest(bytes)),
        hex(&sha1::Sha1::digest(bytes)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn created_from_source_date_epoch() {
        assert_eq!(created(None).unwrap(), 0);
        assert_eq!(created(Some("")).unwrap(), 0);
        assert_eq!(created(Some("1700000000")).unwrap(), 1_700_000_000);
        assert!(created(Some("yesterday")).is_err());
        assert!(created(Some("253402300800")).is_err(), "after year 9999");
        assert_eq!(rfc3339(LAST_RFC3339_SECOND), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn container_purls() {
        let c = |r: &str| Container {
            reference: r.into(),
            manifest_digest: "sha256:ab".into(),
        };
        assert_eq!(
            container_purl(&c("/x/deb.tar:latest")),
            "pkg:oci/deb@sha256%3Aab"
        );
        assert_eq!(
            container_purl(&c("docker://localhost:5000/lib/Debian:12")),
            "pkg:oci/debian@sha256%3Aab?repository_url=localhost%3A5000%2Flib%2FDebian"
        );
    }
}
