//! Writes the seed corpora of the fuzz targets:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds -- fuzz/corpus
//!
//! Volumes come from nanoimg's own writer (`nanoimg_tfs::plan` + `PlannedVolume::write`) and
//! are then *compacted*: the writer puts its first log extension at sector 1 with 1024
//! sectors and file data from sector 1025, so every volume it writes is over 512 KiB — too
//! big for a fuzzer. A compacted volume keeps the writer's metadata (re-encoded by
//! `nanoimg_tuple::encode` with the extents moved down) and data, with a log extension only
//! as long as it needs. Besides those, hand-made edge cases: v4 logs, mkfs-style updates by
//! reference, a hard link as the kernel writes it (with `..` parent links), records split
//! across extensions, sparse and uninited files, broken headers.
//!
//! Output file names are stable and the content is deterministic, so re-running the
//! generator over a committed corpus changes nothing.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use nanoimg_disk::PartitionEntry;
use nanoimg_tfs::{plan, Dir, FileSource, Node, Tfs, VolumeSpec, MAGIC, SECTOR};
use nanoimg_tuple::{encode, varint, Encoder, Tuple, Value};

const END_OF_LOG: u8 = 1;
const TUPLE_AVAILABLE: u8 = 2;
const TUPLE_EXTENDED: u8 = 3;
const LOG_EXTENSION_LINK: u8 = 5;

const UUID: [u8; 16] = [
    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21,
];

fn s(x: &str) -> Value {
    Value::string(x)
}

fn int(n: i128) -> Value {
    Value::Integer(n)
}

fn tuple<const N: usize>(entries: [(&str, Value); N]) -> Tuple {
    entries
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v))
        .collect()
}

/// A v5 (or, with `v4`, a v4) value header as the encodings define it.
fn header(v4: bool, immediate: bool, ty: u8, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let (small_bits, ext_flag, first) = if v4 {
        let tybit = if ty == 1 { 0x40 } else { 0 };
        (5, 0x20u8, (u8::from(immediate) << 7) | tybit)
    } else {
        (3, 0x08u8, (u8::from(immediate) << 7) | (ty << 4))
    };
    let bits = 64 - len.leading_zeros();
    let words = if bits <= small_bits {
        0
    } else {
        (bits - small_bits).div_ceil(7)
    };
    let mut first = first;
    if words > 0 {
        first |= ext_flag;
    }
    first |= (len >> (7 * words)) as u8 & ((1 << small_bits) - 1);
    out.push(first);
    for i in (0..words).rev() {
        let mut b = ((len >> (7 * i)) & 0x7f) as u8;
        if i > 0 {
            b |= 0x80;
        }
        out.push(b);
    }
    out
}

/// A v4 record of `t` (tuples and buffers only; every leaf is written as a buffer).
fn encode_v4(t: &Tuple, out: &mut Vec<u8>) {
    out.extend(header(true, true, 1, t.len() as u64));
    for (k, v) in t {
        out.extend(header(true, true, 0, k.len() as u64));
        out.extend_from_slice(k);
        match v {
            Value::Tuple(t) => encode_v4(t, out),
            Value::String(b) | Value::Buffer(b) => {
                out.extend(header(true, true, 0, b.len() as u64));
                out.extend_from_slice(b);
            }
            Value::Null => out.extend([0x81, 0x00]),
            other => panic!("no v4 form for {other:?}"),
        }
    }
}

// ---- log framing --------------------------------------------------------------------------

fn tuple_available(record: &[u8]) -> Vec<u8> {
    let mut f = vec![TUPLE_AVAILABLE];
    varint::push(&mut f, record.len() as u64);
    varint::push(&mut f, record.len() as u64);
    f.extend_from_slice(record);
    f
}

fn link(sector: u64, nsectors: u64) -> Vec<u8> {
    let mut f = vec![LOG_EXTENSION_LINK];
    varint::push(&mut f, sector);
    varint::push(&mut f, nsectors);
    f
}

/// The initial sector: header, UUID, label, then `frames`.
fn initial_sector(version: u64, label: &[u8], frames: &[u8]) -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    varint::push(&mut v, version);
    varint::push(&mut v, 1);
    v.extend_from_slice(&UUID);
    v.extend_from_slice(label);
    v.push(0);
    v.extend_from_slice(frames);
    assert!(v.len() <= SECTOR as usize, "initial sector overflows");
    v.resize(SECTOR as usize, 0);
    v
}

