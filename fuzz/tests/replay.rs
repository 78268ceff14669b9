//! Replays the committed corpora (and crash regressions) through the fuzz target bodies on a
//! stable toolchain, and checks that the generated seeds are what they claim to be:
//!
//!     cargo test --manifest-path fuzz/Cargo.toml

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use nanoimg_disk::DiskImage;
use nanoimg_tfs::{Entry, Tfs};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn replay_tuple_decoder() {
    let all = inputs("tuple_decoder");
    assert!(!all.is_empty());
    for (path, bytes) in all {
        eprintln!("{}", path.display());
        nanoimg_fuzz::tuple_decoder(&bytes);
    }
}

#[test]
fn replay_tfs_log_reader() {
    let all = inputs("tfs_log_reader");
    assert!(!all.is_empty());
    for (path, bytes) in all {
        eprintln!("{}", path.display());
        nanoimg_fuzz::tfs_log_reader(&bytes);
    }
}

#[test]
fn replay_partition_reader() {
    let dir = tempfile::tempdir().unwrap();
    let all = inputs("partition_reader");
    assert!(!all.is_empty());
    for (path, bytes) in all {
        eprintln!("{}", path.display());
        nanoimg_fuzz::partition_reader(&bytes, dir.path());
    }
}

fn files(fs: &mut Tfs<impl std::io::Read + std::io::Seek>) -> BTreeMap<String, Vec<u8>> {
    fn walk(
        fs: &mut Tfs<impl std::io::Read + std::io::Seek>,
        d: &BTreeMap<Vec<u8>, Entry>,
        prefix: &str,
        out: &mut BTreeMap<String, Vec<u8>>,
    ) {
        for (name, e) in d {
            let p = format!("{prefix}/{}", String::from_utf8_lossy(name));
            match e {
                Entry::File(f) if f.len <= 1 << 20 => {
                    out.insert(p, fs.read_file(f).unwrap());
                }
                Entry::Dir(d) => walk(fs, d, &p, out),
                _ => {}
            }
        }
    }
    let tree = fs.tree().unwrap();
    let mut out = BTreeMap::new();
    walk(fs, &tree, "", &mut out);
    out
}

fn open(bytes: &[u8]) -> Tfs<Cursor<&[u8]>> {
    Tfs::open(Cursor::new(bytes), 0, bytes.len() as u64).unwrap()
}

#[test]
fn valid_volume_seeds_read_back() {
    let app = seed("tfs_log_reader", "writer_app");
    let mut fs = open(&app);
    let f = files(&mut fs);
    assert_eq!(f["/hello"], b"hello, world\n");
    assert_eq!(f["/etc/resolv.conf"], b"");
    assert_eq!(f["/lib/x86_64-linux-gnu/libc.so.6"].len(), 1300);

    let v = seed("tfs_log_reader", "mkfs_updates");
    let f = files(&mut open(&v));
    assert_eq!(f["/hello"], vec![b'm'; 300]);

    // A hard link written by the kernel, with `..` parent links: one file, two names.
    let v = seed("tfs_log_reader", "kernel_link");
    let f = files(&mut open(&v));
    assert_eq!(f.keys().collect::<Vec<_>>(), ["/d/f", "/e/g"]);
    assert_eq!(f["/d/f"], b"kkk");
    assert_eq!(f["/e/g"], b"kkk");

    // The real kernel's log (tests/data/kernel-written.vol.gz, its data left out): every
    // record reads, parent links and all; the tree stops at the first extent, beyond the cut.
    let v = seed("tfs_log_reader", "kernel_written");
    let fs = open(&v);
    assert_eq!(fs.log_extensions(), &[(0, 1), (1, 5)]);
    let children = fs.root()[&b"children"[..]].as_tuple().unwrap();
    assert!(children.contains_key(&b"t"[..]) && !fs.root().contains_key(&b".."[..]));
    assert!(fs.tree().is_err());

    let v = seed("tfs_log_reader", "v4");
    let mut fs = open(&v);
    assert_eq!(fs.version(), 4);
    assert_eq!(files(&mut fs)["/f"], vec![b'4'; 512]);

    let v = seed("tfs_log_reader", "split_record");
    let mut fs = open(&v);
    assert_eq!(fs.log_extensions(), &[(0, 1), (1, 1)]);
    assert_eq!(files(&mut fs)["/f"], vec![b's'; 100]);

    let v = seed("tfs_log_reader", "inline_log");
    assert_eq!(files(&mut open(&v))["/f"], vec![b'a'; 100]);

    let v = seed("tfs_log_reader", "sparse");
    let f = files(&mut open(&v));
    let mut want = vec![b'h'; 512];
    want.extend(vec![0; 2 * 512 + 512 + 512 + 7]);
    assert_eq!(f["/holes"], want);

    for name in ["writer_boot", "writer_empty", "writer_labelled"] {
        let v = seed("tfs_log_reader", name);
        files(&mut open(&v));
    }
}

