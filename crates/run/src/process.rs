//! Running QEMU: the console through to stdout, QEMU's stderr through to stderr, a timeout,
//! an interrupt, and one retry under TCG when KVM cannot run the guest.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::missing::ConsoleScan;
use crate::{
    accel_for, args, kvm_device, kvm_failed, kvm_reason, kvm_stopped, outcome, Accel, RunSpec,
};

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

/// How long, from QEMU's start, the console output of a KVM attempt that may still be retried
/// under TCG is held back (and QEMU's stderr with it): should KVM stop the guest in that
/// time, the TCG boot prints the same lines again, and what the stopped attempt printed is
/// dropped instead of shown twice. Output after this is shown as it comes; a working KVM's
/// first lines are only this much late.
pub const CONSOLE_HOLD: Duration = Duration::from_secs(2);
/// At most this much console output is held back (more is shown at once).
const CONSOLE_HOLD_MAX: usize = 1 << 20;

/// Where the guest's console (QEMU's stdout) and QEMU's stderr go.
#[derive(Clone)]
pub(crate) struct Sinks {
    pub out: Arc<Mutex<dyn Write + Send>>,
    pub err: Arc<Mutex<dyn Write + Send>>,
}

impl Sinks {
    fn std() -> Sinks {
        Sinks {
            out: Arc::new(Mutex::new(std::io::stdout())),
            err: Arc::new(Mutex::new(std::io::stderr())),
        }
    }

    /// Stdout and stderr, with what reaches stdout also fed to `scan`.
    fn std_scanning(scan: Arc<Mutex<ConsoleScan>>) -> Sinks {
        Sinks {
            out: Arc::new(Mutex::new(Tee {
                out: std::io::stdout(),
                scan,
            })),
            err: Arc::new(Mutex::new(std::io::stderr())),
        }
    }

    fn line(&self, line: &str) {
        let mut e = lock(&self.err);
        let _ = writeln!(e, "{line}");
        let _ = e.flush();
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut o = lock(&self.out);
        o.write_all(bytes)?;
        o.flush()
    }
}