/// A log extension of `nsectors` sectors holding `frames`.
fn extension(version: u64, nsectors: u64, frames: &[u8]) -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    varint::push(&mut v, version);
    varint::push(&mut v, nsectors);
    v.extend_from_slice(frames);
    assert!(
        v.len() <= (nsectors * SECTOR) as usize,
        "extension overflows"
    );
    v.resize((nsectors * SECTOR) as usize, 0);
    v
}

// ---- volumes from nanoimg's writer ----------------------------------------------------------

/// A volume exactly as nanoimg writes it (over 512 KiB; only compacted copies are kept).
fn written_volume(root: &Dir, manifest: &Tuple, label: &[u8]) -> Vec<u8> {
    let planned = plan(&VolumeSpec {
        label,
        seed: b"fuzz seed",
        manifest,
        ..VolumeSpec::new(root)
    })
    .expect("plan");
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("volume");
    let file = std::fs::File::create_new(&path).expect("create");
    planned.write_file(&file, 0, false).expect("write");
    std::fs::read(&path).expect("read back")
}

/// Moves every extent of the tree under `children` down by `shift` sectors.
fn shift_extents(t: &mut Tuple, shift: u64) {
    let Some(Value::Tuple(children)) = t.get_mut(&b"children"[..]) else {
        return;
    };
    for node in children.values_mut() {
        let Value::Tuple(node) = node else { continue };
        if let Some(Value::Tuple(extents)) = node.get_mut(&b"extents"[..]) {
            for e in extents.values_mut() {
                let Value::Tuple(e) = e else { continue };
                let off = e[&b"offset"[..]].as_u64().expect("offset");
                e.insert(b"offset".to_vec(), int(i128::from(off.wrapping_sub(shift))));
            }
        }
        shift_extents(node, shift);
    }
}

/// `written`, with its one log extension cut to the sectors it uses and the data moved down
/// right after it. Reads back as the same tree with the same file contents.
fn compact(written: &[u8]) -> Vec<u8> {
    let fs = Tfs::open(Cursor::new(written), 0, written.len() as u64).expect("reads back");
    assert_eq!(fs.log_extensions(), &[(0, 1), (1, 1024)], "one extension");
    let mut root = fs.root().clone();
    let record_len = encode(&root).unwrap().len();
    // Header (9) + TUPLE_AVAILABLE frame (at most 21) + record + END_OF_LOG.
    let nsectors = (9 + 21 + record_len as u64 + 1).div_ceil(SECTOR);
    let data_start = 1 + nsectors;
    shift_extents(&mut root, 1025 - data_start);
    let record = encode(&root).unwrap();
    let mut frames = tuple_available(&record);
    frames.push(END_OF_LOG);
    let mut v = initial_sector(5, fs.label(), &link(1, nsectors));
    v.extend(extension(5, nsectors, &frames));
    v.extend_from_slice(&written[1025 * SECTOR as usize..]);
    // The compacted volume reads back with the same files.
    let mut a = Tfs::open(Cursor::new(written), 0, written.len() as u64).unwrap();
    let mut b = Tfs::open(Cursor::new(&v[..]), 0, v.len() as u64).unwrap();
    let (ta, tb) = (a.tree().unwrap(), b.tree().unwrap());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (k, ea) in &ta {
        if let (nanoimg_tfs::Entry::File(fa), nanoimg_tfs::Entry::File(fb)) = (ea, &tb[k]) {
            assert_eq!(a.read_file(fa).unwrap(), b.read_file(fb).unwrap());
        }
    }
    v
}

fn file(bytes: &[u8]) -> Node {
    Node::File(FileSource::Bytes(bytes.to_vec()))
}

