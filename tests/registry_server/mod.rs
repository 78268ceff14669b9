//! A real registry on loopback for the tests: Debian's `docker-registry` (the CNCF
//! distribution registry) serving on 127.0.0.1 with a free port, filesystem storage in a
//! temporary folder, htpasswd basic authentication and TLS from a CA and a server
//! certificate made in the test (`openssl`, `htpasswd`). Images are put there with
//! `skopeo copy`. A missing tool fails the test, naming the package.
//!
//! [`Stall`] is a TCP proxy in front of it that stops forwarding a connection after a
//! number of bytes from the registry, for interrupting a pull in the middle of a blob.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const USER: &str = "tester";
pub const PASSWORD: &str = "s3cret-pw";

/// Runs `cmd args` in `dir`; a missing command fails naming its Debian package.
pub fn tool(cmd: &str, args: &[&str], dir: &Path) -> std::process::Output {
    let package = match cmd {
        "docker-registry" => "docker-registry",
        "skopeo" => "skopeo",
        "htpasswd" => "apache2-utils",
        "openssl" => "openssl",
        _ => cmd,
    };
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("{cmd}: {e}: install the Debian package {package} (`cargo xtask test` does)")
        });
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running registry; stopped (killed) when dropped.
pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Everything of the registry's: config, certificates, storage.
    pub dir: PathBuf,
    /// The filesystem storage root.
    pub storage: PathBuf,
    /// A folder with `ca.crt`, for skopeo's `--dest-cert-dir`.
    pub cert_dir: PathBuf,
    /// A HOME whose `.config/containers/certs.d/HOST:PORT/ca.crt` trusts the registry.
    pub home: PathBuf,
    /// An auth file with the right credentials.
    pub auth_file: PathBuf,
    /// Serving TLS (else plain HTTP: [`Registry::start_plain`]).
    pub tls: bool,
}

