//! `nanoimg build` end to end, with a fake release (the image is read back, not booted; the
//! e2e runner boots real ones).

mod common;

use std::ffi::OsStr;
use std::path::Path;

use nanoimg::disk::DiskImage;
use nanoimg::tfs::Entry;
use nanoimg::tuple::{Tuple, Value};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn builds_an_image_with_args_env_and_passthrough() {
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let prog = dir.path().join("prover");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"ManifestPassthrough": {"readonly_rootfs": "true"}, "Env": {"RUST_BACKTRACE": "1", "RUST_LOG": "debug"}, "Program": "./bin/prover", "Args": ["one", "two words"]}"#,
    )
    .unwrap();
    let out = dir.path().join("out.img");
    let o = common::nanoimg(
        &[
            os("build"),
            prog.as_os_str(),
            os("-c"),
            config.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-o"),
            out.as_os_str(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        stdout.lines().last().unwrap(),
        format!("Bootable image file:{}", out.display())
    );

    let img = DiskImage::open(&out).unwrap();
    let mut root = img.root_fs().unwrap();
    let m = root.root().clone();
    assert_eq!(m[&b"program"[..]], Value::string("/bin/prover"));
    assert_eq!(
        m[&b"arguments"[..]],
        Value::Vector(
            ["./bin/prover", "one", "two words"]
                .map(Value::string)
                .to_vec()
        )
    );
    let mut env = Tuple::new();
    for (k, v) in [
        ("NANOS_ARCH", "amd64"),
        ("NANOS_VERSION", ""),
        ("PWD", "/"),
        ("RUST_BACKTRACE", "1"),
        ("RUST_LOG", "debug"),
        ("USER", "root"),
    ] {
        env.insert(k.as_bytes().to_vec(), Value::string(v));
    }
    assert_eq!(m[&b"environment"[..]], Value::Tuple(env));
    assert_eq!(m[&b"readonly_rootfs"[..]], Value::string("true"));
    let tree = root.tree().unwrap();
    let Entry::Dir(bin) = &tree[&b"bin"[..]] else {
        panic!()
    };
    let Entry::File(p) = &bin[&b"prover"[..]] else {
        panic!()
    };
    assert_eq!(root.read_file(p).unwrap(), std::fs::read(&prog).unwrap());
    let mut boot = img.boot_fs().unwrap().unwrap();
    let Entry::File(k) = &boot.tree().unwrap()[&b"kernel"[..]] else {
        panic!()
    };
    assert_eq!(
        boot.read_file(k).unwrap(),
        std::fs::read(release.join("kernel.img")).unwrap()
    );
}

#[test]
fn the_default_output_is_where_ops_puts_it() {
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let prog = dir.path().join("hello.bin");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let ops_home = dir.path().join("opshome");
    let o = common::nanoimg_env(
        &[
            os("build"),
            prog.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
        ],
        dir.path(),
        &[("OPS_HOME", ops_home.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Where ops puts images, and ops's last line.
    let image = ops_home.join(".ops/images/hello");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().last().unwrap(),
        format!("Bootable image file:{}", image.display())
    );
    let img = DiskImage::open(&image).unwrap();
    let root = img.root_fs().unwrap();
    assert_eq!(root.root()[&b"program"[..]], Value::string("/hello.bin"));
    assert_eq!(
        root.root()[&b"arguments"[..]],
        Value::Vector(vec![Value::string("hello.bin")])
    );
    // A writable root filesystem gets free space after its data: sector 0, one log
    // extension, one sector of program (a 64-byte ELF header) and one each for /etc/passwd,
    // /etc/resolv.conf and the hostname.
    let used = (1 + 1024 + 1 + 3) * 512;
    let free = img.root_partition().size - used;
    assert_eq!(free, nanoimg::plan::DEFAULT_FREE_SPACE);
}

/// Runs a build expected to fail; checks the one-line message names `needle`, the exit code
/// is non-zero, and nothing (not even a temporary file) is left at the output.
fn fails(setup: impl FnOnce(&Path, &Path) -> Vec<std::ffi::OsString>, needle: &str, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("image.img");
    let mut args = setup(dir.path(), &release);
    args.extend(["-o".into(), out.clone().into_os_string()]);
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let o = common::nanoimg(&args, dir.path());
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "{stderr:?} should name {needle:?}");
    assert!(
        stderr.contains(message),
        "{stderr:?} should say {message:?}"
    );
    assert!(!out.exists(), "no image at OUT");
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        0,
        "no leftovers"
    );
}

fn build_args(prog: &Path, release: &Path, config: Option<&Path>) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["build".into(), prog.into()];
    if let Some(c) = config {
        a.extend(["-c".into(), c.into()]);
    }
    a.extend(["--kernel-dir".into(), release.into()]);
    a
}

