//! The GCE tar.gz writer and reader, checked against GNU tar.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{assert_holds, gnu_tar, read_file, run, write, Image, Split};
use nanoimg_vdisk::{gce::GceWriter, DataMap, Format, RawHashes, Sink, Survey};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn images() -> Vec<(&'static str, Image)> {
    vec![
        // Unaligned regions, a partial last block and sector, data in the last bytes: more
        // than 4 + 21 map entries, so two extension blocks.
        (
            "unaligned",
            Image::random(1, 30 * MIB + 1000, 60, 100_000).with(30 * MIB + 990, vec![7; 10]),
        ),
        // Ends in a hole; data in the first byte.
        (
            "trailing_hole",
            Image::random(2, 20 * MIB, 10, 300_000).with(0, vec![1]),
        ),
        // Exactly four and five ranges (the header's four slots, and one extension).
        (
            "four",
            Image::random(3, 8 * MIB, 3, 1000).with(8 * MIB - 10, vec![1; 10]),
        ),
        ("five", Image::random(4, 8 * MIB, 5, 1000)),
        (
            "all_zero",
            Image {
                len: 5 * MIB + 3,
                regions: vec![],
            },
        ),
        // No hole at all: a regular member.
        (
            "dense",
            Image {
                len: 3 * 4096 + 100,
                regions: vec![(0, common::Rng::new(5).bytes(3 * 4096 + 100))],
            },
        ),
    ]
}

fn gce_of(image: &Image, path: &Path, split: Split) {
    write(Format::Gce, image, path, split).unwrap();
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    flate2::read::GzDecoder::new(File::open(path).unwrap())
        .read_to_end(&mut v)
        .unwrap();
    v
}

/// GNU tar's archive of `image` as a sparse file: `tar --format=oldgnu -S` with the fixed
/// owner, mode and time the writer uses.
fn gnu_tar_of(image: &Image, dir: &Path) -> Vec<u8> {
    let tar = gnu_tar();
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    image.write_raw(&src.join("disk.raw"));
    let out = dir.join("ref.tar");
    let (ok, o, e) = run(Command::new(tar)
        .args([
            "--format=oldgnu",
            "-S",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--mtime=@0",
            "--mode=0644",
            "-cf",
        ])
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg("disk.raw"));
    assert!(ok, "{o}{e}");
    read_file(&out)
}

#[test]
fn gce_reads_back_the_raw_image() {
    let dir = tempfile::tempdir().unwrap();
    for (name, image) in images() {
        let path = dir.path().join(format!("{name}.tar.gz"));
        gce_of(&image, &path, Split::Random(3));
        let disk = nanoimg_vdisk::open(&path).unwrap();
        assert_eq!(disk.format(), Format::Gce);
        assert_eq!(disk.size(), image.len, "{name}");
        assert_holds(&*disk, &image);
    }
}

/// The tar inside is byte for byte what GNU tar writes for the same file made sparse.
#[test]
fn gce_tar_is_gnu_tars_oldgnu_sparse_archive() {
    let dir = tempfile::tempdir().unwrap();
    for (name, image) in images() {
        let sub = dir.path().join(name);
        fs::create_dir_all(&sub).unwrap();
        let ours = sub.join("ours.tar.gz");
        gce_of(&image, &ours, Split::Regions);
        let ours = gunzip(&ours);
        let theirs = gnu_tar_of(&image, &sub);
        assert_eq!(ours.len(), theirs.len(), "{name}: archive length");
        if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
            panic!(
                "{name}: byte {i} differs\nours:   {:?}\ntheirs: {:?}",
                &ours[i / 512 * 512..i / 512 * 512 + 512],
                &theirs[i / 512 * 512..i / 512 * 512 + 512]
            );
        }
        assert_eq!(ours[156], if name == "dense" { b'0' } else { b'S' });
    }
}

