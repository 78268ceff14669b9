//! QEMU copy-on-write version 3 (qcow2), written and read.
//!
//! Specification: QEMU's `docs/interop/qcow2.txt` (the version 3 header, L1/L2 tables,
//! refcounts); what `qemu-img check` verifies is in QEMU's `block/qcow2-refcount.c`.
//!
//! # What the writer stores
//!
//! * Cluster size 64 KiB (`cluster_bits` 16), 16-bit refcounts (`refcount_order` 4), no
//!   compression, encryption, backing file, snapshots or external data file; incompatible,
//!   compatible and autoclear features all 0.
//! * `header_length` 112: the 104 bytes of the version 3 header, the `compression_type`
//!   byte (0, zlib) and 7 bytes of padding, as `qemu-img create` (QEMU 5.1 and later) writes
//!   it. The only header extension is the end marker (no feature name table: no feature bit
//!   is ever set).
//! * `size` is the raw image's length exactly, not rounded. (QEMU itself works in 512-byte
//!   sectors and would see an image whose size is not a multiple of 512 as shorter; nanoimg's
//!   images are always whole sectors.)
//!
//! Layout, every part cluster-aligned and at a place that depends on the content only:
//!
//! | clusters | what |
//! |---|---|
//! | 0 | the header |
//! | 1 ..= n | the n data clusters, in increasing guest offset: a 64 KiB cluster of the raw image is stored iff it holds a non-zero byte (a partial last cluster is padded with zeros) |
//! | then | one L2 table for each 512 MiB of the disk that holds data, in guest order |
//! | then | the L1 table (`l1_size` = ceil(size / 512 MiB) entries; none, at offset 0, for an empty disk) |
//! | then | the refcount table, then the refcount blocks; every cluster of the file has refcount 1 |
//!
//! L1 and L2 entries carry the `COPIED` flag (bit 63), since every refcount is 1, as
//! `qemu-img check` expects. The file contains no identifier and no timestamp.
//!
//! The writer is given the image's [`Survey`] first (which clusters hold data), so the header,
//! whose offsets depend on how many clusters are stored, is known before the first byte, and
//! the file is written strictly front to back, hashed as it goes (never read back).
//!
//! Memory: one 64 KiB pending cluster and 8 bytes for each stored data cluster (at most
//! 8 bytes for every 64 KiB of virtual size, 128 KiB per GiB); the tables are written one
//! cluster at a time at [`Sink::finish`], after the data.
//!
//! # Reading
//!
//! [`Qcow2Reader`] reads versions 2 and 3 with any cluster size QEMU allows (512 B to 2 MiB).
//! It refuses, with the reason, what it cannot read faithfully on its own: a backing file,
//! encryption, an external data file, extended L2 entries, the `corrupt` bit, unknown
//! incompatible features, and compressed clusters (when read); and what QEMU refuses to
//! open: a `header_length` larger than a cluster, the compression-type feature bit without
//! a non-zlib `compression_type` (or the reverse, or an unknown type), a refcount table over
//! 8 MiB or an L1 table over 32 MiB, two L1 entries sharing an L2 table. The L1 table is
//! validated whole at open; an L2 entry is read and validated when its cluster is read, or
//! when [`VirtualDisk::allocated`] walks the tables (one read per L2 table; a zero L1 entry
//! skips its whole range). A data cluster
//! must start inside the file; its part past the end of the file reads as zeros (as in QEMU,
//! which may leave an image's last cluster short).

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::common::SurveyedUnits;
use crate::common::{bad, be32, be64, invalid_data, read_end, read_error, BlockBuffer, HashedFile};
use crate::{push_range, FileSums, Format, RawHashes, Sink, Survey, VdiskError, VirtualDisk};

