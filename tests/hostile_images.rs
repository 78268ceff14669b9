//! Container images as hostile input, end to end through the CLI, with layouts made by
//! hand in the test (no image tool): a path inside an image never reaches the build host,
//! values from an image reach the terminal escaped, and a FIFO where a file belongs is
//! refused at once.
//!
//! Each host-escape case plants a file on the host at the absolute path the image's links
//! name, with other bytes than the image's file at the same path, and checks by SHA-256
//! that the image's bytes were packed.

mod common;
#[path = "../crates/oci/tests/common/mod.rs"]
mod images;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use images::{tar_of, E};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A static "program": the ELF header nanoimg reads, then `marker`.
fn program(marker: &[u8]) -> Vec<u8> {
    let mut p = common::tiny_static_elf();
    p.extend_from_slice(marker);
    p
}

fn sha(bytes: &[u8]) -> String {
    images::sha(bytes)[7..].to_string()
}

/// The SHA-256 `nanoimg inspect --files --json` reports for `path` in `image`.
fn packed_sha(dir: &Path, image: &Path, path: &str) -> String {
    let o = common::nanoimg(
        &[
            os("inspect"),
            image.as_os_str(),
            os("--files"),
            os("--json"),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files = &v["root"]["files"];
    files[path]["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("{path} not a file in {files}"))
        .to_string()
}

fn build(dir: &Path, args: &[&OsStr]) -> std::process::Output {
    let release = dir.join("release");
    let mut all = vec![os("build")];
    all.extend_from_slice(args);
    all.extend([os("--kernel-dir"), release.as_os_str()]);
    common::nanoimg(&all, dir)
}

/// `--from-image IMG /usr/bin/awk` where `/usr/bin/awk -> /etc/alternatives/awk ->
/// <planted>/mawk`, both links absolute (as Debian's alternatives are); and `MapDirs`
/// through `/var/run -> <planted>`. The host holds other bytes at `<planted>`.
#[test]
fn paths_in_an_image_are_resolved_in_the_image_not_on_the_host() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let planted = tempfile::tempdir().unwrap();
    let host_mawk = program(b"HOST program");
    std::fs::write(planted.path().join("mawk"), &host_mawk).unwrap();
    std::fs::write(planted.path().join("data"), b"HOST data").unwrap();
    let image_mawk = program(b"image program");
    let p = planted.path().to_str().unwrap().trim_start_matches('/');
    let (mawk, data) = (format!("{p}/mawk"), format!("{p}/data"));
    let abs_mawk = format!("/{mawk}");
    let abs_planted = format!("/{p}");
    let tar = tar_of(&[
        E::Dir("etc/alternatives"),
        E::Dir("usr/bin"),
        E::Dir("var"),
        E::File(&mawk, &image_mawk),
        E::File(&data, b"image data"),
        E::Symlink("etc/alternatives/awk", &abs_mawk),
        E::Symlink("usr/bin/awk", "/etc/alternatives/awk"),
        E::Symlink("var/run", &abs_planted),
    ]);
    let layout = images::layout(&dir.join("img"), &[tar], true);
    std::fs::write(
        dir.join("config.json"),
        r#"{"MapDirs": {"/var/run/*": "/run"}}"#,
    )
    .unwrap();
    let out = dir.join("awk.img");
    let o = build(
        dir,
        &[
            os("--from-image"),
            layout.as_os_str(),
            os("/usr/bin/awk"),
            os("-c"),
            os("config.json"),
            os("-o"),
            out.as_os_str(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(packed_sha(dir, &out, "/usr/bin/awk"), sha(&image_mawk));
    assert_ne!(sha(&image_mawk), sha(&host_mawk));
    assert_eq!(packed_sha(dir, &out, "/run/data"), sha(b"image data"));
    assert_eq!(packed_sha(dir, &out, "/run/mawk"), sha(&image_mawk));

    // A program that is a link to a host path the image does not hold: refused, naming it.
    let tar = tar_of(&[E::Dir("bin"), E::Symlink("bin/sh", "/etc/passwd")]);
    let layout = images::layout(&dir.join("img2"), &[tar], true);
    let o = build(
        dir,
        &[os("--from-image"), layout.as_os_str(), os("/bin/sh")],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: /bin/sh is not a file in the container image"),
        "{stderr}"
    );
    assert!(stderr.contains("/bin/sh does not exist in"), "{stderr}");
    assert!(stderr.contains("(no /etc)"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A member whose name carries a newline and an ESC sequence, in a layer that is refused:
/// the error is one line, with `\n` and `\x1b` written out.
#[test]
fn a_hostile_member_name_is_printed_escaped() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let name = "evil\n\x1b[32mnanoimg: all good\x1b[0m/../../x";
    // The tar crate refuses `..` when building: the name goes into the header as it is.
    let layout = images::layout(
        &dir.join("img"),
        &[tar_of(&[E::RawName(name.as_bytes())])],
        true,
    );
    let prog = dir.join("prog");
    std::fs::write(&prog, program(b"")).unwrap();
    let o = common::nanoimg(
        &[
            os("deps"),
            prog.as_os_str(),
            os("--target-root"),
            layout.as_os_str(),
        ],
        dir,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert!(
        stderr.contains(r"evil\n\x1b[32mnanoimg: all good\x1b[0m"),
        "{stderr:?}"
    );
}

/// A FIFO where the layout's `index.json` belongs: refused at once, not waited on.
#[test]
fn a_fifo_index_is_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let layout = images::layout(&dir.join("img"), &[tar_of(&[E::Dir("x")])], true);
    std::fs::remove_file(layout.join("index.json")).unwrap();
    let c =
        std::ffi::CString::new(layout.join("index.json").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let prog = dir.join("prog");
    std::fs::write(&prog, program(b"")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .args([
            os("deps"),
            prog.as_os_str(),
            os("--target-root"),
            layout.as_os_str(),
        ])
        .current_dir(dir)
        .env("NANOIMG_CACHE", dir.join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Not a timing test: the bound only keeps a hang from hanging the suite.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("nanoimg blocked opening a FIFO index.json");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("index.json"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Device files and FIFOs in a layer are skipped (Nanos has no use for them), with one
/// note for the layer, instead of refusing the image; the rest of the layer is applied.
#[test]
fn device_files_and_fifos_are_skipped_with_one_note() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let prog = program(b"in image");
    let tar = tar_of(&[
        E::Char("dev/null"),
        E::Block("dev/sda"),
        E::Fifo("run/fifo"),
        E::File("app", &prog),
    ]);
    let layout = images::layout(&dir.join("img"), &[tar], true);
    let out = dir.join("app.img");
    let o = build(
        dir,
        &[
            os("--from-image"),
            layout.as_os_str(),
            os("/app"),
            os("-o"),
            out.as_os_str(),
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("skipped")).collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].starts_with("nanoimg: skipped 3 device files and FIFOs in layer "),
        "{stderr}"
    );
    assert!(
        notes[0].contains("Nanos has no use for them (first: dev/null)"),
        "{stderr}"
    );
    assert_eq!(packed_sha(dir, &out, "/app"), sha(&prog));
}

/// A file whose name carries a newline and an ESC sequence, packed from an image (its
/// `/etc`, named in `Dirs`): `inspect --files` lists it on one line, escaped.
#[test]
fn inspect_lists_hostile_names_escaped() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let evil = "etc/evil\n\x1b[31mnanoimg: all good";
    let prog = program(b"");
    let tar = tar_of(&[E::Dir("etc"), E::File(evil, b"x"), E::File("app", &prog)]);
    let layout = images::layout(&dir.join("img"), &[tar], true);
    std::fs::write(dir.join("config.json"), r#"{"Dirs": ["/etc"]}"#).unwrap();
    let out = dir.join("evil.img");
    let o = build(
        dir,
        &[
            os("--from-image"),
            layout.as_os_str(),
            os("/app"),
            os("-c"),
            os("config.json"),
            os("-o"),
            out.as_os_str(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::nanoimg(&[os("inspect"), out.as_os_str(), os("--files")], dir);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(r"  /etc/evil\n\x1b[31mnanoimg: all good  1  sha256 ")),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("nanoimg: all good")),
        "{text}"
    );
}
