//! Images made in the test, without umoci or skopeo: tars from the `tar` crate (or headers
//! written by hand where the crate refuses), gzip'd with flate2, placed in OCI layouts, OCI
//! archives and docker-archives.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub fn sha(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A member of a layer made with [`tar_of`].
pub enum E<'a> {
    File(&'a str, &'a [u8]),
    /// A regular file with mode 0755.
    Exec(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str),
    Block(&'a str),
    Fifo(&'a str),
    /// A regular file whose whole path is a PAX `path` record (the header holds a short
    /// stand-in name).
    PaxFile(&'a str, &'a [u8]),
    /// A symbolic link whose target is a PAX `linkpath` record.
    PaxSymlink(&'a str, &'a str),
    /// A regular file whose name is written raw into the header (the tar crate refuses
    /// `..`, absolute names, control characters are fine).
    RawName(&'a [u8]),
    /// Bytes appended as they are (hand-made headers).
    Raw(Vec<u8>),
}

/// PAX extended header data: `LEN key=value\n` records.
pub fn pax_records(kv: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in kv {
        let body_len = 1 + k.len() + 1 + v.len() + 1; // " k=v\n"
        let mut len = body_len + 1;
        while len.to_string().len() + body_len != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// A 512-byte GNU header of type `kind` named `name` claiming `size` bytes.
pub fn raw_header(kind: u8, name: &[u8], size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_mut_bytes()[..name.len()].copy_from_slice(name);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn pad(v: &mut Vec<u8>) {
    v.resize(v.len().next_multiple_of(512), 0);
}

/// A tar of `entries`. Headers are GNU ones, so names or targets over 100 bytes get a
/// `././@LongLink` member from the tar crate.
pub fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        match e {
            E::File(p, data) | E::Exec(p, data) => {
                h.set_mode(if matches!(e, E::Exec(..)) {
                    0o755
                } else {
                    0o644
                });
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Char(p) | E::Block(p) | E::Fifo(p) => {
                h.set_entry_type(match e {
                    E::Char(_) => tar::EntryType::Char,
                    E::Block(_) => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::PaxFile(p, data) => {
                let mut raw = Vec::new();
                let pax = pax_records(&[("path", p.as_bytes())]);
                raw.extend(raw_header(b'x', b"PaxHeaders.0/f", pax.len() as u64));
                raw.extend(pax);
                pad(&mut raw);
                raw.extend(raw_header(b'0', b"stand-in", data.len() as u64));
                raw.extend_from_slice(data);
                pad(&mut raw);
                b.get_mut().extend(raw);
            }
            E::PaxSymlink(p, t) => {
                let mut raw = Vec::new();
                let pax = pax_records(&[("linkpath", t.as_bytes())]);
                raw.extend(raw_header(b'x', b"PaxHeaders.0/l", pax.len() as u64));
                raw.extend(pax);
                pad(&mut raw);
                let mut h = tar::Header::new_gnu();
                h.set_path(p).unwrap();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name("stand-in").unwrap();
                h.set_size(0);
                h.set_mode(0o777);
                h.set_cksum();
                raw.extend_from_slice(h.as_bytes());
                b.get_mut().extend(raw);
            }
            E::RawName(p) => {
                h.as_mut_bytes()[..p.len()].copy_from_slice(p);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Raw(bytes) => b.get_mut().extend_from_slice(bytes),
        }
    }
    b.into_inner().unwrap()
}

pub fn put_blob(layout: &Path, bytes: &[u8]) -> (String, u64) {
    let d = sha(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
    (d, bytes.len() as u64)
}

pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(&digest[7..])
}

/// An empty OCI layout folder at `dir`.
pub fn init_layout(dir: &Path) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(
        dir.join("oci-layout"),
        br#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
}

/// Writes the config and manifest of an amd64 image of `layers` (tars; gzip'd if `gzip`)
/// into the layout: the manifest's descriptor (media type, digest, size).
pub fn put_image(layout: &Path, layers: &[Vec<u8>], gzip_them: bool) -> Value {
    put_image_with(layout, layers, gzip_them, json!({"Env": ["PATH=/bin"]}))
}

/// [`put_image`] with `application` as the config's `config` object (Entrypoint, Cmd, Env,
/// WorkingDir).
pub fn put_image_with(
    layout: &Path,
    layers: &[Vec<u8>],
    gzip_them: bool,
    application: Value,
) -> Value {
    let mut diff_ids = vec![];
    let mut descs = vec![];
    for tar in layers {
        diff_ids.push(json!(sha(tar)));
        let (blob, media) = if gzip_them {
            (gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let (d, s) = put_blob(layout, &blob);
        descs.push(json!({"mediaType": media, "digest": d, "size": s}));
    }
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": application,
    });
    let (cd, cs) = put_blob(layout, &serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs,
    });
    let (md, ms) = put_blob(layout, &serde_json::to_vec(&manifest).unwrap());
    json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms})
}

pub fn write_index(layout: &Path, manifests: Vec<Value>) {
    let index = json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// An OCI layout at `dir` holding one image of `layers` tagged `t`.
pub fn layout(dir: &Path, layers: &[Vec<u8>], gzip_them: bool) -> PathBuf {
    init_layout(dir);
    let mut desc = put_image(dir, layers, gzip_them);
    desc["annotations"] = json!({"org.opencontainers.image.ref.name": "t"});
    write_index(dir, vec![desc]);
    dir.to_path_buf()
}

/// An uncompressed tar of the folder `dir` (its content, names relative to it), as an
/// OCI archive is of a layout.
pub fn tar_folder(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

/// A docker-archive (`docker save` style) of `layers` (uncompressed tars) at member names
/// `names` (one per layer), tagged `t:latest`; with `pax`, the layers' names are PAX
/// `path` records.
pub fn docker_archive(layers: &[Vec<u8>], names: &[&str], pax: bool) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_name = format!("{}.json", &sha(&config)[7..]);
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name, "RepoTags": ["t:latest"], "Layers": names,
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("manifest.json", &manifest);
    add(&config_name, &config);
    let mut tar = b.into_inner().unwrap();
    tar.truncate(tar.len() - 1024); // the end-of-archive blocks
    let mut rest = tar::Builder::new(Vec::new());
    for (l, n) in layers.iter().zip(names) {
        if pax {
            let t = tar_of(&[E::PaxFile(n, l)]);
            rest.get_mut().extend_from_slice(&t[..t.len() - 1024]);
        } else {
            let mut h = tar::Header::new_gnu();
            h.set_size(l.len() as u64);
            h.set_mode(0o644);
            rest.append_data(&mut h, n, &l[..]).unwrap();
        }
    }
    tar.extend(rest.into_inner().unwrap());
    tar
}

/// path → (kind, content or target) of a tree, for comparing roots.
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, (char, Vec<u8>)> {
    use std::os::unix::ffi::OsStringExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let v = if m.file_type().is_symlink() {
                (
                    'l',
                    std::fs::read_link(&p).unwrap().into_os_string().into_vec(),
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                ('d', vec![])
            } else {
                ('f', std::fs::read(&p).unwrap())
            };
            out.insert(rel, v);
        }
    }
    out
}

pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(r) => r
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}
