//! Images made by the real tools (`umoci`, `skopeo`), unpacked and compared. Layers umoci
//! cannot make are hand-made here and appended with [`add_layer`] (which rewrites the
//! config, manifest and index digests): the opaque-folder layer (umoci writes `.wh.NAME`
//! for each removed entry, never `.wh..wh..opq`), the uncompressed layer (umoci 0.4
//! always gzips), and the hostile layers. The two-platform index is hand-made too (umoci
//! writes one manifest per tag). No network is used.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{blob_path, put_blob, sha};
use nanoimg_oci::{resolve, unpack, Format, OciError, Platform, Source};
use serde_json::{json, Value};

fn run(cmd: &str, args: &[&str], dir: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (install umoci and skopeo)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn index_entry<'a>(index: &'a mut Value, tag: &str) -> &'a mut Value {
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
}

/// Appends a hand-made layer (a tar, gzip'd or not) to `layout:tag`, rewriting config,
/// manifest and index.
fn add_layer(layout: &Path, tag: &str, tar: &[u8], gzip: bool) {
    let mut index = read_json(&layout.join("index.json"));
    let entry = index_entry(&mut index, tag);
    let mut manifest = read_json(&blob_path(layout, entry["digest"].as_str().unwrap()));
    let mut config = read_json(&blob_path(
        layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(sha(tar)));
    let (blob, media) = if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        (
            gz.finish().unwrap(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    } else {
        (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar")
    };
    let (ld, ls) = put_blob(layout, &blob);
    let (cd, cs) = put_blob(layout, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = json!(cd);
    manifest["config"]["size"] = json!(cs);
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"mediaType": media, "digest": ld, "size": ls}));
    let (md, ms) = put_blob(layout, &serde_json::to_vec(&manifest).unwrap());
    entry["digest"] = json!(md);
    entry["size"] = json!(ms);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Char(&'a str),
    /// A regular file whose name is written raw (the tar crate refuses `..`).
    RawName(&'a str),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o755);
        match *e {
            E::File(p, data, mode) => {
                h.set_mode(mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data).unwrap();
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Char(p) => {
                h.set_entry_type(tar::EntryType::Char);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::RawName(p) => {
                h.as_mut_bytes()[..p.len()].copy_from_slice(p.as_bytes());
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A layout with tag `t`: two umoci layers (files, a symlink, a hard link; then a
/// deleted file and a deleted folder), a hand-made gzip layer making `keep` opaque, and a
/// hand-made uncompressed layer.
fn build_layout(dir: &Path) -> PathBuf {
    let l = dir.join("L");
    run("umoci", &["init", "--layout", "L"], dir);
    run("umoci", &["new", "--image", "L:t"], dir);
    let bundle = dir.join("B");
    run(
        "umoci",
        &["unpack", "--rootless", "--image", "L:t", "B"],
        dir,
    );
    let r = bundle.join("rootfs");
    for d in ["d/sub", "etc", "keep/old", "bin"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("d/a"), "a\n").unwrap();
    std::fs::write(r.join("d/sub/x"), "x\n").unwrap();
    std::fs::write(r.join("etc/gone"), "gone\n").unwrap();
    std::fs::write(r.join("keep/old/o"), "o\n").unwrap();
    std::fs::write(r.join("keep/k"), "k\n").unwrap();
    std::fs::write(r.join("bin/tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(r.join("bin/tool"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("../d/a", r.join("etc/link")).unwrap();
    std::fs::hard_link(r.join("d/a"), r.join("etc/hard")).unwrap();
    run("umoci", &["repack", "--image", "L:t", "B"], dir);
    std::fs::remove_dir_all(&bundle).unwrap();
    run(
        "umoci",
        &["unpack", "--rootless", "--image", "L:t", "B"],
        dir,
    );
    std::fs::remove_file(r.join("etc/gone")).unwrap();
    std::fs::remove_dir_all(r.join("d/sub")).unwrap();
    std::fs::write(r.join("etc/added"), "added\n").unwrap();
    run("umoci", &["repack", "--image", "L:t", "B"], dir);
    add_layer(
        &l,
        "t",
        &tar_of(&[
            E::File("keep/new", b"new\n", 0o644),
            E::File("keep/.wh..wh..opq", b"", 0o644),
        ]),
        true,
    );
    add_layer(
        &l,
        "t",
        &tar_of(&[E::File("raw.txt", b"raw\n", 0o600)]),
        false,
    );
    l
}

/// path → (kind, mode bits, content or target) of a tree.
fn tree(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let v = if m.file_type().is_symlink() {
                (
                    'l',
                    0,
                    std::fs::read_link(&p).unwrap().into_os_string().into_vec(),
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                ('d', m.mode() & 0o777, vec![])
            } else {
                ('f', m.mode() & 0o777, std::fs::read(&p).unwrap())
            };
            out.insert(rel, v);
        }
    }
    out
}

use std::os::unix::ffi::OsStringExt;

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(r) => r
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

#[test]
fn layout_layers_whiteouts_opaque_links_and_cache_reuse() {
    let d = tempfile::tempdir().unwrap();
    let l = build_layout(d.path());
    let cache = d.path().join("cache");
    let src = Source::parse(&format!("{}:t", l.display()));
    assert_eq!(src.path, l);
    assert_eq!(src.reference.as_deref(), Some("t"));
    let r = resolve(&src).unwrap();
    assert_eq!(r.format, Format::OciLayout);
    assert_eq!(r.platform, Platform::default());
    assert_eq!(r.layers.len(), 4);
    assert!(r.layers[0].media_type.ends_with("tar+gzip"));
    assert!(r.layers[3].media_type.ends_with(".tar"));
    let root = unpack(&r, &src, &cache).unwrap();
    assert!(!root.reused);
    assert_eq!(
        root.dir,
        cache
            .join("rootfs")
            .join(&r.manifest_digest[7..])
            .join("root")
    );
    let t = tree(&root.dir);
    let read = |p: &str| std::fs::read_to_string(root.dir.join(p)).unwrap();
    assert_eq!(read("d/a"), "a\n");
    assert_eq!(read("etc/added"), "added\n");
    assert!(!root.dir.join("etc/gone").exists(), "whiteout");
    assert!(!root.dir.join("d/sub").exists(), "folder whiteout");
    assert_eq!(read("keep/new"), "new\n");
    assert_eq!(entries(&root.dir.join("keep")), vec!["new"], "opaque");
    assert_eq!(read("raw.txt"), "raw\n");
    assert_eq!(t["raw.txt"].1, 0o600);
    assert_eq!(t["bin/tool"].1, 0o750);
    assert_eq!(t["etc/link"], ('l', 0, b"../d/a".to_vec()));
    assert_eq!(read("etc/hard"), "a\n");
    // Which layer each path came from.
    assert_eq!(root.layer_of("d/a"), Some(r.layers[0].digest.as_str()));
    assert_eq!(
        root.layer_of("/etc/added"),
        Some(r.layers[1].digest.as_str())
    );
    assert_eq!(root.layer_of("keep/new"), Some(r.layers[2].digest.as_str()));
    assert_eq!(root.layer_of("raw.txt"), Some(r.layers[3].digest.as_str()));
    assert_eq!(root.layer_of("etc/gone"), None);
    let entry = root.dir.parent().unwrap();
    assert!(entry.join("layers.json").is_file());
    assert!(entries(&cache.join("tmp")).is_empty());

    // Again: the cache entry is reused as is.
    let ino = std::fs::metadata(&root.dir).unwrap().ino();
    let again = unpack(&r, &src, &cache).unwrap();
    assert!(again.reused);
    assert_eq!(std::fs::metadata(&again.dir).unwrap().ino(), ino);
    assert_eq!(again.layer_of("raw.txt"), root.layer_of("raw.txt"));

    // No reference: the layout holds one image, so it is that one.
    let r2 = resolve(&Source::parse(l.to_str().unwrap())).unwrap();
    assert_eq!(r2.manifest_digest, r.manifest_digest);

    // The same image through skopeo: docker-archive and oci-archive give the same root.
    let policy = d.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    run(
        "skopeo",
        &["--policy", p, "copy", "oci:L:t", "docker-archive:X.tar:t"],
        d.path(),
    );
    run(
        "skopeo",
        &["--policy", p, "copy", "oci:L:t", "oci-archive:Y.tar:t"],
        d.path(),
    );
    let x = d.path().join("X.tar");
    for (text, format) in [
        (format!("{}:t", x.display()), Format::DockerArchive),
        (x.display().to_string(), Format::DockerArchive),
        (
            format!("{}:t", d.path().join("Y.tar").display()),
            Format::OciArchive,
        ),
    ] {
        let s = Source::parse(&text);
        let r = resolve(&s).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(r.format, format);
        let got = unpack(&r, &s, &cache).unwrap();
        assert_eq!(tree(&got.dir), t, "{text}");
        assert_eq!(got.layer_of("keep/new"), Some(r.layers[2].digest.as_str()));
    }
    // A wrong reference lists what there is.
    let e = resolve(&Source::parse(&format!("{}:nope", x.display()))).unwrap_err();
    assert!(matches!(e, OciError::NoMatch { .. }), "{e}");
    assert!(e.to_string().contains("docker.io/library/t:latest"), "{e}");
}

#[test]
fn two_platforms_in_one_index() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    run("umoci", &["init", "--layout", "L"], dir);
    for (tag, arch) in [("amd", "amd64"), ("arm", "arm64")] {
        run("umoci", &["new", "--image", &format!("L:{tag}")], dir);
        run(
            "umoci",
            &[
                "config",
                "--image",
                &format!("L:{tag}"),
                "--architecture",
                arch,
            ],
            dir,
        );
        let b = format!("B{tag}");
        run(
            "umoci",
            &["unpack", "--rootless", "--image", &format!("L:{tag}"), &b],
            dir,
        );
        std::fs::write(dir.join(&b).join("rootfs/arch"), arch).unwrap();
        run(
            "umoci",
            &["repack", "--image", &format!("L:{tag}"), &b],
            dir,
        );
    }
    let l = dir.join("L");
    // Both tags still resolve by reference; without one, the platform decides.
    let amd = resolve(&Source::new(&l, Some("amd".into()))).unwrap();
    let arm =
        resolve(&Source::new(&l, Some("arm".into())).with_platform("linux/arm64".parse().unwrap()))
            .unwrap();
    assert_eq!(arm.platform.architecture, "arm64");
    let e = resolve(&Source::new(&l, Some("arm".into()))).unwrap_err();
    assert!(matches!(e, OciError::NoMatch { .. }), "{e}");
    assert!(e.to_string().contains("linux/arm64"), "{e}");

    // A nested index with platforms, under tag `multi`.
    let mut index = read_json(&l.join("index.json"));
    let mut list = vec![];
    for (tag, arch) in [("amd", "amd64"), ("arm", "arm64")] {
        let mut e = index_entry(&mut index, tag).clone();
        e.as_object_mut().unwrap().remove("annotations");
        e["platform"] = json!({"os": "linux", "architecture": arch});
        list.push(e);
    }
    let nested = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": list});
    let (nd, ns) = put_blob(&l, &serde_json::to_vec(&nested).unwrap());
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": nd, "size": ns,
        "annotations": {"org.opencontainers.image.ref.name": "multi"}
    }));
    std::fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let cache = dir.join("cache");
    let s = Source::parse(&format!("{}:multi", l.display()));
    let r = resolve(&s).unwrap();
    assert_eq!(r.manifest_digest, amd.manifest_digest);
    let root = unpack(&r, &s, &cache).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.dir.join("arch")).unwrap(),
        "amd64"
    );
    let s = s.with_platform("linux/arm64".parse().unwrap());
    let r = resolve(&s).unwrap();
    assert_eq!(r.manifest_digest, arm.manifest_digest);
    let root = unpack(&r, &s, &cache).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.dir.join("arch")).unwrap(),
        "arm64"
    );
    let e = resolve(&s.clone().with_platform("linux/s390x".parse().unwrap())).unwrap_err();
    assert!(
        e.to_string().contains("linux/amd64") && e.to_string().contains("linux/arm64"),
        "{e}"
    );

    // No reference: amd64 matches tag amd and multi's entry, the same manifest: one image.
    assert_eq!(
        resolve(&Source::new(&l, None)).unwrap().manifest_digest,
        amd.manifest_digest
    );
    let v8 = "linux/arm64/v8".parse().unwrap();
    let r = resolve(&Source::new(&l, Some("multi".into())).with_platform(v8)).unwrap();
    assert_eq!(r.manifest_digest, arm.manifest_digest);
    // Another amd64 image: now it is ambiguous, and the error lists both.
    run("umoci", &["new", "--image", "L:other"], dir);
    let e = resolve(&Source::new(&l, None)).unwrap_err();
    assert!(
        e.to_string().contains("other") && e.to_string().contains("amd"),
        "{e}"
    );
    assert!(matches!(e, OciError::Ambiguous { .. }), "{e}");
}

/// The cache holds no entry and no temporary.
fn assert_cache_empty(cache: &Path) {
    assert!(
        entries(&cache.join("rootfs")).is_empty(),
        "rootfs entry left"
    );
    assert!(entries(&cache.join("tmp")).is_empty(), "tmp left");
}

#[test]
fn tampered_blobs_are_refused_and_nothing_is_cached() {
    let d = tempfile::tempdir().unwrap();
    let l = build_layout(d.path());
    let src = Source::new(&l, Some("t".into()));
    let r = resolve(&src).unwrap();
    // The uncompressed layer (the last), then a gzip one.
    for i in [3, 0] {
        let copy = d.path().join(format!("T{i}"));
        run(
            "cp",
            &["-a", l.to_str().unwrap(), copy.to_str().unwrap()],
            d.path(),
        );
        let blob = blob_path(&copy, &r.layers[i].digest);
        let mut bytes = std::fs::read(&blob).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&blob, &bytes).unwrap();
        let s = Source::new(&copy, Some("t".into()));
        let r = resolve(&s).unwrap();
        let cache = d.path().join(format!("cache{i}"));
        let e = unpack(&r, &s, &cache).unwrap_err();
        match &e {
            OciError::Digest {
                member,
                expected,
                actual,
                ..
            } => {
                assert!(member.contains(&r.layers[i].digest[7..]), "{e}");
                assert_eq!(expected, &r.layers[i].digest);
                assert_ne!(actual, expected);
            }
            _ => panic!("layer {i}: {e}"),
        }
        assert_cache_empty(&cache);
    }
}

#[test]
fn hostile_layers_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    run("umoci", &["init", "--layout", "L"], dir);
    let l = dir.join("L");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            tar_of(&[E::RawName("../evil")]),
            "absolute path or .. component",
        ),
        (
            "deep",
            tar_of(&[E::RawName("a/../../evil")]),
            "absolute path or .. component",
        ),
        (
            "abs",
            tar_of(&[E::RawName("/evil")]),
            "absolute path or .. component",
        ),
    ];
    for (tag, tar, reason) in cases {
        run("umoci", &["new", "--image", &format!("L:{tag}")], dir);
        add_layer(&l, tag, &tar, true);
        let s = Source::new(&l, Some(tag.into()));
        let r = resolve(&s).unwrap();
        let cache = dir.join(format!("cache-{tag}"));
        let e = unpack(&r, &s, &cache).unwrap_err();
        assert!(matches!(e, OciError::Unsafe { .. }), "{tag}: {e}");
        assert!(e.to_string().contains(reason), "{tag}: {e}");
        assert_cache_empty(&cache);
        assert!(!dir.join("evil").exists() && !Path::new("/evil").exists());
    }
    // A device file is skipped, with a note.
    run("umoci", &["new", "--image", "L:dev"], dir);
    add_layer(&l, "dev", &tar_of(&[E::Char("dev/null")]), true);
    let s = Source::new(&l, Some("dev".into()));
    let r = resolve(&s).unwrap();
    let root = unpack(&r, &s, &dir.join("cache-dev")).unwrap();
    assert!(!root.dir.join("dev/null").exists());
    assert_eq!(root.notes.len(), 1, "{:?}", root.notes);
    assert!(
        root.notes[0].contains("(first: dev/null)"),
        "{:?}",
        root.notes
    );
}

