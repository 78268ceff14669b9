//! arm64 builds without a kernel or QEMU: the aarch64 layout (zero MBR with the partition
//! table, no boot.img, the ESP with BOOTAA64.EFI), reading the images back, reproducibility,
//! every architecture mismatch refused in one line, libraries from a cross sysroot, and the
//! `-virt` pins (offline errors, a fetch from a loopback mirror).
//!
//! The programs are compiled with the real cross toolchain (Debian `gcc-aarch64-linux-gnu`)
//! and resolved in its sysroot (Debian `libc6-arm64-cross`, `/usr/aarch64-linux-gnu`); without
//! them these tests fail, saying which package to install.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

#[path = "../crates/release/tests/http/mod.rs"]
mod http;
#[path = "../crates/release/tests/tarball/mod.rs"]
mod tarball;

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use md5::Digest as _;
use nanoimg::disk::ESP_SIZE;

const CROSS_GCC: &str = "aarch64-linux-gnu-gcc";
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
const MIB: u64 = 1024 * 1024;

const HELLO: &str = r#"#include <stdio.h>
int main(int argc, char **argv) { printf("hello from %s\n", argv[0]); return 0; }
"#;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cross sysroot, or a failure naming the Debian package that provides it.
fn sysroot() -> &'static Path {
    let root = Path::new(SYSROOT);
    for f in ["lib/ld-linux-aarch64.so.1", "lib/libc.so.6"] {
        assert!(
            root.join(f).is_file(),
            "{} is missing: install the Debian package libc6-arm64-cross (apt-get install libc6-arm64-cross)",
            root.join(f).display()
        );
    }
    root
}

/// Compiles `source` with the aarch64 cross compiler into `dir/name`, `-static` or not.
/// Fails, naming the Debian package, when the compiler is missing.
fn compile(dir: &Path, name: &str, source: &str, static_: bool) -> PathBuf {
    sysroot();
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let mut c = Command::new(CROSS_GCC);
    if static_ {
        c.arg("-static");
    }
    c.args(["-O2", "-o"]).arg(&out).arg(&src);
    let o = match c.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{CROSS_GCC} not found: install the Debian package gcc-aarch64-linux-gnu (apt-get install gcc-aarch64-linux-gnu)"
        ),
        Err(e) => panic!("cannot run {CROSS_GCC}: {e}"),
    };
    assert!(
        o.status.success(),
        "{CROSS_GCC} failed on {}: {}",
        src.display(),
        stderr(&o)
    );
    assert_eq!(
        nanoimg::elf::elf_machine(&out).unwrap(),
        Some(183),
        "{CROSS_GCC} did not produce an aarch64 ELF"
    );
    out
}

/// The bytes of the fake `bootaa64.efi`.
fn aa64_loader() -> Vec<u8> {
    (0..123_457u32).map(|i| (i * 13 % 251) as u8).collect()
}

/// An unpacked arm64 ("virt") release: an aarch64 kernel.img, bootaa64.efi, no boot.img, and
/// klibs that are aarch64 ELF headers, plus `klibs/x86klib`, an x86_64 one.
fn arm64_release(dir: &Path) -> PathBuf {
    let r = dir.join("release-virt");
    std::fs::create_dir_all(r.join("klibs")).unwrap();
    std::fs::write(
        r.join("kernel.img"),
        common::fake_kernel(183, 0x4B, 1_000_003),
    )
    .unwrap();
    std::fs::write(r.join("bootaa64.efi"), aa64_loader()).unwrap();
    std::fs::write(r.join("klibs/tls"), common::fake_kernel(183, 0x54, 20_000)).unwrap();
    std::fs::write(r.join("klibs/ntp"), common::fake_kernel(183, 0x4E, 9_000)).unwrap();
    std::fs::write(
        r.join("klibs/x86klib"),
        common::fake_kernel(62, 0x58, 9_000),
    )
    .unwrap();
    r
}

/// `nanoimg build PROGRAM --kernel-dir RELEASE -o OUT [extra]` in `cwd`.
fn build(cwd: &Path, prog: &Path, release: &Path, out: &Path, extra: &[&OsStr]) -> Output {
    let mut args = vec![
        os("build"),
        prog.as_os_str(),
        os("--kernel-dir"),
        release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ];
    args.extend_from_slice(extra);
    common::nanoimg(&args, cwd)
}

