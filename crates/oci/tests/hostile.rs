//! Hostile images, made in the test: oversized tar extension headers (refused, while
//! legitimate GNU long names and PAX records still work), FIFOs where files belong, device
//! members (skipped with a note), names with control characters (escaped in errors), and
//! inputs that used to take quadratic or worse work (repeated opaque markers, long symlink
//! chains, deep nesting, a nested index listed many times), checked for their results.
//! Their times are printed by `cargo xtask bench-hostile` (the ignored test at the end).

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nanoimg_oci::{resolve, unpack, OciError, Root, Source};
use serde_json::json;

fn open(path: &Path, cache: &Path) -> Result<Root, OciError> {
    let s = Source::new(path, None);
    let r = resolve(&s)?;
    unpack(&r, &s, cache)
}

/// The error's line: one line, no control character, bounded.
fn one_line(e: &OciError) -> String {
    let text = e.to_string();
    assert!(
        !text.chars().any(|c| c.is_control()),
        "control character in {text:?}"
    );
    assert!(text.len() < 2000, "{} bytes: {text}", text.len());
    text
}

fn write_file(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

#[test]
fn long_names_pax_records_and_long_links_still_work() {
    let d = tempfile::tempdir().unwrap();
    let long = format!("{}file", "a-long-folder-name/".repeat(16)); // 308 bytes
    let pax_path = format!("pax/{}named", "é-pax-folder/".repeat(30)); // 400+ bytes
    let long_target = format!("/{}", long);
    let mut sized = pax_records(&[("size", b"5"), ("mtime", b"1.5")]);
    let mut raw = raw_header(b'x', b"PaxHeaders.0/sized", sized.len() as u64);
    raw.append(&mut sized);
    raw.resize(raw.len().div_ceil(512) * 512, 0);
    raw.extend(raw_header(b'0', b"sized", 0)); // the PAX size wins
    raw.extend_from_slice(b"12345");
    raw.resize(raw.len().div_ceil(512) * 512, 0);
    let global = pax_records(&[("comment", b"global records are ignored")]);
    let mut g = raw_header(b'g', b"pax_global_header", global.len() as u64);
    g.extend(global);
    g.resize(g.len().div_ceil(512) * 512, 0);
    let layer = tar_of(&[
        E::Raw(g),
        E::File(&long, b"long name"),
        E::Symlink("long-link", &long_target),
        E::Hardlink("hard", &long),
        E::PaxFile(&pax_path, b"pax path"),
        E::PaxSymlink("pax-link", &long),
        E::Raw(raw),
    ]);
    // The tar crate wrote GNU long-name ('L') and long-link ('K') members.
    assert!(layer.windows(13).any(|w| w == b"././@LongLink"));
    let want = |root: &Root| {
        let t = tree(&root.dir);
        assert_eq!(t[&long].1, b"long name");
        assert_eq!(t["long-link"], ('l', long_target.clone().into_bytes()));
        assert_eq!(t["hard"].1, b"long name");
        assert_eq!(t[&pax_path].1, b"pax path");
        assert_eq!(t["pax-link"], ('l', long.clone().into_bytes()));
        assert_eq!(t["sized"].1, b"12345");
        assert!(!t.contains_key("stand-in") && !t.contains_key("pax_global_header"));
        t
    };
    let cache = d.path().join("cache");
    let gz = layout(&d.path().join("gz"), std::slice::from_ref(&layer), true);
    let first = want(&open(&gz, &cache).unwrap());
    let plain = layout(&d.path().join("plain"), std::slice::from_ref(&layer), false);
    assert_eq!(want(&open(&plain, &cache).unwrap()), first);
    // As an OCI archive.
    let archive = write_file(&d.path().join("oci.tar"), &tar_folder(&plain));
    assert_eq!(want(&open(&archive, &cache).unwrap()), first);
    // A docker-archive whose layer members have long names, or PAX names.
    let member = format!("{}/layer.tar", "x".repeat(300));
    for pax in [false, true] {
        let a = docker_archive(std::slice::from_ref(&layer), &[&member], pax);
        let f = write_file(&d.path().join(format!("docker-{pax}.tar")), &a);
        let s = Source::new(&f, None);
        let r = resolve(&s).unwrap();
        assert_eq!(r.layers[0].member, member);
        assert_eq!(want(&unpack(&r, &s, &cache).unwrap()), first);
    }
}

#[test]
fn oversized_extension_headers_are_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let claimed: u64 = 6 << 30;
    for (kind, what, limit) in [
        (b'L', "a GNU long name", "4096"),
        (b'K', "a GNU long link name", "4096"),
        (b'x', "a PAX extended header", "1048576"),
        (b'g', "a PAX global header", "1048576"),
    ] {
        // The header claims 6 GiB; the data is not even there.
        let mut bomb = raw_header(b'0', b"before", 0);
        bomb.extend(raw_header(kind, b"././@LongLink", claimed));
        let l = layout(&d.path().join(format!("L{kind}")), &[bomb.clone()], true);
        let cache = d.path().join("cache");
        let start = Instant::now();
        let e = open(&l, &cache).unwrap_err();
        let text = one_line(&e);
        assert!(matches!(e, OciError::Unsafe { .. }), "{text}");
        for part in [
            what,
            limit,
            &claimed.to_string(),
            "\"././@LongLink\"",
            "layer sha256:",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        eprintln!("{:?} {text}", start.elapsed());
        assert!(entries(&cache.join("rootfs")).is_empty());

        // In the archive holding the image, too.
        let mut archive = raw_header(kind, b"././@LongLink", claimed);
        archive.extend(vec![0; 1024]);
        let f = write_file(&d.path().join(format!("A{kind}.tar")), &archive);
        let e = resolve(&Source::new(&f, None)).unwrap_err();
        let text = one_line(&e);
        assert!(matches!(e, OciError::TooLarge { .. }), "{text}");
        for part in [what, limit, &claimed.to_string(), "\"././@LongLink\""] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }
    // A PAX path within the header limit but longer than a path may be.
    let long = "p/".repeat(2100);
    let l = layout(
        &d.path().join("P"),
        &[tar_of(&[E::PaxFile(&long, b"")])],
        false,
    );
    let e = open(&l, &d.path().join("cache")).unwrap_err();
    let text = one_line(&e);
    assert!(text.contains("path longer than 4096 bytes"), "{text}");
    assert!(text.contains("p/p/p/p/…"), "cut: {text}");
}

/// Runs `f` on a thread; panics if it takes more than 20 s (a FIFO opened blocking would
/// block forever).
fn soon<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("blocked: a FIFO was opened for reading")
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn fifos_where_files_belong_are_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let base = layout(
        &d.path().join("base"),
        &[tar_of(&[E::File("f", b"f")])],
        true,
    );
    let copy = |name: &str| {
        let to = d.path().join(name);
        let out = std::process::Command::new("cp")
            .args(["-a", base.to_str().unwrap(), to.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        to
    };
    let manifest = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(base.join("index.json")).unwrap(),
    )
    .unwrap()["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(&base, &manifest)).unwrap()).unwrap();
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();

    // index.json, a blob read while resolving, the layer, manifest.json of a docker folder,
    // the image path itself.
    let mut cases: Vec<(PathBuf, String, bool)> = vec![];
    let l = copy("index");
    std::fs::remove_file(l.join("index.json")).unwrap();
    mkfifo(&l.join("index.json"));
    cases.push((l, "index.json".into(), false));
    for (name, digest, at_unpack) in [("config", &config, false), ("layer", &layer, true)] {
        let l = copy(name);
        std::fs::remove_file(blob_path(&l, digest)).unwrap();
        mkfifo(&blob_path(&l, digest));
        cases.push((l, format!("blobs/sha256/{}", &digest[7..]), at_unpack));
    }
    let docker = d.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    mkfifo(&docker.join("manifest.json"));
    cases.push((docker, "manifest.json".into(), false));
    let fifo = d.path().join("image.tar");
    mkfifo(&fifo);
    cases.push((fifo, "the image path".into(), false));
    for (path, member, at_unpack) in cases {
        let cache = d.path().join("cache");
        let (e, after_resolve) = soon(move || {
            let s = Source::new(&path, None);
            match resolve(&s) {
                Err(e) => (e, false),
                Ok(r) => (unpack(&r, &s, &cache).unwrap_err(), true),
            }
        });
        let text = one_line(&e);
        assert!(matches!(e, OciError::NotAFile { .. }), "{text}");
        assert!(text.contains(&format!("{member} is a FIFO")), "{text}");
        assert_eq!(after_resolve, at_unpack, "{text}");
    }
    // oci-layout is never opened: a FIFO there changes nothing.
    let l = copy("layout-fifo");
    std::fs::remove_file(l.join("oci-layout")).unwrap();
    mkfifo(&l.join("oci-layout"));
    let cache = d.path().join("cache-ok");
    let root = soon(move || open(&l, &cache).map(|r| r.dir)).unwrap();
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"f");
}

#[test]
fn device_files_and_fifos_are_skipped_with_one_note_per_layer() {
    let d = tempfile::tempdir().unwrap();
    let lower = tar_of(&[E::File("dev/null", b"a lower file"), E::File("keep", b"k")]);
    let upper = tar_of(&[
        E::Char("dev/null"),
        E::Block("dev/sda"),
        E::Fifo("run/initctl"),
        E::File("app", b"app"),
    ]);
    let one = tar_of(&[E::Fifo("pipe")]);
    let l = layout(d.path().join("L").as_path(), &[lower, upper, one], true);
    let cache = d.path().join("cache");
    let s = Source::new(&l, None);
    let r = resolve(&s).unwrap();
    let root = unpack(&r, &s, &cache).unwrap();
    assert_eq!(
        root.notes,
        [
            format!(
                "skipped 3 device files and FIFOs in layer {}: Nanos has no use for them (first: dev/null)",
                r.layers[1].digest
            ),
            format!(
                "skipped 1 device file or FIFO in layer {}: Nanos has no use for them (first: pipe)",
                r.layers[2].digest
            ),
        ]
    );
    let t = tree(&root.dir);
    assert!(
        !t.contains_key("dev/null"),
        "the member replaces the lower file"
    );
    assert!(!t.contains_key("dev/sda") && !t.contains_key("run/initctl"));
    assert!(!t.contains_key("pipe"));
    assert_eq!(t["app"].1, b"app");
    assert_eq!(t["keep"].1, b"k");
    assert_eq!(root.layer_of("dev/null"), None);
    // Cached: no note again.
    let again = unpack(&r, &s, &cache).unwrap();
    assert!(again.reused && again.notes.is_empty());
}

#[test]
fn names_from_the_image_are_escaped_in_errors() {
    let d = tempfile::tempdir().unwrap();
    let evil = "evil\n\x1b[31mnanoimg: all good";
    // A hard link to a missing file, named with control characters.
    let l = layout(
        &d.path().join("L"),
        &[tar_of(&[E::Hardlink(evil, "missing")])],
        true,
    );
    let e = open(&l, &d.path().join("cache")).unwrap_err();
    let text = one_line(&e);
    assert!(matches!(e, OciError::Unsafe { .. }), "{text}");
    assert!(
        text.contains(
            r#"member "evil\n\x1b[31mnanoimg: all good" refused: a hard link to a missing file"#
        ),
        "{text}"
    );
    // Raw in the header: an absolute name.
    let l = layout(
        &d.path().join("A"),
        &[tar_of(&[E::RawName(b"/etc/\x1b]0;title\x07")])],
        false,
    );
    let text = one_line(&open(&l, &d.path().join("cache")).unwrap_err());
    assert!(text.contains(r#""/etc/\x1b]0;title\x07""#), "{text}");
    // A reference annotation and platform in a no-match list.
    let l = d.path().join("R");
    init_layout(&l);
    let mut desc = put_image(&l, &[tar_of(&[])], true);
    desc["annotations"] = json!({"org.opencontainers.image.ref.name": "v1\r\n\u{202e}evil"});
    desc["platform"] = json!({"os": "linux\n", "architecture": "arm64"});
    write_index(&l, vec![desc]);
    let e = resolve(&Source::new(&l, Some("other\x1b".into()))).unwrap_err();
    let text = one_line(&e);
    assert!(matches!(e, OciError::NoMatch { .. }), "{text}");
    assert!(text.contains(r"v1\r\n\u{202e}evil"), "{text}");
    assert!(text.contains(r#"reference "other\x1b""#), "{text}");
    // A docker-archive's layer name in manifest.json, very long.
    let name = format!("\x1b[2J/{}", "n/".repeat(500));
    let config = serde_json::to_vec(&json!({"os": "linux", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "0".repeat(64))]}}))
    .unwrap();
    let dir = d.path().join("D");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("c.json"), &config).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&json!([{"Config": "c.json", "RepoTags": ["t"], "Layers": [name]}]))
            .unwrap(),
    )
    .unwrap();
    let e = resolve(&Source::new(&dir, None)).unwrap_err();
    let text = one_line(&e);
    assert!(matches!(e, OciError::MissingBlob { .. }), "{text}");
    assert!(
        text.contains(r"\x1b[2J/n/n/n") && text.contains('…'),
        "{text}"
    );
}