const MAGIC: &[u8; 4] = b"QFI\xfb";
const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// Entries in an L2 table (and a refcount table cluster): 8 bytes each.
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts: entries in a refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
const HEADER_LENGTH: u32 = 112;
/// L1/L2 entry: the cluster's refcount is exactly one.
const COPIED: u64 = 1 << 63;
/// L2 entry: a compressed cluster.
const COMPRESSED: u64 = 1 << 62;
/// Host cluster offset bits of an L1 or standard L2 entry (bits 9-55).
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L1 entry bits that must be zero (1-8 and 56-62; bit 0 is reserved too).
const L1_RESERVED: u64 = 0x7f00_0000_0000_01ff;
/// Standard L2 entry bits that must be zero (1-8, 56-61).
const L2_RESERVED: u64 = 0x3f00_0000_0000_01fe;
/// QEMU's largest refcount table (`QCOW_MAX_REFTABLE_SIZE`): 8 MiB.
const MAX_REFCOUNT_TABLE: u64 = 8 << 20;
/// QEMU's largest L1 table (`QCOW_MAX_L1_SIZE`, 32 MiB) in entries.
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;

/// Where everything goes in a qcow2 file storing the guest clusters `data` (increasing):
/// known before the first byte, from the image's [`Survey`].
#[derive(Debug)]
struct Layout {
    l1_size: u64,
    l1_offset: u64,
    /// Host cluster of the first L2 table (the L2 tables follow the data).
    first_l2: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u64,
    first_refcount_block: u64,
    refcount_blocks: u64,
    /// Clusters in the file.
    total: u64,
}

impl Layout {
    fn new(virtual_size: u64, data: &[u64]) -> Layout {
        let n = data.len() as u64;
        let l1_size = l1_entries(virtual_size);
        let mut l2_tables = 0u64;
        let mut last = None;
        for &c in data {
            if last != Some(c / L2_ENTRIES) {
                l2_tables += 1;
                last = Some(c / L2_ENTRIES);
            }
        }
        let first_l2 = 1 + n;
        let after_l2 = first_l2 + l2_tables;
        // An empty disk has no L1 table, and offset 0 for it (as qemu-img writes it).
        let l1_offset = if l1_size == 0 { 0 } else { after_l2 * CLUSTER };
        let before = after_l2 + (l1_size * 8).div_ceil(CLUSTER);
        // Refcounts: the table, then the blocks, must count every cluster including
        // themselves.
        let (mut table_clusters, mut blocks) = (1u64, 1u64);
        loop {
            let total = before + table_clusters + blocks;
            let need_blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let need_table = (need_blocks * 8).div_ceil(CLUSTER);
            if need_blocks <= blocks && need_table <= table_clusters {
                break;
            }
            blocks = blocks.max(need_blocks);
            table_clusters = table_clusters.max(need_table);
        }
        Layout {
            l1_size,
            l1_offset,
            first_l2,
            refcount_table_offset: before * CLUSTER,
            refcount_table_clusters: table_clusters,
            first_refcount_block: before + table_clusters,
            refcount_blocks: blocks,
            total: before + table_clusters + blocks,
        }
    }

    /// The header cluster's meaningful bytes.
    fn header(&self, virtual_size: u64) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LENGTH as usize + 8];
        h[0..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        // 8: backing_file_offset 0, 16: backing_file_size 0.
        h[20..24].copy_from_slice(&CLUSTER_BITS.to_be_bytes());
        h[24..32].copy_from_slice(&virtual_size.to_be_bytes());
        // 32: crypt_method 0.
        h[36..40].copy_from_slice(&(self.l1_size as u32).to_be_bytes());
        h[40..48].copy_from_slice(&self.l1_offset.to_be_bytes());
        h[48..56].copy_from_slice(&self.refcount_table_offset.to_be_bytes());
        h[56..60].copy_from_slice(&(self.refcount_table_clusters as u32).to_be_bytes());
        // 60: nb_snapshots 0, 64: snapshots_offset 0, 72/80/88: features 0.
        h[96..100].copy_from_slice(&4u32.to_be_bytes());
        h[100..104].copy_from_slice(&HEADER_LENGTH.to_be_bytes());
        // 104: compression_type 0 (zlib), 105..112 padding; 112: end of extensions (type 0,
        // length 0).
        h
    }
}