/// Past 8 GiB the numbers are GNU's base-256, still byte for byte GNU tar's archive.
#[test]
fn gce_large_sparse_disk_is_small_and_gnu_identical() {
    let dir = tempfile::tempdir().unwrap();
    let len = 10 * GIB + 4096 * 3 + 17;
    let image = Image::random(6, len, 30, 200_000)
        .with(9 * GIB - 100, vec![3; 200])
        .with(len - 50, vec![4; 50]);
    let data: u64 = image.regions.iter().map(|r| r.1.len() as u64).sum();
    let path = dir.path().join("big.tar.gz");
    gce_of(&image, &path, Split::Regions);
    let size = fs::metadata(&path).unwrap().len();
    assert!(
        size < data + 2 * 4096 * 32 + 64 * 1024,
        "{size} bytes for {data} of data"
    );
    let ours = gunzip(&path);
    assert_eq!(ours[483] & 0x80, 0x80, "realsize in base-256");
    assert_eq!(ours, gnu_tar_of(&image, dir.path()));
    let disk = nanoimg_vdisk::open(&path).unwrap();
    assert_eq!(disk.size(), len);
    for (o, d) in &image.regions {
        let mut buf = vec![0u8; d.len() + 2];
        let at = o - 1;
        let n = buf.len().min((len - at) as usize);
        disk.read_exact_at(&mut buf[..n], at).unwrap();
        assert_eq!(&buf[..n], &image.read(at, n)[..]);
    }
}

/// GNU tar extracts `disk.raw`, identical to the raw image and sparse; `tar -tv` lists it
/// alone with its size.
#[test]
fn gce_extracts_with_gnu_tar() {
    let tar = gnu_tar();
    let dir = tempfile::tempdir().unwrap();
    let mut cases = images();
    cases.push((
        "sparse_4g",
        Image::random(7, 4 * GIB + 512, 20, 200_000).with(4 * GIB, vec![9; 512]),
    ));
    for (name, image) in cases {
        let sub = dir.path().join(name);
        fs::create_dir_all(sub.join("x")).unwrap();
        let path = sub.join("out.tar.gz");
        gce_of(&image, &path, Split::Regions);
        let (ok, list, e) = run(Command::new(&tar).arg("-tvzf").arg(&path));
        assert!(ok, "{e}");
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 1, "{list}");
        let fields: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(fields[0], "-rw-r--r--", "{list}");
        assert_eq!(fields[1], "0/0", "{list}");
        assert_eq!(fields[2], image.len.to_string(), "{list}");
        assert_eq!(fields[5], "disk.raw", "{list}");
        let (ok, o, e) = run(Command::new(&tar)
            .arg("-xzf")
            .arg(&path)
            .arg("-C")
            .arg(sub.join("x")));
        assert!(ok, "{o}{e}");
        let names: Vec<_> = fs::read_dir(sub.join("x"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["disk.raw"]);
        let out = sub.join("x/disk.raw");
        let meta = fs::metadata(&out).unwrap();
        assert_eq!(meta.len(), image.len);
        let data: u64 = image.regions.iter().map(|r| r.1.len() as u64).sum();
        if image.len >= GIB {
            // Sparse: allocated blocks near the data, far below the size.
            assert!(
                meta.blocks() * 512 < data + 64 * MIB,
                "{name}: {} bytes allocated",
                meta.blocks() * 512
            );
            let f = File::open(&out).unwrap();
            for (o, d) in &image.regions {
                let mut buf = vec![0u8; d.len()];
                std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, *o).unwrap();
                assert_eq!(&buf, d);
            }
        } else {
            let raw = sub.join("raw.img");
            image.write_raw(&raw);
            assert!(
                read_file(&out) == read_file(&raw),
                "{name}: extracted differs"
            );
        }
    }
}