/// The trees and manifests the writer-made seeds are built from.
fn writer_volumes() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    let empty = Dir::new();
    out.push(("empty", written_volume(&empty, &Tuple::new(), b"")));

    let mut app = Dir::new();
    app.insert(b"/hello", file(b"hello, world\n")).unwrap();
    app.insert(b"/etc/passwd", file(b"root:x:0:0:root:/:/bin/nobody\n"))
        .unwrap();
    app.insert(b"/etc/resolv.conf", file(b"")).unwrap();
    app.insert(
        b"/lib/x86_64-linux-gnu/libc.so.6",
        file(&(0..1300u32).map(|i| (i * 7) as u8).collect::<Vec<_>>()),
    )
    .unwrap();
    app.insert(
        b"/lib64/ld-linux-x86-64.so.2",
        Node::Symlink(b"/lib/ld.so".to_vec()),
    )
    .unwrap();
    app.create_dir_all(b"/tmp").unwrap();
    let manifest = tuple([
        ("program", s("/hello")),
        ("arguments", Value::Vector(vec![s("hello"), s("two words")])),
        (
            "environment",
            Value::Tuple(tuple([("USER", s("root")), ("PWD", s("/"))])),
        ),
        ("exec_protection", Value::Null),
        ("cwd", s("/")),
    ]);
    out.push(("app", written_volume(&app, &manifest, b"")));

    let mut labelled = Dir::new();
    labelled
        .insert(b"/data/a/b/c/deep.txt", file(&[b'x'; 513]))
        .unwrap();
    out.push((
        "labelled",
        written_volume(&labelled, &Tuple::new(), b"fuzz-label"),
    ));

    let mut boot = Dir::new();
    boot.insert(b"/kernel", file(&[0xCC; 700])).unwrap();
    boot.insert(b"/klib/tls", file(&[0x7f, b'E', b'L', b'F']))
        .unwrap();
    out.push(("boot", written_volume(&boot, &Tuple::new(), b"")));
    out
}

// ---- hand-made volumes ---------------------------------------------------------------------

/// mkfs-style records (nanos-image-format.md §2.9): the tree first, then a file's
/// attributes added to its tuple by reference. The extent puts `hello` at `data_sector`.
fn mkfs_records(data_sector: u8) -> Vec<Vec<u8>> {
    // root (#1) { children (#2): (#3) { hello (#4): (#5) {} } }
    let mut r1 = vec![0x91, 0x88, 0x08];
    r1.extend_from_slice(b"children");
    r1.extend_from_slice(&[0x91, 0x85]);
    r1.extend_from_slice(b"hello");
    r1.push(0x90);
    // #5 gets extents = new empty tuple (#7; the symbol "extents" is #6)
    let mut r2 = vec![0x11, 0x05, 0x87];
    r2.extend_from_slice(b"extents");
    r2.push(0x90);
    // #7 gets "0" = {length 1, allocated 1, offset data_sector}
    let mut r3 = vec![0x11, 0x07, 0x81, b'0', 0x93, 0x86];
    r3.extend_from_slice(b"length");
    r3.extend_from_slice(&[0xB0, 0x01, 0x88, 0x09]);
    r3.extend_from_slice(b"allocated");
    r3.extend_from_slice(&[0xB0, 0x01, 0x86]);
    r3.extend_from_slice(b"offset");
    r3.extend_from_slice(&[0xB0, data_sector]);
    // #5 gets filelength = 300
    let mut r4 = vec![0x11, 0x05, 0x88, 0x0A];
    r4.extend_from_slice(b"filelength");
    r4.extend_from_slice(&[0xB0, 0x82, 0x2C]);
    // #5 gets a key that a later record deletes again
    let mut r5 = vec![0x11, 0x05, 0x83];
    r5.extend_from_slice(b"tmp");
    r5.extend_from_slice(&[0xC1, b'x']);
    let r6 = vec![0x11, 0x05, 0x08, 0x0E, 0x80]; // "tmp" (#14) = delete
    vec![r1, r2, r3, r4, r5, r6]
}

fn data_sector(fill: u8) -> Vec<u8> {
    vec![fill; SECTOR as usize]
}

/// `children` holding one file `f` of `filelength` bytes with one 1-sector extent at sector
/// 1, its numbers written by `num` (integers in v5, decimal strings in v4 as ops wrote them).
fn one_file_children(num: impl Fn(i128) -> Value, filelength: i128) -> Value {
    let extent = tuple([
        ("offset", num(1)),
        ("length", num(1)),
        ("allocated", num(1)),
    ]);
    Value::Tuple(tuple([(
        "f",
        Value::Tuple(tuple([
            (
                "extents",
                Value::Tuple(tuple([("0", Value::Tuple(extent))])),
            ),
            ("filelength", num(filelength)),
        ])),
    )]))
}

