//! A tiny HTTP/1.1 server on loopback for integration tests, built on std only.
//!
//! Each test starts its own [`TestServer`] on `127.0.0.1:0` and declares, path by
//! path, how the server behaves: serve a body, send a truncated body, hang
//! forever, answer an error status, or answer slowly. Every connection carries a
//! single request, is answered with `Connection: close` and is then closed.
//! Only `GET` and `HEAD` are supported; the query string of the request target
//! is ignored when looking up a path.
//!
//! Include it from a test crate with `mod http;` (or
//! `#[path = "http/mod.rs"] mod http;`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest request head (request line and headers) the server reads.
const MAX_HEAD: usize = 64 * 1024;
/// How long the server waits for a client to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for a client to close after the response was sent.
const LINGER: Duration = Duration::from_millis(500);

/// What the server does when a path is requested.
#[derive(Clone)]
enum Route {
    /// 200 with the whole body.
    Body(Arc<Vec<u8>>),
    /// 200 announcing the whole body but sending only `sent` bytes of it.
    Truncated { body: Arc<Vec<u8>>, sent: usize },
    /// Read the request, never answer.
    Hang,
    /// An error (or any) status with a short text body.
    Status(u16),
    /// 200 with the whole body after sleeping `delay`.
    Slow { body: Arc<Vec<u8>>, delay: Duration },
    /// 200 with the body sent `chunk` bytes at a time, sleeping `delay` before each.
    Trickle {
        body: Arc<Vec<u8>>,
        chunk: usize,
        delay: Duration,
    },
}

/// State shared between the [`TestServer`] handle, its accept thread and its
/// connection threads.
struct Shared {
    routes: Mutex<HashMap<String, Route>>,
    counts: Mutex<HashMap<String, usize>>,
    /// Clones of every open connection, so that `stop` can shut them down.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    stopped: AtomicBool,
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not make the
/// server unusable for the rest of the test).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An HTTP/1.1 server on `127.0.0.1` whose answers each test controls.
///
/// Dropping it stops it (see [`TestServer::stop`]).
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Mutex<Option<JoinHandle<()>>>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and serves in a background thread.
    pub fn start() -> TestServer {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).expect("test HTTP server: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("test HTTP server: local address");
        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name(format!("test-http-accept-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("test HTTP server: spawn accept thread");
        TestServer {
            addr,
            shared,
            accept_thread: Mutex::new(Some(handle)),
        }
    }

    /// "http://127.0.0.1:PORT" (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve `body` at `path` (e.g. "/0.1.55/nanos-release-linux-0.1.55.tar.gz") with 200 and a correct Content-Length.
    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.route(path, Route::Body(Arc::new(body)));
    }

    /// Declare Content-Length = body.len() but send only the first `sent` bytes, then close the connection.
    ///
    /// `sent` larger than `body.len()` is clamped (the whole body is sent).
    pub fn put_truncated(&self, path: &str, body: Vec<u8>, sent: usize) {
        let sent = sent.min(body.len());
        self.route(
            path,
            Route::Truncated {
                body: Arc::new(body),
                sent,
            },
        );
    }

    /// Accept the connection and read the request, then never answer (hold the socket open) until the server is stopped or dropped.
    ///
    /// The connection is also released if the client closes it first.
    pub fn put_hang(&self, path: &str) {
        self.route(path, Route::Hang);
    }

    /// Answer `status` (e.g. 404, 500) with a short text body.
    pub fn put_status(&self, path: &str, status: u16) {
        self.route(path, Route::Status(status));
    }

    /// Serve `body` with 200, but only after sleeping `delay` (lets tests overlap two concurrent downloads).
    ///
    /// The delay starts once the request has been read; the response head and
    /// body are both sent after it.
    pub fn put_slow(&self, path: &str, body: Vec<u8>, delay: Duration) {
        self.route(
            path,
            Route::Slow {
                body: Arc::new(body),
                delay,
            },
        );
    }

    /// Serves `body` at `path` as a slow download: the headers at once, then `chunk` bytes
    /// every `delay`.
    pub fn put_trickle(&self, path: &str, body: Vec<u8>, chunk: usize, delay: Duration) {
        self.route(
            path,
            Route::Trickle {
                body: Arc::new(body),
                chunk: chunk.max(1),
                delay,
            },
        );
    }

    /// Number of requests received for `path` so far (any method).
    ///
    /// A request is counted once its head has been read, before it is answered.
    /// `path` is compared without query string.
    pub fn requests(&self, path: &str) -> usize {
        lock(&self.shared.counts)
            .get(strip_query(path))
            .copied()
            .unwrap_or(0)
    }

    /// Stop listening and close every open connection (hanging ones included); afterwards connecting to base_url is refused. Must return promptly.
    ///
    /// Idempotent. Responses being written are cut short; a `put_slow` handler
    /// still asleep finds its connection closed when it wakes up.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept thread (blocked in `accept`) by connecting to it until
        // it notices the flag and exits, dropping the listener; joining it means
        // the port is closed when `stop` returns.
        let handle = lock(&self.accept_thread).take();
        if let Some(handle) = handle {
            while !handle.is_finished() {
                if let Ok(wake) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100))
                {
                    drop(wake);
                }
                thread::sleep(Duration::from_millis(1));
            }
            let _ = handle.join();
        }
        // The accept thread registers every connection before handing it to a
        // connection thread, and it has exited: this sees all of them.
        for (_, conn) in lock(&self.shared.conns).drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    fn route(&self, path: &str, route: Route) {
        lock(&self.shared.routes).insert(strip_query(path).to_string(), route);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopped.load(Ordering::SeqCst) {
            break;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // E.g. out of file descriptors: do not spin.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        match stream.try_clone() {
            Ok(clone) => {
                lock(&shared.conns).insert(id, clone);
            }
            Err(_) => continue,
        }
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("test-http-conn-{id}"))
            .spawn(move || {
                let _ = handle_connection(stream, &conn_shared);
                if let Some(conn) = lock(&conn_shared.conns).remove(&id) {
                    let _ = conn.shutdown(Shutdown::Both);
                }
            });
        if spawned.is_err() {
            if let Some(conn) = lock(&shared.conns).remove(&id) {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }
    // `listener` is dropped here: the port now refuses connections.
}