#[test]
fn gce_bytes_do_not_depend_on_the_split() {
    let dir = tempfile::tempdir().unwrap();
    for (name, image) in images() {
        let a = dir.path().join("a.tar.gz");
        let b = dir.path().join("b.tar.gz");
        let c = dir.path().join("c.tar.gz");
        let d = dir.path().join("d.tar.gz");
        gce_of(&image, &a, Split::Regions);
        gce_of(&image, &b, Split::Random(42));
        gce_of(&image, &c, Split::Dense(777_777));
        gce_of(&image, &d, Split::Regions);
        let a = read_file(&a);
        assert_eq!(a, read_file(&b), "{name}: regions vs random split");
        assert_eq!(a, read_file(&c), "{name}: regions vs dense zeros");
        assert_eq!(a, read_file(&d), "{name}: the same twice");
        // gzip header: no name, mtime 0, XFL 4 (fastest, level 1), OS byte 255.
        assert_eq!(&a[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
    }
}

/// The `tar` crate reads the member as GNU sparse, with the raw image's bytes.
#[test]
fn gce_tar_crate_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    for (name, image) in images() {
        let path = dir.path().join("t.tar.gz");
        gce_of(&image, &path, Split::Regions);
        let mut archive =
            tar::Archive::new(flate2::read::GzDecoder::new(File::open(&path).unwrap()));
        let mut n = 0;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            n += 1;
            assert_eq!(entry.path().unwrap().to_str(), Some("disk.raw"));
            assert_eq!(entry.header().mode().unwrap(), 0o644);
            assert_eq!(entry.header().mtime().unwrap(), 0);
            assert_eq!(entry.header().size().unwrap(), image.len, "{name}");
            let mut v = Vec::new();
            entry.read_to_end(&mut v).unwrap();
            assert!(v == image.read(0, image.len as usize), "{name}: content");
        }
        assert_eq!(n, 1);
    }
}

/// The reader takes what others write for GCE too: GNU tar's own `-czS` and ops's plain GNU
/// member.
#[test]
fn gce_reader_reads_gnu_tar_output() {
    let tar = gnu_tar();
    let dir = tempfile::tempdir().unwrap();
    for (name, image) in images() {
        let src = dir.path().join(name);
        fs::create_dir_all(&src).unwrap();
        image.write_raw(&src.join("disk.raw"));
        for args in [&["--format=oldgnu", "-S"][..], &["--format=gnu"][..]] {
            let out = src.join("g.tar.gz");
            let (ok, o, e) = run(Command::new(&tar)
                .args(args)
                .arg("-czf")
                .arg(&out)
                .arg("-C")
                .arg(&src)
                .arg("disk.raw"));
            assert!(ok, "{o}{e}");
            let disk = nanoimg_vdisk::open(&out).unwrap();
            assert_eq!(disk.size(), image.len);
            assert_holds(&*disk, &image);
        }
    }
}

#[test]
fn gce_writer_refuses_data_outside_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let f = || File::create(dir.path().join("m.tar.gz")).unwrap();
    let map = Survey {
        map: DataMap {
            ranges: vec![4096..8192, 16384..20000],
        },
        layout_id: [0; 32],
    };
    // Zeros in holes are fine, data in a hole is not.
    let mut w: Box<dyn Sink> = Box::new(GceWriter::new(f(), 20000, map.clone()).unwrap());
    w.write_at(0, &[0; 4096]).unwrap();
    w.write_at(4096, &[1; 100]).unwrap();
    assert!(w.write_at(9000, &[1]).is_err());
    // Misuse: backwards, past the end, a wrong map, a wrong length.
    let mut w: Box<dyn Sink> = Box::new(GceWriter::new(f(), 20000, map.clone()).unwrap());
    w.write_at(5000, &[1; 10]).unwrap();
    assert!(w.write_at(4999, &[1]).is_err());
    assert!(w.write_at(19999, &[1, 1]).is_err());
    assert!(GceWriter::new(f(), 19000, map.clone()).is_err());
    let unsorted = Survey {
        map: DataMap {
            ranges: vec![8192..12288, 0..4096],
        },
        layout_id: [0; 32],
    };
    assert!(GceWriter::new(f(), 20000, unsorted).is_err());
    let w: Box<dyn Sink> = Box::new(GceWriter::new(f(), 20000, map.clone()).unwrap());
    assert!(w.finish(19000, &RawHashes::of(&[])).is_err());
    // Ranges the map names but never given are zeros.
    let path = dir.path().join("z.tar.gz");
    let mut w: Box<dyn Sink> =
        Box::new(GceWriter::new(File::create(&path).unwrap(), 20000, map).unwrap());
    w.write_at(4100, &[5; 10]).unwrap();
    w.finish(20000, &RawHashes::of(&[])).unwrap();
    let disk = nanoimg_vdisk::open(&path).unwrap();
    let mut buf = vec![0u8; 20000];
    disk.read_exact_at(&mut buf, 0).unwrap();
    let mut want = vec![0u8; 20000];
    want[4100..4110].fill(5);
    assert!(buf == want);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