#[test]
fn broken_volume_seeds_are_errors() {
    for (name, bytes) in inputs("tfs_log_reader") {
        let name = name.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("broken_") {
            assert!(
                Tfs::open(Cursor::new(&bytes[..]), 0, bytes.len() as u64).is_err(),
                "{name}"
            );
        }
    }
}

#[test]
fn disk_image_seeds_open() {
    let dir = tempfile::tempdir().unwrap();
    for (name, esp) in [
        ("bios", false),
        ("uefi_hybrid", true),
        ("bios_mkfs_root", false),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, seed("partition_reader", name)).unwrap();
        let img = DiskImage::open(&path).unwrap();
        assert_eq!(img.esp().is_some(), esp, "{name}");
        let mut boot = img.boot_fs().unwrap().unwrap();
        assert_eq!(files(&mut boot)["/kernel"], vec![0xCC; 700]);
        let mut root = img.root_fs().unwrap();
        assert!(!files(&mut root).is_empty(), "{name}");
    }
    let path = dir.path().join("raw");
    std::fs::write(&path, seed("partition_reader", "raw_volume")).unwrap();
    let img = DiskImage::open(&path).unwrap();
    assert!(img.boot_partition().is_none());
    assert_eq!(
        files(&mut img.root_fs().unwrap())["/hello"],
        b"hello, world\n"
    );
}

