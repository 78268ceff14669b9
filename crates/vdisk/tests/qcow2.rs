//! qcow2: written through the Sink, read back, checked by `qemu-img`.

mod common_a;

use std::os::unix::fs::FileExt;

use common_a::*;
use nanoimg_vdisk::Format;
use proptest::prelude::*;

const CLUSTER: usize = 65536;

/// Writes `img` in every fixed splitting: the bytes are the same each time; reads back,
/// checks and compares with qemu-img once.
fn round_trip(img: &[u8], seed: u64) {
    let dir = tmp();
    let out = file(&dir, "out.qcow2");
    let raw = file(&dir, "raw.img");
    let mut first: Option<Vec<u8>> = None;
    for (cuts, skip) in splittings(img.len(), seed) {
        write_split(Format::Qcow2, &out, img, &cuts, skip);
        let bytes = std::fs::read(&out).unwrap();
        match &first {
            None => first = Some(bytes),
            Some(f) => assert!(*f == bytes, "a different splitting gave different bytes"),
        }
    }
    assert!(read_back(&out, Format::Qcow2) == img, "read back differs");
    write_raw(&raw, img);
    qemu_check(&out, "qcow2");
    qemu_compare(&raw, &out, "qcow2");
    assert_eq!(qemu_virtual_size(&out, "qcow2"), img.len() as u64);
}

#[test]
fn qcow2_round_trip_unaligned_partial_last_cluster() {
    // 3 MiB + 12 KiB: a partial last cluster.
    let img = test_image(1, 3 * 1024 * 1024 + 12288);
    round_trip(&img, 1);
}

#[test]
fn qcow2_empty_and_tiny() {
    round_trip(&[0u8; 0], 3);
    round_trip(&vec![0u8; 1 << 20], 4);
    let mut one = vec![0u8; 512];
    one[100] = 1;
    round_trip(&one, 5);
}

#[test]
fn qcow2_stores_only_clusters_with_data() {
    let dir = tmp();
    let out = file(&dir, "out.qcow2");
    let mut img = vec![0u8; 10 * CLUSTER];
    img[3 * CLUSTER + 7] = 1;
    img[3 * CLUSTER + 9000] = 2;
    img[8 * CLUSTER - 1] = 3;
    write_split(Format::Qcow2, &out, &img, &[], false);
    // Header, 2 data clusters, 1 L2, 1 L1, refcount table, 1 refcount block.
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 7 * CLUSTER as u64);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes[CLUSTER + 7], 1);
    assert_eq!(bytes[2 * CLUSTER + CLUSTER - 1], 3);
    qemu_check(&out, "qcow2");
}

