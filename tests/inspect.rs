//! `nanoimg inspect`, `diff` and `extract` on the reference images and on images nanoimg
//! writes.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn gunzip(name: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{name}.img"));
    let mut gz = flate2::read::GzDecoder::new(
        File::open(common::vectors_dir().join(format!("{name}.img.gz"))).unwrap(),
    );
    std::io::copy(&mut gz, &mut File::create(&out).unwrap()).unwrap();
    out
}

fn json(args: &[&OsStr], cwd: &Path) -> serde_json::Value {
    let o = common::nanoimg(args, cwd);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn inspect_matches_what_nanos_dump_printed_for_every_vector() {
    let dir = tempfile::tempdir().unwrap();
    for (name, layout) in [
        ("mkfs-empty-volume", "volume"),
        ("mkfs-small-tree", "volume"),
        ("mkfs-big-file", "volume"),
        ("mkfs-many-files", "volume"),
        ("mkfs-program-image", "bios"),
        ("mkfs-program-image-uefi", "uefi"),
        ("ops-program-image", "bios"),
    ] {
        let img = gunzip(name, dir.path());
        let r = json(
            &[os("inspect"), img.as_os_str(), os("--json"), os("--files")],
            dir.path(),
        );
        assert_eq!(r["layout"], layout, "{name}");
        let dump = std::fs::read_to_string(common::vectors_dir().join(format!("{name}.dump.txt")))
            .unwrap();
        let mut lines = dump.lines();
        assert_eq!(
            lines.next().unwrap(),
            format!("Label: {}", r["root"]["label"].as_str().unwrap())
        );
        assert_eq!(
            lines.next().unwrap(),
            format!("UUID: {}", r["root"]["uuid"].as_str().unwrap())
        );
        lines.next();
        let metadata: Vec<&str> = lines
            .take_while(|l| !l.starts_with("detected filesystem"))
            .collect();
        assert_eq!(r["root"]["metadata"], metadata.join("\n"), "{name}");
        if layout != "volume" {
            let kernel =
                std::fs::read(common::vectors_dir().join("inputs/blobs/kernel.img")).unwrap();
            let f = &r["boot"]["files"]["/kernel"];
            assert_eq!(f["size"], kernel.len());
            assert_eq!(
                f["sha256"],
                format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&kernel))
            );
        }
    }
}

