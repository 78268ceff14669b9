//! The stream-optimized VMDK writer and reader, checked against qemu-img.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{
    assert_holds, assert_refuses_out_of_order_and_past_end, feed, qemu_check, qemu_compare,
    qemu_img, read_file, run, write, Image, Split,
};
use nanoimg_vdisk::{vmdk::VmdkWriter, Format};

const MIB: u64 = 1 << 20;

/// Images with unaligned regions, zero gaps and partial last grains and sectors.
fn images() -> Vec<(&'static str, Image)> {
    vec![
        // A partial last grain and a partial last sector, data in the last bytes.
        (
            "unaligned",
            Image::random(1, 10 * MIB + 1000, 40, 200_000).with(10 * MIB + 990, vec![7; 10]),
        ),
        // Whole grains; a grain that is all data; the first byte and last byte set.
        (
            "aligned",
            Image::random(2, 96 * MIB, 30, 300_000)
                .with(0, vec![1])
                .with(96 * MIB - 1, vec![2]),
        ),
        // Data across the 32 MiB a grain table covers.
        (
            "table_edges",
            Image {
                len: 70 * MIB + 512,
                regions: vec![
                    (32 * MIB - 5, vec![9; 10]),
                    (64 * MIB - 65536, vec![3; 65536 * 2]),
                ],
            },
        ),
        ("one_sector", Image::random(4, 512, 1, 512)),
        (
            "all_zero",
            Image {
                len: 5 * MIB + 3,
                regions: vec![],
            },
        ),
    ]
}

fn vmdk_of(image: &Image, path: &Path, split: Split) {
    write(Format::Vmdk, image, path, split).unwrap();
}

#[test]
fn vmdk_reads_back_the_raw_image() {
    let dir = tempfile::tempdir().unwrap();
    for (name, image) in images() {
        let path = dir.path().join(format!("{name}.vmdk"));
        vmdk_of(&image, &path, Split::Random(7));
        let disk = nanoimg_vdisk::open(&path).unwrap();
        assert_eq!(disk.format(), Format::Vmdk);
        // Capacity is in sectors: the size rounds up to one.
        assert_eq!(disk.size(), image.len.div_ceil(512) * 512, "{name}");
        assert_holds(&*disk, &image);
    }
}

#[test]
fn vmdk_passes_qemu_img_check_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    for (name, image) in images() {
        let raw = dir.path().join(format!("{name}.img"));
        let vmdk = dir.path().join(format!("{name}.vmdk"));
        image.write_raw(&raw);
        vmdk_of(&image, &vmdk, Split::Regions);
        qemu_check(&vmdk, "vmdk");
        let out = qemu_compare(&raw, &vmdk, "vmdk");
        assert_eq!(out.trim(), "Images are identical.", "{name}");
        let (ok, out, err) = run(qemu_img().args(["info", "--output=json"]).arg(&vmdk));
        assert!(ok, "{err}");
        assert!(
            out.contains("\"create-type\": \"streamOptimized\""),
            "{out}"
        );
        assert!(out.contains("\"compressed\": true"), "{out}");
    }
}

#[test]
fn vmdk_bytes_do_not_depend_on_the_split() {
    let dir = tempfile::tempdir().unwrap();
    for (name, image) in images() {
        let a = dir.path().join("a.vmdk");
        let b = dir.path().join("b.vmdk");
        let c = dir.path().join("c.vmdk");
        let d = dir.path().join("d.vmdk");
        vmdk_of(&image, &a, Split::Regions);
        vmdk_of(&image, &b, Split::Random(99));
        vmdk_of(&image, &c, Split::Dense(12345));
        vmdk_of(&image, &d, Split::Random(99));
        let a = read_file(&a);
        assert_eq!(a, read_file(&b), "{name}: regions vs random split");
        assert_eq!(a, read_file(&c), "{name}: regions vs dense zeros");
        assert_eq!(a, read_file(&d), "{name}: the same twice");
    }
}

#[test]
fn vmdk_cid_comes_from_the_survey() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::random(5, 3 * MIB, 5, 10_000);
    let path = dir.path().join("x.vmdk");
    vmdk_of(&image, &path, Split::Regions);
    let cid = nanoimg_vdisk::vmdk::cid(&image.survey().layout_id);
    let bytes = read_file(&path);
    let text = String::from_utf8_lossy(&bytes[512..512 * 21]);
    assert!(text.contains(&format!("\nCID={cid:08x}\n")), "{text}");
    assert!(text.contains("\nparentCID=ffffffff\n"));
    assert!(text.contains("\nRW 6144 SPARSE \"disk.vmdk\"\n"));
    assert!(text.contains("createType=\"streamOptimized\""));
    // A different image, a different CID.
    let other = image.clone().with(3 * MIB - 1, vec![1]);
    assert_ne!(cid, nanoimg_vdisk::vmdk::cid(&other.survey().layout_id));
}