#[test]
fn tuple_seeds_decode() {
    use nanoimg_tuple::{Decoder, Encoding, Value};
    let decode = |name: &str, encoding| {
        let bytes = seed("tuple_decoder", name);
        let mut d = Decoder::new();
        for r in nanoimg_fuzz::split_records(&bytes) {
            d.record(r, encoding)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        d.root()
    };
    for name in [
        "writer_app",
        "writer_boot",
        "writer_empty",
        "writer_labelled",
        "deep",
    ] {
        decode(name, Encoding::V5).unwrap();
    }
    let t = decode("mkfs_updates", Encoding::V5).unwrap();
    let hello = t[&b"children"[..]].as_tuple().unwrap()[&b"hello"[..]]
        .as_tuple()
        .unwrap();
    assert_eq!(hello[&b"filelength"[..]], Value::Integer(300));
    assert!(!hello.contains_key(&b"tmp"[..]));
    let t = decode("kernel_link", Encoding::V5).unwrap();
    let dir = |t: &nanoimg_tuple::Tuple, name: &str| {
        let d = t[&b"children"[..]].as_tuple().unwrap()[name.as_bytes()].clone();
        let Value::Tuple(d) = d else { panic!("{name}") };
        assert!(!d.contains_key(&b".."[..]), "{name}");
        d
    };
    assert!(!t.contains_key(&b".."[..]));
    let (d, e) = (dir(&t, "d"), dir(&t, "e"));
    let file = dir(&d, "f");
    assert_eq!(file, dir(&e, "g"));
    assert_eq!(file[&b"nlink"[..]], Value::Integer(2));
    // The real kernel's records (tests/data/kernel-written.vol.gz): they carry parent links
    // (the `..` symbol is defined in them), and decode to the tree without any.
    let raw = seed("tuple_decoder", "kernel_written");
    assert!(raw.windows(3).any(|w| w == b"\x82.."), "no parent link");
    let t = decode("kernel_written", Encoding::V5).unwrap();
    fn no_parent_links(t: &nanoimg_tuple::Tuple) {
        assert!(!t.contains_key(&b".."[..]));
        for v in t.values() {
            if let Value::Tuple(inner) = v {
                no_parent_links(inner);
            }
        }
    }
    no_parent_links(&t);
    let top = dir(&t, "t");
    let (a, moved) = (dir(&top, "a"), dir(&top, "c-moved"));
    assert_eq!(dir(&moved, "three.txt"), dir(&top, "three-link.txt"));
    assert!(dir(&a, "b")[&b"children"[..]]
        .as_tuple()
        .unwrap()
        .contains_key(&b"one-link.txt"[..]));
    let t = decode("encoder_records", Encoding::V5).unwrap();
    let v = [b"z", b"y", b"x", b"w"].map(Value::string).to_vec();
    assert_eq!(t[&b"v"[..]], Value::Vector(v));
    let t = decode("v4_record", Encoding::V4).unwrap();
    assert_eq!(t[&b"a"[..]], Value::string("hi"));
    let t = decode("shared", Encoding::V5).unwrap();
    let s = t[&b"s"[..]].as_tuple().unwrap();
    assert_eq!(s[&b"a"[..]], t[&b"r"[..]]);
    assert_eq!(s[&b"b"[..]], t[&b"r"[..]]);
    assert_eq!(
        decode("cycle", Encoding::V5),
        Err(nanoimg_tuple::DecodeError::Cycle)
    );
}

#[test]
fn replay_vdisk_reader() {
    let dir = tempfile::tempdir().unwrap();
    let all = inputs("vdisk_reader");
    assert!(!all.is_empty());
    for (path, bytes) in all {
        eprintln!("{}", path.display());
        nanoimg_fuzz::vdisk_reader(&bytes, dir.path());
    }
}

#[test]
fn hole_markers_unfold() {
    use nanoimg_fuzz::{fold, unfold, HOLE, HOLE_CAP};
    let flat = |data: &[u8]| {
        let (pieces, len) = unfold(data);
        let mut out = vec![0u8; len as usize];
        for (at, b) in pieces {
            out[at as usize..at as usize + b.len()].copy_from_slice(b);
        }
        out
    };
    let mut file = vec![7u8; 10];
    file.extend(vec![0; 5000]);
    file.extend(b"x\0\0y");
    file.extend(vec![0; 100]);
    let folded = fold(&file, 64);
    assert_eq!(folded.len(), 10 + 12 + 4 + 12);
    assert_eq!(flat(&folded), file);
    assert_eq!(flat(b"abc"), b"abc");
    // A marker without a whole count is literal.
    let mut short = b"ab".to_vec();
    short.extend_from_slice(HOLE);
    short.extend_from_slice(&[1, 0]);
    assert_eq!(flat(&short), short);
    // Holes stop at HOLE_CAP; literal bytes still follow.
    let mut big = Vec::new();
    for _ in 0..100 {
        big.extend_from_slice(HOLE);
        big.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    big.push(1);
    assert_eq!(unfold(&big).1, HOLE_CAP + 1);
}

#[test]
fn vdisk_seeds_open_as_their_format() {
    use nanoimg_vdisk::{DiskReader, Format};
    use std::io::Read;
    // The raw disk gen_seeds puts in every container (examples/gen_seeds.rs, vdisk_raw).
    let mut raw = vec![0u8; 521 * 512];
    for (i, b) in raw[..512].iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    for (i, b) in raw[12288..16384].iter_mut().enumerate() {
        *b = b"nanoimg vdisk seed "[i % 19];
    }
    raw[69632..69632 + 100].fill(0x5a);
    let n = raw.len();
    raw[n - 4608..].fill(0xab);

    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [
        ("raw", Format::Raw),
        ("qcow2", Format::Qcow2),
        ("vhd", Format::Vhd),
        ("vmdk_stream", Format::Vmdk),
        ("vmdk_sparse", Format::Vmdk),
        ("vhdx", Format::Vhdx),
        ("gce", Format::Gce),
        ("gce_regular", Format::Gce),
    ] {
        let path = dir.path().join(name);
        nanoimg_fuzz::write_unfolded(&seed("vdisk_reader", name), &path).unwrap();
        let disk = nanoimg_vdisk::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(disk.format(), format, "{name}");
        let mut got = Vec::new();
        DiskReader::new(&*disk).read_to_end(&mut got).unwrap();
        if name == "gce_regular" {
            let want: Vec<u8> = (0..8192u32).map(|i| (i % 13) as u8 + 1).collect();
            assert_eq!(got, want, "{name}");
            continue;
        }
        // A fixed VHD is padded to a whole MiB.
        let want_len = if format == Format::Vhd { 1 << 20 } else { n };
        assert_eq!(got.len(), want_len, "{name}");
        assert!(got[..n] == raw[..], "{name}: not the raw disk");
        assert!(got[n..].iter().all(|&b| b == 0), "{name}");
    }
}
