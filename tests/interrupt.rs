//! Interrupted commands leave the complete result or nothing: SIGINT, SIGTERM and SIGHUP
//! sent to real `nanoimg build`, `volume create`, `extract` and `kernel fetch` processes at
//! several moments of a large job. Each run must exit with 128 + the signal's number, leave
//! no temporary file or folder anywhere under the test's folder (which is also TMPDIR and
//! the release cache), and nothing at the output path; afterwards the same command
//! succeeds.
//!
//! The jobs are kept busy by a sparse 2 GiB file (every byte of it is read, hashed and
//! written) and, for `kernel fetch`, by a loopback server that sends the tarball slowly. A
//! moment is measured from when the job's temporary output first appears, so it is a point
//! inside the job, not a guess at how fast the machine is.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;
#[path = "../crates/oci/tests/common/mod.rs"]
mod images;

#[path = "../crates/release/tests/http/mod.rs"]
mod http;
#[path = "../crates/release/tests/tarball/mod.rs"]
mod tarball;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use md5::Digest as _;

/// The signals, and the exit status each must give.
const SIGNALS: [(i32, &str, i32); 3] = [
    (libc::SIGINT, "SIGINT", 130),
    (libc::SIGTERM, "SIGTERM", 143),
    (libc::SIGHUP, "SIGHUP", 129),
];

/// When the signal is sent, after the temporary output appeared.
const MOMENTS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(300),
    Duration::from_millis(1200),
];

const BIG: u64 = 2 << 30;

/// Every path under `root`, relative to it.
fn listing(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// A command to interrupt, and where its temporary output shows up.
struct Job {
    name: &'static str,
    args: Vec<OsString>,
    /// The folder whose new entry starting with `temp_prefix` is the job's temporary.
    temp_dir: PathBuf,
    temp_prefix: &'static str,
    /// What must not exist after an interrupted run.
    outputs: Vec<PathBuf>,
}

fn spawn(root: &Path, job: &Job) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .args(&job.args)
        .current_dir(root)
        .env("NANOIMG_CACHE", root.join("cache"))
        .env("TMPDIR", root.join("tmp"))
        .env("NANOIMG_HTTP_TIMEOUT", "30")
        .env_remove("NANOIMG_MIRROR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the job's temporary output exists (or the job ended).
fn wait_for_temporary(child: &mut Child, job: &Job) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let found = std::fs::read_dir(&job.temp_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(job.temp_prefix))
            })
            .unwrap_or(false);
        if found {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Interrupts `job` with each signal at each moment and checks what is left.
fn interrupt_at_every_moment(root: &Path, job: &Job) {
    let before = listing(root);
    for (signal, name, status) in SIGNALS {
        for moment in MOMENTS {
            let what = format!("{} interrupted by {name} {moment:?} in", job.name);
            let mut child = spawn(root, job);
            assert!(
                wait_for_temporary(&mut child, job),
                "{what}: the temporary output never appeared: {:?}",
                child.wait_with_output().unwrap()
            );
            std::thread::sleep(moment);
            assert!(
                child.try_wait().unwrap().is_none(),
                "{what}: the job had already ended; it needs a larger payload"
            );
            // SAFETY: sending a signal to our own child process.
            assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(status), "{what}: {stderr}");
            assert!(
                stderr.starts_with(&format!("error: interrupted by {name}")),
                "{what}: {stderr}"
            );
            assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
            for output in &job.outputs {
                assert!(!output.exists(), "{what}: {} exists", output.display());
            }
            let left: Vec<_> = listing(root).difference(&before).cloned().collect();
            assert!(left.is_empty(), "{what}: left behind {left:?}");
            // (Shown with --nocapture: the scenarios as run.)
            println!("{what}: exit {status}, nothing left behind");
        }
    }
}

/// Runs `job` to the end; it must succeed and create its outputs.
fn run_to_completion(root: &Path, job: &Job) {
    let out = spawn(root, job).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} after the interrupts: {}",
        job.name,
        String::from_utf8_lossy(&out.stderr)
    );
    for output in &job.outputs {
        assert!(output.exists(), "{}: no {}", job.name, output.display());
    }
}

