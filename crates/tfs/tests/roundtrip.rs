//! Write trees with the TFS writer, read them back with the reader, and compare.

use std::collections::BTreeMap;
use std::io::Cursor;

use nanoimg_tfs::{plan, Dir, Entry, FileSource, Node, Tfs, VolumeSpec, SECTOR};
use nanoimg_tuple::{Tuple, Value};
use proptest::prelude::*;

/// Writes a planned volume into a new file and returns what was written and the bytes.
fn write_bytes(planned: &nanoimg_tfs::PlannedVolume) -> (nanoimg_tfs::WrittenVolume, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("volume");
    let file = std::fs::File::create_new(&path).unwrap();
    let (written, digests) = planned.write_file(&file, 0, true).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        digests.sha256,
        sha256(&bytes),
        "the writer's SHA-256 is the file's"
    );
    assert_eq!(digests.files.len(), written.files.len());
    (written, bytes)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Writes `root` as a volume with `free` bytes after it, and opens it again.
fn write_and_open(root: &Dir, manifest: &Tuple, label: &[u8]) -> Tfs<Cursor<Vec<u8>>> {
    let planned = plan(&VolumeSpec {
        label,
        manifest,
        ..VolumeSpec::new(root)
    })
    .unwrap();
    let (_, mut bytes) = write_bytes(&planned);
    assert_eq!(
        bytes.len() as u64,
        planned.size(),
        "the volume is exactly its planned size"
    );
    bytes.resize(planned.size() as usize + 1024 * 1024, 0);
    let size = bytes.len() as u64;
    Tfs::open(Cursor::new(bytes), 0, size).unwrap()
}

/// Compares a written tree with what was read back, contents byte for byte.
fn assert_same(
    fs: &mut Tfs<Cursor<Vec<u8>>>,
    want: &Dir,
    got: &BTreeMap<Vec<u8>, Entry>,
    path: &str,
) {
    let names: Vec<_> = want.entries().keys().collect();
    let got_names: Vec<_> = got.keys().collect();
    assert_eq!(names, got_names, "entries of {path:?}");
    for (name, node) in want.entries() {
        let p = format!("{path}/{}", String::from_utf8_lossy(name));
        match (node, &got[name]) {
            (Node::Dir(d), Entry::Dir(g)) => assert_same(fs, d, g, &p),
            (Node::Symlink(t), Entry::Symlink(g)) => assert_eq!(t, g, "link {p}"),
            (Node::File(src), Entry::File(f)) => {
                let want_bytes = match src {
                    FileSource::Bytes(b) => b.clone(),
                    FileSource::Host { path, .. } => std::fs::read(path).unwrap(),
                };
                assert_eq!(f.len, want_bytes.len() as u64, "length of {p}");
                assert!(fs.read_file(f).unwrap() == want_bytes, "contents of {p}");
            }
            (n, g) => panic!("{p}: wrote {n:?}, read {g:?}"),
        }
    }
}

fn bytes(b: &[u8]) -> Node {
    Node::File(FileSource::Bytes(b.to_vec()))
}

#[test]
fn a_real_tree_round_trips() {
    let host = tempfile::tempdir().unwrap();
    let big = host.path().join("big.bin");
    // 40 MiB + 7 bytes: more than one 32 MiB extent, with a partial last sector.
    let data: Vec<u8> = (0..40 * 1024 * 1024 + 7)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    std::fs::write(&big, &data).unwrap();

    let mut root = Dir::new();
    root.insert(b"/bin/app", bytes(b"\x7fELF pretend")).unwrap();
    root.insert(
        b"/data/big.bin",
        Node::File(FileSource::host(&big).unwrap()),
    )
    .unwrap();
    root.insert(b"/etc/empty", bytes(b"")).unwrap();
    root.insert(b"/emptydir", Node::Dir(Dir::new())).unwrap();
    root.insert(b"/lib/link", Node::Symlink(b"../bin/app".to_vec()))
        .unwrap();
    root.insert(
        b"/dir with spaces/na\xc3\xafve \xff\x01 name",
        bytes(b"odd"),
    )
    .unwrap();
    let deep: String = (0..200).map(|i| format!("/d{i}")).collect();
    root.insert(format!("{deep}/leaf").as_bytes(), bytes(b"deep"))
        .unwrap();

    let mut manifest = Tuple::new();
    manifest.insert(b"program".to_vec(), Value::string("/bin/app"));
    manifest.insert(
        b"arguments".to_vec(),
        Value::Vector(vec![Value::string("app"), Value::string("two words")]),
    );

    let mut fs = write_and_open(&root, &manifest, b"roundtrip");
    assert_eq!(fs.label(), b"roundtrip");
    assert_eq!(fs.version(), 5);
    assert_eq!(fs.root()[&b"program"[..]], Value::string("/bin/app"));
    assert_eq!(fs.root()[&b"arguments"[..]], manifest[&b"arguments"[..]]);
    let tree = fs.tree().unwrap();
    assert_same(&mut fs, &root, &tree, "");

    // The big file is split into 32 MiB extents, contiguous from sector 1025 onwards.
    let Entry::Dir(d) = &tree[&b"data"[..]] else {
        panic!()
    };
    let Entry::File(f) = &d[&b"big.bin"[..]] else {
        panic!()
    };
    let lens: Vec<u64> = f.extents.iter().map(|x| x.length).collect();
    assert_eq!(lens, [65536, (data.len() as u64).div_ceil(SECTOR) - 65536]);
    assert_eq!(f.extents[1].start, f.extents[0].start + 65536);
}

