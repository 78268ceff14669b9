//! Files that would be read as something they are not: each refused with one line naming
//! the file, the field and its value (what QEMU refuses too, and VMDK child disks), or, for
//! a damaged VHD footer, read as raw with a note. Also the extent maps a whole-disk read
//! follows: bounded by the tables the file holds, not by the size a header claims.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use nanoimg_vdisk::Format;

const MIB: usize = 1 << 20;

/// `open(path)`'s error, as the CLI prints it (after `error: `).
fn refusal(path: &Path) -> String {
    match nanoimg_vdisk::open(path) {
        Ok(d) => panic!("{} opened as {:?}", path.display(), d.format()),
        Err(e) => e.to_string(),
    }
}

/// A good `format` file of a 2 MiB test image, its bytes, and a path for edited copies.
fn good(dir: &tempfile::TempDir, format: Format) -> (Vec<u8>, PathBuf) {
    let path = file(dir, &format!("good.{}", format.extension()));
    write_split(format, &path, &test_image(41, 2 * MIB), &[], false);
    let bytes = std::fs::read(&path).unwrap();
    (bytes, file(dir, &format!("bad.{}", format.extension())))
}

/// The VMDK writer's descriptor (sector 1, 20 sectors) replaced by `text`, zero padded.
fn with_descriptor(vmdk: &[u8], text: &[u8]) -> Vec<u8> {
    let mut b = vmdk.to_vec();
    let area = &mut b[512..512 + 20 * 512];
    area.fill(0);
    area[..text.len()].copy_from_slice(text);
    b
}

fn descriptor(vmdk: &[u8]) -> String {
    let area = &vmdk[512..512 + 20 * 512];
    let end = area.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(area[..end].to_vec()).unwrap()
}

#[test]
fn a_child_vmdk_is_refused() {
    let dir = tmp();
    let (vmdk, bad) = good(&dir, Format::Vmdk);
    let text = descriptor(&vmdk).replace(
        "parentCID=ffffffff\n",
        "parentCID=1234abcd\nparentFileNameHint=\"base.vmdk\"\n",
    );
    std::fs::write(&bad, with_descriptor(&vmdk, text.as_bytes())).unwrap();
    assert_eq!(
        refusal(&bad),
        format!(
            "{}: not a valid vmdk image: a child disk (parentCID 1234abcd, parentFileNameHint \"base.vmdk\"); nanoimg reads only standalone disks",
            bad.display()
        )
    );
    // A parent CID alone is enough; so is a hint alone.
    let text = descriptor(&vmdk).replace("parentCID=ffffffff", "parentCID=00c0ffee");
    std::fs::write(&bad, with_descriptor(&vmdk, text.as_bytes())).unwrap();
    assert_eq!(
        refusal(&bad),
        format!(
            "{}: not a valid vmdk image: a child disk (parentCID 00c0ffee, no parentFileNameHint); nanoimg reads only standalone disks",
            bad.display()
        )
    );
    let text = descriptor(&vmdk).replace(
        "parentCID=ffffffff\n",
        "parentCID=ffffffff\nparentFileNameHint=\"/etc/passwd\"\n",
    );
    std::fs::write(&bad, with_descriptor(&vmdk, text.as_bytes())).unwrap();
    assert_eq!(
        refusal(&bad),
        format!(
            "{}: not a valid vmdk image: a child disk (parentCID ffffffff, parentFileNameHint \"/etc/passwd\"); nanoimg reads only standalone disks",
            bad.display()
        )
    );
}

