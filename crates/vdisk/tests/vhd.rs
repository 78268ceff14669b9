//! Fixed VHD: written through the Sink, read back, checked by `qemu-img`.
//!
//! `qemu-img check` does not support the vpc format (it exits 63, "This image format does
//! not support checks"), so QEMU's view is checked with `qemu-img info` (the virtual size
//! QEMU sees, no checksum warning) and `qemu-img compare`.

mod common;

use std::os::unix::fs::FileExt;

use common::*;
use nanoimg_vdisk::vhd::VhdReader;
use nanoimg_vdisk::{Format, VdiskError};
use proptest::prelude::*;

const MIB: usize = 1 << 20;

/// The common round trip (read back padded to a MiB; QEMU sees that size), and the file is
/// that size and the footer.
fn round_trip(img: &[u8], seed: u64) {
    let (_dir, out) = common::round_trip(Format::Vhd, img, seed);
    let size = img.len().div_ceil(MIB) * MIB;
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size as u64 + 512);
}

#[test]
fn vhd_round_trip_pads_to_a_mib() {
    // 3 MiB + 12 KiB: padded to 4 MiB.
    let img = test_image(21, 3 * MIB + 12288);
    round_trip(&img, 21);
}

#[test]
fn vhd_round_trip_whole_mib_and_tiny() {
    round_trip(&test_image(22, 5 * MIB), 22);
    let mut one = vec![0u8; 512];
    one[7] = 9;
    round_trip(&one, 23);
    round_trip(&vec![0u8; 4096], 24);
}

/// The last 512 bytes of `p`, and its length.
fn tail(p: &std::path::Path) -> (u64, Vec<u8>) {
    let f = std::fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len();
    let mut b = vec![0u8; 512];
    f.read_exact_at(&mut b, len - 512).unwrap();
    (len, b)
}

fn qemu_create_vhd(path: &std::path::Path, size: u64, options: &str) {
    let status = qemu_img()
        .args(["create", "-q", "-f", "vpc", "-o", options])
        .arg(path)
        .arg(size.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn vhd_footer_matches_qemu_img() {
    // The footer `qemu-img create -f vpc -o subformat=fixed,force_size` writes (Azure's
    // recipe) has the same fields except the timestamp, the unique ID, the checksum and the
    // geometry: with force_size, QEMU writes the maximum geometry (65535/16/255); nanoimg
    // writes the specification's for the current size. (Without force_size, QEMU instead
    // grows the size to a whole number of CHS cylinders, which Azure refuses.)
    let dir = tmp();
    for size in [1u64 << 20, 10 << 20, 100 << 20, 1000 << 20, 100 << 30] {
        let theirs = file(&dir, "theirs.vhd");
        let ours = file(&dir, "ours.vhd");
        qemu_create_vhd(&theirs, size, "subformat=fixed,force_size");
        let sink = nanoimg_vdisk::writer(
            Format::Vhd,
            std::fs::File::create(&ours).unwrap(),
            size,
            None,
        )
        .unwrap();
        sink.finish(size, &nanoimg_vdisk::RawHashes::of(&[]))
            .unwrap();
        let (tl, mut t) = tail(&theirs);
        let (ol, mut o) = tail(&ours);
        assert_eq!(tl, ol, "{size}: file length");
        assert_eq!(
            t[56..60],
            [0xff, 0xff, 16, 255],
            "{size}: qemu-img's force_size geometry"
        );
        for b in [&mut t, &mut o] {
            b[24..28].fill(0); // timestamp
            b[56..60].fill(0); // geometry
            b[64..84].fill(0); // checksum, unique ID
        }
        assert_eq!(t, o, "{size}: footer");
    }
}

#[test]
fn vhd_unique_id_is_derived_from_the_content() {
    let dir = tmp();
    let a = file(&dir, "a.vhd");
    let b = file(&dir, "b.vhd");
    let mut img = vec![0u8; MIB];
    img[5] = 1;
    write_split(Format::Vhd, &a, &img, &[], false);
    img[6] = 1;
    write_split(Format::Vhd, &b, &img, &[], false);
    let id = |p: &std::path::Path| std::fs::read(p).unwrap()[MIB + 68..MIB + 84].to_vec();
    assert_ne!(id(&a), id(&b));
    let ida = id(&a);
    assert_eq!(ida[6] >> 4, 4, "version 4");
    assert_eq!(ida[8] >> 6, 2, "RFC 4122 variant");
    let footer = &std::fs::read(&a).unwrap()[MIB..];
    assert_eq!(&footer[0..8], b"conectix");
    assert_eq!(&footer[24..28], &[0; 4], "timestamp");
    assert_eq!(&footer[28..32], b"qem2");
}

/// 4 GiB with 5 MiB of data: the file is 4 GiB + 512 long but sparse on disk.
#[test]
fn vhd_large_sparse_disk_is_sparse_on_disk() {
    let dir = tmp();
    let out = file(&dir, "big.vhd");
    let raw = file(&dir, "big.img");
    let len: u64 = 4 << 30;
    let mut pieces = sparse_pieces(29, len);
    // Zeros after the data, given explicitly: they must not take disk space either.
    pieces.insert(3, ((1 << 30) + (1 << 20), vec![0u8; 64 << 20]));
    write_pieces(Format::Vhd, &out, &raw, len, &pieces);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), len + 512);
    let used = allocated(&out);
    assert!(
        used < 16 << 20,
        "a 4 GiB VHD with 5 MiB of data takes {used} bytes on disk"
    );
    qemu_compare(&raw, &out, "vpc");
    assert_pieces(&out, len, &pieces);
}