/// Opens `bytes` as a GCE archive and reads it all: must not panic, whatever the bytes.
fn try_read(dir: &Path, bytes: &[u8]) -> Result<(), String> {
    common::try_read(&dir.join("h.tar.gz"), bytes, Format::Gce, &[0x1f, 0x8b])
}

/// Sets a header block's checksum as GNU tar does.
fn fix_cksum(block: &mut [u8]) {
    block[148..156].fill(b' ');
    let sum: u32 = block[..512].iter().map(|&b| b as u32).sum();
    block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

#[test]
fn gce_hostile_input_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    // Five ranges: the header's four slots and an extension block.
    let image = Image::random(9, 4 * MIB + 300, 5, 30_000);
    let path = dir.path().join("good.tar.gz");
    gce_of(&image, &path, Split::Regions);
    let good = read_file(&path);
    assert!(try_read(dir.path(), &good).is_ok());
    let tar = gunzip(&path);
    assert!(try_read(dir.path(), &gzip(&tar)).is_ok());

    // Any cut of the gzip stream: an error (the stream or its CRC ends early).
    for cut in (2..good.len()).step_by(97).chain([2, 10, good.len() - 1]) {
        assert!(
            try_read(dir.path(), &good[..cut]).is_err(),
            "cut at {cut} accepted"
        );
    }

    let patched = |at: usize, v: &[u8], cksum: bool| {
        let mut t = tar.clone();
        t[at..at + v.len()].copy_from_slice(v);
        if cksum {
            fix_cksum(&mut t[..512]);
        }
        gzip(&t)
    };
    let stored = image.survey().map.data_len() as usize;
    let after = 1024 + stored.div_ceil(512) * 512;
    let mut two = tar.clone();
    two.truncate(after);
    two.extend_from_slice(&tar[..after]);
    two.resize(tar.len() + after, 0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad checksum", patched(0, b"disk.rax", false)),
        ("another name", patched(0, b"disk.rax", true)),
        ("a directory", patched(156, b"5", true)),
        ("a pax header", patched(156, b"x", true)),
        ("no magic", patched(257, b"xxxxx", true)),
        ("size not a number", patched(124, b"zzz", true)),
        ("size off by one", {
            let s = format!("{:011o}\0", stored + 1);
            patched(124, s.as_bytes(), true)
        }),
        (
            "realsize smaller than the map",
            patched(483, b"00000000001\0", true),
        ),
        (
            "map out of order",
            patched(386 + 24, b"00000000000\0", true),
        ),
        ("map entry past 64 bits", {
            let mut v = [0xffu8; 12];
            v[0] = 0x80;
            patched(386 + 12, &v, true)
        }),
        ("no extension block", patched(482, b"\0", true)),
        ("two members", gzip(&two)),
        (
            "garbage after the member",
            patched(tar.len() - 1, b"\x01", false),
        ),
        (
            "garbage in the padding",
            patched(1024 + stored, b"\x01", false),
        ),
        ("an empty archive", gzip(&[0u8; 10240])),
        ("a truncated tar", gzip(&tar[..1024 + stored / 2])),
    ];
    for (what, bytes) in &cases {
        let r = try_read(dir.path(), bytes);
        assert!(r.is_err(), "{what}: accepted");
    }
    // Extension blocks chained to the end of the stream.
    let mut chain = tar[..512].to_vec();
    chain.extend(
        std::iter::repeat_n(
            {
                let mut b = [0u8; 512];
                b[504] = 1;
                b
            },
            1000,
        )
        .flatten(),
    );
    assert!(try_read(dir.path(), &gzip(&chain)).is_err());
    // Random damage to the gzip or to the tar inside: errors or data, never a panic.
    let mut rng = common::Rng::new(5);
    for _ in 0..200 {
        let mut b = good.clone();
        let at = rng.below(b.len() as u64) as usize;
        b[at] ^= 1 << rng.below(8);
        let _ = try_read(dir.path(), &b);
        let mut t = tar.clone();
        let at = rng.below(2048) as usize;
        t[at] ^= 1 << rng.below(8);
        if rng.below(2) == 0 {
            fix_cksum(&mut t[..512]);
        }
        let _ = try_read(dir.path(), &gzip(&t));
    }
}
