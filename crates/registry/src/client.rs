//! One conversation with one registry: oci-client (authentication and token exchange,
//! blob streams, uploads) on a current-thread tokio runtime, so callers stay blocking; and
//! a reqwest client with the same TLS setup for the manifest GETs, which must be bounded
//! before they are read (oci-client reads a manifest body whole, whatever its size).

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use nanoimg_oci::escape;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use sha2::{Digest, Sha256};

use crate::auth::{AuthFiles, Lookup};
use crate::{media, Reference, RegistryError};

/// Largest manifest or index accepted, as `nanoimg-oci` bounds its JSON blobs.
pub const MAX_MANIFEST: u64 = 8 << 20;

/// Blobs at least this big get a progress bar (when stderr is a terminal).
const PROGRESS_FROM: u64 = 1 << 20;

/// How registries are reached.
#[derive(Clone, Debug)]
pub struct Options {
    /// `HOST:PORT` of registries spoken to over plain HTTP (`--insecure-registry`); every
    /// other registry is reached over TLS.
    pub insecure: Vec<String>,
    /// Where credentials are read from.
    pub auth_files: AuthFiles,
    /// The `certs.d` folders searched for `HOST:PORT/*.crt` CA certificates, in order.
    pub cert_dirs: Vec<PathBuf>,
    /// Longest wait for a connection, and between two reads.
    pub timeout: Duration,
    /// A progress bar on stderr for big blobs.
    pub progress: bool,
}

impl Options {
    /// The options the environment gives: auth files as [`AuthFiles::from_env`],
    /// `$HOME/.config/containers/certs.d`, `/etc/containers/certs.d`,
    /// `/etc/docker/certs.d`; a progress bar when stderr is a terminal.
    pub fn from_env(insecure: Vec<String>) -> Options {
        let mut cert_dirs = Vec::new();
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            cert_dirs.push(PathBuf::from(h).join(".config/containers/certs.d"));
        }
        cert_dirs.push("/etc/containers/certs.d".into());
        cert_dirs.push("/etc/docker/certs.d".into());
        let timeout = std::env::var("NANOIMG_HTTP_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .map_or(Duration::from_secs(30), Duration::from_secs_f64);
        Options {
            insecure,
            auth_files: AuthFiles::from_env(),
            cert_dirs,
            timeout,
            progress: std::io::stderr().is_terminal(),
        }
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|i| i == registry)
    }
}

/// The CA certificates (PEM blocks) of `HOST:PORT/*.crt` in the `certs.d` folders, with
/// the file each came from. `client.cert`/`client.key` (client certificates) are not used.
pub fn registry_certs(
    dirs: &[PathBuf],
    registry: &str,
) -> Result<Vec<(PathBuf, Vec<u8>)>, RegistryError> {
    let mut out = Vec::new();
    for dir in dirs {
        let d = dir.join(registry);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        for f in files {
            let bad = |reason: String| RegistryError::Certificate {
                path: f.clone(),
                reason,
            };
            let meta = std::fs::metadata(&f).map_err(|e| bad(e.to_string()))?;
            if !meta.is_file() || meta.len() > 1 << 20 {
                return Err(bad("not a regular file of at most 1 MiB".into()));
            }
            let text = std::fs::read(&f).map_err(|e| bad(e.to_string()))?;
            let blocks = pem_blocks(&text);
            if blocks.is_empty() {
                return Err(bad(
                    "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
                ));
            }
            for b in blocks {
                reqwest::Certificate::from_pem(&b).map_err(|e| bad(e.to_string()))?;
                out.push((f.clone(), b));
            }
        }
    }
    Ok(out)
}

fn pem_blocks(text: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(b) = find(text, BEGIN, at) {
        let Some(e) = find(text, END, b) else { break };
        let mut block = text[b..e + END.len()].to_vec();
        block.push(b'\n');
        out.push(block);
        at = e + END.len();
    }
    out
}

/// rustls with ring as the process's crypto provider (once; another already installed is
/// kept).
fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The text of an error and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        src = inner.source();
    }
    escape(&s).to_string()
}