/// A lower layer with a file in each of `folders` folders, then a layer writing `files`
/// files into each and then `markers` opaque markers over them (the same number in each:
/// each marker met with the folder full of this layer's files). With `dirs`, the upper
/// layer lists each folder before its files (as `docker save` and umoci do); without, its
/// files are written into the lower layer's folders. With no markers, the files alone
/// (the baseline).
fn opaque_image(dir: &Path, folders: usize, markers: usize, files: usize, dirs: bool) -> PathBuf {
    let mut lower = vec![];
    let names: Vec<String> = (0..folders).map(|i| format!("f{i}")).collect();
    let olds: Vec<String> = names.iter().map(|n| format!("{n}/sub/old")).collect();
    for o in &olds {
        lower.push(E::File(o, b"old"));
    }
    let lower = tar_of(&lower);
    let marks: Vec<String> = names.iter().map(|n| format!("{n}/.wh..wh..opq")).collect();
    let news: Vec<Vec<String>> = names
        .iter()
        .map(|n| (0..files).map(|j| format!("{n}/sub/new{j}")).collect())
        .collect();
    let subs: Vec<String> = names.iter().map(|n| format!("{n}/sub")).collect();
    let mut upper = vec![];
    for (i, new) in news.iter().enumerate() {
        if dirs {
            upper.push(E::Dir(&subs[i]));
        }
        // This layer's files first (inside a folder it does not list), then the markers.
        for n in new {
            upper.push(E::File(n, b"new"));
        }
        for _ in 0..markers / folders {
            upper.push(E::File(&marks[i], b""));
        }
    }
    layout(dir, &[lower, tar_of(&upper)], false)
}