/// The console on its way to stdout, read by a [`ConsoleScan`] as it passes (only what is
/// shown: the output of a KVM attempt that is dropped never reaches it).
struct Tee<W> {
    out: W,
    scan: Arc<Mutex<ConsoleScan>>,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        lock(&self.scan).feed(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one QEMU process did.
struct Attempt {
    status: Option<i32>,
    success: bool,
    timed_out: bool,
    /// The guest printed something on the console (shown or held).
    console_written: bool,
    /// Console output was shown already (not held).
    console_shown: bool,
    /// Whether the last byte shown on the console ended a line.
    console_at_line_start: bool,
    stderr: String,
    /// Stderr lines not shown yet (held while a KVM attempt might be retried).
    held: Vec<String>,
    /// Console output not shown yet.
    console_held: Vec<u8>,
    /// QEMU said KVM stopped the guest ([`kvm_stopped`]): the line.
    kvm_stopped: Option<String>,
    /// And it was killed for it (it had not ended by itself).
    killed_as_stopped: bool,
}

impl Attempt {
    /// Shows what was held back: QEMU's stderr lines, then the console output.
    fn show_held(&self, sinks: &Sinks) {
        for line in &self.held {
            sinks.line(line);
        }
        let _ = sinks.write(&self.console_held);
    }
}

/// Boots `spec` with `qemu`: with `forced` as the accelerator, or KVM when it works and TCG
/// otherwise. `debug_exit` says whether the image's manifest lets Nanos report the program's
/// exit code. `note` receives nanoimg's one-line remarks (the fallback to TCG).
///
/// Under KVM, a QEMU that says KVM stopped the guest ([`kvm_stopped`]) is killed at once (it
/// would stay paused until the timeout); without `forced`, the boot is then repeated with
/// TCG, whatever the guest printed before: the console output held back
/// ([`CONSOLE_HOLD`]) is dropped, and if some had been shown already the note says that the
/// TCG boot's output starts below it.
pub fn run(
    qemu: &Path,
    spec: &RunSpec,
    forced: Option<Accel>,
    timeout: Option<Duration>,
    debug_exit: bool,
    note: &mut dyn FnMut(String),
) -> Result<Outcome, RunError> {
    start(qemu, spec, forced, timeout, debug_exit, &Sinks::std(), note)
}

/// [`run`], with the console shown also fed to `scan` (`nanoimg run --missing-files` reads
/// the kernel's list from it).
pub fn run_scanning(
    qemu: &Path,
    spec: &RunSpec,
    forced: Option<Accel>,
    timeout: Option<Duration>,
    debug_exit: bool,
    scan: Arc<Mutex<ConsoleScan>>,
    note: &mut dyn FnMut(String),
) -> Result<Outcome, RunError> {
    let sinks = Sinks::std_scanning(scan);
    start(qemu, spec, forced, timeout, debug_exit, &sinks, note)
}

fn start(
    qemu: &Path,
    spec: &RunSpec,
    forced: Option<Accel>,
    timeout: Option<Duration>,
    debug_exit: bool,
    sinks: &Sinks,
    note: &mut dyn FnMut(String),
) -> Result<Outcome, RunError> {
    let (accel, why) = accel_for(forced, spec.arch, kvm_device());
    if let Some(why) = why {
        note(format!("using TCG (slower): {why}"));
    }
    let watch = Watch {
        hold: CONSOLE_HOLD,
        timeout,
    };
    run_from(qemu, spec, accel, forced, watch, debug_exit, sinks, note)
}

/// How an attempt is watched.
#[derive(Clone, Copy)]
pub(crate) struct Watch {
    /// [`CONSOLE_HOLD`].
    pub hold: Duration,
    /// For the whole run, retry included.
    pub timeout: Option<Duration>,
}

/// [`run`], starting with `accel`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_from(
    qemu: &Path,
    spec: &RunSpec,
    mut accel: Accel,
    forced: Option<Accel>,
    watch: Watch,
    debug_exit: bool,
    sinks: &Sinks,
    note: &mut dyn FnMut(String),
) -> Result<Outcome, RunError> {
    let started = Instant::now();
    loop {
        let retry_possible = forced.is_none() && accel == Accel::Kvm;
        let left = watch.timeout.map(|t| t.saturating_sub(started.elapsed()));
        let attempt = attempt(
            qemu,
            &args(spec, accel),
            left,
            accel == Accel::Kvm,
            retry_possible.then_some(watch.hold),
            sinks,
        )?;
        if retry_possible && !attempt.timed_out {
            let failed = attempt
                .kvm_stopped
                .as_deref()
                .or_else(|| kvm_failed(attempt.success, attempt.console_written, &attempt.stderr));
            if let Some(line) = failed {
                let mut why = format!(
                    "KVM cannot run this guest here ({}); booting with TCG instead (slower; --accel tcg skips the attempt)",
                    kvm_reason(line, &attempt.stderr)
                );
                if attempt.console_shown {
                    if !attempt.console_at_line_start {
                        let _ = sinks.write(b"\n");
                    }
                    why.push_str(
                        "; the console output above came from the stopped KVM boot, the TCG boot's follows",
                    );
                }
                note(why);
                accel = Accel::Tcg;
                continue;
            }
        }
        attempt.show_held(sinks);
        if attempt.timed_out {
            return Ok(Outcome::TimedOut);
        }
        if let (Some(line), true) = (&attempt.kvm_stopped, attempt.killed_as_stopped) {
            note(format!(
                "KVM stopped the guest ({}) and QEMU waited, paused, so it was stopped (--accel tcg boots with TCG)",
                kvm_reason(line, &attempt.stderr)
            ));
            return Ok(Outcome::QemuFailed(None));
        }
        return Ok(outcome(
            attempt.status,
            debug_exit,
            &attempt.stderr,
            spec.arch,
        ));
    }
}

/// The console (QEMU's stdout) of one attempt: held back, or shown as it comes.
struct Console {
    holding: bool,
    held: Vec<u8>,
    shown: bool,
    at_line_start: bool,
}

impl Console {
    /// Nothing read yet; held back when `holding`.
    fn new(holding: bool) -> Console {
        Console {
            holding,
            held: Vec::new(),
            shown: false,
            at_line_start: true,
        }
    }