/// Writes a qcow2 v3 image (see the module documentation for the layout) strictly front to
/// back: the [`Survey`] says which clusters hold data, so the header is known first.
#[derive(Debug)]
pub struct Qcow2Writer {
    out: HashedFile,
    blocks: BlockBuffer,
    /// The guest clusters holding data, increasing (host cluster `1 + i` holds the `i`-th).
    data: SurveyedUnits,
    layout: Layout,
}

impl Qcow2Writer {
    pub fn new(out: File, virtual_size: u64, survey: Survey) -> io::Result<Qcow2Writer> {
        // QEMU's limit on the L1 table (32 MiB) allows far more than any u64 size at 64 KiB
        // clusters; the L1 size field is 32 bits.
        if l1_entries(virtual_size) > u64::from(u32::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{virtual_size} bytes is too large for a qcow2 image"),
            ));
        }
        let data = survey.map.units(CLUSTER);
        let layout = Layout::new(virtual_size, &data);
        let mut out = HashedFile::new(out)?;
        out.append(&layout.header(virtual_size))?;
        out.pad_to(CLUSTER)?;
        Ok(Qcow2Writer {
            out,
            blocks: BlockBuffer::new(CLUSTER, virtual_size),
            data: SurveyedUnits::new(data, "cluster"),
            layout,
        })
    }

    fn store(
        out: &mut HashedFile,
        data: &mut SurveyedUnits,
        index: u64,
        cluster: &[u8],
    ) -> io::Result<()> {
        let slot = data.slot(index)?;
        out.pad_to((1 + slot) * CLUSTER)?;
        out.append(cluster)
    }
}

/// Entries in the L1 table of a disk of `size` bytes.
fn l1_entries(size: u64) -> u64 {
    size.div_ceil(CLUSTER * L2_ENTRIES)
}

impl Sink for Qcow2Writer {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let (out, list) = (&mut self.out, &mut self.data);
        self.blocks
            .write(offset, data, |i, c| Qcow2Writer::store(out, list, i, c))
    }

    fn finish(mut self: Box<Self>, len: u64, _raw: &RawHashes) -> io::Result<FileSums> {
        {
            let (out, list) = (&mut self.out, &mut self.data);
            self.blocks.finish(Format::Qcow2, len, |i, c| {
                Qcow2Writer::store(out, list, i, c)
            })?;
        }
        // Clusters never given hold a file's zeros.
        self.out.pad_to((1 + self.data.len()) * CLUSTER)?;
        let Qcow2Writer {
            mut out,
            data,
            layout: l,
            ..
        } = *self;
        let data = data.units;

        // L2 tables: one for each L1 index with data, from host cluster 1 + n.
        let mut l1 = vec![0u64; l.l1_size as usize];
        let mut next = l.first_l2;
        let mut table = vec![0u8; CLUSTER as usize];
        let mut i = 0usize;
        while i < data.len() {
            let l1_index = data[i] / L2_ENTRIES;
            table.fill(0);
            while i < data.len() && data[i] / L2_ENTRIES == l1_index {
                let slot = (data[i] % L2_ENTRIES) as usize * 8;
                let host = (1 + i as u64) * CLUSTER;
                table[slot..slot + 8].copy_from_slice(&(host | COPIED).to_be_bytes());
                i += 1;
            }
            out.append(&table)?;
            l1[l1_index as usize] = (next * CLUSTER) | COPIED;
            next += 1;
        }

        // The L1 table.
        let l1_bytes: Vec<u8> = l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        out.append(&l1_bytes)?;
        out.pad_to(l.refcount_table_offset)?;

        // The refcount table, then the blocks: every cluster of the file has refcount 1.
        let mut rt = vec![0u8; (l.refcount_table_clusters * CLUSTER) as usize];
        for b in 0..l.refcount_blocks {
            let at = b as usize * 8;
            rt[at..at + 8].copy_from_slice(&((l.first_refcount_block + b) * CLUSTER).to_be_bytes());
        }
        out.append(&rt)?;
        drop(rt);
        for b in 0..l.refcount_blocks {
            table.fill(0);
            for (k, slot) in table.chunks_exact_mut(2).enumerate() {
                if b * REFCOUNTS_PER_BLOCK + (k as u64) < l.total {
                    slot.copy_from_slice(&1u16.to_be_bytes());
                }
            }
            out.append(&table)?;
        }
        debug_assert_eq!(out.position(), l.total * CLUSTER);
        out.finish()
    }
}