fn check_opaque(root: &Root, folders: usize, markers: usize, files: usize) {
    for i in 0..folders {
        let mut want: Vec<String> = (0..files).map(|j| format!("new{j}")).collect();
        if markers == 0 {
            want.push("old".into());
        }
        want.sort();
        let got = entries(&root.dir.join(format!("f{i}/sub")));
        assert_eq!(
            got.len(),
            want.len(),
            "f{i}/sub: {:?}…",
            &got[..got.len().min(3)]
        );
        assert!(got == want, "f{i}/sub");
    }
    assert_eq!(entries(&root.dir).len(), folders);
}

/// Links l1 -> l0, …, lN -> l(N-1) (l0 a folder), then members under the first 41 of them
/// and under a chain of links through nested folders; with `direct`, the same members at
/// the real paths they resolve to (the baseline).
fn chain_image(dir: &Path, links: usize, members: usize, direct: bool) -> PathBuf {
    let names: Vec<(String, String)> = (1..=links)
        .map(|i| (format!("l{i}"), format!("l{}", i - 1)))
        .collect();
    let mut first = vec![E::Dir("l0")];
    for (l, t) in &names {
        first.push(E::Symlink(l, t));
    }
    // m0 -> l0/a, m1 -> m0/a (= l0/a/a), …: each hop one more folder, deep.
    let hops: Vec<(String, String)> = (1..40)
        .map(|i| (format!("m{i}"), format!("m{}/a", i - 1)))
        .collect();
    first.push(E::Symlink("m0", "l0/a"));
    for (m, t) in &hops {
        first.push(E::Symlink(m, t));
    }
    let files: Vec<String> = (0..members)
        .map(|i| match (i % 3, direct) {
            (0, false) => format!("l{}/f{i}", i % 41),
            (1, false) => format!("m{}/g{i}", i % 40),
            (_, false) => format!("l40/d{}/h{i}", i % 100),
            (0, true) => format!("l0/f{i}"),
            (1, true) => format!("l0/{}g{i}", "a/".repeat(i % 40 + 1)),
            (_, true) => format!("l0/d{}/h{i}", i % 100),
        })
        .collect();
    let second: Vec<E> = files.iter().map(|f| E::File(f, b"x")).collect();
    layout(dir, &[tar_of(&first), tar_of(&second)], false)
}