#[test]
fn a_vmdk_with_a_garbage_descriptor_is_refused() {
    let dir = tmp();
    let (vmdk, bad) = good(&dir, Format::Vmdk);
    let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251 + 1) as u8).collect();
    std::fs::write(&bad, with_descriptor(&vmdk, &garbage)).unwrap();
    assert_eq!(
        refusal(&bad),
        format!(
            "{}: not a valid vmdk image: the embedded descriptor (sector 1) is not text: byte 0x01 at offset 0",
            bad.display()
        )
    );
    // Text, but not a descriptor: QEMU needs the CID and parentCID.
    std::fs::write(
        &bad,
        with_descriptor(&vmdk, b"# Disk DescriptorFile\nversion=1\nhello world\n"),
    )
    .unwrap();
    assert_eq!(
        refusal(&bad),
        format!(
            "{}: not a valid vmdk image: the embedded descriptor has no CID line",
            bad.display()
        )
    );
    let text = descriptor(&vmdk).replace("parentCID=ffffffff", "parentCID=zz");
    std::fs::write(&bad, with_descriptor(&vmdk, text.as_bytes())).unwrap();
    assert_eq!(
        refusal(&bad),
        format!(
            "{}: not a valid vmdk image: the embedded descriptor's parentCID \"zz\" is not 1 to 8 hexadecimal digits",
            bad.display()
        )
    );
    // No descriptor at all (an extent of a disk described in another file).
    let mut b = vmdk.clone();
    b[28..36].fill(0);
    std::fs::write(&bad, &b).unwrap();
    assert_eq!(
        refusal(&bad),
        format!(
            "{}: not a valid vmdk image: no embedded descriptor (descriptorOffset 0, descriptorSize 20): an extent of a disk described in another file",
            bad.display()
        )
    );
}

#[test]
fn a_vmdk_footer_with_overhead_all_ones_is_refused() {
    let dir = tmp();
    let (vmdk, bad) = good(&dir, Format::Vmdk);
    // Footer marker, footer, end-of-stream marker: the footer is the second-last sector.
    let footer = vmdk.len() - 1024;
    let mut b = vmdk.clone();
    b[footer + 64..footer + 72].fill(0xff);
    std::fs::write(&bad, &b).unwrap();
    assert_eq!(
        refusal(&bad),
        format!(
            "{}: not a valid vmdk image: the footer's overHead 18446744073709551615 (0xffffffffffffffff) sectors is past the end of the {}-byte file",
            bad.display(),
            b.len()
        )
    );
}

#[test]
fn qcow2_headers_qemu_refuses_are_refused() {
    let dir = tmp();
    let (qcow2, bad) = good(&dir, Format::Qcow2);
    let set = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = qcow2.clone();
        edit(&mut b);
        std::fs::write(&bad, &b).unwrap();
        refusal(&bad)
    };
    let prefix = format!("{}: not a valid qcow2 image: ", bad.display());
    assert_eq!(
        set(&|b| b[100..104].copy_from_slice(&0x7fff_ffffu32.to_be_bytes())),
        format!(
            "{prefix}header_length 2147483647 (0x7fffffff) is larger than the 65536-byte cluster"
        )
    );
    assert_eq!(
        set(&|b| b[72..80].copy_from_slice(&(1u64 << 3).to_be_bytes())),
        format!("{prefix}the compression-type incompatible feature bit (3) is set, but compression_type is 0 (zlib)")
    );
    assert_eq!(
        set(&|b| b[104] = 1),
        format!("{prefix}compression_type is 1 (zstd), but the compression-type incompatible feature bit (3) is not set")
    );
    assert_eq!(
        set(&|b| {
            b[104] = 7;
            b[72..80].copy_from_slice(&(1u64 << 3).to_be_bytes());
        }),
        format!("{prefix}unknown compression_type 7")
    );
    assert_eq!(
        set(&|b| b[56..60].copy_from_slice(&0x10000u32.to_be_bytes())),
        format!("{prefix}refcount_table_clusters 65536 is over 128 (QEMU's limit: 8 MiB of refcount table)")
    );
    // zstd with its bit is what QEMU writes: opened (its compressed clusters, if any, are
    // refused when read).
    let mut b = qcow2.clone();
    b[104] = 1;
    b[72..80].copy_from_slice(&(1u64 << 3).to_be_bytes());
    std::fs::write(&bad, &b).unwrap();
    assert!(nanoimg_vdisk::open(&bad).is_ok());
}