/// Reads a qcow2 image (see the module documentation for what it accepts).
#[derive(Debug)]
pub struct Qcow2Reader {
    file: File,
    path: PathBuf,
    file_len: u64,
    version: u32,
    size: u64,
    cluster_bits: u32,
    /// Validated L1 entries: the L2 table's offset, or 0.
    l1: Vec<u64>,
}

impl Qcow2Reader {
    pub fn open(file: File, path: &Path) -> Result<Qcow2Reader, VdiskError> {
        let read = read_error(path);
        let file_len = file.metadata().map_err(read)?.len();
        let h = read_header(&file, path, file_len)?;
        let (version, cluster_bits) = version_and_cluster_bits(&h, path)?;
        let cluster = 1u64 << cluster_bits;
        if version == 3 {
            check_v3_header(&h, file_len, cluster, path)?;
        }
        let size = check_no_backing_or_encryption(&h, path)?;
        let l1_at = l1_place(&h, cluster_bits, size, file_len, path)?;
        let l1 = read_l1(&file, path, l1_at, cluster, file_len)?;
        check_l2_tables_unshared(&l1, path)?;
        Ok(Qcow2Reader {
            file,
            path: path.to_path_buf(),
            file_len,
            version,
            size,
            cluster_bits,
            l1,
        })
    }

    fn invalid(&self, reason: String) -> io::Error {
        invalid_data(&self.path, Format::Qcow2, reason)
    }

    /// Where guest cluster `index` is in the file, or None for zeros.
    fn lookup(&self, index: u64) -> io::Result<Option<u64>> {
        let l2_bits = self.cluster_bits - 3;
        let Some(&l2) = self.l1.get((index >> l2_bits) as usize) else {
            return Err(self.invalid(format!("guest cluster {index} has no L1 entry")));
        };
        if l2 == 0 {
            return Ok(None);
        }
        let slot = index & ((1 << l2_bits) - 1);
        let mut e = [0u8; 8];
        self.file.read_exact_at(&mut e, l2 + slot * 8)?;
        self.decode(index, u64::from_be_bytes(e))
    }

    /// Where guest cluster `index`, whose L2 entry is `e`, is in the file, or None for
    /// zeros.
    fn decode(&self, index: u64, e: u64) -> io::Result<Option<u64>> {
        if e & COMPRESSED != 0 {
            return Err(self.invalid(format!(
                "guest cluster {index} is compressed (compressed clusters are not supported)"
            )));
        }
        if e & L2_RESERVED != 0 {
            return Err(self.invalid(format!(
                "L2 entry of guest cluster {index} ({e:#018x}) has reserved bits set"
            )));
        }
        if self.version >= 3 && e & 1 != 0 {
            return Ok(None);
        }
        if self.version < 3 && e & 1 != 0 {
            return Err(self.invalid(format!(
                "L2 entry of guest cluster {index} has the zero flag in a version 2 image"
            )));
        }
        let off = e & OFFSET_MASK;
        if off == 0 {
            return Ok(None);
        }
        if off & ((1 << self.cluster_bits) - 1) != 0 {
            return Err(self.invalid(format!(
                "guest cluster {index}: host offset {off:#x} is not cluster-aligned"
            )));
        }
        if off >= self.file_len {
            return Err(self.invalid(format!(
                "guest cluster {index}: host offset {off:#x} is past the end of the {}-byte file",
                self.file_len
            )));
        }
        Ok(Some(off))
    }
}

