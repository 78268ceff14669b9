//! SIGINT, SIGTERM and SIGHUP: remove the unfinished outputs, then exit as the signal says.
//!
//! [`install`] starts a thread that waits for the first of these signals. It then removes
//! every temporary file and folder that exists ([`crate::TempFile`], [`crate::TempDir`]),
//! prints one line on stderr and exits with 128 + the signal's number (130 for SIGINT, 143
//! for SIGTERM, 129 for SIGHUP), as shells report a process killed by it. Signals that come
//! while that happens (a second Ctrl-C; GNU `timeout`, which signals the child and then its
//! process group) change nothing: the removal goes on and the process exits when it is
//! done, with the first signal's status. No signal ever ends the process before the
//! temporaries are gone. The handlers are signal-hook's, which do only async-signal-safe
//! work in the handler itself (they record the signal; this crate's thread acts on it). Child
//! processes registered with [`stop_on_interrupt`] (a VM that `nanoimg run` started) are sent
//! SIGTERM first.

use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals that interrupt a command.
pub const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The signal being handled, or 0.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// The conventional exit status of a process ended by `signal`.
pub fn exit_status(signal: i32) -> i32 {
    128 + signal
}

/// The name of one of [`SIGNALS`].
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Installs the handlers and starts the thread that acts on them. Call it once, early in
/// `main`.
pub fn install() -> std::io::Result<()> {
    // Registering the iterator replaces the default action (death) of every signal in
    // SIGNALS with recording it: a later signal can no longer end the process before the
    // thread below has removed what it must.
    let mut signals = signal_hook::iterator::Signals::new(SIGNALS)?;
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                INTERRUPTED.store(signal, Ordering::SeqCst);
                stop_children();
                let removed = crate::registry::remove_all_and_hold();
                let what = match removed {
                    0 => String::new(),
                    1 => "; removed the unfinished output".to_string(),
                    n => format!("; removed {n} unfinished outputs"),
                };
                eprintln!("error: interrupted by {}{what}", signal_name(signal));
                std::process::exit(exit_status(signal));
            }
        })?;
    Ok(())
}

/// Processes to stop on an interrupt, by id.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// While the returned guard lives, an interrupt stops the child process `pid` (SIGTERM)
/// before the temporaries are removed, so no VM or helper outlives nanoimg.
pub fn stop_on_interrupt(pid: u32) -> ChildGuard {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    ChildGuard(pid)
}

/// See [`stop_on_interrupt`]; dropping it forgets the child (after it was waited for).
#[derive(Debug)]
pub struct ChildGuard(u32);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != self.0);
    }
}

fn stop_children() {
    let children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for pid in children {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill has no memory effects; the child has not been waited for while it
            // is registered, so the id is still ours.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

/// The signal that interrupted the process, if one did.
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// When the process has been interrupted, waits for the handler to end it, so that the exit
/// status is the signal's and not that of an error the interruption caused (a write into a
/// folder that was just removed). Returns at once otherwise. Call it before `main` returns.
pub fn wait_if_interrupted() {
    if interrupted().is_some() {
        loop {
            std::thread::park();
        }
    }
}
