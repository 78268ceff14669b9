//! Same inputs, same bytes: builds repeated in other directories, with another TMPDIR, other
//! mtimes and a copied input tree (new inodes) give the same image; any changed input byte,
//! argument or environment value changes it; the printed hashes are the file's.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use sha2::Digest;

/// A project: a program, data files and folders, a config using Files, Dirs and MapDirs.
fn make_project(dir: &Path, files: &[(&str, &[u8])]) {
    std::fs::create_dir_all(dir).unwrap();
    common::fake_release(dir);
    std::fs::write(dir.join("prover"), common::tiny_static_elf()).unwrap();
    for (rel, data) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    std::fs::write(
        dir.join("config.json"),
        r#"{"Program": "prover", "Args": ["--input", "/data/in.bin"], "Env": {"MODE": "fast"},
            "Files": ["params.srs"], "Dirs": ["data"], "MapDirs": {"assets/*": "/assets"},
            "Mounts": {"%1": "/workspace"}, "ManifestPassthrough": {"readonly_rootfs": "true"}}"#,
    )
    .unwrap();
}

const FILES: &[(&str, &[u8])] = &[
    ("params.srs", b"structured reference string"),
    ("data/in.bin", b"\x00\x01\x02 input"),
    ("data/nested/deeper/x.txt", b"x"),
    ("data/empty", b""),
    ("assets/a.json", b"{}"),
    ("assets/b/c.bin", b"cc"),
];

struct Built {
    path: PathBuf,
    json: serde_json::Value,
}

/// `nanoimg build` in `dir` with extra environment and arguments.
fn build(dir: &Path, out: &Path, env: &[(&str, &str)], extra: &[&str]) -> Built {
    let release = dir.join("release");
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("build"),
        OsStr::new("./prover"),
        OsStr::new("-c"),
        OsStr::new("config.json"),
        OsStr::new("--kernel-dir"),
        release.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
        OsStr::new("--json"),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let o = common::nanoimg_env(&args, dir, env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Built {
        path: out.to_path_buf(),
        json: serde_json::from_slice(&o.stdout).unwrap(),
    }
}

fn sha256_of(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Copies `from` into `to` in reverse name order (new inodes, another creation order) and
/// sets every mtime to `when`.
fn copy_tree(from: &Path, to: &Path, when: SystemTime) {
    std::fs::create_dir_all(to).unwrap();
    let mut entries: Vec<_> = std::fs::read_dir(from).unwrap().flatten().collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
    for e in entries {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target, when);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&target)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
    }
}

#[test]
fn the_same_inputs_give_the_same_bytes_anywhere() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a/project");
    make_project(&a, FILES);
    let tmp1 = root.path().join("tmp1");
    std::fs::create_dir(&tmp1).unwrap();
    let first = build(
        &a,
        &root.path().join("first.img"),
        &[("TMPDIR", tmp1.to_str().unwrap())],
        &[],
    );

    // Elsewhere: copied (new inodes, reversed creation order), old mtimes, another TMPDIR,
    // another output directory.
    let b = root.path().join("somewhere/else/project");
    copy_tree(&a, &b, SystemTime::UNIX_EPOCH + Duration::from_secs(86_400));
    let tmp2 = root.path().join("tmp2");
    std::fs::create_dir(&tmp2).unwrap();
    std::fs::create_dir(root.path().join("out")).unwrap();
    let second = build(
        &b,
        &root.path().join("out/second.img"),
        &[("TMPDIR", tmp2.to_str().unwrap()), ("USER", "someone-else")],
        &[],
    );
    assert_eq!(sha256_of(&first.path), sha256_of(&second.path));
    assert_eq!(first.json["sha256"], second.json["sha256"]);
    assert_eq!(first.json["filesystems"], second.json["filesystems"]);

    // And a third time in place.
    let third = build(&a, &root.path().join("third.img"), &[], &[]);
    assert_eq!(first.json["sha256"], third.json["sha256"]);

    // No host path, user name or temporary name is inside the image.
    let bytes = std::fs::read(&first.path).unwrap();
    for needle in [
        a.to_str().unwrap(),
        tmp1.to_str().unwrap(),
        "someone-else",
        ".nanoimg-",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} leaked into the image"
        );
    }
}