/// Where the L1 table is: its file offset, and the entries the disk needs.
#[derive(Clone, Copy)]
struct L1Place {
    offset: u64,
    needed: u64,
}

/// The first 105 bytes of the `file_len`-byte file (as many as it has), checked to be at
/// least a version 2 header with the qcow2 magic.
fn read_header(file: &File, path: &Path, file_len: u64) -> Result<[u8; 105], VdiskError> {
    let bad = bad(path, Format::Qcow2);
    let read = read_error(path);
    if file_len < 72 {
        return Err(bad(format!(
            "the file is {file_len} bytes, shorter than a qcow2 header (72)"
        )));
    }
    let mut h = [0u8; 105];
    let n = (file_len.min(105)) as usize;
    file.read_exact_at(&mut h[..n], 0).map_err(read)?;
    if &h[0..4] != MAGIC {
        return Err(bad("no qcow2 magic".into()));
    }
    Ok(h)
}

/// Header `h`'s version (2 or 3) and cluster_bits (9 to 21).
fn version_and_cluster_bits(h: &[u8], path: &Path) -> Result<(u32, u32), VdiskError> {
    let bad = bad(path, Format::Qcow2);
    let version = be32(h, 4);
    if version != 2 && version != 3 {
        return Err(bad(format!("unsupported qcow2 version {version}")));
    }
    let cluster_bits = be32(h, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(bad(format!(
            "cluster_bits {cluster_bits} is outside 9..=21"
        )));
    }
    Ok((version, cluster_bits))
}

/// Checks the fields a version 3 header `h` adds, in a `file_len`-byte file of
/// `cluster`-byte clusters.
fn check_v3_header(h: &[u8], file_len: u64, cluster: u64, path: &Path) -> Result<(), VdiskError> {
    let bad = bad(path, Format::Qcow2);
    if file_len < 104 {
        return Err(bad(format!(
            "the file is {file_len} bytes, shorter than a qcow2 version 3 header (104)"
        )));
    }
    let header_length = be32(h, 100);
    if header_length < 104 {
        return Err(bad(format!(
            "header_length {header_length} is less than 104"
        )));
    }
    // As QEMU: the header and its extensions live in the first cluster.
    if u64::from(header_length) > cluster {
        return Err(bad(format!(
            "header_length {header_length} ({header_length:#x}) is larger than the {cluster}-byte cluster"
        )));
    }
    check_incompatible_features(h, header_length, path)?;
    let refcount_order = be32(h, 96);
    if refcount_order > 6 {
        return Err(bad(format!("refcount_order {refcount_order} is over 6")));
    }
    Ok(())
}

/// Checks a version 3 header `h`'s incompatible features, and its compression type
/// (present if `header_length` is over 104).
fn check_incompatible_features(
    h: &[u8],
    header_length: u32,
    path: &Path,
) -> Result<(), VdiskError> {
    let bad = bad(path, Format::Qcow2);
    let incompatible = be64(h, 72);
    // Bit 0 (dirty: refcounts may be stale) does not affect the data.
    let refused = [
        (1u64 << 1, "the image is marked corrupt"),
        (1 << 2, "it uses an external data file (not supported)"),
        (1 << 4, "it uses extended L2 entries (not supported)"),
    ];
    for (bit, why) in refused {
        if incompatible & bit != 0 {
            return Err(bad(why.into()));
        }
    }
    let unknown = incompatible & !0b1_1111;
    if unknown != 0 {
        return Err(bad(format!("unknown incompatible features {unknown:#x}")));
    }
    // Bit 3 says the compression_type byte (offset 104, present when header_length
    // is over 104; zlib when absent) is not zlib. QEMU refuses either without the
    // other, and types it does not know. (The type only matters for compressed
    // clusters, which are refused when read.)
    let compression_type = if header_length > 104 { h[104] } else { 0 };
    let bit = incompatible & (1 << 3) != 0;
    match (compression_type, bit) {
        (0, false) | (1, true) => Ok(()),
        (0, true) => Err(bad(
            "the compression-type incompatible feature bit (3) is set, but compression_type is 0 (zlib)"
                .into(),
        )),
        (1, false) => Err(bad(
            "compression_type is 1 (zstd), but the compression-type incompatible feature bit (3) is not set"
                .into(),
        )),
        (t, _) => Err(bad(format!("unknown compression_type {t}"))),
    }
}

