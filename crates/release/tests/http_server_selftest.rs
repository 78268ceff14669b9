//! Tests of the loopback test HTTP server in `tests/http/mod.rs`, with a raw
//! `TcpStream` client so that they depend on std only.

mod http;

use http::TestServer;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// A response as read off the wire.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .expect("Content-Length header")
            .parse()
            .expect("numeric Content-Length")
    }
}

/// "127.0.0.1:PORT" from "http://127.0.0.1:PORT".
fn authority(server: &TestServer) -> String {
    let base = server.base_url();
    base.strip_prefix("http://")
        .expect("base_url starts with http://")
        .to_string()
}

/// Opens a connection and sends a request for `target`.
fn send(server: &TestServer, method: &str, target: &str) -> TcpStream {
    let host = authority(server);
    let mut stream = TcpStream::connect(&host).expect("connect to test server");
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: selftest\r\nAccept: */*\r\n\r\n"
    )
    .expect("send request");
    stream
}

/// Reads the response until the server closes the connection.
fn read_response(mut stream: TcpStream) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete response head");
    let head = std::str::from_utf8(&raw[..end]).expect("ASCII response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(
        parts.next(),
        Some("HTTP/1.1"),
        "status line {status_line:?}"
    );
    let status = parts.next().unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

fn request(server: &TestServer, method: &str, target: &str) -> Response {
    read_response(send(server, method, target)).expect("read response")
}

fn get(server: &TestServer, path: &str) -> Response {
    request(server, "GET", path)
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn base_url_is_loopback_without_trailing_slash() {
    let server = TestServer::start();
    let url = server.base_url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!url.ends_with('/'), "{url}");
    let port: u16 = url["http://127.0.0.1:".len()..].parse().unwrap();
    assert_ne!(port, 0);
}

#[test]
fn put_then_get_returns_body_and_content_length() {
    let server = TestServer::start();
    let path = "/0.1.55/nanos-release-linux-0.1.55.tar.gz";
    let data = body(300_000);
    server.put(path, data.clone());
    let resp = get(&server, path);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_length(), data.len());
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(resp.body == data, "body differs");

    // Query strings are ignored; empty bodies work; put replaces.
    let resp = get(&server, &format!("{path}?x=1"));
    assert_eq!(resp.status, 200);
    assert!(resp.body == data);
    server.put(path, Vec::new());
    let resp = get(&server, path);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_length(), 0);
    assert!(resp.body.is_empty());
}

#[test]
fn head_sends_headers_only() {
    let server = TestServer::start();
    server.put("/f", body(1234));
    let resp = request(&server, "HEAD", "/f");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_length(), 1234);
    assert!(resp.body.is_empty());
    assert_eq!(server.requests("/f"), 1);
}

#[test]
fn other_methods_are_refused() {
    let server = TestServer::start();
    server.put("/f", body(10));
    let resp = request(&server, "POST", "/f");
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
}

#[test]
fn unknown_path_is_404() {
    let server = TestServer::start();
    server.put("/known", body(10));
    let resp = get(&server, "/unknown");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.content_length(), resp.body.len());
    assert!(!resp.body.is_empty());
    assert_eq!(server.requests("/unknown"), 1);
}

#[test]
fn put_truncated_sends_fewer_bytes_than_content_length() {
    let server = TestServer::start();
    let data = body(100_000);
    server.put_truncated("/t", data.clone(), 40_000);
    let start = Instant::now();
    let resp = get(&server, "/t");
    assert!(start.elapsed() < Duration::from_secs(2), "closed promptly");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_length(), 100_000);
    assert_eq!(resp.body.len(), 40_000);
    assert!(resp.body[..] == data[..40_000]);
}

#[test]
fn put_hang_never_answers() {
    let server = TestServer::start();
    server.put_hang("/h");
    let mut stream = send(&server, "GET", "/h");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let err = stream.read(&mut buf).expect_err("no answer expected");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(server.requests("/h"), 1);
}

#[test]
fn stop_closes_hanging_connections_promptly() {
    let server = TestServer::start();
    server.put_hang("/h");
    let mut stream = send(&server, "GET", "/h");
    // Make sure the server has read the request before stopping.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.requests("/h") == 0 {
        assert!(Instant::now() < deadline, "request never arrived");
        thread::sleep(Duration::from_millis(5));
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let start = Instant::now();
    server.stop();
    assert!(start.elapsed() < Duration::from_secs(1), "stop was slow");
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ),
            "{e:?}"
        ),
    }
    assert!(start.elapsed() < Duration::from_secs(2), "hang not closed");
}

#[test]
fn put_status_500() {
    let server = TestServer::start();
    server.put_status("/e", 500);
    let resp = get(&server, "/e");
    assert_eq!(resp.status, 500);
    assert_eq!(resp.content_length(), resp.body.len());
    assert!(!resp.body.is_empty());
    server.put_status("/gone", 404);
    assert_eq!(get(&server, "/gone").status, 404);
}

#[test]
fn requests_counts_per_path() {
    let server = TestServer::start();
    server.put("/a", body(5));
    server.put_status("/b", 503);
    assert_eq!(server.requests("/a"), 0);
    for _ in 0..3 {
        assert_eq!(get(&server, "/a").status, 200);
    }
    request(&server, "HEAD", "/a");
    get(&server, "/b");
    get(&server, "/a?query");
    assert_eq!(server.requests("/a"), 5);
    assert_eq!(server.requests("/b"), 1);
    assert_eq!(server.requests("/c"), 0);
}

#[test]
fn after_stop_connect_is_refused() {
    let server = TestServer::start();
    server.put("/a", body(5));
    assert_eq!(get(&server, "/a").status, 200);
    let host = authority(&server);
    let start = Instant::now();
    server.stop();
    assert!(start.elapsed() < Duration::from_secs(1), "stop was slow");
    let err = TcpStream::connect(&host).expect_err("connect after stop");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err:?}");
    // Idempotent, and Drop after stop is fine.
    server.stop();
}

#[test]
fn drop_stops_the_server() {
    let server = TestServer::start();
    server.put_hang("/h");
    let host = authority(&server);
    let _hanging = send(&server, "GET", "/h");
    let start = Instant::now();
    drop(server);
    assert!(start.elapsed() < Duration::from_secs(1), "drop was slow");
    let err = TcpStream::connect(&host).expect_err("connect after drop");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err:?}");
}

#[test]
fn concurrent_slow_requests_overlap() {
    let server = TestServer::start();
    let delay = Duration::from_millis(600);
    server.put_slow("/s1", body(50_000), delay);
    server.put_slow("/s2", body(70_000), delay);
    let start = Instant::now();
    thread::scope(|s| {
        let a = s.spawn(|| get(&server, "/s1"));
        let b = s.spawn(|| get(&server, "/s2"));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert_eq!(a.status, 200);
        assert!(a.body == body(50_000));
        assert_eq!(b.status, 200);
        assert!(b.body == body(70_000));
    });
    let elapsed = start.elapsed();
    assert!(elapsed >= delay, "{elapsed:?} shorter than the delay");
    assert!(elapsed < delay * 2, "{elapsed:?}: requests did not overlap");
}

#[test]
fn routes_can_change_while_serving_from_many_threads() {
    let server = TestServer::start();
    thread::scope(|s| {
        for t in 0..8 {
            let server = &server;
            s.spawn(move || {
                let path = format!("/p{t}");
                server.put(&path, vec![t as u8; 1000 + t]);
                for _ in 0..10 {
                    let resp = get(server, &path);
                    assert_eq!(resp.status, 200);
                    assert_eq!(resp.body, vec![t as u8; 1000 + t]);
                }
            });
        }
    });
    for t in 0..8 {
        assert_eq!(server.requests(&format!("/p{t}")), 10);
    }
}
