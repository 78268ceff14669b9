//! A raw image that is mostly holes (a 1 GiB sparse file in it) gives small files in the
//! formats that store only data (qcow2, VMDK, VHDX, the GCE tar), built in bounded memory.
//! qcow2 and VHDX lay out their tables before any data is read, so a file's blocks are all
//! allocated in them, its zero blocks included; those are holes in the file written, so the
//! space it takes on disk stays small though its length does not.
//! (Its own test binary: a child's peak memory as Linux reports it includes what its parent
//! held when it forked, so nothing else may run in this process.)

mod common;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Runs `nanoimg ARGS` in `cwd` and returns whether it succeeded, its stderr, and its peak
/// resident memory in MiB (from wait4, for this child alone).
// The child is reaped by wait4, which clippy does not know.
#[allow(clippy::zombie_processes)]
fn measured(args: &[&OsStr], cwd: &Path) -> (bool, String, f64) {
    let err = cwd.join("measured.stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .args(args)
        .current_dir(cwd)
        .env("NANOIMG_CACHE", cwd.join("cache"))
        .env_remove("NANOIMG_MIRROR")
        .stdout(Stdio::null())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: wait4 writes only the status and the rusage it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        let pid = libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut u);
        assert_eq!(pid, child.id() as libc::pid_t);
        u
    };
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    (ok, stderr, usage.ru_maxrss as f64 / 1024.0)
}

#[test]
fn a_large_sparse_file_gives_a_small_file_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    std::fs::write(dir.path().join("prog"), common::tiny_static_elf()).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"Dirs": ["data"]}"#).unwrap();
    let big = dir.path().join("data/params.bin");
    let mut f = File::create(&big).unwrap();
    f.set_len(GIB).unwrap();
    for at in [0, 300 << 20, GIB - 4096] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[0xA5; 4096]).unwrap();
    }
    drop(f);
    for format in ["qcow2", "vmdk", "vhdx", "gce"] {
        let out = dir.path().join(format!("big.{format}"));
        let (ok, stderr, peak_mib) = measured(
            &[
                os("build"),
                os("prog"),
                os("-c"),
                os("config.json"),
                os("--kernel-dir"),
                release.as_os_str(),
                os("--format"),
                os(format),
                os("-o"),
                out.as_os_str(),
            ],
            dir.path(),
        );
        assert!(ok, "{format}: {stderr}");
        let meta = std::fs::metadata(&out).unwrap();
        let (len, on_disk) = (
            meta.len(),
            std::os::unix::fs::MetadataExt::blocks(&meta) * 512,
        );
        eprintln!(
            "{format}: a 1 GiB sparse file gives a {:.1} MiB file taking {:.1} MiB on disk; \
             peak memory {peak_mib:.1} MiB",
            len as f64 / (1 << 20) as f64,
            on_disk as f64 / (1 << 20) as f64,
        );
        let stores_file_zeros = matches!(format, "qcow2" | "vhdx");
        let size = if stores_file_zeros { on_disk } else { len };
        assert!(
            size < 24 << 20,
            "{format}: {size} bytes for 1 GiB of mostly holes"
        );
        if stores_file_zeros {
            assert!(len < GIB + (64 << 20), "{format}: {len} bytes long");
        }
        assert!(peak_mib < 150.0, "{format}: peak memory {peak_mib:.1} MiB");
    }
}
