//! A volume whose log holds a hard link as the Nanos kernel writes it: the link's record
//! carries the file with its `..` parent link, and through it its parent, grandparent and
//! the root (whose `..` is itself), all by reference (nanos 0.1.55: `tfs_link` in
//! `src/fs/tfs.c`, `encode_eav` and `encode_tuple_internal` in `src/runtime/tuple.c`).

use std::io::Cursor;

use nanoimg_tfs::{Entry, Tfs, MAGIC, SECTOR};
use nanoimg_tuple::{encode, varint, Value};

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

/// The records: mkfs's tree, then `ln /d/f /e/g` by the kernel after `f` was opened.
fn records() -> Vec<Vec<u8>> {
    let one = || Value::Integer(1);
    let extent = tuple([("allocated", one()), ("length", one()), ("offset", one())]);
    let f = tuple([
        ("extents", tuple([("0", extent)])),
        ("filelength", Value::Integer(3)),
    ]);
    let root = tuple([(
        "children",
        tuple([
            ("d", tuple([("children", tuple([("f", f)]))])),
            ("e", tuple([("children", tuple([]))])),
        ]),
    )]);
    let Value::Tuple(root) = root else {
        unreachable!()
    };
    // Dictionary: #1 root, #2 "children", #3 its children, #4 "d", #5 d, #6 d's children,
    // #7 "f", #8 f, #9 "extents", #10 extents, #11 "0", #12 the extent, #13 "allocated",
    // #14 "length", #15 "offset", #16 "filelength", #17 "e", #18 e, #19 e's children.
    let mkfs = encode(&root).unwrap();
    // Headers: 0x1n = tuple by reference with n entries (then its index), 0x8n = symbol of
    // n bytes, 0x0n or 0x08 0xnn = symbol #n by reference, 0xB0 = integer.
    #[rustfmt::skip]
    let link = vec![
        0x11, 19, 0x81, b'g',                    // #19 { g (#20):
        0x14, 8,                                 //   #8 with 4 entries {
        0x08, 9, 0x11, 10,                       //     extents: #10 {
        0x08, 11, 0x13, 12,                      //       "0": #12 {
        0x08, 13, 0xB0, 1,                       //         allocated: 1,
        0x08, 14, 0xB0, 1,                       //         length: 1,
        0x08, 15, 0xB0, 1,                       //         offset: 1 } },
        0x08, 16, 0xB0, 3,                       //     filelength: 3,
        0x85, b'n', b'l', b'i', b'n', b'k',      //     nlink (#21):
        0xB0, 2,                                 //       2,
        0x82, b'.', b'.', 0x12, 5,               //     .. (#22): #5 {
        0x02, 0x11, 6, 0x07, 0x10, 8,            //       children: #6 { f: #8 (visited) },
        0x08, 22, 0x12, 1,                       //       ..: #1 {
        0x02, 0x12, 3,                           //         children: #3 {
        0x04, 0x10, 5,                           //           d: #5 (visited),
        0x08, 17, 0x12, 18,                      //           e: #18 {
        0x02, 0x10, 19,                          //             children: #19 (visited),
        0x08, 22, 0x10, 1,                       //             ..: #1 (visited) } },
        0x08, 22, 0x10, 1,                       //         ..: #1 (visited) } } } }
    ];
    let nlink = vec![0x11, 8, 0x08, 21, 0xB0, 2]; // #8 { nlink: 2 }
    vec![mkfs, link, nlink]
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