/// Volumes whose metadata sits in sector 0 itself (the smallest a volume can be).
fn hand_volumes() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    // The metadata in the initial sector, no extension: one small file at sector 1.
    let root = tuple([("children", one_file_children(int, 100))]);
    let mut frames = tuple_available(&encode(&root).unwrap());
    frames.push(END_OF_LOG);
    let mut v = initial_sector(5, b"one", &frames);
    v.extend(data_sector(b'a'));
    out.push(("inline_log", v));

    // mkfs-style updates by reference, in several records and frames.
    let mut frames = Vec::new();
    for r in mkfs_records(1) {
        frames.extend(tuple_available(&r));
    }
    frames.push(END_OF_LOG);
    let mut v = initial_sector(5, b"", &frames);
    v.extend(data_sector(b'm'));
    out.push(("mkfs_updates", v));

    // A hard link with parent links, as the kernel writes it.
    let mut frames = Vec::new();
    for r in kernel_link_records(1) {
        frames.extend(tuple_available(&r));
    }
    frames.push(END_OF_LOG);
    let mut v = initial_sector(5, b"", &frames);
    v.extend(data_sector(b'k'));
    out.push(("kernel_link", v));

    // One record split over the initial sector and a 1-sector extension at sector 1; the
    // file's data moves to sector 2.
    let mut moved = root.clone();
    shift_extents(&mut moved, u64::MAX); // a shift of -1 sector: offset 1 becomes 2
    let record2 = encode(&moved).unwrap();
    let cut = record2.len() / 2;
    let mut f0 = vec![TUPLE_AVAILABLE];
    varint::push(&mut f0, record2.len() as u64);
    varint::push(&mut f0, cut as u64);
    f0.extend_from_slice(&record2[..cut]);
    f0.extend(link(1, 1));
    let mut f1 = vec![TUPLE_EXTENDED];
    varint::push(&mut f1, (record2.len() - cut) as u64);
    f1.extend_from_slice(&record2[cut..]);
    f1.push(END_OF_LOG);
    let mut v = initial_sector(5, b"", &f0);
    v.extend(extension(5, 1, &f1));
    v.extend(data_sector(b's'));
    out.push(("split_record", v));

    // Version 4: tuples and buffers, numbers as decimal strings (as ops wrote them).
    let v4root = tuple([
        ("program", s("/f")),
        ("children", one_file_children(|n| s(&n.to_string()), 512)),
    ]);
    let mut record = Vec::new();
    encode_v4(&v4root, &mut record);
    let mut frames = tuple_available(&record);
    frames.push(END_OF_LOG);
    let mut v = initial_sector(4, b"", &frames);
    v.extend(data_sector(b'4'));
    out.push(("v4", v));

    // A sparse file that claims 1 GiB, an uninited extent, and a hole between extents.
    let ext = |off: i128, len: i128, uninited: bool| {
        let mut t = tuple([
            ("offset", int(off)),
            ("length", int(len)),
            ("allocated", int(len)),
        ]);
        if uninited {
            t.insert(b"uninited".to_vec(), Value::Null);
        }
        Value::Tuple(t)
    };
    let root = tuple([(
        "children",
        Value::Tuple(tuple([
            (
                "sparse",
                Value::Tuple(tuple([
                    ("extents", Value::Tuple(tuple([("0", ext(1, 1, false))]))),
                    ("filelength", int(1 << 30)),
                ])),
            ),
            (
                "holes",
                Value::Tuple(tuple([
                    (
                        "extents",
                        Value::Tuple(tuple([("0", ext(1, 1, false)), ("3", ext(2, 1, true))])),
                    ),
                    ("filelength", int(5 * 512 + 7)),
                ])),
            ),
            ("link", Value::Tuple(tuple([("linktarget", s("holes"))]))),
            ("other", Value::Tuple(tuple([("x", s("y"))]))),
        ])),
    )]);
    let mut frames = tuple_available(&encode(&root).unwrap());
    frames.push(END_OF_LOG);
    let mut v = initial_sector(5, b"", &frames);
    v.extend(data_sector(b'h'));
    v.extend(data_sector(b'u'));
    out.push(("sparse", v));

    out
}