fn check_chain(root: &Root, members: usize) {
    let l0 = root.dir.join("l0");
    assert!(l0.symlink_metadata().unwrap().is_dir());
    for i in 0..members {
        let at = match i % 3 {
            0 => l0.join(format!("f{i}")),
            1 => l0.join(format!("{}g{i}", "a/".repeat(i % 40 + 1))),
            _ => l0.join(format!("d{}/h{i}", i % 100)),
        };
        assert_eq!(std::fs::read(&at).unwrap(), b"x", "{}", at.display());
    }
    assert!(root
        .dir
        .join("l10")
        .symlink_metadata()
        .unwrap()
        .is_symlink());
}

/// Folders nested about as deep as a path may go (the root's own path taking the rest of
/// PATH_MAX), with a file at every level.
fn deep_image(dir: &Path) -> (PathBuf, usize) {
    let depth = 1800; // "d/" × 1800 + "f": 3601 bytes
    let paths: Vec<String> = (1..=depth).map(|i| "d/".repeat(i)).collect();
    let files: Vec<String> = paths.iter().map(|p| format!("{p}f")).collect();
    let mut members = vec![];
    for (p, f) in paths.iter().zip(&files) {
        members.push(E::Dir(p));
        members.push(E::File(f, b"deep"));
    }
    (layout(dir, &[tar_of(&members)], false), depth)
}

