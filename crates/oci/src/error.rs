use std::io;
use std::path::PathBuf;

use crate::escape::escape_path;

/// Why a container image could not be read or unpacked. Every variant names the image (the
/// path given) and, where there is one, the blob or member at fault, and says what to do.
///
/// Text taken from the image (member names, references, annotations, platforms, link
/// targets) is held escaped and cut ([`crate::escape`]), so an error prints as one line of
/// bounded length whatever the image holds.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("container image {image}: no such file or folder (give an OCI image layout folder, an OCI archive or a docker-archive tarball)")]
    NotFound { image: PathBuf },
    #[error("container image {image}: not an OCI image layout or OCI archive (no index.json) nor a docker-archive (no manifest.json); make one with `skopeo copy ... oci:DIR:TAG` or `docker save -o FILE.tar IMAGE`")]
    NotAnImage { image: PathBuf },
    #[error("container image {image}: cannot read {member}: {source}")]
    Read {
        image: PathBuf,
        member: String,
        source: io::Error,
    },
    #[error(
        "container image {image}: {member} is missing (the image is incomplete; copy it again)"
    )]
    MissingBlob { image: PathBuf, member: String },
    #[error("container image {image}: {member} is corrupt: {reason} (the image is damaged or was altered; copy it again)")]
    Corrupt {
        image: PathBuf,
        member: String,
        reason: String,
    },
    #[error("container image {image}: {member} has digest {actual}, expected {expected} (the blob is damaged or was altered; copy the image again)")]
    Digest {
        image: PathBuf,
        member: String,
        expected: String,
        actual: String,
    },
    #[error("container image {image}: {member} is {actual} bytes, expected {expected} (the blob is damaged or was altered; copy the image again)")]
    Size {
        image: PathBuf,
        member: String,
        expected: u64,
        actual: u64,
    },
    #[error("container image {image}: no image matches {wanted}; it holds: {available} (pick one with PATH:REF and/or the platform)")]
    NoMatch {
        image: PathBuf,
        wanted: String,
        available: String,
    },
    #[error("container image {image}: several images match {wanted}: {candidates} (pick one with PATH:REF and/or the platform)")]
    Ambiguous {
        image: PathBuf,
        wanted: String,
        candidates: String,
    },
    #[error("container image {image}: {member}: {what} is not supported")]
    Unsupported {
        image: PathBuf,
        member: String,
        what: String,
    },
    #[error("container image {image}: layer {layer}: member \"{member}\" refused: {reason}")]
    Unsafe {
        image: PathBuf,
        layer: String,
        member: String,
        reason: String,
    },
    #[error("container image {image}: {member} is {kind}, not a regular file (refused without reading it)")]
    NotAFile {
        image: PathBuf,
        member: String,
        kind: String,
    },
    #[error("container image {image} is larger than allowed: {reason}")]
    TooLarge { image: PathBuf, reason: String },
    #[error("container image {image}: cannot write the root filesystem under {}: {source}", escape_path(.path))]
    Write {
        image: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "image cache entry {path} is unreadable: {reason} (remove the folder to unpack again)"
    )]
    BadCacheEntry { path: PathBuf, reason: String },
}
