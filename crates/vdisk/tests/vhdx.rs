//! Dynamic VHDX: written through the Sink, read back, checked by `qemu-img`.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

use common::*;
use nanoimg_vdisk::Format;
use proptest::prelude::*;

const MIB: usize = 1 << 20;

/// The common round trip: read back padded to a sector, QEMU sees that size.
fn round_trip(img: &[u8], seed: u64) {
    common::round_trip(Format::Vhdx, img, seed);
}

#[test]
fn vhdx_round_trip_partial_last_block() {
    // 5 MiB + 12 KiB: a partial last block.
    let img = test_image(41, 5 * MIB + 12288);
    round_trip(&img, 41);
}

#[test]
fn vhdx_round_trip_unaligned_size_and_tiny() {
    // Not a whole number of sectors: the VHDX is padded to 512 bytes.
    round_trip(&test_image(42, 2 * MIB + 1000), 42);
    let mut one = vec![0u8; 512];
    one[3] = 1;
    round_trip(&one, 43);
    round_trip(&vec![0u8; 3 * MIB], 44);
}

/// BAT entry `i` of a VHDX written here (the BAT at 2 MiB).
fn bat_entry(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[2 * MIB + 8 * i..2 * MIB + 8 * i + 8].try_into().unwrap())
}

#[test]
fn vhdx_layout() {
    let dir = tmp();
    let out = file(&dir, "out.vhdx");
    let mut img = vec![0u8; 10 * MIB];
    img[3 * MIB + 7] = 1;
    img[8 * MIB - 1] = 3;
    write_split(Format::Vhdx, &out, &img, &[], false);
    let b = std::fs::read(&out).unwrap();
    // Header section, log, BAT (1 MiB), metadata (1 MiB), two payload blocks.
    assert_eq!(b.len(), 4 * MIB + 2 * MIB);
    assert_eq!(&b[0..8], b"vhdxfile");
    assert_eq!(
        &b[8..22],
        "nanoimg"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect::<Vec<_>>()
    );
    assert_eq!(&b[65536..65540], b"head");
    assert_eq!(&b[131072..131076], b"head");
    assert_eq!(
        b[196608..262144],
        b[262144..327680],
        "the two region tables"
    );
    let bat = |i: usize| bat_entry(&b, i);
    assert_eq!(bat(0), 2, "PAYLOAD_BLOCK_ZERO");
    assert_eq!(bat(3), (4 * MIB as u64) | 6);
    assert_eq!(bat(7), (5 * MIB as u64) | 6);
    assert_eq!(bat(9), 2);
    assert_eq!(b[4 * MIB + 7], 1);
    assert_eq!(b[6 * MIB - 1], 3);
    // GUIDs read as version 4, variant RFC 4122.
    for at in [65536 + 16, 65536 + 32] {
        assert_eq!(b[at + 7] >> 4, 4);
        assert_eq!(b[at + 8] >> 6, 2);
    }
    qemu_check(&out, "vhdx");
}

#[test]
fn vhdx_bat_interleaves_sector_bitmap_entries() {
    // 4097 blocks and more: entry 4096 is the first chunk's sector bitmap entry.
    let dir = tmp();
    let out = file(&dir, "out.vhdx");
    let raw = file(&dir, "raw.img");
    let len: u64 = 4100 << 20;
    let pieces: Vec<(u64, Vec<u8>)> = [4095u64, 4096, 4097, 4099]
        .into_iter()
        .map(|block| (block << 20, vec![block as u8 | 1; 4096]))
        .collect();
    write_pieces(Format::Vhdx, &out, &raw, len, &pieces);
    let b = std::fs::read(&out).unwrap();
    let bat = |i: usize| bat_entry(&b, i);
    assert_eq!(bat(4095) & 7, 6);
    assert_eq!(bat(4096), 0, "sector bitmap entry");
    assert_eq!(bat(4097) & 7, 6, "block 4096");
    assert_eq!(bat(4098) & 7, 6, "block 4097");
    assert_eq!(bat(4099), 2);
    assert_eq!(bat(4100) & 7, 6, "block 4099");
    qemu_check(&out, "vhdx");
    qemu_compare(&raw, &out, "vhdx");
    let disk = nanoimg_vdisk::open(&out).unwrap();
    let mut buf = vec![0u8; 4096];
    disk.read_exact_at(&mut buf, 4096 << 20).unwrap();
    assert!(buf.iter().all(|&x| x == 1));
}

