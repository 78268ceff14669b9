//! The OCI distribution protocol for nanoimg: container images pulled from a registry
//! into the cache as sysroots, and nanoimg's own disk images pushed and pulled as OCI
//! artifacts.
//!
//! # References
//!
//! [`Reference`] reads skopeo's spelling: `docker://HOST[:PORT]/REPO[:TAG]` or
//! `docker://HOST[:PORT]/REPO@sha256:HEX`; a name without a registry is Docker Hub's
//! (`docker://alpine` is `docker.io/library/alpine:latest`).
//!
//! # Pulling an image
//!
//! [`pull_image`] resolves a tag to a digest once (the manifest GET), narrows an index to
//! the platform's manifest ([`nanoimg_oci::Platform::satisfies`]), and fetches only that
//! manifest's config and layers. Each blob streams into a temporary folder under
//! `CACHE/tmp/` (a `nanoimg-atomic` `TempDir`, so an error, SIGINT, SIGTERM or SIGHUP
//! leaves nothing), its size and SHA-256 checked as it arrives: more bytes than the
//! manifest says are refused at once, and a blob with other bytes is refused in one line
//! naming the blob and both digests ([`RegistryError::Digest`]). Manifests and indexes are
//! bounded before they are read (8 MiB, from `Content-Length` and while reading, as
//! `nanoimg-oci` bounds its JSON blobs). When every blob is verified, the folder is
//! renamed into place:
//!
//! ```text
//! CACHE/registry/images/<manifest hex>/   an OCI image layout: oci-layout, index.json
//!                                         listing exactly that manifest, blobs/sha256/…
//! CACHE/registry/blobs/sha256/<hex>       every verified blob, hard links shared by the
//!                                         layouts (a later pull links instead of fetching)
//! ```
//!
//! so that `nanoimg_oci::Source::new(layout, None)` resolves to that manifest, and
//! `nanoimg_oci::unpack` reads (and verifies again) the blobs as for any image layout.
//! The platform manifest's digest is what `nanoimg.lock` records. [`cached_image`] says,
//! without network, whether a manifest digest is fully in the cache; a reference by digest
//! that is cached needs no network at all.
//!
//! # Credentials
//!
//! From the first of `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`) with an entry for the
//! registry: `auths.<host>.auth` (base64 of `user:password`) or `username`/`password`
//! ([`AuthFiles`]). Basic authentication and bearer tokens (the `WWW-Authenticate`
//! challenge, exchanged by oci-client) both work. Credential helpers
//! (`credsStore`/`credHelpers`) are never run: nanoimg executes nothing, and an entry that
//! only has a helper is reported as such ([`RegistryError::HelperOnly`]). Refused
//! credentials are one line naming the registry, the user, the file, and the remedy
//! ([`RegistryError::BadCredentials`]).
//!
//! # TLS
//!
//! Always, with rustls (ring) verifying against the system's roots
//! (rustls-platform-verifier) plus the `certs.d` CA certificates skopeo, podman and docker
//! read: every `*.crt` (`ca.crt` included) in `$HOME/.config/containers/certs.d/HOST:PORT/`,
//! `/etc/containers/certs.d/HOST:PORT/` and `/etc/docker/certs.d/HOST:PORT/`. Plain HTTP
//! only for a registry named with `--insecure-registry HOST:PORT` ([`Options::insecure`]).
//! Client certificates (`client.cert`/`client.key`) are not supported.
//!
//! # Image artifacts
//!
//! [`push_artifact`] uploads a built image (any format) as an OCI 1.1 artifact: an image
//! manifest with `artifactType` [`media::ARTIFACT_TYPE`], the empty config
//! (`application/vnd.oci.empty.v1+json`, the two bytes `{}`), and one layer, the file,
//! whose media type names its format ([`media::image_layer`]:
//! `application/vnd.nanoimg.image.v1.raw`, `….qcow2`, `….vhd`, `….vmdk`, `….vhdx`,
//! `….gce`). Annotations ([`annotation`]): `org.opencontainers.image.title` (the file
//! name, also on the layer), `dev.nanoimg.image.sha256`, `dev.nanoimg.image.blake3`,
//! `dev.nanoimg.nanos.version`, `dev.nanoimg.image.arch`, `dev.nanoimg.image.format`. The
//! manifest has no time in it, so the same file gives the same digest. The file is
//! hashed, then streamed (monolithic upload with a streamed body; never held in memory).
//! [`pull_artifact`] fetches it back, verified against the layer's size and digest as it
//! streams, into a temporary file renamed into place when verified.
//!
//! # Why oci-client, and what is done beside it
//!
//! oci-client (the ORAS project's, async) does the protocol: the `/v2/` probe and the
//! bearer-token exchange, blob streams, uploads, manifest pushes; it runs on a
//! current-thread tokio runtime inside each call, so callers stay blocking. The one thing
//! it cannot do is done beside it with reqwest (the same version, the same TLS setup, the
//! token it obtained): a manifest or index GET bounded before its body is read
//! (oci-client's `pull_manifest_raw` and the parsed variants read the whole answer into
//! memory, whatever its size). Its own digest checks on blob streams stay on; nanoimg
//! checks every blob itself too, to name the blob and both digests.