/// Checks that header `h` gives no backing file and no encryption; gives the disk size.
fn check_no_backing_or_encryption(h: &[u8], path: &Path) -> Result<u64, VdiskError> {
    let bad = bad(path, Format::Qcow2);
    let backing = be64(h, 8);
    if backing != 0 {
        return Err(bad(
            "the image has a backing file (reading through a backing chain is not supported)"
                .into(),
        ));
    }
    let size = be64(h, 24);
    if be32(h, 32) != 0 {
        return Err(bad("the image is encrypted (not supported)".into()));
    }
    Ok(size)
}

/// Where header `h` puts the L1 table of a `size`-byte disk, after checking the refcount
/// table's and the L1 table's size and place in the `file_len`-byte file.
fn l1_place(
    h: &[u8],
    cluster_bits: u32,
    size: u64,
    file_len: u64,
    path: &Path,
) -> Result<L1Place, VdiskError> {
    let bad = bad(path, Format::Qcow2);
    let cluster = 1u64 << cluster_bits;
    // QEMU's limits on the tables (`QCOW_MAX_REFTABLE_SIZE`, `QCOW_MAX_L1_SIZE`).
    let refcount_table_offset = be64(h, 48);
    let refcount_table_clusters = u64::from(be32(h, 56));
    let max_refcount_clusters = MAX_REFCOUNT_TABLE >> cluster_bits;
    if refcount_table_clusters > max_refcount_clusters {
        return Err(bad(format!(
            "refcount_table_clusters {refcount_table_clusters} is over {max_refcount_clusters} (QEMU's limit: 8 MiB of refcount table)"
        )));
    }
    if refcount_table_offset & (cluster - 1) != 0 {
        return Err(bad(format!(
            "refcount table offset {refcount_table_offset:#x} is not cluster-aligned"
        )));
    }
    let l1_size = u64::from(be32(h, 36));
    if l1_size > MAX_L1_ENTRIES {
        return Err(bad(format!(
            "l1_size {l1_size} is over {MAX_L1_ENTRIES} (QEMU's limit: 32 MiB of L1 table)"
        )));
    }
    let l1_offset = be64(h, 40);
    let per_l1 = 1u64 << (cluster_bits + cluster_bits - 3);
    let needed = size.div_ceil(per_l1);
    if l1_size < needed {
        return Err(bad(format!(
            "l1_size {l1_size} is too small for a {size}-byte disk (needs {needed})"
        )));
    }
    if needed > 0 {
        if l1_offset & (cluster - 1) != 0 {
            return Err(bad(format!(
                "L1 table offset {l1_offset:#x} is not cluster-aligned"
            )));
        }
        if l1_offset == 0
            || l1_offset
                .checked_add(l1_size * 8)
                .is_none_or(|e| e > file_len)
        {
            return Err(bad(format!(
                "L1 table ({l1_size} entries at {l1_offset:#x}) is not inside the {file_len}-byte file"
            )));
        }
    }
    Ok(L1Place {
        offset: l1_offset,
        needed,
    })
}