#[test]
fn vhd_reads_what_qemu_img_writes() {
    let dir = tmp();
    let raw = file(&dir, "raw.img");
    let out = file(&dir, "q.vhd");
    let img = test_image(31, 6 * MIB);
    write_raw(&raw, &img);
    let status = qemu_img()
        .args([
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            "subformat=fixed,force_size",
        ])
        .arg(&raw)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(read_back(&out, Format::Vhd) == img);
}

#[test]
fn vhd_hostile_footers_are_errors() {
    let dir = tmp();
    let good_path = file(&dir, "good.vhd");
    let img = test_image(32, MIB);
    write_split(Format::Vhd, &good_path, &img, &[], false);
    let good = std::fs::read(&good_path).unwrap();
    let bad = file(&dir, "bad.vhd");
    let at = good.len() - 512;
    let fix = move |b: &mut Vec<u8>| {
        // A correct checksum over whatever else was changed.
        b[at + 64..at + 68].fill(0);
        let sum = !b[at..].iter().fold(0u32, |s, &x| s.wrapping_add(x as u32));
        b[at + 64..at + 68].copy_from_slice(&sum.to_be_bytes());
    };
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("short file", Box::new(|b| b.truncate(100))),
        ("no cookie", Box::new(move |b| b[at] = b'x')),
        ("bad checksum", Box::new(move |b| b[at + 100] = 1)),
        (
            "dynamic",
            Box::new(move |b| {
                b[at + 63] = 3;
                fix(b)
            }),
        ),
        (
            "differencing",
            Box::new(move |b| {
                b[at + 63] = 4;
                fix(b)
            }),
        ),
        (
            "type 9",
            Box::new(move |b| {
                b[at + 63] = 9;
                fix(b)
            }),
        ),
        (
            "size too big",
            Box::new(move |b| {
                b[at + 48..at + 56].copy_from_slice(&u64::MAX.to_be_bytes());
                fix(b)
            }),
        ),
        (
            "truncated data",
            Box::new(move |b| {
                let f: Vec<u8> = b[at..].to_vec();
                b.truncate(4096);
                b.extend_from_slice(&f)
            }),
        ),
    ];
    for (what, edit) in cases {
        let mut b = good.clone();
        edit(&mut b);
        std::fs::write(&bad, &b).unwrap();
        match VhdReader::open(std::fs::File::open(&bad).unwrap(), &bad) {
            Ok(d) => panic!("{what}: opened, {d:?}"),
            Err(VdiskError::Bad { reason, format, .. }) => {
                assert_eq!(format, Format::Vhd);
                eprintln!("{what}: {reason}");
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
    // Through `open`: a footer with the cookie but a bad checksum is a Bad VHD.
    let mut b = good.clone();
    b[at + 100] = 1;
    std::fs::write(&bad, &b).unwrap();
    expect_bad(&bad, Format::Vhd);
}

#[test]
fn vhd_writer_refuses_out_of_order_and_past_end() {
    assert_refuses_out_of_order_and_past_end(Format::Vhd, MIB as u64);
    let dir = tmp();
    let f = std::fs::File::create(file(&dir, "y.vhd")).unwrap();
    assert!(nanoimg_vdisk::writer(Format::Vhd, f, 2041 << 30, None).is_err());
}

#[test]
fn vhd_geometry_follows_the_specification() {
    use nanoimg_vdisk::vhd::geometry;
    // The specification's algorithm: 17, then 31, then 63 sectors per track; 255 from
    // 65535 × 16 × 63 sectors; capped at 65535 × 16 × 255.
    assert_eq!(geometry(10 << 20), (301, 4, 17));
    assert_eq!(geometry(127 << 30), (65278, 16, 255));
    assert_eq!(geometry(2040 << 30), (65535, 16, 255));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn vhd_bytes_do_not_depend_on_splitting(
        seed in 0u64..1000,
        len in 1usize..700_000,
        mut cuts in proptest::collection::vec(0usize..700_000, 0..40),
    ) {
        cuts.sort_unstable();
        assert_cuts_do_not_matter(Format::Vhd, &test_image(seed, len), &cuts);
    }
}
