//! Images written in the disk formats clouds import (`--format`, `nanoimg convert`): checked
//! with QEMU's own tools (`qemu-img check`, `qemu-img compare`) and GNU tar, reproducible,
//! readable by `inspect`, `diff` and `extract`. (`formats_memory.rs`: small files and bounded
//! memory for an image that is mostly holes.)

mod common;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const FORMATS: [&str; 5] = ["qcow2", "vhd", "vmdk", "vhdx", "gce"];

/// QEMU's name for a format.
fn qemu_name(format: &str) -> &str {
    match format {
        "vhd" => "vpc",
        f => f,
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A tool the test needs, or a failure that says which package has it.
fn tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{name} is not installed; install the Debian package {package}"))
}

/// A project: a fake release, a program, a config with a few files.
struct Project {
    dir: tempfile::TempDir,
    release: PathBuf,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let release = common::fake_release(dir.path());
        let p = dir.path();
        std::fs::write(p.join("prog"), common::tiny_static_elf()).unwrap();
        std::fs::create_dir_all(p.join("data/sub")).unwrap();
        std::fs::write(p.join("data/a.txt"), b"alpha\n").unwrap();
        // Data that does not compress, across several clusters and grains.
        let noise: Vec<u8> = (0..700_001u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(p.join("data/sub/noise.bin"), noise).unwrap();
        std::fs::write(
            p.join("config.json"),
            r#"{"Dirs": ["data"], "Env": {"GREETING": "hi"}, "Args": ["one"]}"#,
        )
        .unwrap();
        Project { dir, release }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `nanoimg build prog -c config.json --format FORMAT -o OUT --json`; the JSON report.
    fn build(&self, format: &str, out: &str, extra: &[&str]) -> serde_json::Value {
        self.build_env(format, out, extra, &[])
    }

    /// [`build`](Self::build) with `env` set.
    fn build_env(
        &self,
        format: &str,
        out: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> serde_json::Value {
        let out = self.path(out);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let mut args: Vec<OsString> = [
            "build",
            "prog",
            "-c",
            "config.json",
            "--format",
            format,
            "--json",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.extend([OsString::from("--kernel-dir"), self.release.clone().into()]);
        args.extend([OsString::from("-o"), out.into()]);
        args.extend(extra.iter().map(OsString::from));
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let o = common::nanoimg_env(&args, self.dir.path(), env);
        assert!(
            o.status.success(),
            "build --format {format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn run(&self, args: &[&OsStr]) -> std::process::Output {
        common::nanoimg(args, self.dir.path())
    }
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut File::open(path).unwrap(), &mut h).unwrap();
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_format_passes_qemu_img_check_and_compares_identical_to_the_raw_image() {
    let qemu_img = tool("qemu-img", "qemu-utils");
    let p = Project::new();
    let raw = p.build("raw", "out/image.img", &[]);
    let raw_path = p.path("out/image.img");
    assert_eq!(raw["format"], "raw");
    assert_eq!(raw["sha256"], raw["raw"]["sha256"]);
    assert_eq!(raw["sha256"], sha256_of(&raw_path));
    for f in FORMATS.iter().filter(|f| **f != "gce") {
        let out = format!("out/image.{f}");
        let r = p.build(f, &out, &["--raw-sums"]);
        let path = p.path(&out);
        // The report describes the file written, and the raw image inside it.
        assert_eq!(r["format"], *f);
        assert_eq!(r["sha256"], sha256_of(&path), "{f}");
        assert_eq!(r["size"], std::fs::metadata(&path).unwrap().len(), "{f}");
        assert_eq!(r["raw"], raw["raw"], "{f}: the raw image is the same");
        if *f == "vhd" {
            // qemu-img cannot check vpc images ("does not support checks"); its view of the
            // size is what matters: exactly the raw size rounded up to a MiB (Azure).
            let info = Command::new(&qemu_img)
                .args(["info", "--output=json", "-f", "vpc"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(info.status.success());
            let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
            let raw_size = raw["size"].as_u64().unwrap();
            assert_eq!(info["virtual-size"], raw_size.next_multiple_of(1 << 20));
        } else {
            let check = Command::new(&qemu_img)
                .args(["check", "-f", qemu_name(f)])
                .arg(&path)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&check.stdout);
            assert!(check.status.success(), "qemu-img check {f}: {said}");
            assert!(
                said.contains("No errors were found on the image."),
                "{f}: {said}"
            );
        }
        let compare = Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", qemu_name(f)])
            .arg(&raw_path)
            .arg(&path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&compare.stdout);
        assert!(compare.status.success(), "qemu-img compare {f}: {said}");
        assert!(said.contains("Images are identical."), "{f}: {said}");
    }
}

#[test]
fn every_format_gives_the_same_bytes_on_one_thread_and_on_many() {
    let p = Project::new();
    // Enough data for several 512 KiB gzip blocks and many VMDK grains, part of it
    // compressible.
    let mut big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    big[1_000_000..2_000_000].fill(b'x');
    std::fs::write(p.path("data/big.bin"), big).unwrap();
    for f in FORMATS {
        let one = p.build_env(
            f,
            &format!("one/image.{f}"),
            &[],
            &[("NANOIMG_THREADS", "1")],
        );
        let many = p.build_env(
            f,
            &format!("many/image.{f}"),
            &[],
            &[("NANOIMG_THREADS", "5")],
        );
        let default = p.build(f, &format!("default/image.{f}"), &[]);
        // The raw image inside a container is hashed only when asked (--raw-sums), or
        // where the format needs it (a VHD's footer holds an id taken from it).
        assert!(default["raw"]["size"].as_u64().unwrap() > 0, "{f}");
        assert_eq!(
            default["raw"]["sha256"].is_string(),
            f == "raw" || f == "vhd",
            "{f}: {}",
            default["raw"]
        );
        assert_eq!(one["sha256"], many["sha256"], "{f}: 1 and 5 threads");
        assert_eq!(
            one["sha256"], default["sha256"],
            "{f}: 1 thread and the default"
        );
        for dir in ["many", "default"] {
            assert!(
                std::fs::read(p.path(&format!("one/image.{f}"))).unwrap()
                    == std::fs::read(p.path(&format!("{dir}/image.{f}"))).unwrap(),
                "{f}: {dir}"
            );
        }
    }
}

#[test]
fn every_format_is_reproducible_and_convert_writes_the_same_bytes_as_a_build() {
    let p = Project::new();
    p.build("raw", "a/image.img", &[]);
    for f in FORMATS {
        let first = p.build(f, &format!("a/image.{f}"), &["--raw-sums"]);
        let second = p.build(f, &format!("b/image.{f}"), &[]);
        assert_eq!(first["sha256"], second["sha256"], "{f}: two builds");
        let (a, b) = (
            p.path(&format!("a/image.{f}")),
            p.path(&format!("b/image.{f}")),
        );
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{f}"
        );
        // The raw image converted gives the same file as the build.
        let conv = p.path(&format!("conv/image.{f}"));
        std::fs::create_dir_all(conv.parent().unwrap()).unwrap();
        let o = p.run(&[
            os("convert"),
            p.path("a/image.img").as_os_str(),
            conv.as_os_str(),
            os("--format"),
            os(f),
            os("--sums"),
            os("--json"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["sha256"], first["sha256"], "{f}: convert");
        assert_eq!(report["raw"], first["raw"], "{f}: convert");
        assert!(
            std::fs::read(&conv).unwrap() == std::fs::read(&a).unwrap(),
            "{f}"
        );
        // And back: the raw image again, byte for byte.
        let back = p.path(&format!("conv/back-from-{f}.img"));
        let o = p.run(&[
            os("convert"),
            a.as_os_str(),
            back.as_os_str(),
            os("--format"),
            os("raw"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (back, raw) = (
            std::fs::read(&back).unwrap(),
            std::fs::read(p.path("a/image.img")).unwrap(),
        );
        if f == "vhd" {
            // A VHD's disk is a whole number of MiB (Azure): the raw image, then zeros.
            assert_eq!(
                back.len() as u64,
                (raw.len() as u64).next_multiple_of(1 << 20)
            );
            assert!(back[..raw.len()] == raw[..], "{f} -> raw");
            assert!(back[raw.len()..].iter().all(|&b| b == 0), "{f} -> raw");
        } else {
            assert!(back == raw, "{f} -> raw");
        }
    }
}

#[test]
fn inspect_diff_and_extract_read_every_format() {
    let p = Project::new();
    p.build("raw", "image.img", &[]);
    let inspect = |path: &Path| -> serde_json::Value {
        let o = p.run(&[os("inspect"), path.as_os_str(), os("--json"), os("--files")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let mut raw = inspect(&p.path("image.img"));
    assert_eq!(raw["format"], "raw");
    raw["path"] = serde_json::Value::Null;
    raw["format"] = serde_json::Value::Null;
    for f in FORMATS {
        let path = p.path(&format!("image.{f}"));
        p.build(f, &format!("image.{f}"), &[]);
        let mut r = inspect(&path);
        assert_eq!(r["format"], f);
        r["path"] = serde_json::Value::Null;
        r["format"] = serde_json::Value::Null;
        let mut expected = raw.clone();
        if f == "vhd" {
            // The VHD's disk is padded to a whole MiB, which the root filesystem's partition
            // (the rest of the disk, as the kernel sees it) includes.
            let pad = r["size"].as_u64().unwrap() - raw["size"].as_u64().unwrap();
            assert!(pad > 0 && pad < 1 << 20, "{pad}");
            expected["size"] = r["size"].clone();
            for part in expected["partitions"].as_array_mut().unwrap() {
                if part["role"] == "root" {
                    part["size"] = (part["size"].as_u64().unwrap() + pad).into();
                }
            }
            expected["root"]["size"] = r["root"]["size"].clone();
        }
        assert_eq!(r, expected, "{f}: the same image, every file with its hash");
        // diff: only the container differs.
        let o = p.run(&[
            os("diff"),
            p.path("image.img").as_os_str(),
            path.as_os_str(),
            os("--json"),
        ]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let changes = d["changes"].as_array().unwrap();
        assert_eq!(changes[0]["name"], "format", "{f}: {changes:?}");
        assert_eq!(changes[0]["b"], f);
        if f != "vhd" {
            assert_eq!(changes.len(), 1, "{f}: {changes:?}");
        }
        // extract: the root tree, with the files' bytes.
        let dir = p.path(&format!("tree-{f}"));
        let o = p.run(&[os("extract"), path.as_os_str(), dir.as_os_str()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            std::fs::read(dir.join("data/sub/noise.bin")).unwrap(),
            std::fs::read(p.path("data/sub/noise.bin")).unwrap()
        );
        assert_eq!(std::fs::read(dir.join("data/a.txt")).unwrap(), b"alpha\n");
    }
}

#[test]
fn the_gce_tar_extracts_with_gnu_tar_to_the_raw_image_sparse() {
    let tar = tool("tar", "tar");
    let p = Project::new();
    // Free space makes most of the raw image a hole.
    std::fs::write(
        p.path("config.json"),
        r#"{"Dirs": ["data"], "BaseVolumeSz": "256m"}"#,
    )
    .unwrap();
    p.build("raw", "image.img", &[]);
    p.build("gce", "image.tar.gz", &[]);
    let list = Command::new(&tar)
        .args(["-tvzf"])
        .arg(p.path("image.tar.gz"))
        .output()
        .unwrap();
    assert!(list.status.success());
    let listing = String::from_utf8_lossy(&list.stdout);
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.trim_end().ends_with(" disk.raw"), "{listing}");
    let dir = p.path("x");
    std::fs::create_dir(&dir).unwrap();
    let x = Command::new(&tar)
        .arg("-xzf")
        .arg(p.path("image.tar.gz"))
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(x.success());
    let disk = dir.join("disk.raw");
    assert!(
        std::fs::read(&disk).unwrap() == std::fs::read(p.path("image.img")).unwrap(),
        "disk.raw is the raw image"
    );
    let m = std::fs::metadata(&disk).unwrap();
    assert!(m.len() >= 256 << 20);
    assert!(
        m.blocks() * 512 < 32 << 20,
        "disk.raw is sparse: {} bytes allocated of {}",
        m.blocks() * 512,
        m.len()
    );
}

#[test]
fn format_errors_are_one_line_and_leave_nothing() {
    let p = Project::new();
    let o = p.run(&[
        os("build"),
        os("prog"),
        os("--kernel-dir"),
        p.release.as_os_str(),
        os("--format"),
        os("qcow3"),
        os("-o"),
        os("x.img"),
    ]);
    assert_eq!(o.status.code(), Some(2), "clap refuses it");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "unknown disk format \"qcow3\"; expected one of raw, qcow2, vhd, vmdk, vhdx, gce"
        ),
        "{stderr}"
    );
    std::fs::write(p.path("bad.json"), r#"{"DiskFormat": "iso"}"#).unwrap();
    let o = p.run(&[
        os("build"),
        os("prog"),
        os("-c"),
        os("bad.json"),
        os("--kernel-dir"),
        p.release.as_os_str(),
        os("-o"),
        os("x.img"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: config DiskFormat \"iso\": unknown disk format \"iso\"; expected one of raw, qcow2, vhd, vmdk, vhdx, gce\n"
    );
    assert!(!p.path("x.img").exists());
    // A GCE tar is not something QEMU boots: nanoimg run boots its raw image, converted
    // first; to print the command, it needs a place to keep that image.
    p.build("gce", "image.tar.gz", &[]);
    let o = p.run(&[os("run"), os("image.tar.gz"), os("--print-command")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: --print-command with a gce image: give -o DISK.img, so the printed command has the raw image to boot (or convert it first: nanoimg convert image.tar.gz DISK.img --format raw)\n"
    );
    p.build("raw", "image.img", &[]);
    let o = p.run(&[
        os("run"),
        os("image.tar.gz"),
        os("-o"),
        os("disk.img"),
        os("--print-command"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let command = String::from_utf8_lossy(&o.stdout);
    assert!(command.contains("disk.img,format=raw,"), "{command}");
    assert!(
        std::fs::read(p.path("disk.img")).unwrap() == std::fs::read(p.path("image.img")).unwrap(),
        "the raw image of the tar"
    );
    // A truncated container is an error naming it, not a panic.
    p.build("qcow2", "image.qcow2", &[]);
    let bytes = std::fs::read(p.path("image.qcow2")).unwrap();
    std::fs::write(p.path("cut.qcow2"), &bytes[..70_000]).unwrap();
    let o = p.run(&[os("inspect"), os("cut.qcow2")]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("cut.qcow2"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_write_that_fails_midway_is_one_line_and_leaves_no_file() {
    use std::os::unix::process::CommandExt;
    let p = Project::new();
    // 256 KiB that no deflate makes smaller (xorshift).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let random: Vec<u8> = (0..32 << 10)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(p.path("data/random.bin"), random).unwrap();
    for f in ["raw", "qcow2", "vhd", "vmdk", "vhdx", "gce"] {
        let out = p.path(&format!("limited/image.{f}"));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nanoimg"));
        cmd.args(["build", "prog", "-c", "config.json", "--format", f])
            .arg("--kernel-dir")
            .arg(&p.release)
            .arg("-o")
            .arg(&out)
            .current_dir(p.dir.path())
            .env("NANOIMG_CACHE", p.path("cache"))
            .env_remove("NANOIMG_MIRROR");
        // SAFETY: only async-signal-safe calls between fork and exec. Files may grow to
        // 64 KiB (less than any of these images); a write past that fails with EFBIG
        // instead of raising SIGXFSZ, which is ignored.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit {
                    rlim_cur: 64 << 10,
                    rlim_max: 64 << 10,
                };
                match libc::setrlimit(libc::RLIMIT_FSIZE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
        let o = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{f}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        eprintln!("{f}: {last}");
        assert!(
            last.starts_with("error: ") && last.contains("File too large"),
            "{f}: {stderr}"
        );
        assert!(last.contains(&*out.to_string_lossy()), "{f}: {last}");
        let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert!(left.is_empty(), "{f}: left {left:?}");
    }
}