/// Broken volumes: each one stops the reader at a different check.
fn broken_volumes() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("magic_only", MAGIC.to_vec()),
        ("version_6", initial_sector(6, b"", &[END_OF_LOG])),
        ("no_root", initial_sector(5, b"", &[END_OF_LOG])),
        ("link_loop", initial_sector(5, b"", &link(0, 1))),
        ("link_out_of_range", initial_sector(5, b"", &link(1, 1024))),
        ("unknown_frame", initial_sector(5, b"", &[0x07])),
    ];
    let mut no_nul = initial_sector(5, b"", &[]);
    no_nul[24..24 + 32].fill(b'L');
    out.push(("label_without_nul", no_nul));
    // A record that is never finished.
    let mut f = vec![TUPLE_AVAILABLE, 10, 3, 0x91, 0x81, b'a', END_OF_LOG];
    f.push(END_OF_LOG);
    out.push(("unfinished_record", initial_sector(5, b"", &f)));
    out
}

/// A BIOS-style partitioned image around two compacted volumes (boot, root), optionally
/// with an ESP first as in nanoimg's UEFI hybrid images.
fn partitioned(boot: &[u8], root: &[u8], esp: bool, stage2_record: bool) -> Vec<u8> {
    let mut mbr = vec![0u8; SECTOR as usize];
    if stage2_record {
        // The region record stage2 reads: length at 434, type 12 at 442.
        mbr[434..442].copy_from_slice(&(2 * SECTOR).to_le_bytes());
        mbr[442..446].copy_from_slice(&12u32.to_le_bytes());
    }
    let mut image = vec![0u8; SECTOR as usize]; // the MBR, filled in below
    let mut entries = Vec::new();
    if esp {
        let at = image.len() as u64;
        image.extend(vec![0xE5; SECTOR as usize]);
        entries.push(PartitionEntry::new(0xEF, at, SECTOR));
    }
    let at = image.len() as u64;
    image.extend_from_slice(boot);
    entries.push(PartitionEntry::new(0x83, at, boot.len() as u64));
    let at = image.len() as u64;
    image.extend_from_slice(root);
    entries.push(PartitionEntry::new(0x83, at, root.len() as u64));
    for (i, e) in entries.iter().enumerate() {
        mbr[446 + 16 * i..446 + 16 * (i + 1)].copy_from_slice(&e.to_bytes());
    }
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    image[..SECTOR as usize].copy_from_slice(&mbr);
    image
}

/// `tests/data/kernel-written.vol.gz`, unpacked (8.9 MB).
fn kernel_written_volume() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/kernel-written.vol.gz");
    let mut volume = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("the kernel-written vector"))
        .read_to_end(&mut volume)
        .expect("gunzip the kernel-written vector");
    volume
}

/// The kernel-written volume as a `tfs_log_reader` seed: its first six sectors (the initial
/// sector and the five of its log extension the kernel filled), with the extension link cut
/// from 1024 sectors to those five (`5 1 1024` becomes `5 1 5`, the count written in two
/// bytes as the original). Its log, every record verbatim, reads back; its file data (from
/// sector 1025 on) is left out, so reading the tree stops at the first extent.
fn kernel_written_log() -> Vec<u8> {
    let volume = kernel_written_volume();
    let mut seed = volume[..6 * SECTOR as usize].to_vec();
    let link = [LOG_EXTENSION_LINK, 0x01, 0x88, 0x00];
    let at: Vec<usize> = seed[..SECTOR as usize]
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == link)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "one link to a 1024-sector extension at sector 1"
    );
    seed[at[0] + 2..at[0] + 4].copy_from_slice(&[0x80, 0x05]);
    assert!(
        volume[6 * SECTOR as usize..1025 * SECTOR as usize]
            .iter()
            .all(|&b| b == 0),
        "the kernel's log fits the six sectors kept"
    );
    let fs = Tfs::open(Cursor::new(&seed[..]), 0, seed.len() as u64).expect("the cut log reads");
    assert_eq!(fs.log_extensions(), &[(0, 1), (1, 5)]);
    seed
}

