//! Booting an image with `nanoimg run` (the product's own QEMU command line), with the
//! console (its stdout) in a log file, its stderr captured, and a watchdog in case
//! `nanoimg run` itself does not stop at its `--timeout`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How often a running `nanoimg run` is polled for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long the watchdog waits beyond `nanoimg run --timeout` before stopping it itself.
pub const WATCHDOG_GRACE: Duration = Duration::from_secs(30);

/// How long a `nanoimg run` stopped with SIGTERM (which stops QEMU too) gets before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// The outcome of one `nanoimg run`.
#[derive(Debug)]
pub struct Boot {
    /// Its exit status; `None` when the watchdog had to stop it.
    pub status: Option<ExitStatus>,
    /// Its stdout: the guest's serial console.
    pub console: String,
    /// Its stderr: nanoimg's notes and QEMU's messages.
    pub stderr: String,
    pub elapsed: Duration,
    /// The invocation, for failure reports.
    pub command_line: String,
}

/// A `nanoimg run` in progress.
pub struct Running {
    child: Child,
    started: Instant,
    stderr: Option<JoinHandle<Vec<u8>>>,
    console_log: PathBuf,
    command_line: String,
}

/// Starts `command` with its stdout going to `console_log`.
pub fn start(mut command: Command, console_log: &Path) -> Result<Running> {
    let log = File::create(console_log)
        .with_context(|| format!("creating console log {}", console_log.display()))?;
    command.stdout(log).stderr(Stdio::piped());
    let command_line = format!("{command:?}");
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let stderr = child.stderr.take().map(|mut pipe| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    });
    Ok(Running {
        child,
        started,
        stderr,
        console_log: console_log.to_path_buf(),
        command_line,
    })
}

impl Running {
    /// Whether it has exited already (without reaping it).
    pub fn has_exited(&mut self) -> Result<bool> {
        Ok(self
            .child
            .try_wait()
            .context("polling nanoimg run")?
            .is_some())
    }

    /// Waits for the exit, stopping it (SIGTERM, which stops QEMU, then SIGKILL) once
    /// `watchdog` has passed since the start.
    pub fn finish(mut self, watchdog: Duration) -> Result<Boot> {
        let status = loop {
            if let Some(status) = self.child.try_wait().context("waiting for nanoimg run")? {
                break Some(status);
            }
            if self.started.elapsed() >= watchdog {
                self.stop()?;
                break None;
            }
            thread::sleep(POLL_INTERVAL);
        };
        let elapsed = self.started.elapsed();
        let stderr = self
            .stderr
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default();
        let console = std::fs::read(&self.console_log)
            .with_context(|| format!("reading console log {}", self.console_log.display()))?;
        Ok(Boot {
            status,
            console: String::from_utf8_lossy(&console).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed,
            command_line: self.command_line,
        })
    }

    fn stop(&mut self) -> Result<()> {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill only sends a signal to our own child, which is not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline {
                if self
                    .child
                    .try_wait()
                    .context("waiting for nanoimg run")?
                    .is_some()
                {
                    return Ok(());
                }
                thread::sleep(POLL_INTERVAL);
            }
        }
        // It may exit between try_wait and kill; wait() reaps it either way.
        let _ = self.child.kill();
        self.child.wait().context("reaping nanoimg run")?;
        Ok(())
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, read back, released).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the bound address")?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_not_zero() {
        assert_ne!(free_port().expect("free port"), 0);
    }

    /// A stand-in for nanoimg: a shell script running `body`.
    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-nanoimg");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn captures_console_and_stderr_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = script(dir.path(), "echo console; echo note >&2; exit 3");
        let log = dir.path().join("console.log");
        let boot = start(Command::new(&fake), &log)
            .expect("start")
            .finish(Duration::from_secs(30))
            .expect("finish");
        assert_eq!(boot.status.and_then(|s| s.code()), Some(3));
        assert_eq!(boot.console, "console\n");
        assert_eq!(boot.stderr, "note\n");
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "console\n");
    }

    #[test]
    fn watchdog_stops_a_hanging_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = script(dir.path(), "echo started; exec sleep 60");
        let boot = start(Command::new(&fake), &dir.path().join("console.log"))
            .expect("start")
            .finish(Duration::from_millis(300))
            .expect("finish");
        assert!(boot.status.is_none());
        assert_eq!(boot.console, "started\n");
        assert!(boot.elapsed < Duration::from_secs(10), "{:?}", boot.elapsed);
    }
}