impl Registry {
    /// Starts a registry with TLS and basic authentication under `dir`.
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, None, true)
    }

    /// Starts a registry speaking plain HTTP (basic authentication) under `dir`.
    pub fn start_plain(dir: &Path) -> Registry {
        Registry::start_with(dir, None, false)
    }

    /// Starts a registry with TLS whose authentication is bearer tokens from a token
    /// server on 127.0.0.1 ([`TokenServer`]), which checks [`USER`]:[`PASSWORD`] and hands
    /// out a token granting pull and push on `repositories`.
    pub fn start_token(dir: &Path, repositories: &[&str]) -> (Registry, TokenServer) {
        std::fs::create_dir_all(dir).unwrap();
        let server = TokenServer::start(dir, repositories);
        let r = Registry::start_with(dir, Some(&server), true);
        (r, server)
    }

    fn start_with(dir: &Path, token: Option<&TokenServer>, tls: bool) -> Registry {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let cert_dir = dir.join("certs");
        std::fs::create_dir_all(&cert_dir).unwrap();
        let c = |s: &str| cert_dir.join(s).to_str().unwrap().to_string();
        tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &c("ca.key"),
                "-out",
                &c("ca.crt"),
                "-days",
                "2",
                "-subj",
                "/CN=nanoimg test CA",
            ],
            &dir,
        );
        tool(
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &c("server.key"),
                "-out",
                &c("server.csr"),
                "-subj",
                "/CN=127.0.0.1",
            ],
            &dir,
        );
        std::fs::write(
            cert_dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        tool(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &c("server.csr"),
                "-CA",
                &c("ca.crt"),
                "-CAkey",
                &c("ca.key"),
                "-CAcreateserial",
                "-out",
                &c("server.crt"),
                "-days",
                "2",
                "-extfile",
                &c("ext.cnf"),
            ],
            &dir,
        );
        // skopeo reads every *.crt/.cert/.key of --dest-cert-dir: give it the CA alone.
        let skopeo_certs = dir.join("skopeo-certs");
        std::fs::create_dir_all(&skopeo_certs).unwrap();
        std::fs::copy(cert_dir.join("ca.crt"), skopeo_certs.join("ca.crt")).unwrap();
        let htpasswd = tool("htpasswd", &["-Bbn", USER, PASSWORD], &dir);
        std::fs::write(dir.join("htpasswd"), htpasswd.stdout).unwrap();
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  redirect:\n    disable: true\nhttp:\n  addr: {host}\n  secret: nanoimg-test\n{}{}",
            storage.display(),
            if tls {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    c("server.crt"),
                    c("server.key")
                )
            } else {
                String::new()
            },
            match token {
                None => format!(
                    "auth:\n  htpasswd:\n    realm: nanoimg-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                ),
                Some(t) => format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    t.port,
                    t.cert.display()
                ),
            }
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let home = dir.join("home");
        let mut r = Registry {
            child: None,
            port,
            host: host.clone(),
            dir: dir.clone(),
            storage,
            cert_dir: skopeo_certs,
            home,
            auth_file: dir.join("auth.json"),
            tls,
        };
        r.trust(&host);
        r.write_auth(&r.auth_file.clone(), &[&host], USER, PASSWORD);
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", self.dir.join("config.yml").to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("docker-registry: {e}: install the Debian package docker-registry (`cargo xtask test` does)")
            });
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry did not listen on {}: {}",
                self.host,
                std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes `host` (`127.0.0.1:PORT`, the registry's or a proxy's) trusted under
    /// [`Registry::home`]'s certs.d.
    pub fn trust(&self, host: &str) {
        let d = self.home.join(".config/containers/certs.d").join(host);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(self.cert_dir.join("ca.crt"), d.join("ca.crt")).unwrap();
    }

    /// Writes an auth file at `path` with `user:password` for each of `hosts`.
    pub fn write_auth(&self, path: &Path, hosts: &[&str], user: &str, password: &str) {
        let b64 = base64(format!("{user}:{password}").as_bytes());
        let auths: Vec<String> = hosts
            .iter()
            .map(|h| format!("\"{h}\": {{\"auth\": \"{b64}\"}}"))
            .collect();
        std::fs::write(path, format!("{{\"auths\": {{{}}}}}", auths.join(", "))).unwrap();
    }

    /// Stops the registry (it can be started again with [`Registry::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Copies `oci:LAYOUT:TAG` to `docker://HOST/REPO:DEST_TAG` with skopeo; gives the
    /// pushed manifest's digest.
    pub fn put(&self, layout: &Path, tag: &str, repo_tag: &str) -> String {
        let digest_file = self.dir.join("digest");
        let creds = format!("{USER}:{PASSWORD}");
        let verify = format!("--dest-tls-verify={}", self.tls);
        tool(
            "skopeo",
            &[
                "copy",
                "--quiet",
                &verify,
                "--dest-creds",
                &creds,
                "--dest-cert-dir",
                self.cert_dir.to_str().unwrap(),
                "--digestfile",
                digest_file.to_str().unwrap(),
                &format!("oci:{}:{tag}", layout.display()),
                &format!("docker://{}/{repo_tag}", self.host),
            ],
            &self.dir,
        );
        std::fs::read_to_string(digest_file)
            .unwrap()
            .trim()
            .to_string()
    }

    /// The `data` file of blob `digest` in the registry's storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The environment a nanoimg command needs to reach it: HOME (certs.d) and the auth
    /// file.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), self.home.display().to_string()),
            (
                "REGISTRY_AUTH_FILE".into(),
                self.auth_file.display().to_string(),
            ),
        ]
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn base64(bytes: &[u8]) -> String {
    encode(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

/// base64url without padding, as JWTs have it.
fn base64url(bytes: &[u8]) -> String {
    encode(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        false,
    )
}

fn encode(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let t = alphabet;
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(t[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// A TCP proxy on 127.0.0.1 in front of `target` that forwards each connection until
/// `after` bytes came from the target on it, then forwards nothing more (the connection
/// stays open): a pull through it stalls in the middle of its first big blob.
pub struct Stall {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Stall {
    pub fn start(target: u16, after: u64) -> Stall {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let stop3 = stop2.clone();
                        std::thread::spawn(move || pipe(c2, s2, u64::MAX, stop3));
                        let stop4 = stop2.clone();
                        std::thread::spawn(move || pipe(server, client, after, stop4));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Stall { port, stop }
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, limit: u64, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 16384];
    let mut sent = 0u64;
    from.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if sent >= limit {
            // Stalled: hold the connection open, forward nothing.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let n = n.min((limit - sent) as usize);
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
                sent += n as u64;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// The token service the token registry names.
pub const SERVICE: &str = "nanoimg-test";
/// The issuer its tokens name.
pub const ISSUER: &str = "nanoimg-test-issuer";

/// A token server (plain HTTP on 127.0.0.1) for the registry's `auth: token`: a request
/// with [`USER`]:[`PASSWORD`] gets one JWT (ES256, signed with openssl in the test, its
/// certificate in the `x5c` header and in the registry's `rootcertbundle`) granting pull
/// and push on the repositories given; any other request gets 401.
pub struct TokenServer {
    pub port: u16,
    /// The signing certificate (the registry's `rootcertbundle`).
    pub cert: PathBuf,
    /// Requests answered with a token.
    pub granted: Arc<std::sync::atomic::AtomicUsize>,
    /// Requests refused.
    pub refused: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// An ECDSA signature as DER (`SEQUENCE { INTEGER r, INTEGER s }`) made JWS's `r || s`.
fn der_to_jws(der: &[u8]) -> Vec<u8> {
    let mut at = 2; // SEQUENCE, length (short form: 70-72 bytes)
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[at], 0x02, "INTEGER");
        let len = der[at + 1] as usize;
        let mut n = &der[at + 2..at + 2 + len];
        while n.len() > 32 && n[0] == 0 {
            n = &n[1..];
        }
        out.resize(out.len() + 32 - n.len(), 0);
        out.extend_from_slice(n);
        at += 2 + len;
    }
    out
}

impl TokenServer {
    fn start(dir: &Path, repositories: &[&str]) -> TokenServer {
        let d = dir.join("token");
        std::fs::create_dir_all(&d).unwrap();
        let p = |s: &str| d.join(s).to_str().unwrap().to_string();
        tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &p("token.key"),
                "-out",
                &p("token.crt"),
                "-days",
                "2",
                "-subj",
                "/CN=nanoimg test token signer",
            ],
            &d,
        );
        tool(
            "openssl",
            &[
                "x509",
                "-in",
                &p("token.crt"),
                "-outform",
                "DER",
                "-out",
                &p("token.der"),
            ],
            &d,
        );
        let der = std::fs::read(d.join("token.der")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = format!(
            r#"{{"typ":"JWT","alg":"ES256","x5c":["{}"]}}"#,
            base64(&der)
        );
        let access: Vec<String> = repositories
            .iter()
            .map(|r| format!(r#"{{"type":"repository","name":"{r}","actions":["pull","push"]}}"#))
            .collect();
        let claims = format!(
            r#"{{"iss":"{ISSUER}","sub":"{USER}","aud":"{SERVICE}","exp":{},"nbf":{},"iat":{},"jti":"nanoimg-test","access":[{}]}}"#,
            now + 3600,
            now - 60,
            now - 60,
            access.join(",")
        );
        let input = format!(
            "{}.{}",
            base64url(header.as_bytes()),
            base64url(claims.as_bytes())
        );
        std::fs::write(d.join("input"), &input).unwrap();
        tool(
            "openssl",
            &[
                "dgst",
                "-sha256",
                "-sign",
                &p("token.key"),
                "-out",
                &p("sig.der"),
                &p("input"),
            ],
            &d,
        );
        let sig = der_to_jws(&std::fs::read(d.join("sig.der")).unwrap());
        let token = format!("{input}.{}", base64url(&sig));
        let body = format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":3600}}"#);
        let expected = base64(format!("{USER}:{PASSWORD}").as_bytes());

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let granted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop2, granted2, refused2) = (stop.clone(), granted.clone(), refused.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut c, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                    if req.len() > 65536 {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                let authorized = text.lines().any(|l| {
                    let Some((name, value)) = l.split_once(':') else {
                        return false;
                    };
                    let mut v = value.split_whitespace();
                    name.eq_ignore_ascii_case("authorization")
                        && v.next().is_some_and(|s| s.eq_ignore_ascii_case("basic"))
                        && v.next() == Some(expected.as_str())
                });
                let answer = if authorized {
                    granted2.fetch_add(1, Ordering::SeqCst);
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    refused2.fetch_add(1, Ordering::SeqCst);
                    let b = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    )
                };
                let _ = c.write_all(answer.as_bytes());
            }
        });
        TokenServer {
            port,
            cert: d.join("token.crt"),
            granted,
            refused,
            stop,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