/// A folder 1,800 deep, then `n` members in it (or through a link to it), each after
/// a link elsewhere is replaced by one to another folder (which forgets what the resolver
/// found through links); gives the last member's real path.
fn forget_image(dir: &Path, through_link: bool, n: usize) -> (PathBuf, String) {
    let deep = "d/".repeat(1800);
    let files: Vec<String> = (0..n)
        .map(|i| match through_link {
            false => format!("{deep}f{i}"),
            true => format!("link/f{i}"),
        })
        .collect();
    let mut m = vec![
        E::Dir("x"),
        E::Dir("y"),
        E::Dir(&deep),
        E::Symlink("link", &deep),
    ];
    for (i, f) in files.iter().enumerate() {
        // Another target each time: the same link again would change nothing.
        m.push(E::Symlink("s", if i % 2 == 0 { "x" } else { "y" }));
        m.push(E::File(f, b""));
    }
    (
        layout(dir, &[tar_of(&m)], false),
        format!("{deep}f{}", n - 1),
    )
}

/// index.json listing a nested index `repeats` times; that index lists the manifest
/// `inner` times (and is padded with `pad` bytes of annotation).
fn repeated_index_image(dir: &Path, repeats: usize, inner: usize, pad: usize) -> PathBuf {
    init_layout(dir);
    let mut m = put_image(dir, &[tar_of(&[E::File("hello", b"hi")])], true);
    m.as_object_mut().unwrap().remove("mediaType"); // judged by reading it
    let nested = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": vec![m; inner],
        "annotations": {"pad": "p".repeat(pad)},
    });
    let (nd, ns) = put_blob(dir, &serde_json::to_vec(&nested).unwrap());
    let entry = json!({"digest": nd, "size": ns}); // no media type either
    write_index(dir, vec![entry; repeats]);
    dir.to_path_buf()
}

