//! `nanoimg convert` works in proportion to the data a file holds, not to the disk size its
//! header claims: a GNU sparse tar claiming 1 TiB with 1 MB of data and an empty 1 TiB
//! qcow2 made by `qemu-img` convert to raw files that take a few blocks on disk (asserted
//! on the output's allocated size, not on a time). The ignored `bench_*` test prints the
//! CPU time of each conversion (`cargo test --test claimed_size -- --ignored --nocapture`).

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TIB: u64 = 1 << 40;
/// Where the tar's data lies: about 293 GiB in.
const DATA_AT: u64 = 300_000 << 20;
const DATA_LEN: usize = 1_000_000;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn tool(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} is missing: install the Debian package {package}"
    );
    p
}

/// 1 MB of bytes that do not compress.
fn data() -> Vec<u8> {
    (0..DATA_LEN as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1)
        .collect()
}

/// In `dir`: `big.tar.gz`, GNU tar's sparse archive of a 1 TiB `disk.raw` holding
/// [`data`] at [`DATA_AT`], and `empty.qcow2`, qemu-img's empty 1 TiB qcow2.
fn inputs(dir: &Path) {
    let disk = dir.join("disk.raw");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(TIB).unwrap();
    f.write_all_at(&data(), DATA_AT).unwrap();
    drop(f);
    let tar = Command::new(tool("/usr/bin/tar", "tar"))
        .args(["--format=oldgnu", "-S", "-czf", "big.tar.gz", "disk.raw"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(tar.success());
    std::fs::remove_file(&disk).unwrap();
    let q = Command::new(tool("/usr/bin/qemu-img", "qemu-utils"))
        .args(["create", "-q", "-f", "qcow2", "empty.qcow2", "1T"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(q.success());
}

fn convert(dir: &Path, input: &str, output: &str, format: &str) -> serde_json::Value {
    let o = common::nanoimg(
        &[
            os("convert"),
            os(input),
            os(output),
            os("--format"),
            os(format),
            os("--json"),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn converting_claimed_terabytes_reads_and_writes_only_the_data() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    inputs(dir);

    // The tar: 1 MB read, a 1 TiB raw file with 1 MB of blocks.
    let r = convert(dir, "big.tar.gz", "from-tar.img", "raw");
    assert_eq!(r["raw_size"], TIB);
    assert!(r["data"].as_u64().unwrap() < 2 << 20, "{r}");
    assert!(r.get("sha256").is_none(), "no sums unless asked: {r}");
    let out = dir.join("from-tar.img");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), TIB);
    assert!(
        allocated(&out) < 4 << 20,
        "{} bytes allocated",
        allocated(&out)
    );
    let mut back = vec![0u8; DATA_LEN + 8192];
    let f = std::fs::File::open(&out).unwrap();
    f.read_exact_at(&mut back, DATA_AT - 4096).unwrap();
    assert!(back[..4096].iter().all(|&b| b == 0));
    assert!(back[4096..4096 + DATA_LEN] == data()[..]);
    assert!(back[4096 + DATA_LEN..].iter().all(|&b| b == 0));

    // The empty qcow2: nothing read, nothing allocated.
    let r = convert(dir, "empty.qcow2", "from-qcow2.img", "raw");
    assert_eq!(
        (r["raw_size"].as_u64(), r["data"].as_u64()),
        (Some(TIB), Some(0))
    );
    let out = dir.join("from-qcow2.img");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), TIB);
    assert_eq!(allocated(&out), 0);

    // Between containers that store only data, the same: tar → qcow2 → GCE tar → raw.
    convert(dir, "big.tar.gz", "big.qcow2", "qcow2");
    assert!(allocated(&dir.join("big.qcow2")) < 4 << 20);
    convert(dir, "big.qcow2", "again.tar.gz", "gce");
    assert!(std::fs::metadata(dir.join("again.tar.gz")).unwrap().len() < 2 << 20);
    let r = convert(dir, "again.tar.gz", "again.img", "raw");
    assert!(r["data"].as_u64().unwrap() < 2 << 20, "{r}");
    f.read_exact_at(&mut back, DATA_AT - 4096).unwrap();
    let again = std::fs::File::open(dir.join("again.img")).unwrap();
    let mut round = vec![0u8; back.len()];
    again.read_exact_at(&mut round, DATA_AT - 4096).unwrap();
    assert!(round == back);
    assert!(allocated(&dir.join("again.img")) < 4 << 20);
}

/// Runs `nanoimg ARGS` in `cwd`; its CPU time (user + system) in seconds, for this child
/// alone (wait4).
// The child is reaped by wait4, which clippy does not know.
#[allow(clippy::zombie_processes)]
fn cpu_seconds(args: &[&str], cwd: &Path) -> f64 {
    let child = Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: wait4 writes only the status and the rusage it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        let pid = libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut u);
        assert_eq!(pid, child.id() as libc::pid_t);
        u
    };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

#[test]
#[ignore = "a benchmark: prints CPU times"]
fn bench_convert_of_claimed_terabytes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    inputs(dir);
    for (input, output, format) in [
        ("big.tar.gz", "a.img", "raw"),
        ("empty.qcow2", "b.img", "raw"),
        ("big.tar.gz", "c.qcow2", "qcow2"),
        ("empty.qcow2", "d.tar.gz", "gce"),
    ] {
        let cpu = cpu_seconds(&["convert", input, output, "--format", format], dir);
        println!(
            "convert {input} (1 TiB claimed) --format {format}: {cpu:.3} s CPU, output {} bytes allocated",
            allocated(&dir.join(output))
        );
    }
}