/// The parts of a request the server looks at.
struct Request {
    method: String,
    path: String,
}

fn handle_connection(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(HEAD_TIMEOUT))?;
    let head = match read_head(&mut stream)? {
        Some(head) => head,
        // The client closed without sending a full request head (or sent too
        // much): nothing to answer.
        None => return Ok(()),
    };
    let request = match parse_request(&head) {
        Some(request) => request,
        None => {
            write_simple(&mut stream, 400, false)?;
            return finish(stream);
        }
    };
    *lock(&shared.counts)
        .entry(request.path.clone())
        .or_insert(0) += 1;

    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let body = b"405 Method Not Allowed\n";
            let header = format!(
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(header.as_bytes())?;
            stream.write_all(body)?;
            stream.flush()?;
            return finish(stream);
        }
    };

    let route = lock(&shared.routes).get(&request.path).cloned();
    match route {
        None => write_simple(&mut stream, 404, head_only)?,
        Some(Route::Status(status)) => write_simple(&mut stream, status, head_only)?,
        Some(Route::Body(body)) => write_ok(&mut stream, &body, body.len(), head_only)?,
        Some(Route::Slow { body, delay }) => {
            thread::sleep(delay);
            write_ok(&mut stream, &body, body.len(), head_only)?;
        }
        Some(Route::Trickle { body, chunk, delay }) => {
            write_ok(&mut stream, &body, 0, head_only)?;
            if !head_only {
                for part in body.chunks(chunk) {
                    thread::sleep(delay);
                    stream.write_all(part)?;
                    stream.flush()?;
                }
            }
        }
        Some(Route::Truncated { body, sent }) => {
            write_ok(&mut stream, &body, sent, head_only)?;
            // Close at once: the client must see the connection end short of
            // the announced Content-Length.
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        Some(Route::Hang) => {
            // Hold the socket open until `stop` shuts it down (the read then
            // returns 0 or fails) or the client goes away.
            stream.set_read_timeout(None)?;
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return Ok(()),
                    Ok(_) => {}
                }
            }
        }
    }
    finish(stream)
}

/// Reads up to and including the blank line ending the request head.
/// `Ok(None)` if the connection ends first or the head is too long.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&head[searched_from..], b"\r\n\r\n") {
            head.truncate(searched_from + end + 4);
            return Ok(Some(head));
        }
        // Tolerate bare LF line endings too.
        if let Some(end) = find(&head[searched_from..], b"\n\n") {
            head.truncate(searched_from + end + 2);
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses the request line; headers are read but ignored.
fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some() || !version.starts_with("HTTP/") {
        return None;
    }
    // Absolute form ("http://host:port/path"), as sent to proxies.
    let target = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            match rest.find('/') {
                Some(j) => &rest[j..],
                None => "/",
            }
        }
        None => target,
    };
    let path = strip_query(target);
    if !path.starts_with('/') {
        return None;
    }
    Some(Request {
        method,
        path: path.to_string(),
    })
}

fn strip_query(target: &str) -> &str {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    &target[..end]
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// 200 announcing `body.len()` bytes and sending the first `sent` of them
/// (none for HEAD).
fn write_ok(stream: &mut TcpStream, body: &[u8], sent: usize, head_only: bool) -> io::Result<()> {
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head_only {
        stream.write_all(&body[..sent.min(body.len())])?;
    }
    stream.flush()
}

/// `status` with a short text body (none for HEAD).
fn write_simple(stream: &mut TcpStream, status: u16, head_only: bool) -> io::Result<()> {
    let reason = reason(status);
    let body = format!("{status} {reason}\n");
    let header = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// Half-closes after a complete response, then waits briefly for the client to
/// close, so that unread request bytes cannot turn the close into a reset that
/// would destroy the response before the client reads it.
fn finish(mut stream: TcpStream) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}