fn program(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("prog");
    std::fs::write(&p, common::tiny_static_elf()).unwrap();
    p
}

#[test]
fn a_missing_program() {
    fails(
        |d, r| build_args(&d.join("no-such-program"), r, None),
        "no-such-program",
        "cannot read program",
    );
}

#[test]
fn a_kernel_folder_without_kernel_img() {
    fails(
        |d, r| {
            std::fs::remove_file(r.join("kernel.img")).unwrap();
            build_args(&program(d), r, None)
        },
        "release",
        "has no kernel.img",
    );
}

#[test]
fn a_kernel_folder_without_boot_img() {
    fails(
        |d, r| {
            std::fs::remove_file(r.join("boot.img")).unwrap();
            build_args(&program(d), r, None)
        },
        "release",
        "has no boot.img",
    );
}

#[test]
fn a_boot_img_that_is_not_a_nanos_stage2() {
    fails(
        |d, r| {
            let mut b = common::fake_boot_img(94);
            b[442] = 7;
            std::fs::write(r.join("boot.img"), b).unwrap();
            build_args(&program(d), r, None)
        },
        "boot.img",
        "not a Nanos bootloader",
    );
}

#[test]
fn an_unreadable_config() {
    fails(
        |d, r| build_args(&program(d), r, Some(&d.join("missing.json"))),
        "missing.json",
        "cannot read config",
    );
    fails(
        |d, r| build_args(&program(d), r, Some(d)),
        "cannot read config",
        "directory",
    );
}

#[test]
fn a_config_that_is_not_json() {
    fails(
        |d, r| {
            let c = d.join("config.json");
            std::fs::write(&c, "Program: prover\n").unwrap();
            build_args(&program(d), r, Some(&c))
        },
        "config.json",
        "is not valid JSON",
    );
}

#[test]
fn a_config_with_an_unknown_field() {
    fails(
        |d, r| {
            let c = d.join("config.json");
            std::fs::write(&c, "{\n  \"Programm\": \"prover\"\n}").unwrap();
            build_args(&program(d), r, Some(&c))
        },
        "unknown field `Programm`",
        "line 2",
    );
}

#[test]
fn a_missing_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let out = dir.path().join("nowhere/x.img");
    let mut args = build_args(&program(dir.path()), &release, None);
    args.extend(["-o".into(), out.clone().into_os_string()]);
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let o = common::nanoimg(&args, dir.path());
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: cannot write {}: the folder {} does not exist; create it first, or give -o \
             a path in an existing folder\n",
            out.display(),
            dir.path().join("nowhere").display()
        )
    );
    assert!(!out.exists());
}

