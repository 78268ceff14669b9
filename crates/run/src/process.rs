//! Running QEMU: the console through to stdout, QEMU's stderr through to stderr, a timeout,
//! an interrupt, and one retry under TCG when KVM cannot run the guest.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{accel_for, args, kvm_device, kvm_failed, outcome, Accel, RunSpec};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The program exited with this code, reported through `isa-debug-exit` (`debug_exit`).
    Exited(i32),
    /// The VM powered off; the program's own exit status is not visible.
    PoweredOff,
    /// The timeout passed and the VM was stopped.
    TimedOut,
    /// QEMU failed (its exit status, or none when a signal ended it).
    QemuFailed(Option<i32>),
}

/// Why a VM could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{qemu} not found in PATH; install QEMU (Debian package {package})")]
    NoQemu {
        qemu: &'static str,
        package: &'static str,
    },
    #[error("no UEFI firmware for this UEFI image (looked for {looked}); install it (Debian package {package}), give --firmware FILE, or boot without UEFI with --boot bios")]
    NoOvmf {
        looked: String,
        package: &'static str,
    },
    #[error("firmware {path} does not exist; give the {name} image (the Debian package {package} installs {example})")]
    NoFirmwareFile {
        path: PathBuf,
        /// OVMF or AAVMF.
        name: &'static str,
        package: &'static str,
        example: &'static str,
    },
    #[error("cannot start {qemu}: {source}")]
    Spawn {
        qemu: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot wait for {qemu}: {source}")]
    Wait {
        qemu: PathBuf,
        source: std::io::Error,
    },
}

/// What one QEMU process did.
struct Attempt {
    status: Option<i32>,
    success: bool,
    timed_out: bool,
    console_written: bool,
    stderr: String,
    /// Stderr lines not shown yet (held while a KVM attempt might be retried).
    held: Vec<String>,
}

/// Boots `spec` with `qemu`: with `forced` as the accelerator, or KVM when it works and TCG
/// otherwise. `debug_exit` says whether the image's manifest lets Nanos report the program's
/// exit code. `note` receives nanoimg's one-line remarks (the fallback to TCG).
pub fn run(
    qemu: &Path,
    spec: &RunSpec,
    forced: Option<Accel>,
    timeout: Option<Duration>,
    debug_exit: bool,
    note: &mut dyn FnMut(String),
) -> Result<Outcome, RunError> {
    let (mut accel, why) = accel_for(forced, spec.arch, kvm_device());
    if let Some(why) = why {
        note(format!("using TCG (slower): {why}"));
    }
    let started = Instant::now();
    loop {
        let retry_possible = forced.is_none() && accel == Accel::Kvm;
        let left = timeout.map(|t| t.saturating_sub(started.elapsed()));
        let attempt = attempt(qemu, &args(spec, accel), left, retry_possible)?;
        if retry_possible && !attempt.timed_out {
            if let Some(line) =
                kvm_failed(attempt.success, attempt.console_written, &attempt.stderr)
            {
                note(format!(
                    "KVM cannot run this guest here ({}); booting with TCG instead (slower; --accel tcg skips the attempt)",
                    line.trim()
                ));
                accel = Accel::Tcg;
                continue;
            }
        }
        let mut err = std::io::stderr().lock();
        for line in &attempt.held {
            let _ = writeln!(err, "{line}");
        }
        if attempt.timed_out {
            return Ok(Outcome::TimedOut);
        }
        return Ok(outcome(
            attempt.status,
            debug_exit,
            &attempt.stderr,
            spec.arch,
        ));
    }
}

fn attempt(
    qemu: &Path,
    args: &[std::ffi::OsString],
    timeout: Option<Duration>,
    hold_stderr: bool,
) -> Result<Attempt, RunError> {
    let mut command = Command::new(qemu);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Should nanoimg die without a chance to stop it (SIGKILL), the kernel stops QEMU.
    // SAFETY: prctl is async-signal-safe and changes only the child's own settings.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        qemu: qemu.to_path_buf(),
        source,
    })?;
    let _guard = nanoimg_atomic::interrupt::stop_on_interrupt(child.id());
    let written = Arc::new(AtomicBool::new(false));
    let holding = Arc::new(AtomicBool::new(hold_stderr));
    let held = Arc::new(Mutex::new(Vec::<String>::new()));
    let all = Arc::new(Mutex::new(String::new()));

    let stdout = child.stdout.take().map(|mut out| {
        let (written, holding, held) = (written.clone(), holding.clone(), held.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut console = std::io::stdout();
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if !written.swap(true, Ordering::SeqCst) {
                    // The guest is running: nothing will be retried, show what QEMU said.
                    holding.store(false, Ordering::SeqCst);
                    let mut err = std::io::stderr().lock();
                    for line in held.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                        let _ = writeln!(err, "{line}");
                    }
                }
                if console.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = console.flush();
            }
        })
    });
    let stderr = child.stderr.take().map(|err| {
        let (holding, held, all) = (holding.clone(), held.clone(), all.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                {
                    let mut a = all.lock().unwrap_or_else(|e| e.into_inner());
                    a.push_str(&line);
                    a.push('\n');
                }
                let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
                if holding.load(Ordering::SeqCst) {
                    h.push(line);
                } else {
                    let mut out = std::io::stderr().lock();
                    for l in h.drain(..) {
                        let _ = writeln!(out, "{l}");
                    }
                    let _ = writeln!(out, "{line}");
                }
            }
        })
    });
    let (status, timed_out) = wait(&mut child, timeout).map_err(|source| RunError::Wait {
        qemu: qemu.to_path_buf(),
        source,
    })?;
    for t in [stdout, stderr].into_iter().flatten() {
        let _ = t.join();
    }
    let held = std::mem::take(&mut *held.lock().unwrap_or_else(|e| e.into_inner()));
    let stderr = std::mem::take(&mut *all.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Attempt {
        status: status.and_then(|s| s.code()),
        success: status.is_some_and(|s| s.success()),
        timed_out,
        console_written: written.load(Ordering::SeqCst),
        stderr,
        held,
    })
}

/// Waits for `child`, killing it when `timeout` passes: its status (none when killed) and
/// whether it timed out.
fn wait(
    child: &mut Child,
    timeout: Option<Duration>,
) -> std::io::Result<(Option<std::process::ExitStatus>, bool)> {
    let Some(timeout) = timeout else {
        return child.wait().map(|s| (Some(s), false));
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((Some(status), false));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((None, true));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
