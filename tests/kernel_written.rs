//! A volume the real Nanos kernel wrote to, read back: `tests/data/kernel-written.vol.gz`.
//!
//! It was made by `cargo xtask e2e`'s `guest-fs` case (nanos 0.1.55): `nanoimg volume create`
//! of a folder holding `hello.txt`, labelled `guestdata`, then `xtask/samples/guestfs.c`
//! made folders, files, hard and symbolic links, renamed, unlinked, truncated and
//! fallocated under `/t`. The kernel's log therefore holds parent links (`..`) on files and
//! folders, a file under two names and uninitialised extents. `kernel-written.files.txt` is
//! the tree the guest left, as `inspect --files` lists it, written by the e2e runner from
//! what the program does (the `guest-fs` check, `xtask/src/checks.rs`), not from a reader.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

const KEPT: (&str, &[u8]) = ("hello.txt", b"on the volume before the boot\n");

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The vector, unpacked into `dir`.
fn volume(dir: &Path) -> std::path::PathBuf {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(data("kernel-written.vol.gz")).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let path = dir.join("kernel-written.vol");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// What the guest left: path → `dir`, `-> target` or `SIZE sha256 HEX`.
fn expected() -> BTreeMap<String, String> {
    std::fs::read_to_string(data("kernel-written.files.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let l = l.trim_start();
            if let Some(dir) = l.strip_suffix('/') {
                (dir.to_string(), "dir".to_string())
            } else if let Some((path, target)) = l.split_once(" -> ") {
                (path.to_string(), format!("-> {target}"))
            } else {
                let (path, rest) = l.split_once("  ").unwrap();
                (path.to_string(), rest.replace("  ", " "))
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn inspect_lists_exactly_the_tree_the_guest_left() {
    let d = tempfile::tempdir().unwrap();
    let vol = volume(d.path());
    let o = common::nanoimg(&[os("inspect"), os("--files"), vol.as_os_str()], d.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let listed: String = stdout
        .lines()
        .filter(|l| l.starts_with("  /t/"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        listed,
        std::fs::read_to_string(data("kernel-written.files.txt")).unwrap()
    );
    assert!(
        stdout.contains(&format!(
            "  /{}  {}  sha256 {}\n",
            KEPT.0,
            KEPT.1.len(),
            hex(&Sha256::digest(KEPT.1))
        )),
        "{stdout}"
    );
    assert!(stdout.contains("label \"guestdata\""), "{stdout}");
}

#[test]
fn extract_writes_the_tree_the_guest_left_file_by_file() {
    let d = tempfile::tempdir().unwrap();
    let vol = volume(d.path());
    let out = d.path().join("out");
    let o = common::nanoimg(&[os("extract"), vol.as_os_str(), out.as_os_str()], d.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(out.join(KEPT.0)).unwrap(), KEPT.1);
    let mut found = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, found: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &p, found);
                "dir".to_string()
            } else {
                let bytes = std::fs::read(&p).unwrap();
                format!("{} sha256 {}", bytes.len(), hex(&Sha256::digest(&bytes)))
            };
            found.insert(rel, what);
        }
    }
    walk(&out, &out.join("t"), &mut found);
    let mut want = expected();
    want.remove("/t");
    assert_eq!(found, want);
}

#[test]
fn diff_against_the_volume_before_the_boot_names_what_the_guest_added() {
    let d = tempfile::tempdir().unwrap();
    let vol = volume(d.path());
    // The volume before the boot, made again: the same inputs give the same bytes.
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join(KEPT.0), KEPT.1).unwrap();
    let before = d.path().join("before.vol");
    let o = common::nanoimg(
        &[
            os("volume"),
            os("create"),
            src.as_os_str(),
            os("-o"),
            before.as_os_str(),
            os("--label"),
            os("guestdata"),
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::nanoimg(
        &[
            os("diff"),
            os("--json"),
            before.as_os_str(),
            vol.as_os_str(),
        ],
        d.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let diff: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut added = BTreeMap::new();
    for c in diff["changes"].as_array().unwrap() {
        if c["area"] == "file" {
            assert!(c["a"].is_null(), "only additions: {c}");
            added.insert(c["name"].as_str().unwrap().to_string(), c["b"].clone());
        }
    }
    let want = expected();
    assert_eq!(
        added.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        added["/t/a/b/one-link.txt"],
        want["/t/a/b/one-link.txt"].replace(" sha256", " bytes, sha256")
    );
}