/// Compiles C source with the system compiler (a missing compiler fails the test).
fn cc(dir: &Path, source: &str, args: &[&str]) -> std::path::PathBuf {
    std::fs::write(dir.join("prog.c"), source).unwrap();
    let out = std::process::Command::new("cc")
        .args(args)
        .args(["-o", "prog", "prog.c"])
        .current_dir(dir)
        .output()
        .expect("cc is needed to build test programs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("prog")
}

#[test]
fn packaging_never_runs_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let marker = dir.path().join("EXECUTED");
    // The program's PT_INTERP is a freestanding binary that creates the marker: running the
    // program in any way (directly, or with LD_TRACE_LOADED_OBJECTS as ops does) runs it.
    // The program's own constructor would create the marker too.
    let trap = format!(
        "static const char path[] = \"{m}\";\n\
         void _start(void) {{\n\
           long r;\n\
           __asm__ volatile(\"syscall\" : \"=a\"(r) : \"a\"(85), \"D\"(path), \"S\"(0644) : \"rcx\", \"r11\", \"memory\");\n\
           __asm__ volatile(\"syscall\" : : \"a\"(60), \"D\"(1) : \"rcx\", \"r11\", \"memory\");\n\
           for (;;) {{}}\n\
         }}\n",
        m = marker.display()
    );
    let interp = dir.path().join("trap-interpreter");
    std::fs::write(dir.path().join("trap.c"), trap).unwrap();
    let out = std::process::Command::new("cc")
        .args(["-nostdlib", "-static-pie", "-fPIE", "-O2", "-o"])
        .arg(&interp)
        .arg("trap.c")
        .current_dir(dir.path())
        .output()
        .expect("cc is needed to build test programs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = format!(
        "#include <stdio.h>\n\
         __attribute__((constructor)) static void c(void) {{ FILE *f = fopen(\"{m}\", \"w\"); if (f) fclose(f); }}\n\
         int main(void) {{ return 0; }}\n",
        m = marker.display()
    );
    let linker = format!("-Wl,--dynamic-linker={}", interp.display());
    let prog = cc(dir.path(), &source, &["-O2", &linker]);

    let image = dir.path().join("prog.img");
    let o = common::nanoimg(
        &[
            os("build"),
            prog.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-o"),
            image.as_os_str(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::nanoimg(&[os("deps"), prog.as_os_str()], dir.path());
    assert!(o.status.success());
    assert!(
        !marker.exists(),
        "the program or its interpreter was executed"
    );

    // The closure is in the image: the interpreter at its literal PT_INTERP path.
    let img = DiskImage::open(&image).unwrap();
    let mut root = img.root_fs().unwrap();
    let tree = root.tree().unwrap();
    let mut node = &tree;
    let parts: Vec<String> = interp
        .iter()
        .skip(1)
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    for p in &parts[..parts.len() - 1] {
        let Entry::Dir(d) = &node[p.as_bytes()] else {
            panic!("{p}")
        };
        node = d;
    }
    let Entry::File(f) = &node[parts.last().unwrap().as_bytes()] else {
        panic!()
    };
    assert_eq!(root.read_file(f).unwrap(), std::fs::read(&interp).unwrap());

    // The trap works: running the program does create the marker.
    let _ = std::process::Command::new(&prog).status();
    assert!(marker.exists(), "the trap did not fire when run directly");
}

#[test]
fn deps_shows_what_was_found_where_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let prog = cc(dir.path(), "int main(void) { return 0; }\n", &["-O2"]);
    let o = common::nanoimg(&[os("deps"), prog.as_os_str()], dir.path());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(o.status.success());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "/prog (dynamic x86_64 ELF)");
    assert!(
        lines[1].starts_with("  /lib64/ld-linux-x86-64.so.2 <- /"),
        "{text}"
    );
    assert!(lines[1].ends_with("(PT_INTERP of /prog)"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("libc.so.6 needed by /prog, found by ")),
        "{text}"
    );

    let o = common::nanoimg(&[os("deps"), prog.as_os_str(), os("--json")], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["program"]["kind"], "dynamic");
    assert_eq!(v["program"]["needed"][0], "libc.so.6");
    assert_eq!(v["dependencies"][0]["rule"], "interpreter");

    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"#!/bin/sh\n").unwrap();
    let o = common::nanoimg(&[os("deps"), junk.as_os_str()], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(o.stderr).unwrap(),
        format!("error: {} is not an ELF file\n", junk.display())
    );
}

#[test]
fn ops_style_flags_merge_over_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let prog = dir.path().join("prover");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"Args": ["from-config"], "Env": {"A": "1"}, "RunConfig": {"Memory": "2G"}}"#,
    )
    .unwrap();
    let ops_home = dir.path().join("opshome");
    let o = common::nanoimg_env(
        &[
            os("build"),
            prog.as_os_str(),
            os("-c"),
            config.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-a"),
            os("--fast"),
            os("-a"),
            os("x=y"),
            os("-e"),
            os("A=2=3"),
            os("--mounts"),
            os("%1:/workspace"),
            os("-i"),
            os("my-prover.v2"),
            os("--verbose"),
        ],
        dir.path(),
        &[("OPS_HOME", ops_home.to_str().unwrap())],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("ignoring RunConfig.Memory"), "{stderr}");
    assert!(stderr.contains("mount %1 -> %0 (/workspace)"), "{stderr}");
    let image = ops_home.join(".ops/images/my-prover");
    let root = DiskImage::open(&image).unwrap().root_fs().unwrap();
    let m = root.root();
    assert_eq!(
        m[&b"arguments"[..]],
        Value::Vector(["prover", "--fast", "x=y"].map(Value::string).to_vec()),
        "-a replaces the config's Args"
    );
    let Value::Tuple(env) = &m[&b"environment"[..]] else {
        panic!()
    };
    assert_eq!(
        env[&b"A"[..]],
        Value::string("2=3"),
        "-e splits at the first ="
    );
    let Value::Tuple(mounts) = &m[&b"mounts"[..]] else {
        panic!()
    };
    assert_eq!(mounts[&b"%0"[..]], Value::string("/workspace"));

    let o = common::nanoimg(
        &[
            os("build"),
            prog.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-e"),
            os("NOEQUALS"),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"NOEQUALS\" is not K=V"));
}