/// The records of `tests/data/kernel-written.vol.gz`, verbatim from its log: what the real
/// kernel wrote after a guest made folders, links, renames, unlinks and fallocations (`cargo
/// xtask e2e`, case `guest-fs`), parent links (`..`) and all.
fn kernel_written_records() -> Vec<Vec<u8>> {
    let volume = kernel_written_volume();
    let sector = SECTOR as usize;
    let mut records = Vec::new();
    let mut pending: Option<(u64, Vec<u8>)> = None;
    // (start, end) of the extension being read, and where its frames begin.
    let (mut start, mut end) = (0usize, sector);
    let mut pos = {
        let mut p = 6;
        varint::read(&volume, &mut p).unwrap(); // version
        varint::read(&volume, &mut p).unwrap(); // size
        p += 16; // UUID
        p + volume[p..p + 32].iter().position(|&b| b == 0).unwrap() + 1 // label and its NUL
    };
    loop {
        let buf = &volume[start..end];
        let kind = buf[pos];
        pos += 1;
        match kind {
            END_OF_LOG => break,
            LOG_EXTENSION_LINK => {
                let s = varint::read(buf, &mut pos).unwrap() as usize;
                let n = varint::read(buf, &mut pos).unwrap() as usize;
                (start, end) = (s * sector, (s + n) * sector);
                pos = 6;
                varint::read(&volume[start..end], &mut pos).unwrap();
                varint::read(&volume[start..end], &mut pos).unwrap();
            }
            TUPLE_AVAILABLE | TUPLE_EXTENDED => {
                let (total, mut bytes) = if kind == TUPLE_AVAILABLE {
                    (varint::read(buf, &mut pos).unwrap(), Vec::new())
                } else {
                    pending.take().unwrap()
                };
                let n = varint::read(buf, &mut pos).unwrap() as usize;
                bytes.extend_from_slice(&buf[pos..pos + n]);
                pos += n;
                if bytes.len() as u64 == total {
                    records.push(bytes);
                } else {
                    pending = Some((total, bytes));
                }
            }
            4 => {} // END_OF_SEGMENT
            other => panic!("unknown frame {other} in the kernel-written vector"),
        }
    }
    assert!(records.len() > 10, "the kernel's records were found");
    records
}