#[test]
fn links_on_the_way_are_followed_inside_the_root_only() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    run("umoci", &["init", "--layout", "L"], dir);
    run("umoci", &["new", "--image", "L:t"], dir);
    let l = dir.join("L");
    add_layer(
        &l,
        "t",
        &tar_of(&[
            E::Dir("usr/lib"),
            E::Symlink("lib", "usr/lib"),
            E::Symlink("up", "../../.."),
            E::Symlink("abs", "/usr"),
        ]),
        true,
    );
    add_layer(
        &l,
        "t",
        &tar_of(&[
            E::File("lib/libc.so", b"c", 0o755),
            E::File("up/escaped", b"e", 0o644),
            E::File("abs/abs-file", b"a", 0o644),
            // Replaces the link itself, never writes through it.
            E::File("abs", b"now a file", 0o644),
        ]),
        false,
    );
    let s = Source::new(&l, None);
    let r = resolve(&s).unwrap();
    let root = unpack(&r, &s, &dir.join("cache")).unwrap();
    let t = tree(&root.dir);
    assert_eq!(t["usr/lib/libc.so"].2, b"c");
    assert_eq!(t["lib"].2, b"usr/lib");
    assert_eq!(t["escaped"].2, b"e", "clamped at the root");
    assert_eq!(t["usr/abs-file"].2, b"a");
    assert_eq!(t["abs"], ('f', 0o644, b"now a file".to_vec()));
    assert!(!dir.join("escaped").exists());
    assert_eq!(
        root.layer_of("usr/lib/libc.so"),
        Some(r.layers[1].digest.as_str())
    );
}