#[test]
fn the_printed_hashes_are_the_files_and_the_report_lists_every_file() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path().join("p");
    make_project(&p, FILES);
    let built = build(&p, &root.path().join("x.img"), &[], &[]);
    let bytes = std::fs::read(&built.path).unwrap();
    assert_eq!(
        built.json["blake3"],
        blake3::hash(&bytes).to_hex().to_string()
    );
    assert_eq!(built.json["sha256"], sha256_of(&built.path));
    assert_eq!(built.json["size"], bytes.len() as u64);
    let files = built.json["files"].as_array().unwrap();
    let find = |path: &str| {
        files
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path}"))
    };
    let srs = find("/params.srs");
    assert_eq!(srs["size"], 27);
    assert_eq!(
        srs["sha256"],
        format!("{:x}", sha2::Sha256::digest(b"structured reference string"))
    );
    assert!(srs["source"].as_str().unwrap().ends_with("params.srs"));
    assert_eq!(
        find("/etc/passwd")["source"],
        serde_json::Value::Null,
        "generated"
    );
    assert_eq!(find("/kernel")["filesystem"], "boot");
    assert_eq!(
        built.json["nanos"]["kernel_sha256"],
        find("/kernel")["sha256"]
    );

    // The summary lines: size, SHA-256, BLAKE3, then ops's line last.
    let o = common::nanoimg(
        &[
            OsStr::new("build"),
            OsStr::new("./prover"),
            OsStr::new("-c"),
            OsStr::new("config.json"),
            OsStr::new("--kernel-dir"),
            p.join("release").as_os_str(),
            OsStr::new("-o"),
            root.path().join("y.img").as_os_str(),
        ],
        &p,
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], format!("Image size: {} bytes", bytes.len()));
    assert_eq!(lines[1], format!("SHA-256: {}", sha256_of(&built.path)));
    assert_eq!(
        lines[2],
        format!("BLAKE3: {}", blake3::hash(&bytes).to_hex())
    );
    assert_eq!(
        lines[3],
        format!(
            "Bootable image file:{}",
            root.path().join("y.img").display()
        )
    );
}

#[test]
fn any_changed_input_changes_the_hash() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path().join("p");
    make_project(&p, FILES);
    let base = build(&p, &root.path().join("base.img"), &[], &[]).json["sha256"].clone();
    let mut seen = vec![base.clone()];
    let mut check = |what: &str, hash: serde_json::Value| {
        assert!(!seen.contains(&hash), "{what} did not change the image");
        seen.push(hash);
    };

    // One byte of a data file, of the program, of the kernel.
    for file in ["data/nested/deeper/x.txt", "prover", "release/kernel.img"] {
        let path = p.join(file);
        let original = std::fs::read(&path).unwrap();
        let mut changed = original.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        // A changed kernel must be accepted: forget the recorded one.
        let _ = std::fs::remove_file(p.join("nanoimg.lock"));
        check(
            file,
            build(&p, &root.path().join("c.img"), &[], &[]).json["sha256"].clone(),
        );
        std::fs::write(&path, &original).unwrap();
        let _ = std::fs::remove_file(p.join("nanoimg.lock"));
    }
    // An argument and an environment value.
    check(
        "an argument",
        build(
            &p,
            &root.path().join("d.img"),
            &[],
            &["-a", "--input", "-a", "/data/in.bin2"],
        )
        .json["sha256"]
            .clone(),
    );
    check(
        "an environment value",
        build(&p, &root.path().join("e.img"), &[], &["-e", "MODE=slow"]).json["sha256"].clone(),
    );
    check(
        "the seed",
        build(&p, &root.path().join("f.img"), &[], &["--seed", "other"]).json["sha256"].clone(),
    );
    let uuid = build(
        &p,
        &root.path().join("g.img"),
        &[],
        &["--uuid", "00112233-4455-6677-8899-aabbccddeeff"],
    );
    assert_eq!(
        uuid.json["filesystems"]["root"]["uuid"],
        "00112233-4455-6677-8899-aabbccddeeff"
    );
    check("the UUID", uuid.json["sha256"].clone());
    // Unchanged inputs again: the original hash.
    assert_eq!(
        build(&p, &root.path().join("h.img"), &[], &[]).json["sha256"],
        base
    );
}

fn arb_tree() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = "[a-z0-9_ .-]{1,8}".prop_filter("not . or ..", |n| n != "." && n != "..");
    proptest::collection::vec(
        (
            proptest::collection::vec(name, 1..4),
            proptest::collection::vec(any::<u8>(), 0..600),
        ),
        1..20,
    )
    .prop_map(|entries| {
        // Keep paths that do not use a file as a directory.
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for (parts, data) in entries {
            let path = format!("data/{}", parts.join("/"));
            let clash = out.iter().any(|(p, _)| {
                p == &path
                    || path.starts_with(&format!("{p}/"))
                    || p.starts_with(&format!("{path}/"))
            });
            if !clash {
                out.push((path, data));
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn random_trees_build_the_same_twice(tree in arb_tree()) {
        let root = tempfile::tempdir().unwrap();
        let files: Vec<(&str, &[u8])> = tree.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
        let mut all = files.clone();
        all.extend(FILES.iter().filter(|(p, _)| !p.starts_with("data/")));
        all.push(("data/in.bin", b"in"));
        let a = root.path().join("a");
        make_project(&a, &all);
        let b = root.path().join("b");
        copy_tree(&a, &b, SystemTime::UNIX_EPOCH + Duration::from_secs(12345));
        let one = build(&a, &root.path().join("1.img"), &[], &[]);
        let two = build(&b, &root.path().join("2.img"), &[], &[]);
        prop_assert_eq!(sha256_of(&one.path), sha256_of(&two.path));
    }
}