#[test]
fn opaque_markers_are_linear() {
    let d = tempfile::tempdir().unwrap();
    // 100,000 markers in one folder holding 1,000 files of the same layer (listed as a
    // folder of that layer first, or not), and 10 in each of 1,000 folders (the bench has
    // more files: creating them is what takes time here).
    for (folders, markers, files, dirs) in [
        (1, 100_000, 1_000, true),
        (1, 100_000, 1_000, false),
        (1_000, 10_000, 1, false),
    ] {
        let l = opaque_image(
            &d.path().join(format!("o{folders}-{dirs}")),
            folders,
            markers,
            files,
            dirs,
        );
        let root = open(&l, &d.path().join("cache")).unwrap();
        check_opaque(&root, folders, markers, files);
    }
    // A folder made opaque after a subfolder was: the subfolder's new file stays.
    let lower = tar_of(&[E::File("p/c/old", b""), E::File("p/old", b"")]);
    let upper = tar_of(&[
        E::File("p/c/keep", b"k"),
        E::File("p/c/.wh..wh..opq", b""),
        E::File("p/.wh..wh..opq", b""),
        E::File("p/c/.wh..wh..opq", b""),
        E::File("p/.wh.c", b""), // whites out only what lower layers had
    ]);
    let l = layout(&d.path().join("nested"), &[lower, upper], true);
    let root = open(&l, &d.path().join("cache")).unwrap();
    assert_eq!(entries(&root.dir.join("p")), ["c"]);
    assert_eq!(entries(&root.dir.join("p/c")), ["keep"]);
}

#[test]
fn long_symlink_chains_and_deep_nesting_are_linear() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let l = chain_image(&d.path().join("chain"), 10_000, 3_000, false);
    check_chain(&open(&l, &cache).unwrap(), 3_000);
    // A member under the end of a chain needs 1,000 links: refused (the bench has one
    // under 10,000).
    let l = d.path().join("far");
    init_layout(&l);
    let mut first = vec![E::Dir("l0")];
    let names: Vec<(String, String)> = (1..=1_000)
        .map(|i| (format!("l{i}"), format!("l{}", i - 1)))
        .collect();
    for (a, b) in &names {
        first.push(E::Symlink(a, b));
    }
    first.push(E::File("l1000/x", b""));
    let far = layout(&l, &[tar_of(&first)], false);
    let text = one_line(&open(&far, &cache).unwrap_err());
    assert!(
        text.contains(r#"member "l1000/x" refused: more than 40 symbolic links on its path"#),
        "{text}"
    );
    // Links replaced by folders and folders by links, within one layer: resolutions
    // follow the change.
    let swap = tar_of(&[
        E::Dir("a"),
        E::Dir("b"),
        E::Symlink("x", "a"),
        E::File("x/one", b"1"),
        E::Symlink("x", "b"),
        E::File("x/two", b"2"),
        E::Dir("x"),
        E::File("x/three", b"3"),
        E::Symlink("a", "b"),
        E::File("a/four", b"4"),
    ]);
    let root = open(&layout(&d.path().join("swap"), &[swap], false), &cache).unwrap();
    assert_eq!(entries(&root.dir.join("b")), ["four", "two"]);
    assert_eq!(entries(&root.dir.join("x")), ["three"]);
    assert!(root.dir.join("a").symlink_metadata().unwrap().is_symlink());

    // Deep members, each after a link elsewhere is replaced.
    for (through_link, n) in [(false, 20), (true, 3)] {
        let (l, last) = forget_image(&d.path().join(format!("fg{through_link}")), through_link, n);
        assert!(open(&l, &cache).unwrap().dir.join(last).is_file());
    }
    let (deep, depth) = deep_image(&d.path().join("deep"));
    let root = open(&deep, &cache).unwrap();
    let last = root.dir.join(format!("{}f", "d/".repeat(depth)));
    assert_eq!(std::fs::read(last).unwrap(), b"deep");
}

#[test]
fn whiteouts_and_hard_link_targets_create_no_folders() {
    let d = tempfile::tempdir().unwrap();
    let lower = tar_of(&[E::Symlink("lib", "usr/lib")]);
    let upper = tar_of(&[
        E::File("gone/.wh.x", b""),
        E::File("lib/.wh.y", b""),
        E::File("nothere/.wh..wh..opq", b""),
        E::File("f", b"f"),
    ]);
    let root = open(
        &layout(&d.path().join("L"), &[lower.clone(), upper], true),
        &d.path().join("cache"),
    )
    .unwrap();
    assert_eq!(entries(&root.dir), ["f", "lib"]);
    let hard = tar_of(&[E::Hardlink("h", "lib/missing/file")]);
    let e = open(
        &layout(&d.path().join("H"), &[lower, hard], true),
        &d.path().join("cache"),
    )
    .unwrap_err();
    assert!(
        one_line(&e).contains("a hard link to a missing file"),
        "{e}"
    );
    // The parent of a member is a file.
    let bad = tar_of(&[E::File("f", b""), E::File("f/g", b"")]);
    let e = open(
        &layout(&d.path().join("F"), &[bad], true),
        &d.path().join("cache"),
    )
    .unwrap_err();
    assert!(one_line(&e).contains("its parent is not a folder"), "{e}");
}