/// The test's folder, with TMPDIR and the cache made ahead (they are not the job's).
fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for sub in ["tmp", "cache/tmp", "cache/releases", "out"] {
        std::fs::create_dir_all(d.path().join(sub)).unwrap();
    }
    d
}

/// A program (a valid ELF header) that is a sparse file of `len` bytes.
fn big_program(path: &Path, len: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&common::tiny_static_elf()).unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn interrupted_builds_and_volumes_leave_nothing() {
    let d = setup();
    let root = d.path();
    let release = common::fake_release(root);
    let prog = root.join("prog");
    big_program(&prog, BIG);
    let image = root.join("out/prog.img");
    let build = Job {
        name: "build",
        args: vec![
            "build".into(),
            prog.clone().into(),
            "--kernel-dir".into(),
            release.clone().into(),
            "-o".into(),
            image.clone().into(),
        ],
        temp_dir: root.join("out"),
        temp_prefix: ".nanoimg-",
        // The lock is written only with the image.
        outputs: vec![image.clone(), root.join("nanoimg.lock")],
    };
    interrupt_at_every_moment(root, &build);

    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("small"), b"small").unwrap();
    std::fs::File::create(data.join("big"))
        .unwrap()
        .set_len(BIG)
        .unwrap();
    let volume = root.join("out/data.vol");
    let create = Job {
        name: "volume create",
        args: vec![
            "volume".into(),
            "create".into(),
            data.clone().into(),
            "-o".into(),
            volume.clone().into(),
        ],
        temp_dir: root.join("out"),
        temp_prefix: ".nanoimg-",
        outputs: vec![volume.clone()],
    };
    interrupt_at_every_moment(root, &create);

    run_to_completion(root, &build);
    run_to_completion(root, &create);
    // Outputs and the lock are mode 0644 under the usual umask 022 (the test runner's).
    use std::os::unix::fs::MetadataExt;
    for p in [&image, &volume] {
        let mode = std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o666 & !current_umask(), "{}", p.display());
    }

    // Extraction of the volume written above: into a folder that does not exist, and into
    // an empty one, which must stay empty.
    let fresh = root.join("out/tree");
    let extract = Job {
        name: "extract",
        args: vec![
            "extract".into(),
            volume.clone().into(),
            fresh.clone().into(),
        ],
        temp_dir: root.join("out"),
        temp_prefix: ".nanoimg-",
        outputs: vec![fresh.clone()],
    };
    interrupt_at_every_moment(root, &extract);
    let empty = root.join("out/empty");
    std::fs::create_dir(&empty).unwrap();
    let into_empty = Job {
        name: "extract into an empty folder",
        args: vec![
            "extract".into(),
            volume.clone().into(),
            empty.clone().into(),
        ],
        temp_dir: root.join("out"),
        temp_prefix: ".nanoimg-",
        outputs: vec![empty.join("big")],
    };
    interrupt_at_every_moment(root, &into_empty);
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    run_to_completion(root, &extract);
    assert_eq!(std::fs::read(fresh.join("small")).unwrap(), b"small");
    assert_eq!(std::fs::metadata(fresh.join("big")).unwrap().len(), BIG);
}

/// The process's umask (read by setting it and putting it back).
fn current_umask() -> u32 {
    // SAFETY: umask only changes the file creation mask, and it is restored at once.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    }
}