#[path = "../../crates/tfs/tests/support/kernel_link.rs"]
mod kernel_link;
use kernel_link::kernel_link_records;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".to_string()),
    );
    let tuple_dir = out.join("tuple_decoder");
    let tfs_dir = out.join("tfs_log_reader");
    let part_dir = out.join("partition_reader");

    let mut compacted = Vec::new();
    for (name, written) in writer_volumes() {
        let fs = Tfs::open(Cursor::new(&written[..]), 0, written.len() as u64).unwrap();
        // The writer's record as the tuple decoder sees it.
        let record = encode(fs.root()).unwrap();
        write(
            &tuple_dir,
            &format!("writer_{name}"),
            &nanoimg_fuzz::join_records([&record[..]]),
        );
        let c = compact(&written);
        write(&tfs_dir, &format!("writer_{name}"), &c);
        compacted.push((name, c));
    }
    let mut hand = hand_volumes();
    for (name, v) in &hand {
        write(&tfs_dir, name, v);
    }
    for (name, v) in broken_volumes() {
        write(&tfs_dir, &format!("broken_{name}"), &v);
    }

    // Tuple records: mkfs-style updates, v4, several records from one encoder, and hostile
    // shapes (shared references, cycles, deletions, vectors updated by reference).
    let mkfs = mkfs_records(1);
    write(
        &tuple_dir,
        "mkfs_updates",
        &nanoimg_fuzz::join_records(mkfs.iter().map(Vec::as_slice)),
    );
    let links = kernel_link_records(1);
    write(
        &tuple_dir,
        "kernel_link",
        &nanoimg_fuzz::join_records(links.iter().map(Vec::as_slice)),
    );
    write(&tfs_dir, "kernel_written", &kernel_written_log());
    let kernel = kernel_written_records();
    write(
        &tuple_dir,
        "kernel_written",
        &nanoimg_fuzz::join_records(kernel.iter().map(Vec::as_slice)),
    );
    let mut v4 = Vec::new();
    encode_v4(
        &tuple([
            ("a", s("hi")),
            (
                "t",
                Value::Tuple(tuple([("k", s("v")), ("flag", Value::Null)])),
            ),
        ]),
        &mut v4,
    );
    write(
        &tuple_dir,
        "v4_record",
        &nanoimg_fuzz::join_records([&v4[..]]),
    );
    let mut e = Encoder::new();
    e.tuple(&tuple([
        ("n", int(-5)),
        ("big", int(i128::from(u64::MAX))),
        ("buf", Value::Buffer(vec![1, 2, 3])),
        (
            "v",
            Value::Vector(vec![s("a"), Value::Vector(vec![]), int(0)]),
        ),
    ]))
    .unwrap();
    let r1 = e.take_bytes();
    e.value(&Value::Tuple(tuple([
        ("n", s("again")),
        ("v", Value::Null),
    ])))
    .unwrap();
    let r2 = e.take_bytes();
    // Vector #6 ("v") updated by reference: elements 0..3 replaced, element 3 appended.
    let r3 = vec![0x24, 0x06, 0xC1, b'z', 0xC1, b'y', 0xC1, b'x', 0xC1, b'w'];
    write(
        &tuple_dir,
        "encoder_records",
        &nanoimg_fuzz::join_records([&r1[..], &r2[..], &r3[..]]),
    );
    // Shared references: #2 referred to twice from #4, which the root refers to; then the
    // same with #4 made to contain itself.
    let r1 = [0x90]; // #1 root
    let r2 = vec![0x91, 0x81, b'x', 0xC1, b'y']; // #2 {x: y}, #3 "x"
    let r3 = vec![0x92, 0x81, b'a', 0x02, 0x81, b'b', 0x02]; // #4 {a:#2,b:#2}, #5 a, #6 b
    let cycle = vec![0x11, 0x04, 0x05, 0x04]; // #4 gets a: #4
    let root = vec![0x12, 0x01, 0x81, b'r', 0x02, 0x81, b's', 0x04]; // #1 {r:#2, s:#4}
    write(
        &tuple_dir,
        "shared",
        &nanoimg_fuzz::join_records([&r1[..], &r2, &r3, &root]),
    );
    write(
        &tuple_dir,
        "cycle",
        &nanoimg_fuzz::join_records([&r1[..], &r2, &r3, &cycle, &root]),
    );
    write(&tuple_dir, "deep", &{
        let mut r = vec![0x91, 0x81, b'a'];
        for _ in 0..40 {
            r.extend_from_slice(&[0x91, 0x02]);
        }
        r.push(0x90);
        nanoimg_fuzz::join_records([&r[..]])
    });
    write(&tuple_dir, "empty", &[]);

    // Disk images.
    let boot = compacted
        .iter()
        .find(|(n, _)| *n == "boot")
        .unwrap()
        .1
        .clone();
    let app = compacted
        .iter()
        .find(|(n, _)| *n == "app")
        .unwrap()
        .1
        .clone();
    write(&part_dir, "bios", &partitioned(&boot, &app, false, true));
    write(
        &part_dir,
        "uefi_hybrid",
        &partitioned(&boot, &app, true, false),
    );
    let (_, mkfs_volume) = hand.remove(1);
    write(
        &part_dir,
        "bios_mkfs_root",
        &partitioned(&boot, &mkfs_volume, false, false),
    );
    write(&part_dir, "raw_volume", &app);
    let mut bad = partitioned(&boot, &app, false, false);
    bad[446 + 16 + 8..446 + 16 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    write(&part_dir, "root_past_end", &bad);
    let mut mbr_only = vec![0u8; SECTOR as usize];
    mbr_only[510] = 0x55;
    mbr_only[511] = 0xAA;
    write(&part_dir, "mbr_only", &mbr_only);
    write(&part_dir, "short", &[0x55; 100]);

    vdisk_seeds(&out.join("vdisk_reader"));
}

/// Size of the raw disk in the `vdisk_reader` seeds: 521 sectors, not a whole number of
/// qcow2 clusters, VMDK grains or VHDX blocks, so every format has a partial last one.
pub const VDISK_RAW_LEN: usize = 521 * 512;

/// The raw disk every `vdisk_reader` seed holds: a few non-zero blocks among zeros (the
/// replay test rebuilds it to check the seeds).
fn vdisk_raw() -> Vec<u8> {
    let mut raw = vec![0u8; VDISK_RAW_LEN];
    for (i, b) in raw[..512].iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    for (i, b) in raw[12288..16384].iter_mut().enumerate() {
        *b = b"nanoimg vdisk seed "[i % 19];
    }
    raw[69632..69632 + 100].fill(0x5a);
    raw[VDISK_RAW_LEN - 4608..].fill(0xab);
    raw
}