/// oci-client's setup: HTTP or HTTPS, the `certs.d` CA certificates, monolithic pushes,
/// the timeouts and nanoimg's user agent.
fn client_config(opts: &Options, certs: &[(PathBuf, Vec<u8>)], insecure: bool) -> ClientConfig {
    ClientConfig {
        protocol: if insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        extra_root_certificates: certs
            .iter()
            .map(|(_, pem)| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect(),
        platform_resolver: None,
        use_monolithic_push: true,
        read_timeout: Some(opts.timeout),
        connect_timeout: Some(opts.timeout),
        user_agent: concat!("nanoimg/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    }
}

/// The reqwest client for manifest GETs: the same timeouts, user agent and CA
/// certificates, at most 5 redirects, and no proxy for a registry on this machine.
fn http_client(
    reference: &Reference,
    opts: &Options,
    certs: &[(PathBuf, Vec<u8>)],
) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .read_timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        .user_agent(concat!("nanoimg/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5));
    let host = reference.api_host();
    if host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]") {
        builder = builder.no_proxy();
    }
    let mut extra = Vec::new();
    for (path, pem) in certs {
        extra.push(reqwest::Certificate::from_pem(pem).map_err(|e| {
            RegistryError::Certificate {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?);
    }
    builder
        .tls_certs_merge(extra)
        .build()
        .map_err(|e| RegistryError::Client(chain(&e)))
}

pub(crate) struct Session {
    rt: tokio::runtime::Runtime,
    oci: oci_client::Client,
    http: reqwest::Client,
    pub(crate) reference: Reference,
    oci_ref: oci_client::Reference,
    auth: RegistryAuth,
    login: Lookup,
    searched: String,
    token: Option<String>,
    scheme: &'static str,
    progress: bool,
}

impl Session {
    /// Connects to `reference`'s registry and authenticates for `op` (bearer token
    /// exchange by oci-client when the registry asks for one; basic otherwise).
    pub(crate) fn open(
        reference: &Reference,
        opts: &Options,
        op: RegistryOperation,
    ) -> Result<Session, RegistryError> {
        crypto();
        let registry = reference.registry.clone();
        let login = opts.auth_files.lookup(&registry, &reference.repository)?;
        let auth = match &login {
            Lookup::Basic { user, password, .. } => {
                RegistryAuth::Basic(user.clone(), password.clone())
            }
            _ => RegistryAuth::Anonymous,
        };
        let certs = registry_certs(&opts.cert_dirs, &registry)?;
        let insecure = opts.is_insecure(&registry);
        let config = client_config(opts, &certs, insecure);
        let oci =
            oci_client::Client::try_from(config).map_err(|e| RegistryError::Client(chain(&e)))?;
        let http = http_client(reference, opts, &certs)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        let mut session = Session {
            rt,
            oci,
            http,
            reference: reference.clone(),
            oci_ref: reference.to_oci(),
            auth,
            login,
            searched: opts.auth_files.describe(),
            token: None,
            scheme: if insecure { "http" } else { "https" },
            progress: opts.progress,
        };
        session.authenticate(op)?;
        Ok(session)
    }

    /// Asks the registry's `/v2/` endpoint for access for `op`, keeping the bearer token
    /// it gives, if any.
    fn authenticate(&mut self, op: RegistryOperation) -> Result<(), RegistryError> {
        let result = self
            .rt
            .block_on(self.oci.auth(&self.oci_ref, &self.auth, op));
        match result {
            Ok(token) => self.token = token,
            Err(OciDistributionError::AuthenticationFailure(_)) => {
                return Err(self.unauthorized(401))
            }
            Err(e) => return Err(self.oci_error(e, "the registry's /v2/ endpoint")),
        }
        Ok(())
    }

    fn name(&self) -> String {
        self.reference.to_string()
    }

    /// The error for a 401/403 answer: credentials refused, missing, or only in a helper.
    fn unauthorized(&self, status: u16) -> RegistryError {
        let registry = self.reference.registry.clone();
        match &self.login {
            Lookup::Basic { user, file, .. } => RegistryError::BadCredentials {
                reference: self.name(),
                registry,
                user: escape(user).to_string(),
                file: file.clone(),
                status,
            },
            Lookup::HelperOnly { helper, file } => RegistryError::HelperOnly {
                reference: self.name(),
                registry,
                helper: escape(helper).to_string(),
                file: file.clone(),
            },
            Lookup::None => RegistryError::NoCredentials {
                reference: self.name(),
                registry,
                status,
                searched: self.searched.clone(),
            },
        }
    }

    /// A reqwest error as one line, with the remedy for TLS and connection failures.
    fn transport(&self, e: &dyn std::error::Error) -> RegistryError {
        let reason = chain(e);
        let registry = self.reference.registry.clone();
        let hint = if reason.contains("certificate") || reason.contains("UnknownIssuer") {
            format!("; if the registry's certificate is signed by your own CA, put the CA's certificate in ~/.config/containers/certs.d/{registry}/ca.crt (or /etc/containers/certs.d/{registry}/)")
        } else if reason.contains("InvalidContentType") || reason.contains("corrupt message") {
            format!("; the registry may speak plain HTTP: then give --insecure-registry {registry}")
        } else {
            String::new()
        };
        RegistryError::Connect {
            reference: self.name(),
            registry,
            reason: format!("{reason}{hint}"),
        }
    }

    fn oci_error(&self, e: OciDistributionError, what: &str) -> RegistryError {
        match e {
            OciDistributionError::RequestError(r) => {
                if let Some(s) = r.status() {
                    if matches!(s.as_u16(), 401 | 403) {
                        return self.unauthorized(s.as_u16());
                    }
                }
                self.transport(&r)
            }
            OciDistributionError::UnauthorizedError { .. } => self.unauthorized(401),
            OciDistributionError::AuthenticationFailure(_) => self.unauthorized(401),
            OciDistributionError::ServerError { code, message, .. } => match code {
                401 | 403 => self.unauthorized(code),
                404 => RegistryError::NotFound {
                    reference: self.name(),
                    what: what.to_string(),
                },
                _ => RegistryError::Status {
                    reference: self.name(),
                    what: what.to_string(),
                    status: code,
                    body: escape(&message).to_string(),
                },
            },
            other => {
                let text = chain(&other);
                if text.contains("UNAUTHORIZED") || text.contains("DENIED") {
                    return self.unauthorized(401);
                }
                if text.contains("BLOB_UNKNOWN") || text.contains("MANIFEST_UNKNOWN") {
                    return RegistryError::NotFound {
                        reference: self.name(),
                        what: what.to_string(),
                    };
                }
                RegistryError::Protocol {
                    reference: self.name(),
                    reason: format!("{what}: {text}"),
                }
            }
        }
    }

    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.token, &self.auth) {
            (Some(t), _) => req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            _ => req,
        }
    }

    /// The manifest or index `selector` (a tag or digest) names: its bytes (at most
    /// [`MAX_MANIFEST`], refused from `Content-Length` before reading, and while reading),
    /// its SHA-256 digest, checked against `selector` when it is a digest, and its media
    /// type.
    pub(crate) fn manifest(
        &self,
        selector: &str,
    ) -> Result<(Vec<u8>, String, Option<String>), RegistryError> {
        let req = self.manifest_request(selector);
        let what = format!("manifest {}", escape(selector));
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| self.transport(&e))?;
            let resp = self.check_status(resp, &what).await?;
            let (body, media_type) = self.read_manifest(resp, &what).await?;
            let digest = format!("sha256:{}", hex(&Sha256::digest(&body)));
            if selector.starts_with("sha256:") && digest != selector {
                return Err(RegistryError::Digest {
                    reference: self.name(),
                    blob: format!("manifest {selector}"),
                    expected: selector.to_string(),
                    actual: digest,
                });
            }
            Ok((body, digest, media_type))
        })
    }

    /// The GET of the manifest `selector`, accepting OCI and Docker manifests and indexes.
    fn manifest_request(&self, selector: &str) -> reqwest::RequestBuilder {
        let url = format!(
            "{}://{}/v2/{}/manifests/{}",
            self.scheme,
            self.reference.api_host(),
            self.reference.repository,
            selector
        );
        self.with_auth(self.http.get(&url)).header(
            reqwest::header::ACCEPT,
            [
                media::OCI_MANIFEST,
                media::OCI_INDEX,
                media::DOCKER_MANIFEST,
                media::DOCKER_LIST,
            ]
            .join(", "),
        )
    }

    /// `resp` if its status is a success; else the error for `what`: refused, not found,
    /// or the status with (escaped) the start of the body.
    async fn check_status(
        &self,
        mut resp: reqwest::Response,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let status = resp.status().as_u16();
        if matches!(status, 401 | 403) {
            return Err(self.unauthorized(status));
        }
        if status == 404 {
            return Err(RegistryError::NotFound {
                reference: self.name(),
                what: what.to_string(),
            });
        }
        if !resp.status().is_success() {
            let mut body = Vec::new();
            while let Ok(Some(c)) = resp.chunk().await {
                body.extend_from_slice(&c);
                if body.len() > 2000 {
                    break;
                }
            }
            let mut body = escape(String::from_utf8_lossy(&body).trim()).to_string();
            if body.contains("HTTPS server") {
                body.push_str(&format!(
                    " (the registry speaks TLS: leave out --insecure-registry {})",
                    self.reference.registry
                ));
            }
            return Err(RegistryError::Status {
                reference: self.name(),
                what: what.to_string(),
                status,
                body,
            });
        }
        Ok(resp)
    }

    /// The body of a manifest answer (at most [`MAX_MANIFEST`], refused from
    /// `Content-Length` before reading, and while reading) and its `Content-Type`.
    async fn read_manifest(
        &self,
        mut resp: reqwest::Response,
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let too_large = || RegistryError::TooLarge {
            reference: self.name(),
            what: what.to_string(),
            limit: MAX_MANIFEST,
        };
        if resp.content_length().is_some_and(|n| n > MAX_MANIFEST) {
            return Err(too_large());
        }
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let mut body = Vec::new();
        while let Some(c) = resp.chunk().await.map_err(|e| self.transport(&e))? {
            if body.len() as u64 + c.len() as u64 > MAX_MANIFEST {
                return Err(too_large());
            }
            body.extend_from_slice(&c);
        }
        Ok((body, media_type))
    }

    /// Streams the blob `digest` of `size` bytes into `out`, verifying its size and
    /// SHA-256 as it arrives (more bytes than `size` are refused at once). `label` names
    /// it on a progress bar.
    pub(crate) fn blob_to(
        &self,
        digest: &str,
        size: u64,
        out: &mut File,
        out_path: &Path,
        label: &str,
    ) -> Result<(), RegistryError> {
        let blob = digest.to_string();
        let size_err = |actual: String| RegistryError::Size {
            reference: self.name(),
            blob: blob.clone(),
            expected: size.to_string(),
            actual,
        };
        self.rt.block_on(async {
            let mut stream = self
                .oci
                .pull_blob_stream(&self.oci_ref, digest)
                .await
                .map_err(|e| self.oci_error(e, &format!("blob {digest}")))?;
            if let Some(n) = stream.content_length {
                if n != size {
                    return Err(size_err(n.to_string()));
                }
            }
            let bar = self.bar(size, label);
            let mut hasher = Sha256::new();
            let mut count = 0u64;
            let mut broken = None;
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        broken = Some(chain(&e));
                        break;
                    }
                };
                count += chunk.len() as u64;
                if count > size {
                    return Err(size_err(format!("more than {size}")));
                }
                hasher.update(&chunk);
                out.write_all(&chunk)
                    .map_err(|source| RegistryError::Write {
                        path: out_path.to_path_buf(),
                        source,
                    })?;
                if let Some(b) = &bar {
                    b.set_position(count);
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            self.check_received(digest, size, count, hasher, broken)
        })
    }

    /// The end of a blob stream of `count` bytes hashed by `hasher` (`broken` says why it
    /// stopped early, if it did): a complete blob must have the digest; then a broken
    /// connection, or a count other than `size`, is refused.
    fn check_received(
        &self,
        digest: &str,
        size: u64,
        count: u64,
        hasher: Sha256,
        broken: Option<String>,
    ) -> Result<(), RegistryError> {
        if count == size {
            let actual = format!("sha256:{}", hex(&hasher.finalize()));
            if actual != digest {
                return Err(RegistryError::Digest {
                    reference: self.name(),
                    blob: digest.to_string(),
                    expected: digest.to_string(),
                    actual,
                });
            }
        }
        if let Some(reason) = broken {
            return Err(RegistryError::Protocol {
                reference: self.name(),
                reason: format!(
                    "blob {digest}: the connection broke after {count} of {size} bytes: {reason}"
                ),
            });
        }
        if count != size {
            return Err(RegistryError::Size {
                reference: self.name(),
                blob: digest.to_string(),
                expected: size.to_string(),
                actual: count.to_string(),
            });
        }
        Ok(())
    }

    fn bar(&self, size: u64, label: &str) -> Option<indicatif::ProgressBar> {
        (self.progress && size >= PROGRESS_FROM).then(|| {
            let b = indicatif::ProgressBar::new(size);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(label.to_string());
            b
        })
    }

    /// Uploads `bytes` as the blob `digest`, unless the registry has it.
    pub(crate) fn push_bytes(&self, bytes: Vec<u8>, digest: &str) -> Result<(), RegistryError> {
        self.rt.block_on(async {
            let what = format!("blob {digest}");
            let exists = self
                .oci
                .blob_exists(&self.oci_ref, digest)
                .await
                .map_err(|e| self.oci_error(e, &what))?;
            if !exists {
                self.oci
                    .push_blob(&self.oci_ref, bytes, digest)
                    .await
                    .map_err(|e| self.oci_error(e, &what))?;
            }
            Ok(())
        })
    }

    /// Uploads the file `path` (`size` bytes, SHA-256 `digest`) as a blob, streaming it in
    /// 1 MiB pieces (never held in memory), unless the registry has it.
    pub(crate) fn push_file(
        &self,
        path: &Path,
        size: u64,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let file = File::open(path).map_err(|source| RegistryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bar = self.bar(size, &label);
        let bar2 = bar.clone();
        let stream = futures_util::stream::unfold((file, bar2), |(mut file, bar)| async move {
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    if let Some(b) = &bar {
                        b.inc(n as u64);
                    }
                    Some((Ok(bytes::Bytes::from(buf)), (file, bar)))
                }
                Err(e) => Some((Err(OciDistributionError::IoError(e)), (file, bar))),
            }
        });
        let result = self.rt.block_on(async {
            let what = format!("blob {digest}");
            let exists = self
                .oci
                .blob_exists(&self.oci_ref, digest)
                .await
                .map_err(|e| self.oci_error(e, &what))?;
            if !exists {
                self.oci
                    .push_blob_stream(&self.oci_ref, stream, digest, Some(size))
                    .await
                    .map_err(|e| self.oci_error(e, &what))?;
            }
            Ok(())
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        result
    }

    /// Uploads a manifest under the reference's tag.
    pub(crate) fn push_manifest(
        &self,
        body: Vec<u8>,
        media_type: &'static str,
    ) -> Result<(), RegistryError> {
        self.rt.block_on(async {
            self.oci
                .push_manifest_raw(
                    &self.oci_ref,
                    body,
                    reqwest::header::HeaderValue::from_static(media_type),
                )
                .await
                .map_err(|e| self.oci_error(e, "the manifest upload"))?;
            Ok(())
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_is_read_per_host() {
        let d = tempfile::tempdir().unwrap();
        let host = d.path().join("certs.d/r.io:5000");
        std::fs::create_dir_all(&host).unwrap();
        // Not a real certificate: the PEM framing is checked first.
        std::fs::write(host.join("ca.crt"), "junk").unwrap();
        let e = registry_certs(&[d.path().join("certs.d")], "r.io:5000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ca.crt") && e.contains("no PEM certificate"),
            "{e}"
        );
        assert!(registry_certs(&[d.path().join("certs.d")], "other:1")
            .unwrap()
            .is_empty());
        let two = b"x\n-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBB\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_blocks(two).len(), 2);
    }

    #[test]
    fn insecure_is_per_host_and_port() {
        let o = Options {
            insecure: vec!["127.0.0.1:5000".into()],
            ..Options::from_env(vec![])
        };
        assert!(o.is_insecure("127.0.0.1:5000"));
        assert!(!o.is_insecure("127.0.0.1:5001"));
    }
}
