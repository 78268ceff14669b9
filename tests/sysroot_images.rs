//! Container images as sysroots (`--target-root IMAGE`, `TargetRoot`, `--from-image`), made
//! with the real tools: `umoci` builds an OCI layout from a folder holding this machine's
//! loader and libc; `skopeo` converts it to a docker-archive. The image, not the host,
//! decides the libraries; it is locked by digest like the kernel.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn tool(cmd: &str, args: &[&OsStr], dir: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("{cmd}: {e} (install umoci and skopeo: `cargo xtask test` does)")
        });
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A dynamic C program compiled here.
fn program(dir: &Path) -> PathBuf {
    let src = dir.join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n",
    )
    .unwrap();
    let out = dir.join("hello");
    tool(
        "cc",
        &[os("-O2"), os("-o"), out.as_os_str(), src.as_os_str()],
        dir,
    );
    out
}

/// The host's path of a library the program needs, as the system loader finds it.
fn host_lib(name: &str) -> PathBuf {
    for dir in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
    ] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return std::fs::canonicalize(p).unwrap();
        }
    }
    panic!("no {name} on this host");
}

/// An OCI layout `dir/NAME` (tag `t`) whose root holds the loader and libc at the Debian
/// paths; `marker` is appended to libc, so that two images (and the host) differ.
fn image(dir: &Path, name: &str, marker: &[u8]) -> PathBuf {
    image_with(dir, name, marker, &[])
}