#[test]
fn an_interrupted_kernel_fetch_leaves_nothing() {
    const VERSION: &str = "9.9.7";
    let d = setup();
    let root = d.path();
    // A tarball of about 1 MiB, served 16 KiB every 40 ms (about 2.5 s).
    let mut noise = 0x9E37_79B9u32;
    let mut kernel: Vec<u8> = (0..1_000_000)
        .map(|_| {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            noise as u8
        })
        .collect();
    // An x86_64 kernel's header, so that a fetch that completes would be a valid release.
    kernel[..64].copy_from_slice(&common::fake_kernel(62, 0, 64));
    let tar = tarball::tarball(&[
        ("boot.img", &common::fake_boot_img(94)),
        ("kernel.img", &kernel),
    ]);
    let md5: String = md5::Md5::digest(&tar)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let server = http::TestServer::start();
    let tarball = format!("/{VERSION}/nanos-release-linux-{VERSION}.tar.gz");
    server.put_trickle(&tarball, tar.clone(), 16 << 10, Duration::from_millis(40));
    server.put(
        &format!("/{VERSION}/nanos-release-linux-{VERSION}.md5"),
        md5.into_bytes(),
    );
    let lock = root.join("nanoimg.lock");
    let mirror = server.base_url();
    let fetch = Job {
        name: "kernel fetch",
        args: [
            "kernel",
            "fetch",
            VERSION,
            "--allow-unpinned",
            "--mirror",
            &mirror,
        ]
        .map(OsString::from)
        .to_vec(),
        temp_dir: root.join("cache/tmp"),
        temp_prefix: "download-",
        outputs: vec![lock.clone(), root.join("cache/index")],
    };
    interrupt_at_every_moment(root, &fetch);
    let releases = root.join("cache/releases");
    assert_eq!(std::fs::read_dir(&releases).unwrap().count(), 0);

    server.put(&tarball, tar);
    run_to_completion(root, &fetch);
    assert_eq!(std::fs::read_dir(&releases).unwrap().count(), 1);
    assert!(std::fs::read_to_string(&lock).unwrap().contains(VERSION));
}

/// Two SIGTERMs 1 ms apart while a container image is being unpacked into the cache (as
/// GNU `timeout` sends them: to the process, then to its group), 20 times: each run exits
/// 143 with one line and leaves no `CACHE/tmp/rootfs-*` folder and no cache entry. The
/// second signal must not cut the clean-up short.
#[test]
fn two_sigterms_while_unpacking_an_image_leave_nothing() {
    let d = setup();
    let root = d.path();
    // 48 files of 4 MiB of zeros: 192 MiB to write, a few KiB to store.
    let zeros = vec![0u8; 4 << 20];
    let names: Vec<String> = (0..48).map(|i| format!("data/f{i:02}")).collect();
    let members: Vec<images::E> = names.iter().map(|n| images::E::File(n, &zeros)).collect();
    let layout = images::layout(&root.join("image"), &[images::tar_of(&members)], true);
    drop(zeros);
    let prog = root.join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let job = Job {
        name: "deps unpacking an image",
        args: vec![
            "deps".into(),
            prog.clone().into(),
            "--target-root".into(),
            layout.clone().into(),
        ],
        temp_dir: root.join("cache/tmp"),
        temp_prefix: "rootfs-",
        outputs: vec![],
    };
    // The cache's folder for roots may be made by the first run; what must never appear is
    // an entry in it, or anything in CACHE/tmp.
    std::fs::create_dir_all(root.join("cache/rootfs")).unwrap();
    let before = listing(root);
    for attempt in 0..20 {
        let what = format!("{} (attempt {attempt})", job.name);
        let mut child = spawn(root, &job);
        assert!(
            wait_for_temporary(&mut child, &job),
            "{what}: the temporary root never appeared: {:?}",
            child.wait_with_output().unwrap()
        );
        // A moment inside the unpacking, different each time.
        std::thread::sleep(Duration::from_millis(5 * (attempt % 8)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "{what}: the job had already ended; it needs a larger layer"
        );
        let pid = child.id() as i32;
        // SAFETY: signals to our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        std::thread::sleep(Duration::from_millis(1));
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(143), "{what}: {stderr}");
        assert!(
            stderr.starts_with("error: interrupted by SIGTERM"),
            "{what}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        let left: Vec<_> = listing(root).difference(&before).cloned().collect();
        assert!(left.is_empty(), "{what}: left behind {left:?}");
    }
    println!("20 runs, two SIGTERMs 1 ms apart each: exit 143, nothing left behind");
}