/// 4 GiB with 5 MiB of data: a small file.
#[test]
fn vhdx_large_sparse_disk_is_small() {
    let dir = tmp();
    let out = file(&dir, "big.vhdx");
    let raw = file(&dir, "big.img");
    let len: u64 = 4 << 30;
    let pieces = sparse_pieces(49, len);
    write_pieces(Format::Vhdx, &out, &raw, len, &pieces);
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(
        size <= 10 << 20,
        "a 4 GiB disk with 5 MiB of data took {size} bytes"
    );
    qemu_check(&out, "vhdx");
    qemu_compare(&raw, &out, "vhdx");
    assert_pieces(&out, len, &pieces);
}

#[test]
fn vhdx_reads_what_qemu_img_writes() {
    let dir = tmp();
    let raw = file(&dir, "raw.img");
    let img = test_image(51, 9 * MIB);
    write_raw(&raw, &img);
    for opts in [
        "subformat=dynamic",
        "subformat=dynamic,block_size=1M,block_state_zero=off",
        "subformat=fixed",
    ] {
        let out = file(&dir, "q.vhdx");
        let _ = std::fs::remove_file(&out);
        let status = qemu_img()
            .args(["convert", "-f", "raw", "-O", "vhdx", "-o", opts])
            .arg(&raw)
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(read_back(&out, Format::Vhdx) == img, "{opts}");
    }
}

#[test]
fn vhdx_writer_refuses_out_of_order_and_past_end() {
    assert_refuses_out_of_order_and_past_end(Format::Vhdx, MIB as u64);
    let dir = tmp();
    let f = std::fs::File::create(file(&dir, "y.vhdx")).unwrap();
    assert!(nanoimg_vdisk::writer(Format::Vhdx, f, (64 << 40) + 1, None).is_err());
}