/// Builds the project in `dir` with extra arguments, into `out`.
fn build(dir: &Path, out: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(out);
    let mut args = vec![
        os("build"),
        os("./prover"),
        os("-c"),
        os("config.json"),
        os("--kernel-dir"),
        os("release"),
        os("-o"),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(|a| os(a)));
    let o = common::nanoimg(&args, dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    common::fake_release(p);
    std::fs::write(p.join("prover"), common::tiny_static_elf()).unwrap();
    std::fs::create_dir_all(p.join("data/sub")).unwrap();
    std::fs::write(p.join("data/a.txt"), b"alpha").unwrap();
    std::fs::write(p.join("data/sub/b.bin"), vec![7u8; 3000]).unwrap();
    std::os::unix::fs::symlink("a.txt", p.join("data/link")).unwrap();
    std::fs::write(
        p.join("config.json"),
        r#"{"Program": "prover", "Env": {"MODE": "fast"}, "Dirs": ["data"]}"#,
    )
    .unwrap();
    dir
}

/// `nanoimg diff --json`: the exit code and the changes as (area, name).
fn diff(dir: &Path, a: &Path, b: &Path) -> (i32, Vec<(String, String)>) {
    let o = common::nanoimg(
        &[os("diff"), a.as_os_str(), b.as_os_str(), os("--json")],
        dir,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changes = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["area"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (o.status.code().unwrap(), changes)
}

#[test]
fn diff_names_exactly_what_changed() {
    let d = project();
    let p = d.path();
    let base = build(p, "base.img", &[]);
    assert_eq!(diff(p, &base, &base), (0, vec![]));
    let o = common::nanoimg(&[os("diff"), base.as_os_str(), base.as_os_str()], p);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "identical\n");

    // One file (same size, one byte).
    std::fs::write(p.join("data/a.txt"), b"alphA").unwrap();
    let one_file = build(p, "file.img", &[]);
    std::fs::write(p.join("data/a.txt"), b"alpha").unwrap();
    assert_eq!(
        diff(p, &base, &one_file),
        (1, vec![("file".into(), "/data/a.txt".into())])
    );

    // One environment value.
    let env = build(p, "env.img", &["-e", "MODE=slow"]);
    assert_eq!(
        diff(p, &base, &env),
        (1, vec![("manifest".into(), "environment.MODE".into())])
    );

    // The kernel (same size, one byte).
    let kernel = p.join("release/kernel.img");
    let original = std::fs::read(&kernel).unwrap();
    let mut changed = original.clone();
    changed[1000] ^= 0xff;
    std::fs::write(&kernel, &changed).unwrap();
    std::fs::remove_file(p.join("nanoimg.lock")).unwrap();
    let new_kernel = build(p, "kernel.img", &[]);
    std::fs::write(&kernel, &original).unwrap();
    std::fs::remove_file(p.join("nanoimg.lock")).unwrap();
    assert_eq!(
        diff(p, &base, &new_kernel),
        (1, vec![("kernel".into(), "/kernel".into())])
    );

    // Only the UUID.
    let uuid = build(
        p,
        "uuid.img",
        &["--uuid", "00112233-4455-6677-8899-aabbccddeeff"],
    );
    assert_eq!(
        diff(p, &base, &uuid),
        (1, vec![("layout".into(), "root filesystem UUID".into())])
    );

    // Errors exit 2.
    let o = common::nanoimg(&[os("diff"), base.as_os_str(), os("/nonexistent.img")], p);
    assert_eq!(o.status.code(), Some(2));
}

/// Builds the project in `dir` from `config` (written to `config.json`), into `out`.
fn build_config(dir: &Path, out: &str, config: &serde_json::Value) -> PathBuf {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    build(dir, out, &[])
}

/// `nanoimg diff` as text, and `--json`'s changes; asserts both exit 1 (the images differ).
fn diff_both(dir: &Path, a: &Path, b: &Path) -> (String, Vec<serde_json::Value>) {
    let text = common::nanoimg(&[os("diff"), a.as_os_str(), b.as_os_str()], dir);
    assert_eq!(text.status.code(), Some(1));
    let j = common::nanoimg(
        &[os("diff"), a.as_os_str(), b.as_os_str(), os("--json")],
        dir,
    );
    assert_eq!(j.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    (
        String::from_utf8(text.stdout).unwrap(),
        v["changes"].as_array().unwrap().clone(),
    )
}

#[test]
fn diff_names_the_changed_manifest_leaf_not_its_tuple() {
    let d = project();
    let p = d.path();
    let config = serde_json::json!({
        "Program": "prover",
        "Args": ["-v", "one"],
        "Env": {"GREETING": "one", "OTHER": "same", "THIRD": "same"},
        "Mounts": {"%0": "/data"},
        "ManifestPassthrough": {"readonly_rootfs": "true", "custom": {"k": "v"}},
        "Dirs": ["data"],
    });
    let base = build_config(p, "base.img", &config);
    let change = |out: &str, pointer: &str, value: serde_json::Value| {
        let mut c = config.clone();
        match value {
            serde_json::Value::Null => {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                c.pointer_mut(parent)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .remove(key);
            }
            v => *c.pointer_mut(pointer).unwrap() = v,
        }
        build_config(p, out, &c)
    };
    for (img, name, a, b, line) in [
        (
            change("env.img", "/Env/GREETING", "two".into()),
            "environment.GREETING",
            Some("one"),
            Some("two"),
            "manifest changed: environment.GREETING: one -> two",
        ),
        (
            change("args.img", "/Args/1", "two".into()),
            "arguments[2]",
            Some("one"),
            Some("two"),
            "manifest changed: arguments[2]: one -> two",
        ),
        // (Mount points are created as directories: these two exist anyway.)
        (
            change("mount.img", "/Mounts/%0", "/data/sub".into()),
            "mounts.%0",
            Some("/data"),
            Some("/data/sub"),
            "manifest changed: mounts.%0: /data -> /data/sub",
        ),
        (
            change(
                "passthrough.img",
                "/ManifestPassthrough/readonly_rootfs",
                "false".into(),
            ),
            "readonly_rootfs",
            Some("true"),
            Some("false"),
            "manifest changed: readonly_rootfs: true -> false",
        ),
        (
            change("nested.img", "/ManifestPassthrough/custom/k", "w".into()),
            "custom.k",
            Some("v"),
            Some("w"),
            "manifest changed: custom.k: v -> w",
        ),
        // A removed tuple: each leaf under it.
        (
            change("no-mounts.img", "/Mounts", serde_json::Value::Null),
            "mounts.%0",
            Some("/data"),
            None,
            "manifest removed: mounts.%0 = /data",
        ),
    ] {
        let (text, changes) = diff_both(p, &base, &img);
        // The filesystem UUID follows content, so it is not reported beside the change.
        assert_eq!(text, format!("{line}\n"), "{name}");
        assert!(!text.contains("OTHER") && !text.contains("THIRD"), "{text}");
        assert_eq!(
            changes,
            vec![serde_json::json!({"area": "manifest", "name": name, "a": a, "b": b})],
            "{name}"
        );
    }
}

#[test]
fn extract_writes_the_tree_back() {
    let d = project();
    let p = d.path();
    let img = build(p, "x.img", &[]);
    let out = p.join("out");
    let o = common::nanoimg(&[os("extract"), img.as_os_str(), out.as_os_str()], p);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(out.join("data/a.txt")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(out.join("data/sub/b.bin")).unwrap(),
        vec![7u8; 3000]
    );
    assert_eq!(
        std::fs::read_link(out.join("data/link")).unwrap(),
        Path::new("a.txt")
    );
    assert_eq!(
        std::fs::read(out.join("prover")).unwrap(),
        common::tiny_static_elf()
    );
    // A non-empty target is refused.
    let o = common::nanoimg(&[os("extract"), img.as_os_str(), out.as_os_str()], p);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));
}

#[test]
fn extract_never_writes_outside_the_target() {
    let d = project();
    let p = d.path();
    std::fs::write(p.join("data/zz"), b"escape attempt").unwrap();
    std::fs::write(p.join("data/a_b"), b"slash attempt").unwrap();
    let img = build(p, "x.img", &[]);
    // Rename the entries inside the image: "zz" -> "..", "a_b" -> "a/b" (same lengths).
    let mut bytes = std::fs::read(&img).unwrap();
    let patch = |bytes: &mut Vec<u8>, from: &[u8], to: &[u8]| {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("name in the log");
        bytes[at..at + from.len()].copy_from_slice(to);
    };
    patch(&mut bytes, b"\x82zz", b"\x82..");
    let dotdot = p.join("dotdot.img");
    std::fs::write(&dotdot, &bytes).unwrap();
    let mut bytes = std::fs::read(&img).unwrap();
    patch(&mut bytes, b"\x83a_b", b"\x83a/b");
    let slash = p.join("slash.img");
    std::fs::write(&slash, &bytes).unwrap();
    for hostile in [&dotdot, &slash] {
        let out = p.join("t").join(hostile.file_name().unwrap());
        let o = common::nanoimg(&[os("extract"), hostile.as_os_str(), out.as_os_str()], p);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("is not a plain file name"), "{stderr}");
    }
    // Nothing landed next to the targets, and a refused extraction leaves no target folder
    // and no temporary folder behind.
    assert!(!p.join("t/zz").exists() && !p.join("zz").exists());
    let left: Vec<_> = std::fs::read_dir(p.join("t")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_corrupt_image_is_an_error_not_a_panic() {
    let d = project();
    let p = d.path();
    let img = build(p, "x.img", &[]);
    let mut bytes = std::fs::read(&img).unwrap();
    // Break the root filesystem's first log extension right after its header.
    let root =
        u32::from_le_bytes(bytes[446 + 16 + 8..446 + 16 + 12].try_into().unwrap()) as usize * 512;
    bytes[root + 512 + 9] = 0x00;
    let bad = p.join("bad.img");
    std::fs::write(&bad, &bytes).unwrap();
    let o = common::nanoimg(&[os("inspect"), bad.as_os_str()], p);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: ") && stderr.contains("unknown log frame byte 0x00"),
        "{stderr}"
    );
}