#[test]
fn not_an_image_and_missing_paths() {
    let d = tempfile::tempdir().unwrap();
    let e = resolve(&Source::parse(d.path().join("nope:t").to_str().unwrap())).unwrap_err();
    assert!(matches!(e, OciError::NotFound { .. }), "{e}");
    let e = resolve(&Source::parse(d.path().to_str().unwrap())).unwrap_err();
    assert!(matches!(e, OciError::NotAnImage { .. }), "{e}");
    let f = d.path().join("garbage.tar");
    std::fs::write(&f, b"not a tar at all, not even close").unwrap();
    assert!(resolve(&Source::parse(f.to_str().unwrap())).is_err());
    // A ':' in a folder name.
    let odd = d.path().join("a:b");
    std::fs::create_dir(&odd).unwrap();
    let s = Source::parse(&format!("{}:ref", odd.display()));
    assert_eq!((s.path, s.reference.as_deref()), (odd.clone(), Some("ref")));
    let s = Source::parse(odd.to_str().unwrap());
    assert_eq!((s.path, s.reference), (odd, None));
}

#[test]
fn a_tampered_docker_archive_layer_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    run("umoci", &["init", "--layout", "L"], dir);
    run("umoci", &["new", "--image", "L:t"], dir);
    add_layer(
        &dir.join("L"),
        "t",
        &tar_of(&[E::File("f", b"data", 0o644)]),
        true,
    );
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    run(
        "skopeo",
        &["--policy", p, "copy", "oci:L:t", "docker-archive:X.tar:t"],
        dir,
    );
    let x = dir.join("X.tar");
    let s = Source::new(&x, None);
    let r = resolve(&s).unwrap();
    // Flip the last byte of the layer member (inside the layer's end-of-archive blocks).
    let (offset, size) = {
        let mut a = tar::Archive::new(std::fs::File::open(&x).unwrap());
        let e = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some(r.layers[0].member.as_str()))
            .unwrap();
        (e.raw_file_position(), e.size())
    };
    let mut bytes = std::fs::read(&x).unwrap();
    bytes[(offset + size - 1) as usize] ^= 1;
    std::fs::write(&x, &bytes).unwrap();
    let cache = dir.join("cache");
    let e = unpack(&r, &s, &cache).unwrap_err();
    assert!(matches!(e, OciError::Digest { .. }), "{e}");
    assert!(e.to_string().contains(&r.layers[0].digest), "{e}");
    assert_cache_empty(&cache);
}

