//! The readers against reference images written by Nanos's mkfs and by ops
//! (`../shared/vectors`): the same tree, manifest, label and UUID that Nanos's `dump` printed,
//! and the same file contents as the inputs they were made from.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use nanoimg::disk::{DiskImage, PARTITION_TYPE_ESP};
use nanoimg::tfs::Entry;
use nanoimg::tuple::print::{nanos_dump, DumpOptions};
use nanoimg::tuple::Value;

struct Vector {
    _dir: tempfile::TempDir,
    image: DiskImage,
    dump: String,
    tree: String,
}

fn open(name: &str) -> Vector {
    let vectors = common::vectors_dir();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join(format!("{name}.img"));
    let mut gz =
        flate2::read::GzDecoder::new(File::open(vectors.join(format!("{name}.img.gz"))).unwrap());
    std::io::copy(&mut gz, &mut File::create(&raw).unwrap()).unwrap();
    let read =
        |suffix: &str| std::fs::read_to_string(vectors.join(format!("{name}.{suffix}"))).unwrap();
    Vector {
        image: DiskImage::open(&raw).unwrap(),
        dump: read("dump.txt"),
        tree: read("dump-tree.txt"),
        _dir: dir,
    }
}

fn input(rel: &str) -> Vec<u8> {
    std::fs::read(common::vectors_dir().join(rel)).unwrap()
}

/// Label, UUID and metadata as `dump` printed them.
fn check_dump(fs: &nanoimg::disk::ImageFs, dump: &str) {
    let mut lines = dump.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("Label: {}", String::from_utf8_lossy(fs.label()))
    );
    assert_eq!(lines.next().unwrap(), format!("UUID: {}", fs.uuid_string()));
    assert_eq!(lines.next().unwrap(), "metadata");
    let metadata: Vec<&str> = lines
        .take_while(|l| !l.starts_with("detected filesystem"))
        .collect();
    let ours = nanos_dump(
        &Value::Tuple(fs.root().clone()),
        DumpOptions {
            parent_links: true,
            limit: 0,
        },
    );
    assert_eq!(ours, metadata.join("\n"));
}

/// The names `dump -t` listed (it prints each entry's name; links as `name -> target`).
fn check_tree_listing(tree: &BTreeMap<Vec<u8>, Entry>, listing: &str) {
    fn names(tree: &BTreeMap<Vec<u8>, Entry>, out: &mut Vec<String>) {
        for (name, e) in tree {
            let name = String::from_utf8_lossy(name).into_owned();
            match e {
                Entry::Symlink(t) => out.push(format!("{name} -> {}", String::from_utf8_lossy(t))),
                Entry::Dir(d) => {
                    out.push(name);
                    names(d, out);
                }
                _ => out.push(name),
            }
        }
    }
    let mut ours = Vec::new();
    names(tree, &mut ours);
    // dump colours names with ANSI escapes (ESC [ ... m).
    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
    ours.sort();
    // dump interleaves a progress indicator ("|   ") with its output, even mid-line.
    let mut theirs: Vec<String> = listing
        .lines()
        .skip(2)
        .map(|l| {
            let l = strip_ansi(&l.replace("|   ", ""));
            l.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .filter(|l| !l.is_empty() && !l.starts_with("detected filesystem") && l != "/")
        .collect();
    theirs.sort();
    assert!(
        ours == theirs,
        "dump -t listed other names than the reader found"
    );
}

fn file<'a>(tree: &'a BTreeMap<Vec<u8>, Entry>, path: &str) -> &'a nanoimg::tfs::FileEntry {
    let mut t = tree;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        match &t[p.as_bytes()] {
            Entry::Dir(d) => t = d,
            Entry::File(f) if i == parts.len() - 1 => return f,
            other => panic!("{path}: {other:?}"),
        }
    }
    panic!("{path} is a directory")
}

fn check_raw_volume(
    name: &str,
    label: &str,
) -> (Vector, nanoimg::disk::ImageFs, BTreeMap<Vec<u8>, Entry>) {
    let v = open(name);
    assert!(v.image.mbr().is_none(), "a raw volume has no MBR");
    let fs = v.image.root_fs().unwrap();
    assert_eq!(fs.label(), label.as_bytes());
    check_dump(&fs, &v.dump);
    let tree = fs.tree().unwrap();
    check_tree_listing(&tree, &v.tree);
    (v, fs, tree)
}

