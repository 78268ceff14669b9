//! qcow2: written through the Sink, read back, checked by `qemu-img`.

mod common;

use common::*;
use nanoimg_vdisk::Format;
use proptest::prelude::*;

const CLUSTER: usize = 65536;

/// Writes `img` in every fixed splitting: the bytes are the same each time; reads back,
/// checks and compares with qemu-img once.
fn round_trip(img: &[u8], seed: u64) {
    common::round_trip(Format::Qcow2, img, seed);
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
    let pieces = sparse_pieces(9, len);
    write_pieces(Format::Qcow2, &out, &raw, len, &pieces);
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(
        size < 8 << 20,
        "a 4 GiB disk with 5 MiB of data took {size} bytes"
    );
    qemu_check(&out, "qcow2");
    qemu_compare(&raw, &out, "qcow2");
    assert_pieces(&out, len, &pieces);
    let disk = nanoimg_vdisk::open(&out).unwrap();
    let mut buf = vec![1u8; 4096];
    disk.read_exact_at(&mut buf, 2 << 30).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn qcow2_writer_refuses_out_of_order_and_past_end() {
    assert_refuses_out_of_order_and_past_end(Format::Qcow2, 1 << 20);
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
        cuts.sort_unstable();
        assert_cuts_do_not_matter(Format::Qcow2, &test_image(seed, len), &cuts);
    }
}
