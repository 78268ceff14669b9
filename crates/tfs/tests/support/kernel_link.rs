//! A hard link as the Nanos kernel writes it, by hand: shared by the tfs crate's test
//! (`tests/kernel_links.rs`) and the fuzz seed generator (`fuzz/examples/gen_seeds.rs`).

use nanoimg_tuple::{encode, Tuple, Value};

fn int(n: i128) -> Value {
    Value::Integer(n)
}

fn tuple<const N: usize>(entries: [(&str, Value); N]) -> Tuple {
    entries
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v))
        .collect()
}

/// A hard link as the Nanos kernel writes it (`tfs_link`, `encode_eav`): the tree
/// `/d/f`, `/e` (one record, as mkfs writes it), then `ln /d/f /e/g` after `f` was opened, so
/// that the link's record carries `f` with its `..` parent link, and through it `d`, the
/// root and the root's own `..`, all by reference; then `f`'s new `nlink`. `f`'s data is at
/// `data_sector`. Read back, `/d/f` and `/e/g` are the same file and no `..` is left.
pub fn kernel_link_records(data_sector: u8) -> Vec<Vec<u8>> {
    let extent = tuple([
        ("allocated", int(1)),
        ("length", int(1)),
        ("offset", int(i128::from(data_sector))),
    ]);
    let f = tuple([
        (
            "extents",
            Value::Tuple(tuple([("0", Value::Tuple(extent))])),
        ),
        ("filelength", int(3)),
    ]);
    let dir = |children: Tuple| Value::Tuple(tuple([("children", Value::Tuple(children))]));
    let root = tuple([(
        "children",
        Value::Tuple(tuple([
            ("d", dir(tuple([("f", Value::Tuple(f))]))),
            ("e", dir(Tuple::new())),
        ])),
    )]);
    // Dictionary: #1 root, #2 "children", #3 its children, #4 "d", #5 d, #6 d's children,
    // #7 "f", #8 f, #9 "extents", #10 extents, #11 "0", #12 the extent, #13 "allocated",
    // #14 "length", #15 "offset", #16 "filelength", #17 "e", #18 e, #19 e's children.
    let mkfs = encode(&root).unwrap();
    #[rustfmt::skip]
    let link = vec![
        0x11, 19, 0x81, b'g',                    // #19 { g (#20):
        0x14, 8,                                 //   #8 with 4 entries {
        0x08, 9, 0x11, 10,                       //     extents: #10 {
        0x08, 11, 0x13, 12,                      //       "0": #12 {
        0x08, 13, 0xB0, 1,                       //         allocated: 1,
        0x08, 14, 0xB0, 1,                       //         length: 1,
        0x08, 15, 0xB0, data_sector,             //         offset } },
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