/// [`image`], with `files` (path in the root, host file) added.
fn image_with(dir: &Path, name: &str, marker: &[u8], files: &[(&str, &Path)]) -> PathBuf {
    tool("umoci", &[os("init"), os("--layout"), os(name)], dir);
    let tagged = format!("{name}:t");
    tool("umoci", &[os("new"), os("--image"), os(&tagged)], dir);
    let bundle = format!("{name}-bundle");
    tool(
        "umoci",
        &[
            os("unpack"),
            os("--rootless"),
            os("--image"),
            os(&tagged),
            os(&bundle),
        ],
        dir,
    );
    let root = dir.join(&bundle).join("rootfs");
    let libdir = root.join("lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&libdir).unwrap();
    std::fs::create_dir_all(root.join("lib64")).unwrap();
    let ld = host_lib("ld-linux-x86-64.so.2");
    std::fs::copy(&ld, libdir.join("ld-linux-x86-64.so.2")).unwrap();
    std::os::unix::fs::symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        root.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    let mut libc = std::fs::read(host_lib("libc.so.6")).unwrap();
    libc.extend_from_slice(marker);
    std::fs::write(libdir.join("libc.so.6"), libc).unwrap();
    for (inside, host) in files {
        let to = root.join(inside);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(host, &to).unwrap();
    }
    tool(
        "umoci",
        &[os("repack"), os("--image"), os(&tagged), os(&bundle)],
        dir,
    );
    dir.join(name)
}

/// `nanoimg build` with a fake kernel: its stdout/stderr and the image path.
fn build(dir: &Path, cwd: &Path, out: &str, extra: &[&OsStr]) -> (std::process::Output, PathBuf) {
    let release = dir.join("release");
    let out = dir.join(out);
    let lock = dir.join("nanoimg.lock");
    let mut args = vec![os("build")];
    args.extend_from_slice(extra);
    args.extend([
        os("--kernel-dir"),
        release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ]);
    args.extend([os("--lock"), lock.as_os_str()]);
    let o = Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .args(&args)
        .current_dir(cwd)
        .env("NANOIMG_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    (o, out)
}

fn sha(p: &Path) -> String {
    Sha256::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn an_image_decides_the_libraries_and_is_locked_by_digest() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let prog = program(dir);
    let one = image(dir, "one", b"one");
    let spec = format!("{}:t", one.display());

    // Built twice, from two working folders: the same bytes, and libc is the image's.
    let other_cwd = dir.join("elsewhere");
    std::fs::create_dir(&other_cwd).unwrap();
    let (o, a) = build(
        dir,
        dir,
        "a.img",
        &[prog.as_os_str(), os("--target-root"), os(&spec)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (o, b) = build(
        dir,
        &other_cwd,
        "b.img",
        &[prog.as_os_str(), os("--target-root"), os(&spec)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha(&a), sha(&b));
    let ex = dir.join("ex");
    let o = common::nanoimg(&[os("extract"), a.as_os_str(), ex.as_os_str()], dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let packed = std::fs::read(ex.join("lib/x86_64-linux-gnu/libc.so.6")).unwrap();
    assert!(
        packed.ends_with(b"one"),
        "libc comes from the image, not the host"
    );
    let lock = std::fs::read_to_string(dir.join("nanoimg.lock")).unwrap();
    assert!(
        lock.contains("[[image]]") && lock.contains("digest = \"sha256:"),
        "{lock}"
    );

    // deps reads the image too, and says which layer each library came from.
    let o = common::nanoimg(
        &[
            os("deps"),
            prog.as_os_str(),
            os("--target-root"),
            os(&spec),
            os("--json"),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layer = deps["layers"]["/lib/x86_64-linux-gnu/libc.so.6"]
        .as_str()
        .unwrap_or_default();
    assert!(layer.starts_with("sha256:") && layer.len() == 71, "{deps}");
    let o = common::nanoimg(
        &[os("deps"), prog.as_os_str(), os("--target-root"), os(&spec)],
        dir,
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!(", layer {})", &layer[..19])),
        "{text}"
    );

    // Another image: another hash, and diff names the library.
    let two = image(dir, "two", b"two");
    let spec2 = format!("{}:t", two.display());
    let (o, c) = build(
        dir,
        dir,
        "c.img",
        &[prog.as_os_str(), os("--target-root"), os(&spec2)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_ne!(sha(&a), sha(&c));
    let o = common::nanoimg(&[os("diff"), a.as_os_str(), c.as_os_str()], dir);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("file changed: /lib/x86_64-linux-gnu/libc.so.6"),
        "{text}"
    );

    // --locked refuses an image the lock does not record; the recorded one builds.
    let three = image(dir, "three", b"three");
    let spec3 = format!("{}:t", three.display());
    let (o, _) = build(
        dir,
        dir,
        "d.img",
        &[
            prog.as_os_str(),
            os("--target-root"),
            os(&spec3),
            os("--locked"),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not in nanoimg.lock and --locked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (o, _) = build(
        dir,
        dir,
        "e.img",
        &[
            prog.as_os_str(),
            os("--target-root"),
            os(&spec),
            os("--locked"),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // --platform picks among an image's platforms; this one holds only linux/amd64.
    let (o, _) = build(
        dir,
        dir,
        "g.img",
        &[
            prog.as_os_str(),
            os("--target-root"),
            os(&spec),
            os("--platform"),
            os("linux/arm64"),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no image matches") && err.contains("linux/amd64"),
        "{err}"
    );

    // A docker-archive of the same image gives the same libraries.
    let archive = dir.join("one.tar");
    tool(
        "skopeo",
        &[
            os("--insecure-policy"),
            os("copy"),
            os(&format!("oci:{spec}")),
            os(&format!("docker-archive:{}:one:t", archive.display())),
        ],
        dir,
    );
    let (o, f) = build(
        dir,
        dir,
        "f.img",
        &[prog.as_os_str(), os("--target-root"), archive.as_os_str()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::nanoimg(&[os("diff"), a.as_os_str(), f.as_os_str()], dir);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("file "), "same files: {text}");
}

/// `--from-image`: the program is taken from the image (as a `docker build` output holds
/// it), and the image is its target root.
#[test]
fn the_program_can_come_from_the_image() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let prog = program(dir);
    let img = image_with(dir, "app", b"app", &[("usr/local/bin/hello", &prog)]);
    let spec = format!("{}:t", img.display());
    std::fs::remove_file(&prog).unwrap();
    let (o, out) = build(
        dir,
        dir,
        "app.img",
        &[os("--from-image"), os(&spec), os("/usr/local/bin/hello")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::nanoimg(&[os("inspect"), out.as_os_str()], dir);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("program: /usr/local/bin/hello"), "{text}");
    let ex = dir.join("ex");
    let o = common::nanoimg(&[os("extract"), out.as_os_str(), ex.as_os_str()], dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(ex.join("usr/local/bin/hello").is_file());
    assert!(std::fs::read(ex.join("lib/x86_64-linux-gnu/libc.so.6"))
        .unwrap()
        .ends_with(b"app"));
    // A path the image does not hold.
    let (o, _) = build(
        dir,
        dir,
        "none.img",
        &[os("--from-image"), os(&spec), os("/usr/bin/nope")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("/usr/bin/nope is not a file in the container image"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
