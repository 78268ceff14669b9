use std::path::PathBuf;

/// Why talking to a registry failed. Every variant names the reference (or file) and the
/// value at fault, on one line, and says what to do. Text from the registry is escaped
/// and cut (`nanoimg_oci::escape`).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry reference \"{text}\": {reason}")]
    Reference { text: String, reason: String },
    #[error("{reference}: cannot reach the registry {registry}: {reason}")]
    Connect {
        reference: String,
        registry: String,
        reason: String,
    },
    #[error("{reference}: the registry {registry} refused the credentials of user \"{user}\" from {file} (HTTP {status}); log in again (`skopeo login {registry}`, `podman login` or `docker login`) or fix auths.\"{registry}\" in that file")]
    BadCredentials {
        reference: String,
        registry: String,
        user: String,
        file: PathBuf,
        status: u16,
    },
    #[error("{reference}: the registry {registry} asks for credentials (HTTP {status}) and none are stored for it (looked in {searched}); log in with `skopeo login {registry}` (or podman/docker login), or set REGISTRY_AUTH_FILE")]
    NoCredentials {
        reference: String,
        registry: String,
        status: u16,
        searched: String,
    },
    #[error("{reference}: the credentials for {registry} in {file} are kept by the credential helper \"{helper}\", which nanoimg does not run (it never executes anything); store them in a file with `skopeo login --authfile FILE {registry}` and set REGISTRY_AUTH_FILE=FILE")]
    HelperOnly {
        reference: String,
        registry: String,
        helper: String,
        file: PathBuf,
    },
    #[error("auth file {path}: {reason}")]
    AuthFile { path: PathBuf, reason: String },
    #[error("TLS certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error(
        "{reference}: not in the registry (HTTP 404 for {what}); check the repository and tag"
    )]
    NotFound { reference: String, what: String },
    #[error("{reference}: the registry answered HTTP {status} for {what}: {body}")]
    Status {
        reference: String,
        what: String,
        status: u16,
        body: String,
    },
    #[error("{reference}: blob {blob} has digest {actual}, expected {expected} (the registry sent other bytes than the manifest names; nothing was kept)")]
    Digest {
        reference: String,
        blob: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: blob {blob} is {actual} bytes, expected {expected} (the registry sent other bytes than the manifest names; nothing was kept)")]
    Size {
        reference: String,
        blob: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: {what} is larger than {limit} bytes; refused before reading it")]
    TooLarge {
        reference: String,
        what: String,
        limit: u64,
    },
    #[error("{reference}: {what} is not usable: {reason}")]
    Invalid {
        reference: String,
        what: String,
        reason: String,
    },
    #[error("{reference}: no image for {platform} in its index; it holds: {available} (pick one with --platform)")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("{reference}: {reason}")]
    Protocol { reference: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the registry client: {0}")]
    Client(String),
}