/// Images and volumes get the mode a new file gets under the umask (as ops's do), not the
/// 0600 of a temporary file.
#[test]
fn outputs_get_the_mode_of_a_new_file_under_the_umask() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let prog = program(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), b"x").unwrap();
    for (umask, mode) in [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)] {
        let image = dir.path().join(format!("image-{umask:o}.img"));
        let volume = dir.path().join(format!("data-{umask:o}.vol"));
        let lock = dir.path().join(format!("lock-{umask:o}"));
        let mut build = build_args(&prog, &release, None);
        build.extend([
            "-o".into(),
            image.clone().into(),
            "--lock".into(),
            lock.clone().into(),
        ]);
        let create: Vec<std::ffi::OsString> = vec![
            "volume".into(),
            "create".into(),
            data.clone().into(),
            "-o".into(),
            volume.clone().into(),
        ];
        for args in [build, create] {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_nanoimg"));
            c.args(&args)
                .current_dir(dir.path())
                .env("NANOIMG_CACHE", dir.path().join("cache"));
            // SAFETY: umask is async-signal-safe and touches only the child's own mask.
            unsafe {
                c.pre_exec(move || {
                    libc::umask(umask);
                    Ok(())
                });
            }
            let o = c.output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        for p in [&image, &volume, &lock] {
            let got = std::fs::metadata(p).unwrap().mode() & 0o777;
            assert_eq!(got, mode, "{} under umask {umask:03o}", p.display());
        }
    }
}

/// Bad input to every command gets one line naming the thing, the path and the remedy, a
/// non-zero exit, and leaves nothing behind.
#[test]
fn every_command_explains_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let release = common::fake_release(d);
    let prog = program(d);
    std::fs::create_dir(d.join("folder")).unwrap();
    std::fs::write(d.join("file"), b"not an image").unwrap();
    std::fs::write(d.join("bad.lock"), "[[release]]\nversion = 1\n").unwrap();
    let s = |p: &str| d.join(p).display().to_string();
    let r = release.display().to_string();
    let pr = prog.display().to_string();
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            vec!["build".into(), pr.clone(), "--kernel-dir".into(), r.clone(), "-o".into(), s("folder")],
            1,
            format!("error: cannot write {}: it is a folder; give -o the path of the file to write, e.g. {}/NAME", s("folder"), s("folder")),
        ),
        (
            vec!["build".into(), pr.clone(), "--kernel-dir".into(), r.clone(), "-o".into(), s("x.img"), "--target-root".into(), s("nowhere")],
            1,
            format!("error: target root {} does not exist or is not a folder (--target-root or the config's TargetRoot); give the folder that holds the program's libraries", s("nowhere")),
        ),
        (
            vec!["build".into(), pr.clone(), "--kernel-dir".into(), r.clone(), "-o".into(), s("x.img"), "--lock".into(), s("bad.lock")],
            1,
            format!("error: lock file {} is not valid (line 2: invalid type: integer `1`, expected a string); restore it from version control, or delete it to record the kernel again", s("bad.lock")),
        ),
        (
            vec!["volume".into(), "create".into(), s("nowhere"), "-o".into(), s("v.vol")],
            1,
            format!("error: volume source {} does not exist; give the folder whose content the volume should hold", s("nowhere")),
        ),
        (
            vec!["volume".into(), "create".into(), s("file"), "-o".into(), s("v.vol")],
            1,
            format!("error: volume source {} is not a folder; give the folder whose content the volume should hold", s("file")),
        ),
        (
            vec!["extract".into(), s("file"), s("file")],
            1,
            format!("error: cannot extract into {}: it exists and is not a folder; give a new or empty folder", s("file")),
        ),
        (
            vec!["diff".into(), s("nowhere.img"), s("file")],
            2,
            format!("error: cannot read {}: No such file or directory (os error 2)", s("nowhere.img")),
        ),
        (
            vec!["kernel".into(), "verify".into(), "--lock".into(), s("none.lock")],
            1,
            format!("error: no lock file at {}; `nanoimg build` and `nanoimg kernel fetch` write one, or give its path with --lock", s("none.lock")),
        ),
    ];
    for (args, code, line) in cases {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let o = common::nanoimg(&args, d);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr, format!("{line}\n"), "{args:?}");
    }
    // Nothing was written.
    let mut left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["bad.lock", "file", "folder", "prog", "release"]);
    assert_eq!(std::fs::read_dir(d.join("folder")).unwrap().count(), 0);
}

/// `deps --arch`: the program must be of it, as for `build`.
#[test]
fn deps_checks_arch() {
    let d = tempfile::tempdir().unwrap();
    let prog = d.path().join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let args = |arch: &str| {
        vec![
            std::ffi::OsString::from("deps"),
            prog.clone().into(),
            "--arch".into(),
            arch.into(),
        ]
    };
    let a = args("arm64");
    let refs: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
    let o = common::nanoimg(&refs, d.path());
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: --arch arm64 asks for aarch64, but program {} is x86_64; build the program for aarch64, or drop --arch",
            prog.display()
        )
    );
    let a = args("amd64");
    let refs: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
    let o = common::nanoimg(&refs, d.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