/// Our header and descriptor against qemu-img's streamOptimized output for the same image:
/// the same but for what this writer chooses differently (the grain directory at the end,
/// no redundant directory, the CID and the extent's name).
#[test]
fn vmdk_structure_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::random(6, 10 * MIB + 1000, 10, 100_000);
    let raw = dir.path().join("r.img");
    let ours = dir.path().join("ours.vmdk");
    let theirs = dir.path().join("theirs.vmdk");
    image.write_raw(&raw);
    vmdk_of(&image, &ours, Split::Regions);
    let (ok, out, err) = run(qemu_img()
        .args([
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized",
        ])
        .arg(&raw)
        .arg(&theirs));
    assert!(ok, "{out}{err}");
    let (a, b) = (read_file(&ours), read_file(&theirs));
    let le32 = |v: &[u8], at: usize| u32::from_le_bytes(v[at..at + 4].try_into().unwrap());
    let le64 = |v: &[u8], at: usize| u64::from_le_bytes(v[at..at + 8].try_into().unwrap());
    assert_eq!(&a[0..8], &b[0..8], "magic and version");
    assert_eq!(
        le32(&a, 8),
        le32(&b, 8) & !2,
        "flags less the redundant-GT bit"
    );
    assert_eq!(
        &a[12..48],
        &b[12..48],
        "capacity, grain, descriptor, GTEs per GT"
    );
    assert_eq!(le64(&a, 48), 0, "no redundant directory");
    assert_eq!(le64(&a, 56), u64::MAX, "GD_AT_END");
    assert_eq!(
        &a[64..512],
        &b[64..512],
        "overHead, newline characters, compression"
    );
    let text = |v: &[u8]| {
        String::from_utf8_lossy(&v[512..512 * 21])
            .trim_end_matches('\0')
            .lines()
            .filter(|l| !l.starts_with("CID=") && !l.starts_with("RW "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(text(&a), text(&b));
    // The footer: the header with the directory's place.
    let footer = &a[a.len() - 1024..a.len() - 512];
    assert_eq!(&footer[..56], &a[..56]);
    assert_ne!(le64(footer, 56), u64::MAX);
    assert_eq!(&footer[64..], &a[64..512]);
}

/// The reader takes what qemu-img writes too: streamOptimized with the directory in front,
/// and an uncompressed monolithicSparse.
#[test]
fn vmdk_reader_reads_qemu_img_output() {
    let dir = tempfile::tempdir().unwrap();
    for (name, image) in images() {
        let raw = dir.path().join("r.img");
        image.write_raw(&raw);
        for sub in ["streamOptimized", "monolithicSparse"] {
            let path = dir.path().join(format!("{name}-{sub}.vmdk"));
            let (ok, out, err) = run(qemu_img()
                .args(["convert", "-f", "raw", "-O", "vmdk", "-o"])
                .arg(format!("subformat={sub}"))
                .arg(&raw)
                .arg(&path));
            assert!(ok, "{out}{err}");
            let disk = nanoimg_vdisk::open(&path).unwrap();
            assert_holds(&*disk, &image);
        }
    }
}

#[test]
fn vmdk_large_sparse_disk_is_small() {
    let dir = tempfile::tempdir().unwrap();
    let len = 4 << 30;
    let image = Image::random(8, len, 20, 200_000).with(len - 100, vec![5; 100]);
    let data: u64 = image.regions.iter().map(|r| r.1.len() as u64).sum();
    let path = dir.path().join("big.vmdk");
    vmdk_of(&image, &path, Split::Regions);
    let size = fs::metadata(&path).unwrap().len();
    // Random data does not compress: at most the data, a grain's worth per region for the
    // zeros around it, and the metadata.
    assert!(
        size < data + 21 * 2 * 65536 + 256 * 1024,
        "{size} bytes for {data} bytes of data"
    );
    let disk = nanoimg_vdisk::open(&path).unwrap();
    assert_eq!(disk.size(), len);
    for (o, d) in &image.regions {
        let mut buf = vec![0u8; d.len()];
        disk.read_exact_at(&mut buf, *o).unwrap();
        assert_eq!(&buf, d);
    }
    let raw = dir.path().join("big.img");
    image.write_raw(&raw);
    qemu_check(&path, "vmdk");
    let out = qemu_compare(&raw, &path, "vmdk");
    assert_eq!(out.trim(), "Images are identical.");
}

#[test]
fn vmdk_writer_refuses_misuse() {
    let dir = tempfile::tempdir().unwrap();
    let f = || File::create(dir.path().join("m.vmdk")).unwrap();
    let survey = nanoimg_vdisk::Survey::default;
    assert!(VmdkWriter::new(f(), 0, survey()).is_err());
    assert_refuses_out_of_order_and_past_end(Format::Vmdk, 1 << 20);
    let w: Box<dyn nanoimg_vdisk::Sink> =
        Box::new(VmdkWriter::new(f(), 1 << 20, survey()).unwrap());
    assert!(
        w.finish(1 << 19, &nanoimg_vdisk::RawHashes::of(&[]))
            .is_err(),
        "length differs"
    );
}

/// Opens `bytes` as a VMDK and reads it all: must not panic, whatever the bytes.
fn try_read(dir: &Path, bytes: &[u8]) -> Result<(), String> {
    common::try_read(&dir.join("h.vmdk"), bytes, Format::Vmdk, b"KDMV")
}

#[test]
fn vmdk_hostile_input_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::random(10, 3 * MIB + 700, 12, 80_000);
    let path = dir.path().join("good.vmdk");
    vmdk_of(&image, &path, Split::Regions);
    let good = read_file(&path);
    assert!(try_read(dir.path(), &good).is_ok());
    let le64 = |v: &[u8], at: usize| u64::from_le_bytes(v[at..at + 8].try_into().unwrap());
    let n = good.len();
    let gd_at = le64(&good, n - 1024 + 56) as usize * 512;

    // Every truncation that keeps the magic loses the footer: refused at open. (Fewer than
    // four bytes are no longer a VMDK: a raw image.)
    for cut in (4..n).step_by(509).chain([4, 511, 512, 513, n - 1]) {
        let e = try_read(dir.path(), &good[..cut]);
        assert!(e.is_err(), "truncated to {cut} bytes was accepted");
    }

    let patched = |at: usize, v: &[u8]| {
        let mut b = good.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("version 4", patched(4, &4u32.to_le_bytes())),
        (
            "footer version 9",
            patched(n - 1024 + 4, &9u32.to_le_bytes()),
        ),
        ("grain size 3", patched(n - 1024 + 20, &3u64.to_le_bytes())),
        (
            "grain size huge",
            patched(n - 1024 + 20, &(1u64 << 40).to_le_bytes()),
        ),
        (
            "footer and header disagree",
            patched(n - 1024 + 12, &1u64.to_le_bytes()),
        ),
        ("capacity huge", {
            let b = patched(12, &(u64::MAX / 256).to_le_bytes());
            let mut b2 = b.clone();
            b2[n - 1024 + 12..n - 1024 + 20].copy_from_slice(&(u64::MAX / 256).to_le_bytes());
            b2
        }),
        (
            "zero GTEs per GT",
            patched(n - 1024 + 44, &0u32.to_le_bytes()),
        ),
        (
            "GD past the end",
            patched(n - 1024 + 56, &(u64::MAX / 2).to_le_bytes()),
        ),
        (
            "GD at end in the footer",
            patched(n - 1024 + 56, &u64::MAX.to_le_bytes()),
        ),
        (
            "no footer marker",
            patched(n - 1536 + 12, &0u32.to_le_bytes()),
        ),
        ("no EOS marker", patched(n - 512 + 12, &5u32.to_le_bytes())),
        ("GT past the end", patched(gd_at, &u32::MAX.to_le_bytes())),
        ("compression 7", patched(n - 1024 + 77, &7u16.to_le_bytes())),
        ("newline characters", patched(n - 1024 + 74, b"\r")),
        (
            "grain marker LBA",
            patched(128 * 512, &12345u64.to_le_bytes()),
        ),
        (
            "grain marker size 0",
            patched(128 * 512 + 8, &0u32.to_le_bytes()),
        ),
        (
            "grain marker size huge",
            patched(128 * 512 + 8, &u32::MAX.to_le_bytes()),
        ),
        ("grain data", patched(128 * 512 + 40, &[0xff; 64])),
    ];
    for (what, bytes) in &cases {
        assert!(try_read(dir.path(), bytes).is_err(), "{what}: accepted");
    }
    // The grain table's first entry pointed at sectors that hold no grain marker.
    let gt_at = u32::from_le_bytes(good[gd_at..gd_at + 4].try_into().unwrap()) as usize * 512;
    let first = good[gt_at..gt_at + 2048]
        .chunks(4)
        .position(|c| c != [0; 4])
        .unwrap()
        * 4;
    for target in [
        1u32,
        2,
        21,
        127,
        (n / 512 - 1) as u32,
        (n / 512) as u32,
        u32::MAX,
    ] {
        let bytes = patched(gt_at + first, &target.to_le_bytes());
        assert!(
            try_read(dir.path(), &bytes).is_err(),
            "GTE → sector {target}: accepted"
        );
    }
    // Random damage anywhere: errors or data, never a panic.
    let mut rng = common::Rng::new(77);
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(n as u64) as usize;
            b[at] ^= 1 << rng.below(8);
        }
        let _ = try_read(dir.path(), &b);
    }
}

/// `read_exact_at` through a `DiskReader` window, as the filesystem readers use it.
#[test]
fn vmdk_disk_reader_window() {
    use std::io::{Read, Seek, SeekFrom};
    let dir = tempfile::tempdir().unwrap();
    let image = Image::random(11, 2 * MIB, 8, 70_000);
    let path = dir.path().join("w.vmdk");
    vmdk_of(&image, &path, Split::Dense(1 << 20));
    let disk = nanoimg_vdisk::open(&path).unwrap();
    let mut r = nanoimg_vdisk::DiskReader::window(disk, 1000, 100_000);
    r.seek(SeekFrom::Start(5)).unwrap();
    let mut buf = vec![0u8; 99_995];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(buf, image.read(1005, 99_995));
    // The file is never written by reading.
    let f = File::open(&path).unwrap();
    let mut m = [0u8; 4];
    f.read_exact_at(&mut m, 0).unwrap();
    assert_eq!(&m, b"KDMV");
    let _ = feed;
}