mod artifact;
mod auth;
mod client;
mod error;
mod image;
mod reference;

pub use artifact::{
    artifact_manifest, pull_artifact, push_artifact, Artifact, ArtifactInfo, Destination,
};
pub use auth::{AuthFiles, Lookup};
pub use client::{registry_certs, Options, MAX_MANIFEST};
pub use error::RegistryError;
pub use image::{blob_store, cached_image, image_layout, pull_image, Pulled};
pub use reference::{is_reference, Reference, DOCKER_HUB, PREFIX};

/// Media types.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// The empty descriptor's media type (OCI 1.1), for an artifact's config.
    pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
    /// `sha256` of the two bytes `{}`, the empty config.
    pub const EMPTY_DIGEST: &str =
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    /// The `artifactType` of a nanoimg image pushed to a registry.
    pub const ARTIFACT_TYPE: &str = "application/vnd.nanoimg.image.v1";

    /// The layer media type of an image in `format` (nanoimg's `--format` name):
    /// `application/vnd.nanoimg.image.v1.<format>`.
    pub fn image_layer(format: &str) -> String {
        format!("{ARTIFACT_TYPE}.{format}")
    }

    /// The format a layer media type names, if it is one of [`image_layer`]'s.
    pub fn format_of(media_type: &str) -> Option<&str> {
        media_type
            .strip_prefix(ARTIFACT_TYPE)?
            .strip_prefix('.')
            .filter(|f| !f.is_empty())
    }
}

/// Annotation keys of an image artifact.
pub mod annotation {
    /// The file name (OCI's).
    pub const TITLE: &str = "org.opencontainers.image.title";
    /// The image file's SHA-256 (hex).
    pub const SHA256: &str = "dev.nanoimg.image.sha256";
    /// The image file's BLAKE3 (hex).
    pub const BLAKE3: &str = "dev.nanoimg.image.blake3";
    /// The Nanos version of its kernel.
    pub const NANOS_VERSION: &str = "dev.nanoimg.nanos.version";
    /// `amd64` or `arm64`.
    pub const ARCH: &str = "dev.nanoimg.image.arch";
    /// nanoimg's format name (`raw`, `qcow2`, …).
    pub const FORMAT: &str = "dev.nanoimg.image.format";
}

#[cfg(test)]
mod tests {
    use super::media;

    #[test]
    fn media_types_name_the_format() {
        assert_eq!(
            media::image_layer("raw"),
            "application/vnd.nanoimg.image.v1.raw"
        );
        assert_eq!(
            media::format_of("application/vnd.nanoimg.image.v1.vhdx"),
            Some("vhdx")
        );
        assert_eq!(media::format_of("application/vnd.nanoimg.image.v1"), None);
        assert_eq!(media::format_of(media::OCI_MANIFEST), None);
        use sha2::Digest;
        let d = sha2::Sha256::digest(b"{}");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(media::EMPTY_DIGEST, format!("sha256:{hex}"));
    }
}
