//! `nanoimg run` without a kernel: the command line it prints, its errors, and its handling of
//! QEMU's end (exit codes, timeout, the KVM fallback), with a stand-in `qemu-system-x86_64`
//! script on PATH. Booting real images is `cargo xtask e2e`'s job.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A folder with a fake release, a program and a built image (`image.img`, with `debug_exit`
/// when asked).
fn setup(config: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let release = common::fake_release(d.path());
    std::fs::write(release.join("bootx64.efi"), b"MZ fake loader").unwrap();
    let prog = d.path().join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let cfg = d.path().join("config.json");
    std::fs::write(&cfg, config).unwrap();
    let image = d.path().join("image.img");
    let o = common::nanoimg(
        &[
            os("build"),
            prog.as_os_str(),
            os("-c"),
            cfg.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-o"),
            image.as_os_str(),
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (d, image)
}

/// Runs nanoimg with `PATH` set to `path` only.
fn run(dir: &Path, path: &Path, args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env("NANOIMG_CACHE", dir.join("cache"))
        .output()
        .unwrap()
}

/// A stand-in QEMU: a shell script named qemu-system-x86_64 in `dir/bin`.
fn fake_qemu(dir: &Path, script: &str) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let qemu = bin.join("qemu-system-x86_64");
    std::fs::write(&qemu, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `o` failed with `code` and its stderr says `needle`.
fn expect_error(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

#[test]
fn print_command_shows_the_whole_command_line_shell_quoted() {
    let (d, image) = setup("{}");
    let spaced = d.path().join("my images");
    std::fs::create_dir(&spaced).unwrap();
    let vol = spaced.join("data.vol");
    std::fs::write(&vol, b"").unwrap();
    let o = run(
        d.path(),
        Path::new("/nonexistent"),
        &[
            image.as_os_str(),
            os("--print-command"),
            os("--accel"),
            os("tcg"),
            os("-p"),
            os("8080"),
            os("--memory"),
            os("1g"),
            os("--volume"),
            vol.as_os_str(),
            os("--"),
            os("-s"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let expected = [
        "qemu-system-x86_64",
        "-machine",
        "q35",
        "-device",
        "pcie-root-port,port=0x10,chassis=1,id=pci.1,bus=pcie.0,multifunction=on,addr=0x3",
        "-device",
        "pcie-root-port,port=0x11,chassis=2,id=pci.2,bus=pcie.0,addr=0x3.0x6",
        "-device",
        "pcie-root-port,port=0x12,chassis=3,id=pci.4,bus=pcie.0,addr=0x3.0x4",
        "-device",
        "virtio-scsi-pci,bus=pci.2,addr=0x0,id=scsi0",
        "-device",
        "scsi-hd,bus=scsi0.0,drive=hd0",
        "-vga",
        "none",
        "-device",
        "isa-debug-exit",
        "-m",
        "1024M",
        "-device",
        "virtio-rng-pci",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-drive",
        &format!("file={},format=raw,if=none,id=hd0", image.display()),
        "-drive",
        &format!("'file={},format=raw,if=none,id=hd1'", vol.display()),
        "-device",
        "scsi-hd,bus=scsi0.0,drive=hd1",
        "-device",
        "virtio-net,bus=pci.4,addr=0x0,netdev=n0",
        "-netdev",
        "user,id=n0,hostfwd=tcp::8080-:8080",
        "-no-reboot",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-s",
    ]
    .map(|l| format!("{l}\n"))
    .concat();
    assert_eq!(stdout, expected);
}

#[test]
fn the_gevulot_profile_warns_about_an_image_the_node_cannot_run() {
    let (d, image) = setup("{}");
    let ws = d.path().join("ws");
    let o = run(
        d.path(),
        Path::new("/nonexistent"),
        &[
            image.as_os_str(),
            os("--gevulot"),
            os("--workspace"),
            ws.as_os_str(),
            os("--print-command"),
            os("--accel"),
            os("kvm"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("does not mount attach id %0 at /workspace"),
        "{err}"
    );
    assert!(err.contains("root filesystem is not read-only"), "{err}");
    assert!(ws.is_dir(), "the workspace is created");
    let stdout = String::from_utf8(o.stdout).unwrap();
    for line in [
        "-nic\nnone\n",
        "-smp\n2\n",
        "-accel\nkvm\n",
        &format!(
            "-virtfs\nlocal,path={},mount_tag=0,security_model=none,multidevs=remap,id=hd0\n",
            ws.display()
        ),
        ",readonly=on\n",
    ] {
        assert!(stdout.contains(line), "{line:?} in {stdout}");
    }

    // Gevulot's documented manifest: no warning.
    let (d, image) = setup(
        r#"{"ManifestPassthrough": {"readonly_rootfs": "true"}, "Mounts": {"%1": "/workspace"}}"#,
    );
    let ws = d.path().join("ws");
    let o = run(
        d.path(),
        Path::new("/nonexistent"),
        &[
            image.as_os_str(),
            os("--gevulot"),
            os("--workspace"),
            ws.as_os_str(),
            os("--print-command"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[test]
fn missing_qemu_firmware_or_image_are_one_line_errors_with_the_package() {
    let (d, image) = setup("{}");
    let o = run(d.path(), Path::new("/nonexistent"), &[image.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: qemu-system-x86_64 not found in PATH; install QEMU (Debian package qemu-system-x86)\n"
    );

    let o = run(
        d.path(),
        Path::new("/nonexistent"),
        &[image.as_os_str(), os("--boot"), os("uefi")],
    );
    expect_error(&o, 1, "has no EFI System Partition");

    let o = run(
        d.path(),
        Path::new("/nonexistent"),
        &[image.as_os_str(), os("-e"), os("A=B")],
    );
    expect_error(
        &o,
        1,
        "is an image, so -e (a build flag) would change nothing",
    );

    let text = d.path().join("notes.txt");
    std::fs::write(
        &text,
        "not an image at all, just some text that is long enough",
    )
    .unwrap();
    let o = run(d.path(), Path::new("/nonexistent"), &[text.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "error: {} is not a bootable Nanos image: ",
            text.display()
        )) && err.ends_with("; build one with `nanoimg build`\n")
            && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn a_uefi_image_needs_its_firmware() {
    let d = tempfile::tempdir().unwrap();
    let release = common::fake_release(d.path());
    std::fs::write(release.join("bootx64.efi"), b"MZ fake loader").unwrap();
    let prog = d.path().join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let image = d.path().join("uefi.img");
    let o = common::nanoimg(
        &[
            os("build"),
            prog.as_os_str(),
            os("--uefi"),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-o"),
            image.as_os_str(),
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let missing = d.path().join("OVMF.fd");
    let o = run(
        d.path(),
        Path::new("/nonexistent"),
        &[image.as_os_str(), os("--firmware"), missing.as_os_str()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "error: firmware {} does not exist; give the OVMF image (the Debian package ovmf installs /usr/share/ovmf/OVMF.fd)\n",
            missing.display()
        )
    );
    // Through BIOS it needs none, and UEFI with a firmware file prints it as -bios.
    std::fs::write(&missing, b"fw").unwrap();
    let o = run(
        d.path(),
        Path::new("/nonexistent"),
        &[
            image.as_os_str(),
            os("--firmware"),
            missing.as_os_str(),
            os("--print-command"),
        ],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("-bios\n{}\n", missing.display())));
    let o = run(
        d.path(),
        Path::new("/nonexistent"),
        &[
            image.as_os_str(),
            os("--boot"),
            os("bios"),
            os("--print-command"),
        ],
    );
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("-bios"));
}

/// The program's exit code comes through `debug_exit` (QEMU exits with code << 1 | 1).
#[test]
fn the_programs_exit_code_is_nanoimg_runs() {
    let (d, image) = setup(r#"{"ManifestPassthrough": {"debug_exit": "t"}}"#);
    let bin = fake_qemu(d.path(), "echo 'console: exiting 3'; exit 7");
    let o = run(
        d.path(),
        &bin,
        &[image.as_os_str(), os("--accel"), os("tcg")],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "console: exiting 3\n");

    // Without debug_exit, a VM that powered off is success, and nanoimg says what is not known.
    let (d, image) = setup("{}");
    let bin = fake_qemu(d.path(), "echo hello; exit 0");
    let o = run(
        d.path(),
        &bin,
        &[image.as_os_str(), os("--accel"), os("tcg")],
    );
    expect_error(&o, 0, "the program's exit status is not visible");

    // QEMU's own failure is an error, with QEMU's message passed through.
    let bin = fake_qemu(
        d.path(),
        "echo 'qemu-system-x86_64: bad option' >&2; exit 1",
    );
    let o = run(
        d.path(),
        &bin,
        &[image.as_os_str(), os("--accel"), os("tcg")],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("qemu-system-x86_64: bad option\nerror: "),
        "{err}"
    );
    assert!(err.contains("failed (exit status 1)"), "{err}");
}

#[test]
fn a_timeout_stops_the_vm_and_exits_124() {
    let (d, image) = setup("{}");
    let bin = fake_qemu(d.path(), "echo looping; exec /bin/sleep 600");
    let started = std::time::Instant::now();
    let o = run(
        d.path(),
        &bin,
        &[
            image.as_os_str(),
            os("--accel"),
            os("tcg"),
            os("--timeout"),
            os("1"),
        ],
    );
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "looping\n");
    assert!(
        stderr(&o).contains("still running after 1 s and was stopped"),
        "{}",
        stderr(&o)
    );
    // (The VM is killed, not waited for: far less than its 600 s.)
    assert!(started.elapsed() < std::time::Duration::from_secs(300));
}

/// Without --accel: KVM when /dev/kvm is usable, and TCG again when QEMU dies under KVM before
/// the guest printed anything, said in one line; TCG at once without /dev/kvm.
#[test]
fn kvm_that_cannot_run_the_guest_falls_back_to_tcg() {
    let (d, image) = setup("{}");
    let bin = fake_qemu(
        d.path(),
        r#"case "$*" in
  *"-accel kvm"*) echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2; kill -ABRT $$ ;;
  *) echo "booted with TCG" ;;
esac"#,
    );
    let o = run(d.path(), &bin, &[image.as_os_str()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "booted with TCG\n");
    let first = err.lines().next().unwrap_or_default();
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if kvm {
        assert_eq!(
            first,
            "nanoimg: KVM cannot run this guest here (qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69); booting with TCG instead (slower; --accel tcg skips the attempt)"
        );
        // QEMU's abort message is not shown: it was only the failed attempt.
        assert!(
            !err.lines().any(|l| l.starts_with("qemu-system-x86_64:")),
            "{err}"
        );
    } else {
        assert!(first.starts_with("nanoimg: using TCG (slower): "), "{err}");
    }
    // Forced KVM does not fall back.
    let o = run(
        d.path(),
        &bin,
        &[image.as_os_str(), os("--accel"), os("kvm")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("failed to set MSR"), "{}", stderr(&o));
}

/// Ctrl-C (SIGINT) or SIGTERM while the VM runs: QEMU is stopped, the temporary image of
/// `run PROGRAM` is removed, and the exit status is the signal's.
#[test]
fn an_interrupt_stops_qemu_and_removes_the_temporary_image() {
    for (signal, status) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let d = tempfile::tempdir().unwrap();
        let release = common::fake_release(d.path());
        let prog = d.path().join("prog");
        std::fs::write(&prog, common::tiny_static_elf()).unwrap();
        let pidfile = d.path().join("qemu.pid");
        let bin = fake_qemu(
            d.path(),
            &format!(
                "echo $$ > '{}'; echo booted; exec /bin/sleep 600",
                pidfile.display()
            ),
        );
        let tmp = d.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nanoimg"))
            .args([
                os("run"),
                prog.as_os_str(),
                os("--kernel-dir"),
                release.as_os_str(),
            ])
            .args(["--accel", "tcg"])
            .current_dir(d.path())
            .env("PATH", &bin)
            .env("TMPDIR", &tmp)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            assert!(std::time::Instant::now() < deadline, "QEMU never started");
            assert!(child.try_wait().unwrap().is_none(), "nanoimg ended early");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let qemu: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let images: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert_eq!(
            images.len(),
            1,
            "the temporary image exists while the VM runs"
        );
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(status), "{}", stderr(&out));
        // QEMU is gone (reaped by nanoimg, so not even a zombie is left to signal).
        let gone = (0..200).any(|_| {
            // SAFETY: signal 0 only checks that the process exists.
            let alive = unsafe { libc::kill(qemu, 0) } == 0;
            if alive {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            !alive
        });
        assert!(gone, "QEMU {qemu} still runs");
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "temporary image left"
        );
    }
}

/// The kernel's list exactly as Nanos 0.1.55 prints it at exit (`src/unix/syscall.c`,
/// `print_missing_files_cfn`), after the program's output.
const MISSING_FILES_CONSOLE: &str = "printf 'hello\\nmissing_files_begin\\nlibfoo.so.1\\nfoo.conf\\nnowhere\\033[31m.conf\\nmissing_files_end\\n'; exit 0";

#[test]
fn missing_files_needs_an_image_built_with_the_flag() {
    let (d, image) = setup("{}");
    let bin = fake_qemu(d.path(), "echo booted; exit 0");
    let o = run(d.path(), &bin, &[image.as_os_str(), os("--missing-files")]);
    expect_error(
        &o,
        1,
        "was built without Nanos's missing_files flag, so its kernel keeps no list of the files the program failed to open; run the program instead (nanoimg run PROGRAM [-c CONFIG] --missing-files builds it with the flag), or rebuild the image with \"Debugflags\": [\"missing_files\"] in its config",
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "nothing booted");

    // An image that has it: the list is read, but without the build nanoimg does not know
    // the root to look in.
    let (d, image) = setup(r#"{"Debugflags": ["missing_files"]}"#);
    let bin = fake_qemu(d.path(), MISSING_FILES_CONSOLE);
    let o = run(
        d.path(),
        &bin,
        &[
            image.as_os_str(),
            os("--missing-files"),
            os("--accel"),
            os("tcg"),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "nanoimg: missing files: the program tried to open 3 names the image does not have"
        ),
        "{err}"
    );
    assert!(err.contains("nanoimg: foo.conf: not looked up"), "{err}");
}

#[test]
fn missing_files_builds_with_the_flag_and_says_what_packs_each_name() {
    let d = tempfile::tempdir().unwrap();
    let release = common::fake_release(d.path());
    let prog = d.path().join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let root = d.path().join("root");
    for (path, bytes) in [
        ("usr/lib/x86_64-linux-gnu/libfoo.so.1", &b"\x7fELF"[..]),
        ("etc/foo.conf", b"x=1\n"),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let image = d.path().join("kept.img");
    let bin = fake_qemu(d.path(), MISSING_FILES_CONSOLE);
    let o = run(
        d.path(),
        &bin,
        &[
            prog.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
            os("--target-root"),
            root.as_os_str(),
            os("-o"),
            image.as_os_str(),
            os("--missing-files"),
            os("--accel"),
            os("tcg"),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    // The console passes through untouched.
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("hello\nmissing_files_begin\n"));
    let lines: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("nanoimg: missing files:"))
        .take(4)
        .collect();
    let r = root.display();
    assert_eq!(
        lines,
        [
            "nanoimg: missing files: the program tried to open 3 names the image does not have (the kernel gives base names only):".to_string(),
            "nanoimg: libfoo.so.1: a library in the target root (/usr/lib/x86_64-linux-gnu/libfoo.so.1); to pack it: \"Libraries\": [\"libfoo.so.1\"]".to_string(),
            "nanoimg: foo.conf: /etc/foo.conf in the target root; to pack it: \"MapDirs\": {\"/etc/foo.conf\": \"/etc\"}".to_string(),
            format!("nanoimg: nowhere\\x1b[31m.conf: not in the target root {r} either"),
        ],
        "{err}"
    );
    // The image has the flag, as ops's --missing-files sets it (a Debugflags entry).
    let o = common::nanoimg(&[os("inspect"), image.as_os_str(), os("--json")], d.path());
    let inspected = String::from_utf8_lossy(&o.stdout);
    assert!(inspected.contains("\"missing_files\""), "{inspected}");
}

#[test]
fn a_gce_tar_boots_through_a_temporary_raw_image_removed_after_the_run() {
    let (d, image) = setup("{}");
    let o = common::nanoimg(
        &[
            os("convert"),
            image.as_os_str(),
            os("image.tar.gz"),
            os("--format"),
            os("gce"),
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The stand-in QEMU compares the disk it is given with the raw image.
    let seen = d.path().join("seen");
    let bin = fake_qemu(
        d.path(),
        &format!(
            "for a; do case \"$a\" in file=*) f=${{a#file=}}; f=${{f%%,*}}; echo \"$a\" > '{seen}'; cmp -s \"$f\" '{image}' && echo same >> '{seen}';; esac; done; exit 0",
            seen = seen.display(),
            image = image.display()
        ),
    );
    let tmp = d.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .args(["run", "image.tar.gz", "--accel", "tcg"])
        .current_dir(d.path())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("TMPDIR", &tmp)
        .env("NANOIMG_CACHE", d.path().join("cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("nanoimg: image.tar.gz is a gce image, which QEMU cannot boot: booting its raw image, converted into a temporary file\n"),
        "{}",
        stderr(&o)
    );
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(seen.contains(",format=raw,"), "{seen}");
    assert!(
        seen.ends_with("same\n"),
        "QEMU was given the raw image: {seen}"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temporary raw image left"
    );

    // Interrupted while the VM runs: QEMU stopped, the temporary raw image removed.
    let pidfile = d.path().join("qemu.pid");
    let bin = fake_qemu(
        d.path(),
        &format!("echo $$ > '{}'; exec /bin/sleep 600", pidfile.display()),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .args(["run", "image.tar.gz", "--accel", "tcg"])
        .current_dir(d.path())
        .env("PATH", &bin)
        .env("TMPDIR", &tmp)
        .env("NANOIMG_CACHE", d.path().join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "QEMU never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        1,
        "the raw image while it runs"
    );
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temporary raw image left after the interrupt"
    );
}

#[test]
fn a_program_built_as_a_gce_tar_boots_through_its_raw_image() {
    // The built tar and the raw image converted from it are both temporary files: the
    // first must live until the conversion has read it.
    let (d, image) = setup("{}");
    let cfg = d.path().join("gce.json");
    std::fs::write(&cfg, r#"{"DiskFormat": "gce"}"#).unwrap();
    let seen = d.path().join("seen");
    let bin = fake_qemu(
        d.path(),
        &format!(
            "for a; do case \"$a\" in file=*) f=${{a#file=}}; f=${{f%%,*}}; echo \"$a\" > '{seen}'; cmp -s \"$f\" '{image}' && echo same >> '{seen}';; esac; done; exit 0",
            seen = seen.display(),
            image = image.display()
        ),
    );
    let tmp = d.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .args(["run", "prog", "-c", "gce.json", "--kernel-dir", "release"])
        .args(["--accel", "tcg"])
        .current_dir(d.path())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("TMPDIR", &tmp)
        .env("NANOIMG_CACHE", d.path().join("cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is a gce image, which QEMU cannot boot: booting its raw image, converted into a temporary file\n"),
        "{}",
        stderr(&o)
    );
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(
        seen.ends_with("same\n"),
        "QEMU was given the raw image: {seen}"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temporary file left"
    );
}
