//! A volume whose log holds a hard link as the Nanos kernel writes it: the link's record
//! carries the file with its `..` parent link, and through it its parent, grandparent and
//! the root (whose `..` is itself), all by reference (nanos 0.1.55: `tfs_link` in
//! `src/fs/tfs.c`, `encode_eav` and `encode_tuple_internal` in `src/runtime/tuple.c`).

use std::io::Cursor;

use nanoimg_tfs::{Entry, Tfs, MAGIC, SECTOR};
use nanoimg_tuple::{varint, Value};

const END_OF_LOG: u8 = 1;
const TUPLE_AVAILABLE: u8 = 2;

fn tuple<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Tuple(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

#[path = "support/kernel_link.rs"]
mod kernel_link;

/// The records: mkfs's tree, then `ln /d/f /e/g` by the kernel after `f` was opened; `f`'s
/// data in sector 1.
fn records() -> Vec<Vec<u8>> {
    kernel_link::kernel_link_records(1)
}

/// A 2-sector volume: the log in the initial sector, `f`'s data in sector 1.
fn volume() -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    varint::push(&mut v, 5);
    varint::push(&mut v, 1);
    v.extend_from_slice(&[0; 16]); // UUID
    v.push(0); // empty label
    for r in records() {
        v.push(TUPLE_AVAILABLE);
        varint::push(&mut v, r.len() as u64);
        varint::push(&mut v, r.len() as u64);
        v.extend_from_slice(&r);
    }
    v.push(END_OF_LOG);
    assert!(v.len() <= SECTOR as usize);
    v.resize(SECTOR as usize, 0);
    v.extend_from_slice(b"hi\n");
    v.resize(2 * SECTOR as usize, 0);
    v
}

#[test]
fn a_kernel_written_hard_link_reads_in_both_directories() {
    let v = volume();
    let mut fs = Tfs::open(Cursor::new(&v[..]), 0, v.len() as u64).unwrap();
    // No parent links in the tree, and the file under both names.
    let root = Value::Tuple(fs.root().clone());
    let f = tuple([
        (
            "extents",
            tuple([(
                "0",
                tuple([
                    ("allocated", Value::Integer(1)),
                    ("length", Value::Integer(1)),
                    ("offset", Value::Integer(1)),
                ]),
            )]),
        ),
        ("filelength", Value::Integer(3)),
        ("nlink", Value::Integer(2)),
    ]);
    let expected = tuple([(
        "children",
        tuple([
            ("d", tuple([("children", tuple([("f", f.clone())]))])),
            ("e", tuple([("children", tuple([("g", f)]))])),
        ]),
    )]);
    assert_eq!(root, expected);

    let tree = fs.tree().unwrap();
    let file = |dir: &str, name: &str| {
        let Entry::Dir(d) = &tree[dir.as_bytes()] else {
            panic!("{dir} is not a directory")
        };
        let Entry::File(f) = &d[name.as_bytes()] else {
            panic!("{dir}/{name} is not a file")
        };
        f.clone()
    };
    let (f, g) = (file("d", "f"), file("e", "g"));
    assert_eq!(f, g);
    assert_eq!(fs.read_file(&f).unwrap(), b"hi\n");
    assert_eq!(fs.read_file(&g).unwrap(), b"hi\n");
}