/// One MBR partition entry: (status, type, first LBA, sectors).
fn partition(mbr: &[u8], i: usize) -> (u8, u8, u32, u32) {
    let e = &mbr[446 + 16 * i..462 + 16 * i];
    (
        e[0],
        e[4],
        u32::from_le_bytes(e[8..12].try_into().unwrap()),
        u32::from_le_bytes(e[12..16].try_into().unwrap()),
    )
}

/// Sector 0 holds nothing but the partition table and 55AA; the klog area after it is zero.
fn assert_no_bios_code(img: &[u8]) {
    assert!(
        img[..446].iter().all(|&b| b == 0),
        "an aarch64 MBR has no boot code"
    );
    assert_eq!(&img[510..512], &[0x55, 0xAA]);
    assert!(
        img[512..4608].iter().all(|&b| b == 0),
        "the 4 KiB klog area after the MBR is zero (no stage2)"
    );
}

/// A window of a file, for fatfs.
struct Window {
    file: std::fs::File,
    start: u64,
    pos: u64,
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}
impl std::io::Write for Window {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("read-only"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
            SeekFrom::End(d) => ESP_SIZE.checked_add_signed(d).unwrap(),
        };
        Ok(self.pos)
    }
}

/// The layout of a plain and a `--uefi` arm64 image, byte by byte, and inspect, extract and
/// diff reading them back.
#[test]
fn arm64_images_have_the_virt_layout_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let prog = compile(d, "hello", HELLO, true);
    let release = arm64_release(d);
    let config = d.join("config.json");
    std::fs::write(
        &config,
        r#"{"Args": ["one", "two"], "Env": {"GREETING": "hi"}, "Klibs": ["tls"]}"#,
    )
    .unwrap();

    // Without --uefi: [MBR][klog 4 KiB][boot 12 MiB][root].
    let plain = d.join("plain.img");
    let o = build(d, &prog, &release, &plain, &[os("-c"), config.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = std::fs::read(&plain).unwrap();
    assert_eq!(img.len() % 512, 0);
    assert_no_bios_code(&img);
    let sectors = (img.len() / 512) as u32;
    let boot_sectors = (12 * MIB / 512) as u32;
    assert_eq!(partition(&img, 0), (0x80, 0x83, 9, boot_sectors));
    assert_eq!(
        partition(&img, 1),
        (0x80, 0x83, 9 + boot_sectors, sectors - 9 - boot_sectors)
    );
    assert_eq!(partition(&img, 2), (0, 0, 0, 0));
    assert_eq!(partition(&img, 3), (0, 0, 0, 0));

    // With --uefi: [MBR][klog][ESP 33 MiB][boot 12 MiB][root].
    let uefi = d.join("uefi.img");
    let o = build(
        d,
        &prog,
        &release,
        &uefi,
        &[os("-c"), config.as_os_str(), os("--uefi")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let img = std::fs::read(&uefi).unwrap();
    assert_no_bios_code(&img);
    let sectors = (img.len() / 512) as u32;
    let esp_sectors = (33 * MIB / 512) as u32;
    assert_eq!(ESP_SIZE, 33 * MIB);
    assert_eq!(partition(&img, 0), (0x80, 0xEF, 9, esp_sectors));
    assert_eq!(
        partition(&img, 1),
        (0x80, 0x83, 9 + esp_sectors, boot_sectors)
    );
    let root_lba = 9 + esp_sectors + boot_sectors;
    assert_eq!(
        partition(&img, 2),
        (0x80, 0x83, root_lba, sectors - root_lba)
    );
    assert_eq!(partition(&img, 3), (0, 0, 0, 0));
    // The root filesystem is the same as in the plain image: only the ESP was inserted.
    let plain_img = std::fs::read(&plain).unwrap();
    assert!(
        img[root_lba as usize * 512..] == plain_img[(9 + boot_sectors) as usize * 512..],
        "the root filesystem differs between the plain and the UEFI image"
    );

    let fs = fatfs::FileSystem::new(
        Window {
            file: std::fs::File::open(&uefi).unwrap(),
            start: 4608,
            pos: 0,
        },
        fatfs::FsOptions::new(),
    )
    .unwrap();
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    let names: Vec<String> = fs
        .root_dir()
        .open_dir("EFI/BOOT")
        .unwrap()
        .iter()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "." && n != "..")
        .collect();
    assert_eq!(names, ["BOOTAA64.EFI"]);
    let mut loader = Vec::new();
    fs.root_dir()
        .open_file("EFI/BOOT/BOOTAA64.EFI")
        .unwrap()
        .read_to_end(&mut loader)
        .unwrap();
    assert!(loader == aa64_loader(), "BOOTAA64.EFI is not bootaa64.efi");

    // inspect: the partitions, the aarch64 kernel and klib, NANOS_ARCH=arm64.
    for (image, n_parts) in [(&plain, 2), (&uefi, 3)] {
        let o = common::nanoimg(&[os("inspect"), os("--json"), image.as_os_str()], d);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["partitions"].as_array().unwrap().len(), n_parts, "{v}");
        assert_eq!(v["bootloader_sha256"], serde_json::Value::Null, "{v}");
        let manifest = &v["root"]["manifest"];
        assert_eq!(manifest["program"], "/hello", "{v}");
        assert_eq!(manifest["arguments"], "[hello one two]", "{v}");
        let env = manifest["environment"].as_str().unwrap();
        assert!(env.contains("NANOS_ARCH:arm64"), "{env}");
        assert!(env.contains("GREETING:hi"), "{env}");
        let files = &v["boot"]["files"];
        assert_eq!(
            files["/kernel"]["sha256"],
            sha256_hex(&common::fake_kernel(183, 0x4B, 1_000_003)),
            "{v}"
        );
        assert_eq!(
            files["/klib/tls"]["sha256"],
            sha256_hex(&common::fake_kernel(183, 0x54, 20_000)),
            "{v}"
        );
        assert!(files.get("/klib/x86klib").is_none(), "{v}");
    }

    // extract: the root tree comes back.
    let out = d.join("tree");
    let o = common::nanoimg(&[os("extract"), uefi.as_os_str(), out.as_os_str()], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut files: Vec<String> = walk(&out)
        .into_iter()
        .map(|p| p.strip_prefix(&out).unwrap().display().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "etc/passwd",
            "etc/resolv.conf",
            "hello",
            "proc/sys/kernel/hostname"
        ]
    );
    assert!(std::fs::read(out.join("hello")).unwrap() == std::fs::read(&prog).unwrap());

    // diff: the same build twice is identical.
    let again = d.join("again.img");
    let o = build(d, &prog, &release, &again, &[os("-c"), config.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = common::nanoimg(&[os("diff"), plain.as_os_str(), again.as_os_str()], d);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "identical\n");
    // ... and the plain and UEFI images are not.
    let o = common::nanoimg(&[os("diff"), plain.as_os_str(), uefi.as_os_str()], d);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The `SHA-256: ` line `nanoimg build` prints.
fn printed_sha256(o: &Output) -> String {
    stdout(o)
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256: "))
        .unwrap_or_else(|| panic!("no SHA-256 line in {}", stdout(o)))
        .to_string()
}

/// The same inputs give the same bytes, twice in one folder and from a copy of the inputs in
/// another folder (other paths, other working directory), plain and UEFI.
#[test]
fn arm64_builds_are_reproducible_across_folders() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let prog_a = compile(a.path(), "app", HELLO, true);
    let release_a = arm64_release(a.path());
    let config_a = a.path().join("config.json");
    std::fs::write(
        &config_a,
        r#"{"Args": ["x"], "Env": {"K": "V"}, "Klibs": ["tls", "ntp"]}"#,
    )
    .unwrap();
    // The copy lives elsewhere, under other names.
    let inputs_b = b.path().join("elsewhere");
    std::fs::create_dir(&inputs_b).unwrap();
    let prog_b = inputs_b.join("app");
    std::fs::copy(&prog_a, &prog_b).unwrap();
    let release_b = arm64_release(&inputs_b.join("k"));
    let config_b = inputs_b.join("config.json");
    std::fs::copy(&config_a, &config_b).unwrap();

    for uefi in [false, true] {
        let extra = |config: &Path| {
            let mut v = vec![os("-c").to_owned(), config.as_os_str().to_owned()];
            if uefi {
                v.push("--uefi".into());
            }
            v
        };
        let run = |cwd: &Path, prog: &Path, release: &Path, config: &Path, out: &Path| {
            let extra = extra(config);
            let extra: Vec<&OsStr> = extra.iter().map(|s| s.as_os_str()).collect();
            let o = build(cwd, prog, release, out, &extra);
            assert!(o.status.success(), "{}", stderr(&o));
            let bytes = std::fs::read(out).unwrap();
            let printed = printed_sha256(&o);
            assert_eq!(printed, sha256_hex(&bytes));
            (bytes, printed)
        };
        let name = if uefi { "uefi.img" } else { "plain.img" };
        let first = run(
            a.path(),
            &prog_a,
            &release_a,
            &config_a,
            &a.path().join(format!("1-{name}")),
        );
        let second = run(
            a.path(),
            &prog_a,
            &release_a,
            &config_a,
            &a.path().join(format!("2-{name}")),
        );
        let third = run(
            b.path(),
            &prog_b,
            &release_b,
            &config_b,
            &b.path().join(format!("3-{name}")),
        );
        assert_eq!(first.1, second.1, "uefi={uefi}");
        assert_eq!(first.1, third.1, "uefi={uefi}");
        assert!(first.0 == second.0, "two builds differ (uefi={uefi})");
        assert!(
            first.0 == third.0,
            "a build from a copy of the inputs differs (uefi={uefi})"
        );
    }
}

/// Runs a build expected to be refused: exit status 1, exactly `expected` as the one line on
/// stderr, and nothing left in the (otherwise empty) output folder.
fn assert_refused(cwd: &Path, args: &[&OsStr], out_dir: &Path, expected: &str) {
    std::fs::create_dir_all(out_dir).unwrap();
    let o = common::nanoimg(args, cwd);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err, format!("{expected}\n"));
    assert_eq!(stdout(&o), "");
    let left: Vec<_> = std::fs::read_dir(out_dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn architecture_mismatches_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let arm_prog = compile(d, "armprog", HELLO, true);
    let dyn_prog = compile(d, "armdyn", HELLO, false);
    let x86_prog = d.join("x86prog");
    std::fs::write(&x86_prog, common::tiny_static_elf()).unwrap();
    let arm_release = arm64_release(d);
    let x86_release = common::fake_release(d);
    let out_dir = d.join("out");
    let out = out_dir.join("x.img");
    let (arm_k, x86_k) = (
        arm_release.join("kernel.img"),
        x86_release.join("kernel.img"),
    );

    // An aarch64 program with an x86_64 kernel folder.
    let args = [
        os("build"),
        arm_prog.as_os_str(),
        os("--kernel-dir"),
        x86_release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ];
    assert_refused(
        d,
        &args,
        &out_dir,
        &format!(
            "error: program {} is aarch64 but the kernel {} is x86_64; use a Nanos release for aarch64 (--arch arm64, or a --kernel-dir holding one)",
            arm_prog.display(),
            x86_k.display()
        ),
    );

    // An x86_64 program with the arm64 kernel folder.
    let args = [
        os("build"),
        x86_prog.as_os_str(),
        os("--kernel-dir"),
        arm_release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ];
    assert_refused(
        d,
        &args,
        &out_dir,
        &format!(
            "error: program {} is x86_64 but the kernel {} is aarch64; use a Nanos release for x86_64 (--arch amd64, or a --kernel-dir holding one)",
            x86_prog.display(),
            arm_k.display()
        ),
    );

    // --arch against the program, whichever kernel folder is given.
    for (prog, arch, release, expected) in [
        (
            &arm_prog,
            "amd64",
            &x86_release,
            format!(
                "error: --arch amd64 asks for x86_64, but program {} is aarch64; build the program for x86_64, or drop --arch",
                arm_prog.display()
            ),
        ),
        (
            &arm_prog,
            "amd64",
            &arm_release,
            format!(
                "error: --arch amd64 asks for x86_64, but program {} is aarch64; build the program for x86_64, or drop --arch",
                arm_prog.display()
            ),
        ),
        (
            &x86_prog,
            "arm64",
            &arm_release,
            format!(
                "error: --arch arm64 asks for aarch64, but program {} is x86_64; build the program for aarch64, or drop --arch",
                x86_prog.display()
            ),
        ),
    ] {
        let args = [
            os("build"),
            prog.as_os_str(),
            os("--arch"),
            os(arch),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-o"),
            out.as_os_str(),
        ];
        assert_refused(d, &args, &out_dir, &expected);
    }

    // An x86_64 klib asked for by the config, with the arm64 kernel.
    let config = d.join("klibs.json");
    std::fs::write(&config, r#"{"Klibs": ["tls", "x86klib"]}"#).unwrap();
    let args = [
        os("build"),
        arm_prog.as_os_str(),
        os("-c"),
        config.as_os_str(),
        os("--kernel-dir"),
        arm_release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ];
    assert_refused(
        d,
        &args,
        &out_dir,
        &format!(
            "error: klib {} is x86_64, but the kernel {} is aarch64; use the klibs of the same release (KlibDir)",
            arm_release.join("klibs/x86klib").display(),
            arm_k.display()
        ),
    );

    // A dynamic aarch64 program without a target root: the interpreter is not on this host.
    let args = [
        os("build"),
        dyn_prog.as_os_str(),
        os("--kernel-dir"),
        arm_release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ];
    assert_refused(
        d,
        &args,
        &out_dir,
        "error: program interpreter /lib/ld-linux-aarch64.so.1 (PT_INTERP of /armdyn, an aarch64 program) not found in /; give --target-root (or TargetRoot) a folder or container image holding the program's aarch64 libraries (Debian's libc6-arm64-cross has one at /usr/aarch64-linux-gnu)",
    );

    // "Libraries" naming an x86_64 library by absolute path: the loader would skip it, so it
    // is not found, and the message names the file skipped and why. The target root holds
    // the aarch64 loader and libc, and the host's x86_64 libm where the config points.
    let host_libm = Path::new("/lib/x86_64-linux-gnu/libm.so.6");
    assert!(
        host_libm.is_file(),
        "{} is missing: this test needs an x86_64 Debian host (libc6)",
        host_libm.display()
    );
    let root = d.join("root");
    std::fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
    for f in ["ld-linux-aarch64.so.1", "libc.so.6"] {
        std::fs::copy(sysroot().join("lib").join(f), root.join("lib").join(f)).unwrap();
    }
    std::fs::copy(host_libm, root.join("lib/x86_64-linux-gnu/libm.so.6")).unwrap();
    let config = d.join("libraries.json");
    std::fs::write(
        &config,
        r#"{"Libraries": ["/lib/x86_64-linux-gnu/libm.so.6"]}"#,
    )
    .unwrap();
    let args = [
        os("build"),
        dyn_prog.as_os_str(),
        os("-c"),
        config.as_os_str(),
        os("--target-root"),
        root.as_os_str(),
        os("--kernel-dir"),
        arm_release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ];
    assert_refused(
        d,
        &args,
        &out_dir,
        &format!(
            "error: library /lib/x86_64-linux-gnu/libm.so.6 needed by Libraries not found; searched /lib/x86_64-linux-gnu/libm.so.6; skipped {} (x86_64, the program is aarch64)",
            root.join("lib/x86_64-linux-gnu/libm.so.6").display()
        ),
    );

    // Nothing above was recorded as a kernel folder for a build that did not happen... and
    // the same folders build fine when they agree.
    let ok = out_dir.join("ok.img");
    let o = build(d, &arm_prog, &arm_release, &ok, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A dynamic aarch64 program resolved inside the cross sysroot: `deps` names the sysroot's
/// loader and libc, and the image holds their bytes at the guest paths.
#[test]
fn a_dynamic_aarch64_program_takes_its_libraries_from_the_cross_sysroot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let prog = compile(d, "hellodyn", HELLO, false);
    let root = sysroot();
    let loader = root.join("lib/ld-linux-aarch64.so.1");
    let libc = root.join("lib/libc.so.6");

    let o = common::nanoimg(
        &[
            os("deps"),
            prog.as_os_str(),
            os("--target-root"),
            root.as_os_str(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "/hellodyn (dynamic aarch64 ELF)\n  /lib/ld-linux-aarch64.so.1 <- {} (PT_INTERP of /hellodyn)\n  /lib/libc.so.6 <- {} (libc.so.6 needed by /hellodyn, found by default-dir)\n",
            loader.display(),
            libc.display()
        )
    );
    let o = common::nanoimg(
        &[
            os("deps"),
            os("--json"),
            prog.as_os_str(),
            os("--target-root"),
            root.as_os_str(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let deps: Vec<(&str, &str, &str)> = v["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["guest_path"].as_str().unwrap(),
                d["host_path"].as_str().unwrap(),
                d["rule"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        deps,
        [
            (
                "/lib/ld-linux-aarch64.so.1",
                loader.to_str().unwrap(),
                "interpreter"
            ),
            ("/lib/libc.so.6", libc.to_str().unwrap(), "default-dir"),
        ]
    );
    assert_eq!(v["program"]["interpreter"], "/lib/ld-linux-aarch64.so.1");

    let release = arm64_release(d);
    let image = d.join("dyn.img");
    let o = build(
        d,
        &prog,
        &release,
        &image,
        &[os("--target-root"), root.as_os_str()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let tree = d.join("tree");
    let o = common::nanoimg(&[os("extract"), image.as_os_str(), tree.as_os_str()], d);
    assert!(o.status.success(), "{}", stderr(&o));
    for (guest, host) in [
        ("lib/ld-linux-aarch64.so.1", &loader),
        ("lib/libc.so.6", &libc),
        ("hellodyn", &prog),
    ] {
        assert!(
            std::fs::read(tree.join(guest)).unwrap() == std::fs::read(host).unwrap(),
            "/{guest} in the image is not {}",
            host.display()
        );
    }
}

/// The arm64 pins: listed as `-virt`, and offline without a cached release the fetch command
/// to run is named.
#[test]
fn the_virt_pins_are_listed_and_offline_errors_name_the_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = common::nanoimg_env(
        &[os("kernel"), os("list")],
        d,
        &[("NANOIMG_MIRROR", "http://127.0.0.1:9")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    use nanoimg::elf::Arch;
    let arm_pins: Vec<_> = nanoimg::release::pins()
        .into_iter()
        .filter(|p| p.arch == Arch::Aarch64)
        .collect();
    assert!(!arm_pins.is_empty());
    let newest = nanoimg::release::default_pin(Arch::Aarch64).version;
    for p in &arm_pins {
        let default = if p.version == newest {
            " (default)"
        } else {
            ""
        };
        let line = format!("{}-virt  arm64{default}  not cached", p.version);
        assert!(list.lines().any(|l| l.starts_with(&line)), "{line}: {list}");
    }
    assert_eq!(
        list.lines().filter(|l| l.contains("-virt  arm64")).count(),
        arm_pins.len(),
        "{list}"
    );
    assert!(
        arm_pins.iter().any(|p| p.version == "0.1.55"),
        "0.1.55 has an arm64 pin"
    );

    let cache = d.join("cache");
    let offline = format!(
        "error: Nanos 0.1.55-virt is not in the cache ({}) and --offline forbids downloading it; run `nanoimg kernel fetch 0.1.55 --arch arm64` where the network is reachable, or use --kernel-dir",
        cache.display()
    );
    let o = common::nanoimg(
        &[
            os("kernel"),
            os("fetch"),
            os("0.1.55"),
            os("--arch"),
            os("arm64"),
            os("--offline"),
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stderr(&o), format!("{offline}\n"));

    // A build of an aarch64 program picks the -virt release and says the same.
    let prog = compile(d, "armprog", HELLO, true);
    let out_dir = d.join("out");
    let out = out_dir.join("x.img");
    assert_refused(
        d,
        &[
            os("build"),
            prog.as_os_str(),
            os("--nanos-version"),
            os("0.1.55"),
            os("--offline"),
            os("-o"),
            out.as_os_str(),
        ],
        &out_dir,
        &offline,
    );
    // Without --nanos-version, the default arm64 pin.
    let o = common::nanoimg(
        &[
            os("build"),
            prog.as_os_str(),
            os("--offline"),
            os("-o"),
            out.as_os_str(),
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!("error: Nanos {newest}-virt is not in the cache")),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

/// A `-virt` release fetched from a loopback mirror for an aarch64 program: trusted on first
/// use, locked as arm64 with the official URL, then rebuilt offline from the cache.
#[test]
fn an_arm64_build_fetches_the_virt_tarball_through_a_mirror() {
    const V: &str = "9.9.4";
    let kernel = common::fake_kernel(183, 0x4B, 100_000);
    let tar = tarball::tarball(&[
        ("bootaa64.efi", &aa64_loader()),
        ("kernel.img", &kernel),
        ("klibs/tls", &common::fake_kernel(183, 0x54, 5_000)),
    ]);
    let server = http::TestServer::start();
    let tarball_path = format!("/{V}/nanos-release-linux-{V}-virt.tar.gz");
    server.put(&tarball_path, tar.clone());
    let md5: String = md5::Md5::digest(&tar)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    server.put(
        &format!("/{V}/nanos-release-linux-{V}-virt.md5"),
        md5.into_bytes(),
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let project = d.join("project");
    std::fs::create_dir(&project).unwrap();
    let prog = compile(&project, "armprog", HELLO, true);
    let config = project.join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"NanosVersion": "{V}", "Klibs": ["tls"]}}"#),
    )
    .unwrap();
    let mirror = server.base_url();
    let run = |out: &Path, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            os("build"),
            prog.as_os_str(),
            os("-c"),
            config.as_os_str(),
            os("--uefi"),
            os("-o"),
            out.as_os_str(),
        ];
        args.extend(extra.iter().map(|a| os(a)));
        let mut env = env.to_vec();
        env.push(("NANOIMG_HTTP_TIMEOUT", "2"));
        common::nanoimg_env(&args, d, &env)
    };

    let first = d.join("first.img");
    let o = run(
        &first,
        &["--allow-unpinned"],
        &[("NANOIMG_MIRROR", &mirror)],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "nanoimg: Nanos {V}-virt has no pinned SHA-256; trusting it on first use: sha256 {}",
            sha256_hex(&tar)
        )),
        "{err}"
    );
    assert_eq!(server.requests(&tarball_path), 1);
    let lock = std::fs::read_to_string(project.join("nanoimg.lock")).unwrap();
    assert!(lock.contains("arch = \"arm64\""), "{lock}");
    assert!(lock.contains(&sha256_hex(&tar)), "{lock}");
    assert!(
        lock.contains(&format!(
            "https://storage.googleapis.com/nanos/release/{V}/nanos-release-linux-{V}-virt.tar.gz"
        )),
        "the lock records the official URL, not the mirror: {lock}"
    );
    assert!(
        std::fs::read_to_string(d.join("cache/index").join(format!("{V}-virt")))
            .unwrap()
            .trim()
            == sha256_hex(&tar)
    );

    // The image holds the fetched kernel, its klib and its loader.
    let o = common::nanoimg(&[os("inspect"), os("--json"), first.as_os_str()], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["boot"]["files"]["/kernel"]["sha256"], sha256_hex(&kernel));
    assert!(v["boot"]["files"]["/klib/tls"].is_object(), "{v}");
    let env = v["root"]["manifest"]["environment"].as_str().unwrap();
    assert!(
        env.contains("NANOS_ARCH:arm64") && env.contains(&format!("NANOS_VERSION:{V}")),
        "{env}"
    );

    // The mirror is gone: --offline --locked rebuilds the same bytes from the cache.
    server.stop();
    let second = d.join("second.img");
    let o = run(&second, &["--allow-unpinned", "--offline", "--locked"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap());
    // The x86_64 release of the same version was never fetched.
    let o = common::nanoimg(
        &[
            os("kernel"),
            os("fetch"),
            os(V),
            os("--allow-unpinned"),
            os("--offline"),
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!("error: Nanos {V} is not in the cache")),
        "{}",
        stderr(&o)
    );
}