    fn show(&mut self, sinks: &Sinks, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.shown = true;
        self.at_line_start = bytes.ends_with(b"\n");
        sinks.write(bytes)
    }

    /// Stops holding: shows what was held.
    fn release(&mut self, sinks: &Sinks) {
        if self.holding {
            self.holding = false;
            let held = std::mem::take(&mut self.held);
            let _ = self.show(sinks, &held);
        }
    }
}

/// QEMU's stderr of one attempt: every line, and those not shown yet.
#[derive(Default)]
struct Stderr {
    all: String,
    holding: bool,
    held: Vec<String>,
    /// The first line that said KVM stopped the guest.
    kvm_stopped: Option<String>,
}

impl Stderr {
    /// Stops holding (unless KVM stopped the guest: then what follows is its register dump,
    /// of an attempt given up): shows what was held.
    fn release(&mut self, sinks: &Sinks) {
        if self.holding && self.kvm_stopped.is_none() {
            self.holding = false;
            for l in self.held.drain(..) {
                sinks.line(&l);
            }
        }
    }
}

/// Runs QEMU once. `kvm`: watch its stderr for [`kvm_stopped`], and kill it then. `hold`: a
/// KVM attempt that may be retried: its console output (and QEMU's stderr) is held back this
/// long, its stderr for as long as its console is.
fn attempt(
    qemu: &Path,
    args: &[std::ffi::OsString],
    timeout: Option<Duration>,
    kvm: bool,
    hold: Option<Duration>,
    sinks: &Sinks,
) -> Result<Attempt, RunError> {
    let mut child = spawn(qemu, args)?;
    let started = Instant::now();
    let _guard = nanoimg_atomic::interrupt::stop_on_interrupt(child.id());
    let shared = Shared::new(hold.is_some());

    // Locks are taken in the order console, errors, sinks.
    let stdout = child
        .stdout
        .take()
        .map(|out| shared.read_console(out, sinks));
    let stderr = child
        .stderr
        .take()
        .map(|err| shared.read_stderr(err, kvm, sinks));
    let deadline = timeout.map(|t| started + t);
    let mut release = hold.map(|h| started + h);
    let waited = wait(&mut child, deadline, &shared.stopped, |now| {
        if release.is_some_and(|r| now >= r) && !shared.stopped.load(Ordering::SeqCst) {
            release = None;
            let mut c = lock(&shared.console);
            lock(&shared.errors).release(sinks);
            c.release(sinks);
        }
    })
    .map_err(|source| RunError::Wait {
        qemu: qemu.to_path_buf(),
        source,
    })?;
    for t in [stdout, stderr].into_iter().flatten() {
        let _ = t.join();
    }
    Ok(shared.finish(waited))
}

/// Starts `qemu` with `args`, its stdout and stderr piped, stdin empty.
fn spawn(qemu: &Path, args: &[std::ffi::OsString]) -> Result<Child, RunError> {
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
    command.spawn().map_err(|source| RunError::Spawn {
        qemu: qemu.to_path_buf(),
        source,
    })
}

/// What one attempt's reader threads and its wait share.
struct Shared {
    /// The guest printed something on the console.
    written: Arc<AtomicBool>,
    /// QEMU said KVM stopped the guest: the wait kills it.
    stopped: Arc<AtomicBool>,
    console: Arc<Mutex<Console>>,
    errors: Arc<Mutex<Stderr>>,
}

impl Shared {
    /// Nothing read yet; console and stderr held back when `holding`.
    fn new(holding: bool) -> Shared {
        Shared {
            written: Arc::new(AtomicBool::new(false)),
            stopped: Arc::new(AtomicBool::new(false)),
            console: Arc::new(Mutex::new(Console::new(holding))),
            errors: Arc::new(Mutex::new(Stderr {
                holding,
                ..Stderr::default()
            })),
        }
    }