#[test]
fn a_nested_index_listed_many_times_is_read_once() {
    let d = tempfile::tempdir().unwrap();
    let l = repeated_index_image(&d.path().join("L"), 100, 100, 0);
    let s = Source::new(&l, None);
    let r = resolve(&s).unwrap();
    let root = unpack(&r, &s, &d.path().join("cache")).unwrap();
    assert_eq!(std::fs::read(root.dir.join("hello")).unwrap(), b"hi");
    // The entries examined are bounded: 400 × 400 nested entries are too many.
    let l = repeated_index_image(&d.path().join("M"), 400, 400, 0);
    let text = one_line(&resolve(&Source::new(&l, None)).unwrap_err());
    assert!(text.contains("more than 100000 index entries"), "{text}");
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let v = f();
    println!("{what:<72} {:>7.2} s", start.elapsed().as_secs_f64());
    v
}

/// The times of the cases above at full size, each beside a baseline that writes the same
/// files without the hostile part (creating files is most of the time on a slow file
/// system). `cargo xtask bench-hostile` runs it in release mode. A measurement: it asserts
/// results, never times.
#[test]
#[ignore]
fn bench_hostile_images() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    println!("(each root unpacked from scratch; times of resolve + unpack)");
    for (folders, markers, files, what) in [
        (
            1,
            0,
            10_000,
            "baseline: 10,000 files in one folder, no markers",
        ),
        (
            1,
            10_000,
            10_000,
            "10,000 files in one folder, then 10,000 opaque markers",
        ),
        (
            1,
            100_000,
            10_000,
            "10,000 files in one folder, then 100,000 opaque markers",
        ),
        (
            10_000,
            0,
            1,
            "baseline: 10,000 folders with a file, no markers",
        ),
        (
            10_000,
            10_000,
            1,
            "10,000 folders with a file, one opaque marker in each",
        ),
        (
            10_000,
            100_000,
            1,
            "10,000 folders with a file, 10 opaque markers in each",
        ),
    ] {
        let l = opaque_image(
            &d.path().join(format!("o{folders}-{markers}")),
            folders,
            markers,
            files,
            true,
        );
        let root = timed(what, || open(&l, &cache).unwrap());
        check_opaque(&root, folders, markers, files);
    }
    for (direct, what) in [
        (
            true,
            "baseline: 10,000 links, 100,000 members at their real paths",
        ),
        (
            false,
            "10,000-link chain, 100,000 members through up to 40 links",
        ),
    ] {
        let l = chain_image(
            &d.path().join(format!("c{direct}")),
            10_000,
            100_000,
            direct,
        );
        let root = timed(what, || open(&l, &cache).unwrap());
        check_chain(&root, 100_000);
    }
    let mut far = vec![E::Dir("l0")];
    let names: Vec<(String, String)> = (1..=10_000)
        .map(|i| (format!("l{i}"), format!("l{}", i - 1)))
        .collect();
    for (a, b) in &names {
        far.push(E::Symlink(a, b));
    }
    let xs: Vec<String> = (0..100_000)
        .map(|i| format!("l{}/x", 10_000 - i % 9_000))
        .collect();
    let upper: Vec<E> = xs.iter().map(|x| E::File(x, b"")).collect();
    let l = layout(
        &d.path().join("far"),
        &[tar_of(&far), tar_of(&upper)],
        false,
    );
    let e = timed(
        "10,000-link chain, then a member under it (refused)",
        || open(&l, &cache).unwrap_err(),
    );
    assert!(one_line(&e).contains("more than 40 symbolic links"));
    let (l, depth) = deep_image(&d.path().join("deep"));
    let root = timed("1,800 nested folders with a file in each", || {
        open(&l, &cache).unwrap()
    });
    assert!(root.dir.join(format!("{}f", "d/".repeat(depth))).is_file());
    let (l, last) = forget_image(&d.path().join("ffalse"), false, 1_000);
    let root = timed(
        "1,000 members 1,800 folders deep, a link replaced before each",
        || open(&l, &cache).unwrap(),
    );
    assert!(root.dir.join(last).is_file());
    // Through a link, each member re-walks the 1,800 folders: refused once the work passes
    // its bound.
    let (l, _) = forget_image(&d.path().join("ftrue"), true, 1_000);
    let e = timed(
        "1,000 members through a link to 1,800 folders deep, the same (refused)",
        || open(&l, &cache).unwrap_err(),
    );
    assert!(one_line(&e).contains("resolving member paths through links took"));
    let l = repeated_index_image(&d.path().join("h"), 100, 10, 1 << 20);
    timed(
        "a 1 MiB nested index listed 100 times, listing its manifest 10 times",
        || resolve(&Source::new(&l, None)).unwrap(),
    );
    let l = repeated_index_image(&d.path().join("i"), 100, 100, 1 << 20);
    timed(
        "a 1 MiB nested index listed 100 times, listing its manifest 100 times",
        || resolve(&Source::new(&l, None)).unwrap(),
    );
    let l = repeated_index_image(&d.path().join("j"), 400, 400, 0);
    let e = timed(
        "a nested index listed 400 times, 400 entries (refused)",
        || resolve(&Source::new(&l, None)).unwrap_err(),
    );
    assert!(one_line(&e).contains("index entries"));
    let mut bomb = raw_header(b'L', b"././@LongLink", 6 << 30);
    bomb.extend(vec![0; 1 << 20]);
    let l = layout(&d.path().join("b"), &[bomb], true);
    let e = timed("a long-name header claiming 6 GiB (refused)", || {
        open(&l, &cache).unwrap_err()
    });
    one_line(&e);
}