/// The raw disk through nanoimg's writer for `format`: the container file's bytes.
fn vdisk_container(format: nanoimg_vdisk::Format, raw: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let file = std::fs::File::create(&path).unwrap();
    let mut map = nanoimg_vdisk::DataMap::default();
    // Two calls, as a pipeline gives the image in pieces.
    let cut = (65536 + 512).min(raw.len());
    map.add(0, &raw[..cut]);
    map.add(cut as u64, &raw[cut..]);
    map.finish(raw.len() as u64);
    let mut sink = nanoimg_vdisk::writer(format, file, raw.len() as u64, Some(map)).unwrap();
    sink.write_at(0, &raw[..cut]).unwrap();
    sink.write_at(cut as u64, &raw[cut..]).unwrap();
    let sha: [u8; 32] = Sha256::digest(raw).into();
    sink.finish(raw.len() as u64, &sha).unwrap();
    std::fs::read(&path).unwrap()
}

/// A monolithicSparse VMDK (no writer in nanoimg makes one): header, descriptor, a grain
/// directory of one table, the table, then 4 KiB grains stored uncompressed, zero grains
/// absent.
fn vmdk_monolithic_sparse(raw: &[u8]) -> Vec<u8> {
    const GRAIN: usize = 4096;
    let sectors = raw.len().div_ceil(512) as u64;
    let mut f = vec![0u8; 7 * 512];
    f[0..4].copy_from_slice(b"KDMV");
    f[4..8].copy_from_slice(&1u32.to_le_bytes());
    f[8..12].copy_from_slice(&3u32.to_le_bytes()); // newline test, redundant grain table
    f[12..20].copy_from_slice(&sectors.to_le_bytes());
    f[20..28].copy_from_slice(&8u64.to_le_bytes()); // grain: 8 sectors
    f[28..36].copy_from_slice(&1u64.to_le_bytes()); // descriptor at sector 1
    f[36..44].copy_from_slice(&1u64.to_le_bytes()); // of 1 sector
    f[44..48].copy_from_slice(&512u32.to_le_bytes());
    f[56..64].copy_from_slice(&2u64.to_le_bytes()); // grain directory at sector 2
    f[64..72].copy_from_slice(&7u64.to_le_bytes()); // overhead
    f[73..77].copy_from_slice(b"\n \r\n");
    let desc = format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicSparse\"\n\n# Extent description\n\
         RW {sectors} SPARSE \"disk.vmdk\"\n"
    );
    f[512..512 + desc.len()].copy_from_slice(desc.as_bytes());
    f[1024..1028].copy_from_slice(&3u32.to_le_bytes()); // the grain table at sector 3
    for (g, grain) in raw.chunks(GRAIN).enumerate() {
        if grain.iter().all(|&b| b == 0) {
            continue;
        }
        let at = (f.len() / 512) as u32;
        f[1536 + 4 * g..1540 + 4 * g].copy_from_slice(&at.to_le_bytes());
        let mut padded = grain.to_vec();
        padded.resize(GRAIN, 0);
        f.extend_from_slice(&padded);
    }
    f
}

/// `vdisk_reader`: the raw disk in every container nanoimg writes (folded: runs of zeros as
/// hole markers, see `nanoimg_fuzz::unfold`), plus a monolithicSparse VMDK and a GCE tar of
/// a disk without holes (a regular, not sparse, member).
fn vdisk_seeds(dir: &Path) {
    use nanoimg_vdisk::Format;
    let raw = vdisk_raw();
    let fold = |bytes: &[u8]| nanoimg_fuzz::fold(bytes, 64);
    for (name, format) in [
        ("raw", Format::Raw),
        ("qcow2", Format::Qcow2),
        ("vhd", Format::Vhd),
        ("vmdk_stream", Format::Vmdk),
        ("vhdx", Format::Vhdx),
        ("gce", Format::Gce),
    ] {
        write(dir, name, &fold(&vdisk_container(format, &raw)));
    }
    write(dir, "vmdk_sparse", &fold(&vmdk_monolithic_sparse(&raw)));
    let full: Vec<u8> = (0..8192u32).map(|i| (i % 13) as u8 + 1).collect();
    write(dir, "gce_regular", &vdisk_container(Format::Gce, &full));
}