/// 4 GiB with 5 MiB of data, in five L2 tables' ranges: a small file.
#[test]
fn qcow2_large_sparse_disk_is_small() {
    let dir = tmp();
    let out = file(&dir, "big.qcow2");
    let raw = file(&dir, "big.img");
    let len: u64 = 4 << 30;
    let f = std::fs::File::create(&out).unwrap();
    let mut sink = nanoimg_vdisk::writer(Format::Qcow2, f, len, None).unwrap();
    let rawf = std::fs::File::create(&raw).unwrap();
    let mut rng = TestRng::new(9);
    let mut pieces = Vec::new();
    for at in [0u64, 1 << 20, 1 << 30, (3 << 30) + 12345, len - (1 << 20)] {
        let mut data = vec![0u8; 1 << 20];
        rng.fill(&mut data);
        sink.write_at(at, &data).unwrap();
        rawf.write_all_at(&data, at).unwrap();
        pieces.push((at, data));
    }
    rawf.set_len(len).unwrap();
    sink.finish(len, &[0; 32]).unwrap();
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(
        size < 8 << 20,
        "a 4 GiB disk with 5 MiB of data took {size} bytes"
    );
    qemu_check(&out, "qcow2");
    qemu_compare(&raw, &out, "qcow2");
    let disk = nanoimg_vdisk::open(&out).unwrap();
    assert_eq!(disk.size(), len);
    for (at, data) in pieces {
        let mut buf = vec![0u8; data.len()];
        disk.read_exact_at(&mut buf, at).unwrap();
        assert!(buf == data);
    }
    let mut buf = vec![1u8; 4096];
    disk.read_exact_at(&mut buf, 2 << 30).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn qcow2_writer_refuses_out_of_order_and_past_end() {
    let dir = tmp();
    let f = std::fs::File::create(file(&dir, "x.qcow2")).unwrap();
    let mut sink = nanoimg_vdisk::writer(Format::Qcow2, f, 1 << 20, None).unwrap();
    sink.write_at(4096, &[1; 10]).unwrap();
    assert!(sink.write_at(0, &[1; 10]).is_err());
    assert!(sink.write_at((1 << 20) - 5, &[1; 10]).is_err());
}

#[test]
fn qcow2_reads_what_qemu_img_writes() {
    let dir = tmp();
    let raw = file(&dir, "raw.img");
    let out = file(&dir, "q.qcow2");
    let img = test_image(11, 5 * 1024 * 1024);
    write_raw(&raw, &img);
    let status = qemu_img()
        .args([
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=4096",
        ])
        .arg(&raw)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(read_back(&out, Format::Qcow2) == img);
}

fn good_image(dir: &tempfile::TempDir) -> (std::path::PathBuf, Vec<u8>) {
    let out = file(dir, "good.qcow2");
    let img = test_image(12, 2 * 1024 * 1024);
    write_split(Format::Qcow2, &out, &img, &[], false);
    (out, std::fs::read(file(dir, "good.qcow2")).unwrap())
}

#[test]
fn qcow2_hostile_headers_are_errors() {
    let dir = tmp();
    let (_, good) = good_image(&dir);
    let bad = file(&dir, "bad.qcow2");
    let be32 = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let be64 = |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("truncated header", Box::new(|b| b.truncate(50))),
        ("truncated v3 header", Box::new(|b| b.truncate(90))),
        ("version 4", Box::new(move |b| be32(b, 4, 4))),
        ("cluster_bits 40", Box::new(move |b| be32(b, 20, 40))),
        ("cluster_bits 0", Box::new(move |b| be32(b, 20, 0))),
        ("encrypted", Box::new(move |b| be32(b, 32, 1))),
        ("backing file", Box::new(move |b| be64(b, 8, 0x200))),
        (
            "huge size, small l1",
            Box::new(move |b| be64(b, 24, u64::MAX)),
        ),
        (
            "l1_size huge",
            Box::new(move |b| {
                be32(b, 36, u32::MAX);
            }),
        ),
        (
            "l1 offset past end",
            Box::new(move |b| be64(b, 40, 1 << 40)),
        ),
        (
            "l1 offset unaligned",
            Box::new(move |b| be64(b, 40, 0x10008)),
        ),
        (
            "l1 offset overflow",
            Box::new(move |b| be64(b, 40, u64::MAX - 0xffff)),
        ),
        ("corrupt bit", Box::new(move |b| be64(b, 72, 2))),
        ("unknown feature", Box::new(move |b| be64(b, 72, 1 << 40))),
        ("header_length small", Box::new(move |b| be32(b, 100, 72))),
        (
            "file truncated before the tables",
            Box::new(|b| b.truncate(3 * 65536)),
        ),
    ];
    for (what, edit) in cases {
        let mut b = good.clone();
        edit(&mut b);
        std::fs::write(&bad, &b).unwrap();
        let reason = expect_bad(&bad, Format::Qcow2);
        eprintln!("{what}: {reason}");
    }
}

#[test]
fn qcow2_hostile_tables_are_errors_not_panics() {
    let dir = tmp();
    let (_, good) = good_image(&dir);
    let bad = file(&dir, "bad.qcow2");
    let l1_offset = u64::from_be_bytes(good[40..48].try_into().unwrap()) as usize;
    let l2_offset = (u64::from_be_bytes(good[l1_offset..l1_offset + 8].try_into().unwrap())
        & 0x00ff_ffff_ffff_fe00) as usize;
    // L1 entries: past the end, unaligned, reserved bits.
    for e in [
        1u64 << 50,
        0x10200,
        0x8000_0000_0001_0000 | 0x7f00_0000_0000_0000,
    ] {
        let mut b = good.clone();
        b[l1_offset..l1_offset + 8].copy_from_slice(&(e | 1 << 63).to_be_bytes());
        std::fs::write(&bad, &b).unwrap();
        expect_bad(&bad, Format::Qcow2);
    }
    // L2 entries: found when read, as an InvalidData error.
    for e in [1u64 << 50, 0x10200, 1 << 62, 0x0100_0000_0000_0000] {
        let mut b = good.clone();
        b[l2_offset..l2_offset + 8].copy_from_slice(&(e | 1 << 63).to_be_bytes());
        std::fs::write(&bad, &b).unwrap();
        let disk = nanoimg_vdisk::open(&bad).unwrap();
        let mut buf = vec![0u8; 4096];
        let err = disk.read_exact_at(&mut buf, 0).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// Any splitting of the same image gives the same bytes.
    #[test]
    fn qcow2_bytes_do_not_depend_on_splitting(
        seed in 0u64..1000,
        len in 1usize..700_000,
        mut cuts in proptest::collection::vec(0usize..700_000, 0..40),
    ) {
        let img = test_image(seed, len);
        cuts.sort_unstable();
        let dir = tmp();
        let a = file(&dir, "a.qcow2");
        let b = file(&dir, "b.qcow2");
        write_split(Format::Qcow2, &a, &img, &[], false);
        write_split(Format::Qcow2, &b, &img, &cuts, true);
        prop_assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
        prop_assert!(read_back(&b, Format::Qcow2) == img);
    }
}