    /// A thread reading the console (QEMU's stdout): holds it back, or shows it as it comes.
    fn read_console(&self, mut out: ChildStdout, sinks: &Sinks) -> JoinHandle<()> {
        let (written, console, errors, sinks) = (
            self.written.clone(),
            self.console.clone(),
            self.errors.clone(),
            sinks.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                written.store(true, Ordering::SeqCst);
                let mut c = lock(&console);
                if c.holding {
                    c.held.extend_from_slice(&buf[..n]);
                    if c.held.len() > CONSOLE_HOLD_MAX {
                        lock(&errors).release(&sinks);
                        c.release(&sinks);
                    }
                } else if c.show(&sinks, &buf[..n]).is_err() {
                    break;
                }
            }
        })
    }

    /// A thread reading QEMU's stderr line by line: records every line, holds back or shows
    /// it, and (`kvm`) watches for [`kvm_stopped`].
    fn read_stderr(&self, err: ChildStderr, kvm: bool, sinks: &Sinks) -> JoinHandle<()> {
        let (errors, stopped, sinks) = (self.errors.clone(), self.stopped.clone(), sinks.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut e = lock(&errors);
                e.all.push_str(&line);
                e.all.push('\n');
                if kvm && e.kvm_stopped.is_none() && kvm_stopped(&line) {
                    // QEMU stays alive, paused: have it killed, hold its register dump.
                    e.kvm_stopped = Some(line.clone());
                    e.holding = true;
                    stopped.store(true, Ordering::SeqCst);
                }
                if e.holding {
                    e.held.push(line);
                } else {
                    sinks.line(&line);
                }
            }
        })
    }

    /// What the attempt did, once QEMU ended as `waited` and the readers are done.
    fn finish(&self, waited: Waited) -> Attempt {
        let c = std::mem::replace(&mut *lock(&self.console), Console::new(false));
        let e = std::mem::take(&mut *lock(&self.errors));
        let status = match waited {
            Waited::Exited(s) => Some(s),
            Waited::TimedOut | Waited::Stopped => None,
        };
        Attempt {
            status: status.and_then(|s| s.code()),
            success: status.is_some_and(|s| s.success()),
            timed_out: matches!(waited, Waited::TimedOut),
            console_written: self.written.load(Ordering::SeqCst),
            console_shown: c.shown,
            console_at_line_start: c.at_line_start,
            stderr: e.all,
            held: e.held,
            console_held: c.held,
            kvm_stopped: e.kvm_stopped,
            killed_as_stopped: matches!(waited, Waited::Stopped),
        }
    }
}

/// How [`wait`] ended.
enum Waited {
    Exited(std::process::ExitStatus),
    /// The deadline passed; the child was killed.
    TimedOut,
    /// `stop` was set; the child was killed.
    Stopped,
}

/// Waits for `child`, polling: kills it (and reaps it) when `deadline` passes or `stop` is
/// set; calls `tick` with the time on every round.
fn wait(
    child: &mut Child,
    deadline: Option<Instant>,
    stop: &AtomicBool,
    mut tick: impl FnMut(Instant),
) -> std::io::Result<Waited> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Waited::Exited(status));
        }
        let now = Instant::now();
        let ended = if stop.load(Ordering::SeqCst) {
            Some(Waited::Stopped)
        } else if deadline.is_some_and(|d| now >= d) {
            Some(Waited::TimedOut)
        } else {
            None
        };
        if let Some(ended) = ended {
            let _ = child.kill();
            child.wait()?;
            return Ok(ended);
        }
        tick(now);
        std::thread::sleep(Duration::from_millis(20));
    }
}