#[test]
fn the_image_config_says_how_the_application_runs() {
    let d = tempfile::tempdir().unwrap();
    let l = build_layout(d.path());
    run(
        "umoci",
        &[
            "config",
            "--image",
            "L:t",
            "--config.entrypoint",
            "/usr/bin/python3",
            "--config.entrypoint",
            "-u",
            "--config.cmd",
            "main.py",
            "--config.env",
            "LANG=C.UTF-8",
            "--config.workingdir",
            "/app",
        ],
        d.path(),
    );
    let app = resolve(&Source::new(&l, Some("t".into())))
        .unwrap()
        .application;
    assert_eq!(app.entrypoint, ["/usr/bin/python3", "-u"]);
    assert_eq!(app.cmd, ["main.py"]);
    assert!(
        app.env.contains(&"LANG=C.UTF-8".to_string()),
        "{:?}",
        app.env
    );
    assert_eq!(app.working_dir, "/app");

    // Docker writes null for what is not set; a config without `config` has nothing.
    for (config, want) in [
        (
            json!({"Entrypoint": null, "Cmd": ["/bin/sh"], "Env": null, "WorkingDir": ""}),
            (vec![], vec!["/bin/sh"], vec![], ""),
        ),
        (json!(null), (vec![], vec![], vec![], "")),
    ] {
        let m = d.path().join(format!("M{}", config.is_null()));
        common::init_layout(&m);
        let desc = common::put_image_with(&m, &[], false, config);
        common::write_index(&m, vec![desc]);
        let app = resolve(&Source::new(&m, None)).unwrap().application;
        assert_eq!(
            (app.entrypoint, app.cmd, app.env, app.working_dir.as_str()),
            (
                want.0
                    .iter()
                    .map(|s: &&str| s.to_string())
                    .collect::<Vec<_>>(),
                want.1.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                want.2
                    .iter()
                    .map(|s: &&str| s.to_string())
                    .collect::<Vec<_>>(),
                want.3
            )
        );
    }
}