fn crc_fix(b: &mut [u8], start: usize, len: usize) {
    b[start + 4..start + 8].fill(0);
    let c = crc32c::crc32c(&b[start..start + len]);
    b[start + 4..start + 8].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn vhdx_hostile_input_is_an_error() {
    let dir = tmp();
    let good_path = file(&dir, "good.vhdx");
    let img = test_image(52, 3 * MIB);
    write_split(Format::Vhdx, &good_path, &img, &[], false);
    let good = std::fs::read(&good_path).unwrap();
    let bad = file(&dir, "bad.vhdx");
    const H1: usize = 65536;
    const H2: usize = 131072;
    const R1: usize = 196608;
    const R2: usize = 262144;
    let meta = 3 * MIB;
    let both_headers = |b: &mut Vec<u8>, at: usize, v: &[u8]| {
        for h in [H1, H2] {
            b[h + at..h + at + v.len()].copy_from_slice(v);
            crc_fix(b, h, 4096);
        }
    };
    let both_regions = |b: &mut Vec<u8>, at: usize, v: &[u8]| {
        for r in [R1, R2] {
            b[r + at..r + at + v.len()].copy_from_slice(v);
            crc_fix(b, r, 65536);
        }
    };
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("short file", Box::new(|b| b.truncate(300_000))),
        (
            "both header checksums bad",
            Box::new(|b| {
                b[H1 + 100] = 1;
                b[H2 + 100] = 1;
            }),
        ),
        (
            "same sequence, different",
            Box::new(move |b| {
                b[H2 + 8] = 1;
                b[H2 + 100] = 1;
                crc_fix(b, H2, 4096);
            }),
        ),
        (
            "non-empty log",
            Box::new(move |b| both_headers(b, 48, &[1; 16])),
        ),
        (
            "log version",
            Box::new(move |b| both_headers(b, 64, &[1, 0])),
        ),
        (
            "log unaligned",
            Box::new(move |b| both_headers(b, 72, &(MIB as u64 + 512).to_le_bytes())),
        ),
        ("version 2", Box::new(move |b| both_headers(b, 66, &[2, 0]))),
        (
            "both region tables bad",
            Box::new(|b| {
                b[R1 + 1000] = 1;
                b[R2 + 1000] = 1;
            }),
        ),
        (
            "region count",
            Box::new(move |b| both_regions(b, 8, &5000u32.to_le_bytes())),
        ),
        (
            "BAT past end",
            Box::new(move |b| both_regions(b, 16 + 16, &(1u64 << 40).to_le_bytes())),
        ),
        (
            "BAT overflow",
            Box::new(move |b| {
                both_regions(b, 16 + 16, &(u64::MAX - (MIB as u64) + 1).to_le_bytes())
            }),
        ),
        (
            "BAT in the header section",
            Box::new(move |b| both_regions(b, 16 + 16, &0u64.to_le_bytes())),
        ),
        (
            "BAT overlaps metadata",
            Box::new(move |b| both_regions(b, 16 + 16, &(3u64 << 20).to_le_bytes())),
        ),
        (
            "BAT unaligned",
            Box::new(move |b| both_regions(b, 16 + 16, &(2u64 * MIB as u64 + 4096).to_le_bytes())),
        ),
        (
            "unknown required region",
            Box::new(move |b| both_regions(b, 16, &[9; 16])),
        ),
        ("metadata signature", Box::new(move |b| b[meta] = b'x')),
        (
            "metadata item offset",
            Box::new(move |b| {
                b[meta + 32 + 16..meta + 32 + 20].copy_from_slice(&u32::MAX.to_le_bytes())
            }),
        ),
        (
            "metadata item length",
            Box::new(move |b| {
                b[meta + 32 + 20..meta + 32 + 24].copy_from_slice(&7u32.to_le_bytes())
            }),
        ),
        (
            "metadata count",
            Box::new(move |b| b[meta + 10..meta + 12].copy_from_slice(&u16::MAX.to_le_bytes())),
        ),
        (
            "missing item",
            Box::new(move |b| b[meta + 10..meta + 12].copy_from_slice(&4u16.to_le_bytes())),
        ),
        (
            "block size",
            Box::new(move |b| {
                b[meta + 65536..meta + 65540].copy_from_slice(&12345u32.to_le_bytes())
            }),
        ),
        ("has parent", Box::new(move |b| b[meta + 65540] = 2)),
        (
            "huge size",
            Box::new(move |b| {
                b[meta + 65544..meta + 65552].copy_from_slice(&(1u64 << 60).to_le_bytes())
            }),
        ),
        (
            "size unaligned",
            Box::new(move |b| {
                b[meta + 65544..meta + 65552].copy_from_slice(&1000u64.to_le_bytes())
            }),
        ),
        (
            "sector size",
            Box::new(move |b| {
                b[meta + 65568..meta + 65572].copy_from_slice(&1024u32.to_le_bytes())
            }),
        ),
        (
            "BAT entry past end",
            Box::new(|b| {
                b[2 * MIB..2 * MIB + 8].copy_from_slice(&((1u64 << 40) | 6).to_le_bytes())
            }),
        ),
        (
            "BAT entry in metadata",
            Box::new(|b| {
                b[2 * MIB..2 * MIB + 8].copy_from_slice(&((3u64 << 20) | 6).to_le_bytes())
            }),
        ),
        ("BAT entry partially present", Box::new(|b| b[2 * MIB] = 7)),
        ("BAT entry reserved state", Box::new(|b| b[2 * MIB] = 4)),
    ];
    for (what, edit) in cases {
        let mut b = good.clone();
        edit(&mut b);
        std::fs::write(&bad, &b).unwrap();
        let reason = expect_bad(&bad, Format::Vhdx);
        eprintln!("{what}: {reason}");
        if what == "non-empty log" {
            assert!(reason.contains("log is not empty"), "{reason}");
        }
    }
    // One damaged header or region table: the other is used.
    for at in [H2 + 100, R1 + 1000] {
        let mut b = good.clone();
        b[at] ^= 1;
        std::fs::write(&bad, &b).unwrap();
        assert!(read_back(&bad, Format::Vhdx)[..img.len()] == img[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn vhdx_bytes_do_not_depend_on_splitting(
        seed in 0u64..1000,
        len in 1usize..3_000_000,
        mut cuts in proptest::collection::vec(0usize..3_000_000, 0..40),
    ) {
        cuts.sort_unstable();
        assert_cuts_do_not_matter(Format::Vhdx, &test_image(seed, len), &cuts);
    }
}