#[test]
fn mkfs_empty_volume() {
    let (_v, _fs, tree) = check_raw_volume("mkfs-empty-volume", "emptyvol");
    assert!(tree.is_empty());
}

#[test]
fn mkfs_small_tree() {
    let (_v, mut fs, tree) = check_raw_volume("mkfs-small-tree", "small-tree");
    for (img, host) in [
        ("/a.txt", "inputs/tree/a.txt"),
        ("/empty.txt", "inputs/tree/empty.txt"),
        ("/sub/b.bin", "inputs/tree/sub/b.bin"),
        ("/sub/deeper/c.txt", "inputs/tree/sub/deeper/c.txt"),
    ] {
        assert!(
            fs.read_file(file(&tree, img)).unwrap() == input(host),
            "{img}"
        );
    }
    assert_eq!(tree[&b"link"[..]], Entry::Symlink(b"a.txt".to_vec()));
    assert_eq!(tree[&b"emptydir"[..]], Entry::Dir(BTreeMap::new()));
}

#[test]
fn mkfs_big_file() {
    let (_v, mut fs, tree) = check_raw_volume("mkfs-big-file", "big-file");
    assert!(fs.read_file(file(&tree, "/big.bin")).unwrap() == input("inputs/blobs/big.bin"));
}

#[test]
fn mkfs_many_files() {
    // mkfs writes one record per node here; they fit the first extension after the initial
    // sector. (Logs that span several extensions are covered by the TFS round-trip tests.)
    let (_v, fs, tree) = check_raw_volume("mkfs-many-files", "many-files");
    assert_eq!(fs.log_extensions(), [(0, 1), (1, 1024)]);
    let Entry::Dir(many) = &tree[&b"many"[..]] else {
        panic!()
    };
    assert_eq!(many.len(), 3000);
}

/// A whole BIOS (or UEFI hybrid) image: partitions where boot.img says, the kernel in the
/// boot filesystem, and the program in the root filesystem.
fn check_program_image(name: &str, program: &str, uefi: bool) {
    let v = open(name);
    let boot_img = input("inputs/blobs/boot.img");
    assert_eq!(v.image.stage2_len(), Some(boot_img.len() as u64 - 512));
    assert_eq!(v.image.esp().is_some(), uefi);
    if uefi {
        assert_eq!(
            v.image.esp().unwrap().entry.partition_type,
            PARTITION_TYPE_ESP
        );
    }
    let esp_size = if uefi { 33 << 20 } else { 0 };
    let boot = v.image.boot_partition().unwrap();
    assert_eq!(boot.offset, boot_img.len() as u64 + 4096 + esp_size);
    assert_eq!(v.image.root_partition().offset, boot.offset + (12 << 20));

    let mut bfs = v.image.boot_fs().unwrap().unwrap();
    let btree = bfs.tree().unwrap();
    assert!(bfs.read_file(file(&btree, "/kernel")).unwrap() == input("inputs/blobs/kernel.img"));

    let mut fs = v.image.root_fs().unwrap();
    check_dump(&fs, &v.dump);
    let tree = fs.tree().unwrap();
    check_tree_listing(&tree, &v.tree);
    assert!(fs.read_file(file(&tree, program)).unwrap() == input("inputs/blobs/prog"));
    assert_eq!(fs.root()[&b"program"[..]], Value::string(program));

    // The MBR outside the partition table is boot.img's, byte for byte.
    let mut mbr = [0u8; 512];
    File::open(raw_path(&v))
        .unwrap()
        .read_exact(&mut mbr)
        .unwrap();
    assert_eq!(mbr[..446], boot_img[..446]);
}

fn raw_path(v: &Vector) -> PathBuf {
    std::fs::read_dir(v._dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

#[test]
fn mkfs_program_image() {
    check_program_image("mkfs-program-image", "/prog", false);
}

#[test]
fn mkfs_program_image_uefi() {
    check_program_image("mkfs-program-image-uefi", "/prog", true);
}

#[test]
fn ops_program_image() {
    check_program_image("ops-program-image", "/inputs/blobs/prog", false);
}