#[test]
fn qcow2_tables_shared_within_the_map_are_refused() {
    let dir = tmp();
    let path = file(&dir, "two.qcow2");
    // Data in two L2 ranges (512 MiB each at 64 KiB clusters).
    let len = 1usize << 30;
    let pieces = [(0u64, vec![1u8; 4096]), (600 << 20, vec![2u8; 4096])];
    let mut sink = nanoimg_vdisk::writer(
        Format::Qcow2,
        std::fs::File::create(&path).unwrap(),
        len as u64,
        Some(common::survey_of_pieces(len as u64, &pieces)),
    )
    .unwrap();
    for (at, data) in &pieces {
        sink.write_at(*at, data).unwrap();
    }
    sink.finish(len as u64, &nanoimg_vdisk::RawHashes::of(&[]))
        .unwrap();
    let good = std::fs::read(&path).unwrap();
    let l1 = u64::from_be_bytes(good[40..48].try_into().unwrap()) as usize;
    let bad = file(&dir, "bad.qcow2");
    // Both L1 entries give the first L2 table.
    let mut b = good.clone();
    let first: [u8; 8] = b[l1..l1 + 8].try_into().unwrap();
    b[l1 + 8..l1 + 16].copy_from_slice(&first);
    std::fs::write(&bad, &b).unwrap();
    let l2 = u64::from_be_bytes(first) & 0x00ff_ffff_ffff_fe00;
    assert_eq!(
        refusal(&bad),
        format!(
            "{}: not a valid qcow2 image: L1 entries 0 and 1 both point to the L2 table at {l2:#x}",
            bad.display()
        )
    );
    // Two L2 entries give one host cluster: found when the map is walked.
    let mut b = good.clone();
    let l2 = l2 as usize;
    let e: [u8; 8] = b[l2..l2 + 8].try_into().unwrap();
    b[l2 + 8 * 5..l2 + 8 * 6].copy_from_slice(&e);
    std::fs::write(&bad, &b).unwrap();
    let disk = nanoimg_vdisk::open(&bad).unwrap();
    let err = disk.allocated().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a valid qcow2 image: guest clusters 0 and 5 both map to host offset {:#x}",
            bad.display(),
            u64::from_be_bytes(e) & 0x00ff_ffff_ffff_fe00
        )
    );
    // The good file's map: the two clusters, nothing else.
    let disk = nanoimg_vdisk::open(&path).unwrap();
    assert_eq!(
        disk.allocated().unwrap(),
        vec![0..65536, (600 << 20)..(600 << 20) + 65536]
    );
}

#[test]
fn a_vhd_with_a_damaged_footer_is_read_as_raw_with_a_note() {
    let dir = tmp();
    let (vhd, bad) = good(&dir, Format::Vhd);
    let at = vhd.len() - 512;
    let mut b = vhd.clone();
    b[at + 7] = b'X';
    std::fs::write(&bad, &b).unwrap();
    let disk = nanoimg_vdisk::open(&bad).unwrap();
    assert_eq!(disk.format(), Format::Raw);
    assert_eq!(disk.size(), b.len() as u64);
    assert_eq!(
        disk.notes(),
        vec![format!(
            "{}: the last 512 bytes look like a VHD footer (file format version 1.0, disk type 2) whose cookie is damaged (\"conectiX\", not \"conectix\"); reading the file as a raw disk (the footer is its last sector)",
            bad.display()
        )]
    );
    // A raw disk whose last sector is not a footer has no note; a good VHD neither.
    let raw = file(&dir, "plain.img");
    write_raw(&raw, &test_image(42, MIB));
    assert!(nanoimg_vdisk::open(&raw).unwrap().notes().is_empty());
    let good = file(&dir, "good.vhd");
    assert!(nanoimg_vdisk::open(&good).unwrap().notes().is_empty());
}

#[test]
fn the_maps_of_claimed_terabytes_are_small() {
    // An empty 1 TiB qcow2 made by qemu-img, and a raw file of 1 TiB with one extent.
    let dir = tmp();
    let q = file(&dir, "empty.qcow2");
    let o = qemu_img()
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&q)
        .arg("1T")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let disk = nanoimg_vdisk::open(&q).unwrap();
    assert_eq!(disk.size(), 1 << 40);
    assert!(disk.allocated().unwrap().is_empty());
    let raw = file(&dir, "big.img");
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(1 << 40).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[9u8; 8192], 5 << 30).unwrap();
    drop(f);
    let disk = nanoimg_vdisk::open(&raw).unwrap();
    let ranges = disk.allocated().unwrap();
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    assert!(ranges[0].start <= 5 << 30 && ranges[0].end >= (5 << 30) + 8192);
    assert!(ranges[0].end - ranges[0].start < 1 << 20, "{ranges:?}");
}