/// Reads the L1 entries the disk needs: each L2 table's offset (checked to be aligned and
/// in the `file_len`-byte file), or 0.
fn read_l1(
    file: &File,
    path: &Path,
    at: L1Place,
    cluster: u64,
    file_len: u64,
) -> Result<Vec<u64>, VdiskError> {
    let bad = bad(path, Format::Qcow2);
    let read = read_error(path);
    let mut raw = vec![0u8; (at.needed * 8) as usize];
    file.read_exact_at(&mut raw, at.offset).map_err(read)?;
    let mut l1 = Vec::with_capacity(at.needed as usize);
    for (i, e) in raw.chunks_exact(8).enumerate() {
        let e = be64(e, 0);
        if e & L1_RESERVED != 0 {
            return Err(bad(format!(
                "L1 entry {i} ({e:#018x}) has reserved bits set"
            )));
        }
        let off = e & OFFSET_MASK;
        if off != 0 {
            if off & (cluster - 1) != 0 {
                return Err(bad(format!(
                    "L1 entry {i}: L2 table offset {off:#x} is not cluster-aligned"
                )));
            }
            if off.checked_add(cluster).is_none_or(|e| e > file_len) {
                return Err(bad(format!(
                    "L1 entry {i}: L2 table at {off:#x} is past the end of the {file_len}-byte file"
                )));
            }
        }
        l1.push(off);
    }
    Ok(l1)
}

/// Checks that each L2 table serves one L1 entry (QEMU never shares one within a table),
/// so the tables a whole-disk read walks are tables the file holds.
fn check_l2_tables_unshared(l1: &[u64], path: &Path) -> Result<(), VdiskError> {
    let mut tables: Vec<(u64, usize)> = l1
        .iter()
        .enumerate()
        .filter(|(_, &off)| off != 0)
        .map(|(i, &off)| (off, i))
        .collect();
    tables.sort_unstable();
    if let Some(w) = tables.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(bad(path, Format::Qcow2)(format!(
            "L1 entries {} and {} both point to the L2 table at {:#x}",
            w[0].1.min(w[1].1),
            w[0].1.max(w[1].1),
            w[0].0
        )));
    }
    Ok(())
}

impl VirtualDisk for Qcow2Reader {
    fn format(&self) -> Format {
        Format::Qcow2
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = read_end(offset, buf.len(), self.size)?;
        let cluster = 1u64 << self.cluster_bits;
        let mut at = offset;
        while at < end {
            let index = at >> self.cluster_bits;
            let within = at & (cluster - 1);
            let to = ((index + 1) << self.cluster_bits).min(end);
            let out = &mut buf[(at - offset) as usize..(to - offset) as usize];
            match self.lookup(index)? {
                None => out.fill(0),
                Some(host) => {
                    let from = host + within;
                    let have = self.file_len.saturating_sub(from).min(out.len() as u64) as usize;
                    self.file.read_exact_at(&mut out[..have], from)?;
                    out[have..].fill(0);
                }
            }
            at = to;
        }
        Ok(())
    }

    /// The clusters the L2 tables map: each L1 entry with a table costs one read of it,
    /// one without skips its whole range (512 MiB at 64 KiB clusters). Two guest clusters
    /// mapped to one host cluster are an error (QEMU never writes that), so the data read
    /// is data the file holds.
    fn allocated(&self) -> io::Result<Vec<Range<u64>>> {
        let cluster = 1u64 << self.cluster_bits;
        let l2_bits = self.cluster_bits - 3;
        let mut out = Vec::new();
        if self.size == 0 {
            return Ok(out);
        }
        let last = (self.size - 1) >> self.cluster_bits;
        let mut hosts: Vec<(u64, u64)> = Vec::new();
        let mut table = vec![0u8; cluster as usize];
        for (i, &l2) in self.l1.iter().enumerate() {
            if l2 == 0 {
                continue;
            }
            self.file.read_exact_at(&mut table, l2)?;
            for (slot, e) in table.chunks_exact(8).enumerate() {
                let index = ((i as u64) << l2_bits) + slot as u64;
                if index > last {
                    break;
                }
                if let Some(host) = self.decode(index, be64(e, 0))? {
                    hosts.push((host, index));
                    let start = index << self.cluster_bits;
                    push_range(&mut out, start..(start + cluster).min(self.size));
                }
            }
        }
        hosts.sort_unstable();
        if let Some(w) = hosts.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(self.invalid(format!(
                "guest clusters {} and {} both map to host offset {:#x}",
                w[0].1.min(w[1].1),
                w[0].1.max(w[1].1),
                w[0].0
            )));
        }
        Ok(out)
    }
}
