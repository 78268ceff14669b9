//! The `port-forward` case: `nanoimg run -p HOSTPORT:8080` must carry a TCP connection from
//! the host to a server in the guest over QEMU's user-mode network.
//!
//! `portfwd.c` listens on `0.0.0.0:`[`GUEST_PORT`], answers the first connection that sends
//! a line with `pong:<line>` and exits 0. The runner picks a free host port, starts
//! `nanoimg run` in the background and, while it runs, connects to `127.0.0.1:HOSTPORT`
//! until the guest answers (QEMU accepts on the host port at once, but the guest needs a few
//! seconds to boot and get its address by DHCP; until then connections are reset or wait).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::expect;

/// Program name; `Program` in the config, so also `argv[0]`.
pub const PROGRAM: &str = "portfwd";

/// The port the guest listens on.
pub const GUEST_PORT: u16 = 8080;

/// What the runner sends (a newline ends it).
pub const REQUEST: &str = "ping";

/// Pause between connection attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How long one connection attempt may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The config passed to `nanoimg build -c`.
pub fn config() -> Value {
    json!({ "Program": PROGRAM })
}

/// The reply the guest must send (without its newline).
pub fn expected_reply() -> String {
    format!("pong:{REQUEST}")
}

/// The lines the guest must print on the console.
pub fn expected_lines() -> Vec<String> {
    vec![
        format!("port-forward:listening on {GUEST_PORT}"),
        format!("port-forward:got {REQUEST}"),
        expect::DONE_MARKER.to_owned(),
    ]
}

/// What the exchange with the guest came to.
#[derive(Debug)]
pub struct Exchange {
    /// The guest's reply line (without its newline), if one came.
    pub reply: Option<String>,
    /// Connection attempts made.
    pub attempts: usize,
    /// The last error of an attempt without a reply.
    pub last_error: Option<String>,
}

/// Connects to `127.0.0.1:host_port`, sends [`REQUEST`] and a newline, and reads one reply
/// line; a refused, reset or closed connection is retried after a pause until `deadline`,
/// or until `gave_up` says the VM is gone. A connection that is open but silent is waited on
/// (QEMU holds it until the guest accepts), not abandoned, so the guest never answers a
/// connection the runner has already closed.
pub fn exchange(host_port: u16, deadline: Instant, gave_up: &mut dyn FnMut() -> bool) -> Exchange {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, host_port));
    let mut exchange = Exchange {
        reply: None,
        attempts: 0,
        last_error: None,
    };
    while Instant::now() < deadline {
        exchange.attempts += 1;
        match attempt(&addr, deadline) {
            Ok(Some(reply)) => {
                exchange.reply = Some(reply);
                return exchange;
            }
            Ok(None) => exchange.last_error = Some("closed without a reply".to_owned()),
            Err(err) => exchange.last_error = Some(err.to_string()),
        }
        if gave_up() {
            break;
        }
        thread::sleep(RETRY_PAUSE);
    }
    exchange
}

/// One connection: `Ok(None)` when it closed before a whole line came back.
fn attempt(addr: &SocketAddr, deadline: Instant) -> io::Result<Option<String>> {
    let mut stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)?;
    stream.write_all(format!("{REQUEST}\n").as_bytes())?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no reply before the case timeout",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => reply.push(byte[0]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    if reply.last() == Some(&b'\r') {
        reply.pop();
    }
    Ok(Some(String::from_utf8_lossy(&reply).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    #[test]
    fn config_and_expected_lines() {
        assert_eq!(config(), json!({"Program": "portfwd"}));
        assert_eq!(expected_reply(), "pong:ping");
        assert_eq!(
            expected_lines(),
            [
                "port-forward:listening on 8080",
                "port-forward:got ping",
                "HELLO-DONE"
            ]
        );
    }

    /// A server that closes its first connection unanswered, then answers as the guest does.
    #[test]
    fn retries_until_a_reply_comes() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = thread::spawn(move || {
            drop(listener.accept().expect("first"));
            let (stream, _) = listener.accept().expect("second");
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).expect("read");
            let mut stream = stream;
            write!(stream, "pong:{}\r\n", line.trim_end()).expect("write");
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let result = exchange(port, deadline, &mut || false);
        server.join().expect("server");
        assert_eq!(result.reply.as_deref(), Some("pong:ping"));
        assert_eq!(result.attempts, 2);
    }

    #[test]
    fn stops_when_the_vm_is_gone() {
        let port = crate::boot::free_port().expect("port");
        let deadline = Instant::now() + Duration::from_secs(20);
        let result = exchange(port, deadline, &mut || true);
        assert_eq!(result.reply, None);
        assert_eq!(result.attempts, 1);
        assert!(result.last_error.is_some());
    }
}