/// `images.rs`'s links test without umoci: links on a member's way are followed inside the
/// root only, and a member replaces a link, never writing through it.
#[test]
fn links_on_the_way_stay_inside_the_root() {
    let d = tempfile::tempdir().unwrap();
    let first = tar_of(&[
        E::Dir("usr/lib"),
        E::Symlink("lib", "usr/lib"),
        E::Symlink("up", "../../.."),
        E::Symlink("abs", "/usr"),
    ]);
    let second = tar_of(&[
        E::File("lib/libc.so", b"c"),
        E::File("up/escaped", b"e"),
        E::File("abs/abs-file", b"a"),
        E::File("abs", b"now a file"),
    ]);
    // The same link again, then a member through it.
    let third = tar_of(&[E::Symlink("lib", "usr/lib"), E::File("lib/libm.so", b"m")]);
    let l = layout(&d.path().join("L"), &[first, second, third], false);
    let s = Source::new(&l, None);
    let r = resolve(&s).unwrap();
    let root = unpack(&r, &s, &d.path().join("cache")).unwrap();
    let t = tree(&root.dir);
    assert_eq!(t["usr/lib/libc.so"].1, b"c");
    assert_eq!(t["usr/lib/libm.so"].1, b"m");
    assert_eq!(t["lib"], ('l', b"usr/lib".to_vec()));
    assert_eq!(t["escaped"].1, b"e", "clamped at the root");
    assert_eq!(t["usr/abs-file"].1, b"a");
    assert_eq!(t["abs"], ('f', b"now a file".to_vec()));
    assert!(!d.path().join("escaped").exists());
    assert_eq!(
        root.layer_of("usr/lib/libc.so"),
        Some(r.layers[1].digest.as_str())
    );
}

/// Links and replacements arranged so that every member re-walks a deep path through a
/// link (each replacement forgets what was found through links): the work such members
/// cost is bounded against the member count, and the image is refused in one line rather
/// than worked through (quadratic in the depth per member). (The same members reached
/// without a link are applied: `long_symlink_chains_and_deep_nesting_are_linear`.)
#[test]
fn re_walking_a_deep_path_for_every_member_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (img, _) = forget_image(&d.path().join("through"), true, 400);
    let e = open(&img, &d.path().join("cache")).unwrap_err();
    let text = one_line(&e);
    assert!(matches!(e, OciError::TooLarge { .. }), "{text}");
    assert!(
        text.contains("resolving member paths through links took"),
        "{text}"
    );
}