#[test]
fn thousands_of_files_spill_the_log_over_several_extensions() {
    let mut root = Dir::new();
    for i in 0..5000 {
        let name = format!(
            "/many/directory-{:03}/file-{i:05}-with-a-name-long-enough-to-need-a-second-log-extension-{}.txt",
            i % 100,
            "x".repeat(40)
        );
        root.insert(name.as_bytes(), bytes(format!("file {i}").as_bytes()))
            .unwrap();
    }
    let planned = plan(&VolumeSpec::new(&root)).unwrap();
    assert!(
        planned.log_extensions() > 1,
        "{} extensions",
        planned.log_extensions()
    );
    let mut fs = write_and_open(&root, &Tuple::new(), b"");
    assert!(fs.log_extensions().len() > 2);
    let tree = fs.tree().unwrap();
    assert_same(&mut fs, &root, &tree, "");
}

#[test]
fn the_same_tree_gives_the_same_bytes_and_uuid() {
    let build = || {
        let mut root = Dir::new();
        // Inserted in a different order each time: the output must not care.
        root.insert(b"/b", bytes(b"2")).unwrap();
        root.insert(b"/a", bytes(b"1")).unwrap();
        let planned = plan(&VolumeSpec::new(&root)).unwrap();
        let (written, bytes) = write_bytes(&planned);
        (written.uuid, bytes)
    };
    let (u1, b1) = build();
    let (u2, b2) = build();
    assert_eq!(u1, u2);
    assert!(b1 == b2);
    assert_ne!(u1, [0; 16]);
}

#[test]
fn a_host_file_that_changes_is_an_error() {
    let host = tempfile::tempdir().unwrap();
    let p = host.path().join("f");
    std::fs::write(&p, b"12345").unwrap();
    let mut root = Dir::new();
    root.insert(b"/f", Node::File(FileSource::host(&p).unwrap()))
        .unwrap();
    let planned = plan(&VolumeSpec::new(&root)).unwrap();
    std::fs::write(&p, b"123456").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = std::fs::File::create_new(dir.path().join("volume")).unwrap();
    let err = planned.write_file(&out, 0, false).unwrap_err();
    assert!(err.to_string().contains("changed while"), "{err}");
}

#[test]
fn bad_labels_and_reserved_keys_are_refused() {
    let root = Dir::new();
    let long = [b'x'; 32];
    assert!(plan(&VolumeSpec {
        label: &long,
        ..VolumeSpec::new(&root)
    })
    .is_err());
    let mut m = Tuple::new();
    m.insert(b"children".to_vec(), Value::Tuple(Tuple::new()));
    assert!(plan(&VolumeSpec {
        manifest: &m,
        ..VolumeSpec::new(&root)
    })
    .is_err());
}

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
        1..12,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn arb_dir() -> impl Strategy<Value = Dir> {
    let leaf = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2000)
            .prop_map(|b| Node::File(FileSource::Bytes(b))),
        arb_name().prop_map(Node::Symlink),
        Just(Node::Dir(Dir::new())),
    ];
    let node = leaf.prop_recursive(4, 64, 6, |inner| {
        proptest::collection::btree_map(arb_name(), inner, 0..6).prop_map(|m| {
            let mut d = Dir::new();
            for (k, v) in m {
                d.insert(&k, v).unwrap();
            }
            Node::Dir(d)
        })
    });
    proptest::collection::btree_map(arb_name(), node, 0..8).prop_map(|m| {
        let mut d = Dir::new();
        for (k, v) in m {
            d.insert(&k, v).unwrap();
        }
        d
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_trees_round_trip(root in arb_dir()) {
        let mut fs = write_and_open(&root, &Tuple::new(), b"prop");
        let tree = fs.tree().unwrap();
        assert_same(&mut fs, &root, &tree, "");
    }
}
