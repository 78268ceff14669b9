use std::fs::File;
use std::io::{IsTerminal, Read, Seek, Write};
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::hash::hex;

/// How downloads behave.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Longest wait for a connection, for the response, and between two reads of the body.
    pub timeout: Duration,
    /// Attempts in all, for failures that may pass (timeouts, refused or broken connections,
    /// truncated bodies, 5xx answers).
    pub attempts: u32,
    /// Pause between attempts.
    pub retry_delay: Duration,
    /// Show a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(30),
            attempts: 3,
            retry_delay: Duration::from_secs(2),
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// A download that failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cannot download {url}: {reason} (after {attempts} attempts)")]
    Failed {
        url: String,
        reason: String,
        attempts: u32,
    },
    #[error("cannot download {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("cannot write the download of {url}: {source}")]
    Write { url: String, source: std::io::Error },
    #[error("{url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("cannot start an HTTP client: {0}")]
    Client(String),
}

/// What a completed download hashed to.
#[derive(Clone, Debug)]
pub(crate) struct Downloaded {
    pub sha256: String,
    pub md5: String,
}

/// A client for downloads from `url`. Loopback addresses never go through a proxy.
pub(crate) fn client(
    opts: &HttpOptions,
    url: &str,
) -> Result<reqwest::blocking::Client, DownloadError> {
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(""))
        .unwrap_or("");
    let mut builder = reqwest::blocking::Client::builder();
    if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        builder = builder.no_proxy();
    }
    builder
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        .user_agent(concat!("nanoimg/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DownloadError::Client(e.to_string()))
}

enum Attempt {
    Retry(String),
    Fatal(DownloadError),
}

/// Streams `url` into `out` (from its start), hashing SHA-256 and MD5 on the way, retrying
/// failures that may pass. At most `limit` bytes are accepted.
pub(crate) fn download(
    client: &reqwest::blocking::Client,
    url: &str,
    out: &mut File,
    limit: u64,
    opts: &HttpOptions,
) -> Result<Downloaded, DownloadError> {
    let mut last = String::new();
    for attempt in 1..=opts.attempts.max(1) {
        if attempt > 1 {
            std::thread::sleep(opts.retry_delay);
        }
        let write = |source| DownloadError::Write {
            url: url.to_string(),
            source,
        };
        out.set_len(0).map_err(write)?;
        out.rewind().map_err(write)?;
        match try_download(client, url, out, limit, opts) {
            Ok(d) => return Ok(d),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(reason)) => last = reason,
        }
    }
    Err(DownloadError::Failed {
        url: url.to_string(),
        reason: last,
        attempts: opts.attempts.max(1),
    })
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s = format!("{s}: {inner}");
            src = inner.source();
        }
        s
    }
}

/// One attempt at streaming `url` into `out`: at most `limit` bytes, refused from
/// `Content-Length` before reading and while reading.
fn try_download(
    client: &reqwest::blocking::Client,
    url: &str,
    out: &mut File,
    limit: u64,
    opts: &HttpOptions,
) -> Result<Downloaded, Attempt> {
    let resp = client
        .get(url)
        .send()
        .map_err(|e| Attempt::Retry(describe(&e)))?;
    let expected = check_response(&resp, url, limit)?;
    let bar = progress_bar(opts, expected, url);
    let (len, sha, md5) = stream_body(resp, url, out, limit, bar.as_ref())?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(n) = expected {
        if len != n {
            return Err(Attempt::Retry(format!("truncated: {len} of {n} bytes")));
        }
    }
    Ok(Downloaded {
        sha256: hex(&sha.finalize()),
        md5: hex(&md5.finalize()),
    })
}

/// The answer's `Content-Length`, once its status is a success (a 5xx may pass; any other
/// failure is fatal) and that length is within `limit`.
fn check_response(
    resp: &reqwest::blocking::Response,
    url: &str,
    limit: u64,
) -> Result<Option<u64>, Attempt> {
    let status = resp.status();
    if status.is_server_error() {
        return Err(Attempt::Retry(format!(
            "the server answered {}",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        return Err(Attempt::Fatal(DownloadError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        }));
    }
    let expected = resp.content_length();
    if expected.is_some_and(|n| n > limit) {
        return Err(Attempt::Fatal(DownloadError::TooLarge {
            url: url.to_string(),
            limit,
        }));
    }
    Ok(expected)
}

/// A progress bar named after the file of `url`, when asked for and the length is known.
fn progress_bar(
    opts: &HttpOptions,
    expected: Option<u64>,
    url: &str,
) -> Option<indicatif::ProgressBar> {
    (opts.progress && expected.is_some()).then(|| {
        let b = indicatif::ProgressBar::new(expected.unwrap_or(0));
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        b
    })
}

/// Copies the body into `out`, hashing it, until it ends: its length, SHA-256 and MD5.
/// More than `limit` bytes is fatal; a broken or timed-out read may pass.
fn stream_body(
    mut resp: reqwest::blocking::Response,
    url: &str,
    out: &mut File,
    limit: u64,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<(u64, Sha256, Md5), Attempt> {
    let (mut sha, mut md5) = (Sha256::new(), Md5::new());
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::TimedOut => "timed out while receiving".to_string(),
                    _ => format!("connection broken after {len} bytes: {e}"),
                };
                return Err(Attempt::Retry(reason));
            }
        };
        len += n as u64;
        if len > limit {
            return Err(Attempt::Fatal(DownloadError::TooLarge {
                url: url.to_string(),
                limit,
            }));
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|source| {
            Attempt::Fatal(DownloadError::Write {
                url: url.to_string(),
                source,
            })
        })?;
        if let Some(b) = bar {
            b.set_position(len);
        }
    }
    Ok((len, sha, md5))
}

/// A small text file (such as the `.md5` beside a tarball), at most 4 KiB.
pub(crate) fn fetch_text(
    client: &reqwest::blocking::Client,
    url: &str,
    opts: &HttpOptions,
) -> Result<String, DownloadError> {
    let mut tmp = tempfile::tempfile().map_err(|source| DownloadError::Write {
        url: url.to_string(),
        source,
    })?;
    let quiet = HttpOptions {
        progress: false,
        ..opts.clone()
    };
    download(client, url, &mut tmp, 4096, &quiet)?;
    let mut text = String::new();
    tmp.rewind()
        .and_then(|_| tmp.read_to_string(&mut text))
        .map_err(|source| DownloadError::Write {
            url: url.to_string(),
            source,
        })?;
    Ok(text)
}
