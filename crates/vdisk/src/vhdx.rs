//! VHDX, dynamic (Hyper-V's format), written and read.
//!
//! Specification: Microsoft's [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format"; what QEMU
//! checks when it opens and checks one: QEMU's `block/vhdx.c` and `block/vhdx.h`. Checksums
//! are CRC-32C (Castagnoli), from the `crc32c` crate.
//!
//! # What the writer stores
//!
//! | file offset | what |
//! |---|---|
//! | 0 | file identifier: `"vhdxfile"`, creator `"nanoimg"` in UTF-16LE |
//! | 64 KiB, 128 KiB | the two headers, sequence numbers 1 and 2, otherwise identical |
//! | 192 KiB, 256 KiB | the two identical region tables: BAT and metadata, both required |
//! | 1 MiB | the log, 1 MiB, never written (a hole): the log GUID is zero, so it is empty |
//! | 2 MiB | the BAT, its length rounded up to a MiB |
//! | then | the metadata region, 1 MiB: the table, and the items from 64 KiB in |
//! | then | payload blocks, 1 MiB each and 1 MiB-aligned, in increasing virtual offset |
//!
//! This is the layout `qemu-img create -f vhdx` uses (log, then BAT, then metadata), with the
//! payload right after the metadata instead of after 5 MiB of slack.
//!
//! * Block size 1 MiB (the smallest allowed, so holes cost little); logical sector size 512;
//!   physical sector size 4096 (Hyper-V's default for a new VHDX); LeaveBlocksAllocated 0,
//!   HasParent 0. Chunk ratio 2²³ × 512 / 1 MiB = 4096: every 4097th BAT entry is a sector
//!   bitmap entry, SB_BLOCK_NOT_PRESENT (0) as a non-differencing file requires.
//! * A 1 MiB block of the raw image is stored iff it holds a non-zero byte (a partial last
//!   block is padded with zeros): its BAT entry is PAYLOAD_BLOCK_FULLY_PRESENT (6) with its
//!   offset. Every other block is PAYLOAD_BLOCK_ZERO (2) with offset 0: the specification
//!   leaves a PAYLOAD_BLOCK_NOT_PRESENT block's contents undefined in a dynamic file, while
//!   ZERO defines them as zeros (qemu-img's default, `block_state_zero=on`, does the same).
//! * Virtual disk size: the raw image's length rounded up to a multiple of 512 (VHDX requires
//!   a whole number of logical sectors; nanoimg's images already are); at most 64 TiB.
//! * Metadata items and their flags as QEMU writes them: File Parameters (required), Virtual
//!   Disk Size, Page 83 Data (the virtual disk ID), Logical and Physical Sector Size
//!   (required, virtual disk).
//! * Identifiers: FileWriteGuid, DataWriteGuid and the virtual disk ID (Page 83 Data) are
//!   each the first 16 bytes of SHA-256(label ‖ the image's layout id, [`Survey`]), with the
//!   labels `"nanoimg vhdx file-write-guid"`, `"nanoimg vhdx data-write-guid"` and
//!   `"nanoimg vhdx virtual-disk-id"`; those 16 bytes are the GUID as stored (Data1-Data3
//!   little-endian), with byte 7 = `0x4?` and byte 8 = `0b10??????` so that it reads as an
//!   RFC 4122 version 4 GUID. LogGuid is zero. The format has no timestamps.
//!
//! The writer is given the image's [`Survey`] first (which blocks hold data, the layout id),
//! so everything before the payload is written first and the file goes strictly front to
//! back, hashed as it is written (never read back).
//!
//! Memory: one 1 MiB pending block and 8 bytes for each stored block (8 bytes per MiB of
//! virtual size at most); the BAT is written 1 MiB at a time.
//!
//! # Reading
//!
//! [`VhdxReader`] takes the current header (valid checksum, signature and version, the higher
//! sequence number; equal numbers only if both headers are the same), refuses a non-empty log
//! (replaying it is not supported: its reason says so), reads region table 1 (or 2 if 1 is
//! damaged), the metadata and the BAT, validating every offset, length, flag and state
//! against the file and the specification. Differencing files are refused, and so are
//! payload blocks that overlap (no writer shares one), so a whole-disk read
//! ([`VirtualDisk::allocated`]: the blocks present) reads what the file holds.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::common::{
    bad, derived_id, le16, le32, le64, read_end, read_error, BlockBuffer, HashedFile, SurveyedUnits,
};
use crate::{FileSums, Format, RawHashes, Sink, Survey, VdiskError, VirtualDisk};

const KIB64: u64 = 64 * 1024;
const MIB: u64 = 1 << 20;
const BLOCK: u64 = MIB;
const LOGICAL_SECTOR: u64 = 512;
const PHYSICAL_SECTOR: u32 = 4096;
/// The largest virtual disk: 64 TiB.
pub const MAX_SIZE: u64 = 64 << 40;
/// Sectors covered by one sector bitmap block (2²³).
const SECTORS_PER_BITMAP: u64 = 1 << 23;

const HEADER1: u64 = KIB64;
const HEADER2: u64 = 2 * KIB64;
const REGION1: u64 = 3 * KIB64;
const REGION2: u64 = 4 * KIB64;
const LOG_OFFSET: u64 = MIB;
const LOG_LENGTH: u64 = MIB;
const BAT_OFFSET: u64 = 2 * MIB;
const METADATA_LENGTH: u64 = MIB;
const HEADER_SIZE: usize = 4096;

const PAYLOAD_NOT_PRESENT: u64 = 0;
const PAYLOAD_UNDEFINED: u64 = 1;
const PAYLOAD_ZERO: u64 = 2;
const PAYLOAD_UNMAPPED: u64 = 3;
const PAYLOAD_FULLY_PRESENT: u64 = 6;
const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;
const SB_NOT_PRESENT: u64 = 0;

/// A GUID as VHDX stores it: Data1, Data2, Data3 little-endian, Data4 as is.
const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

const BAT_GUID: [u8; 16] = guid(
    0x2dc2_7766,
    0xf623,
    0x4200,
    [0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08],
);
const METADATA_GUID: [u8; 16] = guid(
    0x8b7c_a206,
    0x4790,
    0x4b9a,
    [0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e],
);
const FILE_PARAMETERS: [u8; 16] = guid(
    0xcaa1_6737,
    0xfa36,
    0x4d43,
    [0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b],
);
const VIRTUAL_DISK_SIZE: [u8; 16] = guid(
    0x2fa5_4224,
    0xcd1b,
    0x4876,
    [0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8],
);
const PAGE83: [u8; 16] = guid(
    0xbeca_12ab,
    0xb2e6,
    0x4523,
    [0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46],
);
const LOGICAL_SECTOR_SIZE: [u8; 16] = guid(
    0x8141_bf1d,
    0xa96f,
    0x4709,
    [0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f],
);
const PHYSICAL_SECTOR_SIZE: [u8; 16] = guid(
    0xcda3_48c7,
    0x445d,
    0x4471,
    [0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56],
);
const PARENT_LOCATOR: [u8; 16] = guid(
    0xa8d3_5f2d,
    0xb30b,
    0x454d,
    [0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c],
);

const META_IS_VIRTUAL_DISK: u32 = 2;
const META_IS_REQUIRED: u32 = 4;

/// A GUID derived from the image's layout id (see the module documentation).
fn derived_guid(label: &str, layout_id: &[u8; 32]) -> [u8; 16] {
    let mut g = derived_id(label, layout_id);
    g[7] = (g[7] & 0x0f) | 0x40;
    g[8] = (g[8] & 0x3f) | 0x80;
    g
}

/// `buf` with its CRC-32C written at `at` (computed with the field zero).
fn set_checksum(buf: &mut [u8], at: usize) {
    buf[at..at + 4].fill(0);
    let c = crc32c::crc32c(buf);
    buf[at..at + 4].copy_from_slice(&c.to_le_bytes());
}

fn checksum_ok(buf: &[u8], at: usize) -> bool {
    let stored = le32(buf, at);
    let mut copy = buf.to_vec();
    copy[at..at + 4].fill(0);
    crc32c::crc32c(&copy) == stored
}

/// The geometry of a VHDX of `virtual_size` bytes with 1 MiB blocks and 512-byte sectors.
#[derive(Clone, Copy, Debug)]
struct Layout {
    data_blocks: u64,
    bat_entries: u64,
    bat_length: u64,
    metadata_offset: u64,
    data_offset: u64,
}

/// Entries in the BAT of a non-differencing file.
fn bat_entries(data_blocks: u64, chunk_ratio: u64) -> u64 {
    if data_blocks == 0 {
        0
    } else {
        data_blocks + (data_blocks - 1) / chunk_ratio
    }
}

impl Layout {
    fn new(virtual_size: u64) -> Layout {
        let data_blocks = virtual_size.div_ceil(BLOCK);
        let chunk_ratio = SECTORS_PER_BITMAP * LOGICAL_SECTOR / BLOCK;
        let bat_entries = bat_entries(data_blocks, chunk_ratio);
        let bat_length = (bat_entries * 8).div_ceil(MIB).max(1) * MIB;
        let metadata_offset = BAT_OFFSET + bat_length;
        Layout {
            data_blocks,
            bat_entries,
            bat_length,
            metadata_offset,
            data_offset: metadata_offset + METADATA_LENGTH,
        }
    }
}

/// Writes a dynamic VHDX (see the module documentation), strictly front to back: the
/// [`Survey`] says which blocks hold data, so the BAT and the identifiers are written first.
#[derive(Debug)]
pub struct VhdxWriter {
    out: HashedFile,
    blocks: BlockBuffer,
    /// The virtual blocks holding data, increasing (payload slot `i` holds the `i`-th).
    stored: SurveyedUnits,
    /// Where the payload begins.
    payload: u64,
}

/// The VHDX virtual size for a raw image of `len` bytes: `len` rounded up to 512.
pub fn virtual_size(len: u64) -> io::Result<u64> {
    len.checked_next_multiple_of(LOGICAL_SECTOR)
        .filter(|&s| s <= MAX_SIZE)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes is larger than a VHDX can be (64 TiB)"),
            )
        })
}

impl VhdxWriter {
    pub fn new(out: File, virtual_size: u64, survey: Survey) -> io::Result<VhdxWriter> {
        let size = self::virtual_size(virtual_size)?;
        let stored = survey.map.units(BLOCK);
        let mut out = HashedFile::new(out)?;
        front(
            &mut out,
            Layout::new(size),
            size,
            &stored,
            &survey.layout_id,
        )?;
        Ok(VhdxWriter {
            payload: out.position(),
            out,
            blocks: BlockBuffer::new(BLOCK, virtual_size),
            stored: SurveyedUnits::new(stored, "block"),
        })
    }

    fn store(
        out: &mut HashedFile,
        stored: &mut SurveyedUnits,
        payload: u64,
        index: u64,
        block: &[u8],
    ) -> io::Result<()> {
        let slot = stored.slot(index)?;
        out.pad_to(payload + slot * BLOCK)?;
        out.append(block)
    }
}

/// Everything before the payload, in file order: the file identifier, the headers, the
/// region tables, the log (a hole), the BAT, the metadata region.
fn front(
    out: &mut HashedFile,
    l: Layout,
    size: u64,
    stored: &[u64],
    layout_id: &[u8; 32],
) -> io::Result<()> {
    write_identifier(out)?;
    write_headers(out, layout_id)?;
    write_region_tables(out, l)?;
    // The log (LOG_OFFSET .. BAT_OFFSET) stays a hole: it is empty. The BAT, a MiB
    // at a time.
    write_bat(out, l, stored)?;
    write_metadata(out, l, size, layout_id)
}

/// Writes the file identifier.
fn write_identifier(out: &mut HashedFile) -> io::Result<()> {
    let mut id = vec![0u8; KIB64 as usize];
    id[0..8].copy_from_slice(b"vhdxfile");
    for (i, u) in "nanoimg".encode_utf16().enumerate() {
        id[8 + 2 * i..10 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    out.append(&id)?;
    Ok(())
}

/// Writes the two headers, sequence numbers 1 and 2, their GUIDs derived from `layout_id`.
fn write_headers(out: &mut HashedFile, layout_id: &[u8; 32]) -> io::Result<()> {
    let file_write = derived_guid("nanoimg vhdx file-write-guid", layout_id);
    let data_write = derived_guid("nanoimg vhdx data-write-guid", layout_id);
    for (seq, at) in [(1u64, HEADER1), (2, HEADER2)] {
        let mut h = vec![0u8; HEADER_SIZE];
        h[0..4].copy_from_slice(b"head");
        h[8..16].copy_from_slice(&seq.to_le_bytes());
        h[16..32].copy_from_slice(&file_write);
        h[32..48].copy_from_slice(&data_write);
        // 48: LogGuid zero; 64: LogVersion 0.
        h[66..68].copy_from_slice(&1u16.to_le_bytes());
        h[68..72].copy_from_slice(&(LOG_LENGTH as u32).to_le_bytes());
        h[72..80].copy_from_slice(&LOG_OFFSET.to_le_bytes());
        set_checksum(&mut h, 4);
        out.pad_to(at)?;
        out.append(&h)?;
    }
    Ok(())
}

/// Writes the two region tables: the BAT and the metadata region, both required.
fn write_region_tables(out: &mut HashedFile, l: Layout) -> io::Result<()> {
    let mut rt = vec![0u8; KIB64 as usize];
    rt[0..4].copy_from_slice(b"regi");
    rt[8..12].copy_from_slice(&2u32.to_le_bytes());
    let regions = [
        (BAT_GUID, BAT_OFFSET, l.bat_length),
        (METADATA_GUID, l.metadata_offset, METADATA_LENGTH),
    ];
    for (i, (g, off, length)) in regions.into_iter().enumerate() {
        let e = 16 + 32 * i;
        rt[e..e + 16].copy_from_slice(&g);
        rt[e + 16..e + 24].copy_from_slice(&off.to_le_bytes());
        rt[e + 24..e + 28].copy_from_slice(&(length as u32).to_le_bytes());
        rt[e + 28..e + 32].copy_from_slice(&1u32.to_le_bytes());
    }
    set_checksum(&mut rt, 4);
    out.pad_to(REGION1)?;
    out.append(&rt)?;
    out.pad_to(REGION2)?;
    out.append(&rt)?;
    Ok(())
}

/// Writes the BAT, a MiB at a time: the blocks of `stored` present in turn from the
/// payload's start, the others zero.
fn write_bat(out: &mut HashedFile, l: Layout, stored: &[u64]) -> io::Result<()> {
    out.pad_to(BAT_OFFSET)?;
    let chunk_ratio = SECTORS_PER_BITMAP * LOGICAL_SECTOR / BLOCK;
    let per_chunk = MIB / 8;
    let mut chunk = vec![0u8; MIB as usize];
    let mut next_stored = 0usize;
    let mut entry = 0u64;
    while entry < l.bat_entries {
        let end = (entry + per_chunk).min(l.bat_entries);
        chunk.fill(0);
        for j in entry..end {
            let value = if j % (chunk_ratio + 1) == chunk_ratio {
                SB_NOT_PRESENT
            } else {
                let block = j - j / (chunk_ratio + 1);
                if stored.get(next_stored) == Some(&block) {
                    let off = l.data_offset + next_stored as u64 * BLOCK;
                    next_stored += 1;
                    off | PAYLOAD_FULLY_PRESENT
                } else {
                    PAYLOAD_ZERO
                }
            };
            let at = ((j - entry) * 8) as usize;
            chunk[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        out.append(&chunk[..((end - entry) * 8) as usize])?;
        entry = end;
    }
    debug_assert_eq!(next_stored, stored.len());
    debug_assert!(l.data_blocks >= stored.len() as u64);
    Ok(())
}

/// Writes the metadata region (table and items) of a `size`-byte disk, and pads to the
/// payload.
fn write_metadata(
    out: &mut HashedFile,
    l: Layout,
    size: u64,
    layout_id: &[u8; 32],
) -> io::Result<()> {
    let page83 = derived_guid("nanoimg vhdx virtual-disk-id", layout_id);
    let mut params = [0u8; 8];
    params[0..4].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    let items: [([u8; 16], u32, Vec<u8>); 5] = [
        (FILE_PARAMETERS, META_IS_REQUIRED, params.to_vec()),
        (
            VIRTUAL_DISK_SIZE,
            META_IS_REQUIRED | META_IS_VIRTUAL_DISK,
            size.to_le_bytes().to_vec(),
        ),
        (
            PAGE83,
            META_IS_REQUIRED | META_IS_VIRTUAL_DISK,
            page83.to_vec(),
        ),
        (
            LOGICAL_SECTOR_SIZE,
            META_IS_REQUIRED | META_IS_VIRTUAL_DISK,
            (LOGICAL_SECTOR as u32).to_le_bytes().to_vec(),
        ),
        (
            PHYSICAL_SECTOR_SIZE,
            META_IS_REQUIRED | META_IS_VIRTUAL_DISK,
            PHYSICAL_SECTOR.to_le_bytes().to_vec(),
        ),
    ];
    let mut md = vec![0u8; 2 * KIB64 as usize];
    md[0..8].copy_from_slice(b"metadata");
    md[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes());
    let mut item_at = KIB64 as usize;
    for (i, (g, flags, value)) in items.iter().enumerate() {
        let e = 32 + 32 * i;
        md[e..e + 16].copy_from_slice(g);
        md[e + 16..e + 20].copy_from_slice(&(item_at as u32).to_le_bytes());
        md[e + 20..e + 24].copy_from_slice(&(value.len() as u32).to_le_bytes());
        md[e + 24..e + 28].copy_from_slice(&flags.to_le_bytes());
        md[item_at..item_at + value.len()].copy_from_slice(value);
        item_at += value.len();
    }
    out.pad_to(l.metadata_offset)?;
    out.append(&md[..item_at])?;
    out.pad_to(l.data_offset)
}

impl Sink for VhdxWriter {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let (out, stored, payload) = (&mut self.out, &mut self.stored, self.payload);
        self.blocks.write(offset, data, |i, b| {
            VhdxWriter::store(out, stored, payload, i, b)
        })
    }

    fn finish(mut self: Box<Self>, len: u64, _raw: &RawHashes) -> io::Result<FileSums> {
        {
            let (out, stored, payload) = (&mut self.out, &mut self.stored, self.payload);
            self.blocks.finish(Format::Vhdx, len, |i, b| {
                VhdxWriter::store(out, stored, payload, i, b)
            })?;
        }
        // Blocks never given hold a file's zeros.
        self.out.pad_to(self.payload + self.stored.len() * BLOCK)?;
        self.out.finish()
    }
}

/// Reads a dynamic (or fixed) VHDX.
#[derive(Debug)]
pub struct VhdxReader {
    file: File,
    size: u64,
    block_size: u64,
    /// For each payload block: its file offset, or 0 for zeros.
    blocks: Vec<u64>,
}

struct Region {
    offset: u64,
    length: u64,
}

/// The parts of the file placed so far, to check that no other overlaps them: (offset,
/// length, what).
type Used = Vec<(u64, u64, &'static str)>;

/// What the metadata items say: the block size, the virtual disk size and the logical
/// sector size, all checked.
struct Geometry {
    block_size: u64,
    size: u64,
    lss: u64,
}

/// The metadata items looked for: their GUID, name and length. The last, a parent
/// locator, is refused.
const METADATA_ITEMS: [(&[u8; 16], &str, u32); 6] = [
    (&FILE_PARAMETERS, "File Parameters", 8),
    (&VIRTUAL_DISK_SIZE, "Virtual Disk Size", 8),
    (&PAGE83, "Page 83 Data", 16),
    (&LOGICAL_SECTOR_SIZE, "Logical Sector Size", 4),
    (&PHYSICAL_SECTOR_SIZE, "Physical Sector Size", 4),
    (&PARENT_LOCATOR, "Parent Locator", 0),
];

/// What in `used` the `length` bytes at `offset` overlap, if anything.
fn overlapping(used: &Used, offset: u64, length: u64) -> Option<&'static str> {
    used.iter()
        .find(|(o, l, _)| offset < o + l && *o < offset + length)
        .map(|&(_, _, what)| what)
}

impl VhdxReader {
    pub fn open(file: File, path: &Path) -> Result<VhdxReader, VdiskError> {
        let read = read_error(path);
        let file_len = file.metadata().map_err(read)?.len();
        check_identifier(&file, path, file_len)?;
        let h = current_header(&file, path)?;
        let mut used = check_log(&h, path)?;
        let rt = region_table(&file, path)?;
        let (bat, meta) = regions(&rt, path, file_len, &mut used)?;
        let items = metadata_items(&file, path, &meta)?;
        let g = geometry(&items, path)?;
        let blocks = read_bat(&file, path, &bat, &g, file_len, &used)?;
        check_blocks_apart(&blocks, g.block_size, path)?;
        Ok(VhdxReader {
            file,
            size: g.size,
            block_size: g.block_size,
            blocks,
        })
    }
}

/// Checks that the `file_len`-byte file holds the header section and starts with the file
/// identifier.
fn check_identifier(file: &File, path: &Path, file_len: u64) -> Result<(), VdiskError> {
    let bad = bad(path, Format::Vhdx);
    let read = read_error(path);
    if file_len < MIB {
        return Err(bad(format!(
            "the file is {file_len} bytes, shorter than the 1 MiB header section"
        )));
    }
    let mut sig = [0u8; 8];
    file.read_exact_at(&mut sig, 0).map_err(read)?;
    if &sig != b"vhdxfile" {
        return Err(bad("no \"vhdxfile\" file identifier".into()));
    }
    Ok(())
}

/// The current header: of the valid ones, the one with the higher sequence number (equal
/// numbers only if both are the same).
fn current_header(file: &File, path: &Path) -> Result<Vec<u8>, VdiskError> {
    let bad = bad(path, Format::Vhdx);
    let read = read_error(path);
    let mut headers = Vec::new();
    for at in [HEADER1, HEADER2] {
        let mut h = vec![0u8; HEADER_SIZE];
        file.read_exact_at(&mut h, at).map_err(read)?;
        let valid = &h[0..4] == b"head" && checksum_ok(&h, 4) && le16(&h, 66) == 1;
        headers.push(valid.then_some(h));
    }
    let second = headers.pop().flatten();
    let first = headers.pop().flatten();
    match (first, second) {
        (None, None) => Err(bad(
            "neither header is valid (signature \"head\", version 1, CRC-32C)".into(),
        )),
        (Some(a), None) => Ok(a),
        (None, Some(b)) => Ok(b),
        (Some(a), Some(b)) => {
            let (sa, sb) = (le64(&a, 8), le64(&b, 8));
            if sa > sb {
                Ok(a)
            } else if sb > sa {
                Ok(b)
            } else if a == b {
                Ok(a)
            } else {
                Err(bad(format!(
                    "both headers have sequence number {sa} but differ"
                )))
            }
        }
    }
}

/// Checks that header `h`'s log is empty and in place; gives the parts of the file placed
/// so far: the header section, and the log if it has a length.
fn check_log(h: &[u8], path: &Path) -> Result<Used, VdiskError> {
    let bad = bad(path, Format::Vhdx);
    let log_guid = &h[48..64];
    let log_version = le16(h, 64);
    let log_length = u64::from(le32(h, 68));
    let log_offset = le64(h, 72);
    if log_version != 0 {
        return Err(bad(format!("log version {log_version} (only 0 exists)")));
    }
    if log_guid.iter().any(|&b| b != 0) {
        return Err(bad(
            "the log is not empty (non-zero log GUID): the file was not closed cleanly, and \
             replaying its log is not supported; let Hyper-V or `qemu-img check -r all` \
             replay it first"
                .into(),
        ));
    }
    if log_offset < MIB || log_offset & (MIB - 1) != 0 || log_length & (MIB - 1) != 0 {
        return Err(bad(format!(
            "log at {log_offset:#x}, {log_length} bytes, is not 1 MiB-aligned past the header section"
        )));
    }
    let mut used: Used = vec![(0, MIB, "the header section")];
    if log_length > 0 {
        used.push((log_offset, log_length, "the log"));
    }
    Ok(used)
}

/// Region table 1, or 2 if 1 is damaged.
fn region_table(file: &File, path: &Path) -> Result<Vec<u8>, VdiskError> {
    let read = read_error(path);
    for at in [REGION1, REGION2] {
        let mut rt = vec![0u8; KIB64 as usize];
        file.read_exact_at(&mut rt, at).map_err(read)?;
        if &rt[0..4] == b"regi" && checksum_ok(&rt, 4) {
            return Ok(rt);
        }
    }
    Err(bad(path, Format::Vhdx)(
        "neither region table is valid (signature \"regi\", CRC-32C)".into(),
    ))
}

/// The BAT and metadata regions of region table `rt`, each region checked to be in the
/// `file_len`-byte file and apart from the others (added to `used`).
fn regions(
    rt: &[u8],
    path: &Path,
    file_len: u64,
    used: &mut Used,
) -> Result<(Region, Region), VdiskError> {
    let bad = bad(path, Format::Vhdx);
    let count = le32(rt, 8);
    if count > 2047 {
        return Err(bad(format!("{count} region table entries (at most 2047)")));
    }
    let (mut bat, mut meta) = (None, None);
    for i in 0..count as usize {
        let e = &rt[16 + 32 * i..48 + 32 * i];
        let g = &e[0..16];
        let offset = le64(e, 16);
        let length = u64::from(le32(e, 24));
        let required = le32(e, 28) & 1 != 0;
        let name = region_name(g, required, i, path)?;
        check_region(name, offset, length, file_len, used, path)?;
        used.push((offset, length, name));
        let slot = if g == BAT_GUID {
            &mut bat
        } else if g == METADATA_GUID {
            &mut meta
        } else {
            continue;
        };
        if slot.is_some() {
            return Err(bad(format!("{name} is listed twice")));
        }
        *slot = Some(Region { offset, length });
    }
    let (Some(bat), Some(meta)) = (bat, meta) else {
        return Err(bad(
            "the region table lacks the BAT or the metadata region".into()
        ));
    };
    Ok((bat, meta))
}

/// What region table entry `i`, of GUID `g`, is called; an unknown required one is refused.
fn region_name(
    g: &[u8],
    required: bool,
    i: usize,
    path: &Path,
) -> Result<&'static str, VdiskError> {
    Ok(if g == BAT_GUID {
        "the BAT region"
    } else if g == METADATA_GUID {
        "the metadata region"
    } else if required {
        return Err(bad(path, Format::Vhdx)(format!(
            "region table entry {i} is a required region of an unknown kind"
        )));
    } else {
        "a region"
    })
}

/// Checks that region `name`, `length` bytes at `offset`, is a non-empty 1 MiB-aligned
/// range past the header section, inside the `file_len`-byte file, and overlaps nothing in
/// `used`.
fn check_region(
    name: &str,
    offset: u64,
    length: u64,
    file_len: u64,
    used: &Used,
    path: &Path,
) -> Result<(), VdiskError> {
    let bad = bad(path, Format::Vhdx);
    if offset < MIB || offset & (MIB - 1) != 0 || length == 0 || length & (MIB - 1) != 0 {
        return Err(bad(format!(
            "{name} at {offset:#x}, {length} bytes, is not a non-empty 1 MiB-aligned range past the header section"
        )));
    }
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(bad(format!(
            "{name} at {offset:#x}, {length} bytes, is past the end of the {file_len}-byte file"
        )));
    }
    if let Some(other) = overlapping(used, offset, length) {
        return Err(bad(format!("{name} overlaps {other}")));
    }
    Ok(())
}

/// The values of the five required metadata items (the first five of [`METADATA_ITEMS`],
/// in that order), read from the metadata region `meta`.
fn metadata_items(file: &File, path: &Path, meta: &Region) -> Result<Vec<Vec<u8>>, VdiskError> {
    let bad = bad(path, Format::Vhdx);
    let read = read_error(path);
    let mut mt = vec![0u8; KIB64 as usize];
    file.read_exact_at(&mut mt, meta.offset).map_err(read)?;
    if &mt[0..8] != b"metadata" {
        return Err(bad(
            "the metadata table has no \"metadata\" signature".into()
        ));
    }
    let count = le16(&mt, 10);
    if count > 2047 {
        return Err(bad(format!("{count} metadata entries (at most 2047)")));
    }
    let mut values: [Option<Vec<u8>>; 6] = Default::default();
    for i in 0..count as usize {
        let e = &mt[32 + 32 * i..64 + 32 * i];
        metadata_entry(file, path, meta, e, i, &mut values)?;
    }
    let mut got = Vec::new();
    for (k, v) in values.into_iter().take(5).enumerate() {
        match v {
            Some(v) => got.push(v),
            None => {
                return Err(bad(format!(
                    "the required metadata item {} is missing",
                    METADATA_ITEMS[k].1
                )))
            }
        }
    }
    Ok(got)
}

/// Reads metadata table entry `i`, `e`, into its slot of `values` (one for each of
/// [`METADATA_ITEMS`]), checking its kind, length and place in the region `meta`.
fn metadata_entry(
    file: &File,
    path: &Path,
    meta: &Region,
    e: &[u8],
    i: usize,
    values: &mut [Option<Vec<u8>>; 6],
) -> Result<(), VdiskError> {
    let bad = bad(path, Format::Vhdx);
    let read = read_error(path);
    let offset = u64::from(le32(e, 16));
    let length = le32(e, 20);
    let flags = le32(e, 24);
    let Some(k) = METADATA_ITEMS
        .iter()
        .position(|(g, _, _)| e[0..16] == g[..])
    else {
        if flags & META_IS_REQUIRED != 0 {
            return Err(bad(format!(
                "metadata entry {i} is a required item of an unknown kind"
            )));
        }
        return Ok(());
    };
    let (_, name, expected) = METADATA_ITEMS[k];
    if k == 5 {
        return Err(bad(
            "a differencing VHDX (it has a parent locator); only dynamic and fixed VHDX files are read"
                .into(),
        ));
    }
    if values[k].is_some() {
        return Err(bad(format!("metadata item {name} is listed twice")));
    }
    if length != expected {
        return Err(bad(format!(
            "metadata item {name} is {length} bytes, not {expected}"
        )));
    }
    if offset < KIB64 || offset + u64::from(length) > meta.length {
        return Err(bad(format!(
            "metadata item {name} at {offset:#x} is not inside the metadata region past its table"
        )));
    }
    let mut v = vec![0u8; length as usize];
    file.read_exact_at(&mut v, meta.offset + offset)
        .map_err(read)?;
    values[k] = Some(v);
    Ok(())
}

/// The geometry the required metadata items `got` give, checked.
fn geometry(got: &[Vec<u8>], path: &Path) -> Result<Geometry, VdiskError> {
    let bad = bad(path, Format::Vhdx);
    let block_size = u64::from(le32(&got[0], 0));
    let bits = le32(&got[0], 4);
    if bits & 2 != 0 {
        return Err(bad(
            "a differencing VHDX (HasParent); only dynamic and fixed VHDX files are read".into(),
        ));
    }
    if bits & !3 != 0 {
        return Err(bad(format!(
            "File Parameters has reserved bits set ({bits:#x})"
        )));
    }
    if !block_size.is_power_of_two() || !(MIB..=256 * MIB).contains(&block_size) {
        return Err(bad(format!(
            "block size {block_size} is not a power of two from 1 MiB to 256 MiB"
        )));
    }
    let size = le64(&got[1], 0);
    let lss = u64::from(le32(&got[3], 0));
    let pss = le32(&got[4], 0);
    if lss != 512 && lss != 4096 {
        return Err(bad(format!("logical sector size {lss} (512 or 4096)")));
    }
    if pss != 512 && pss != 4096 {
        return Err(bad(format!("physical sector size {pss} (512 or 4096)")));
    }
    if size & (lss - 1) != 0 || size > MAX_SIZE {
        return Err(bad(format!(
            "virtual disk size {size} is not a multiple of the {lss}-byte sector up to 64 TiB"
        )));
    }
    Ok(Geometry {
        block_size,
        size,
        lss,
    })
}

/// Reads the BAT in region `bat`: for each payload block, its file offset (checked to be
/// in the `file_len`-byte file, apart from `used`), or 0 for zeros.
fn read_bat(
    file: &File,
    path: &Path,
    bat: &Region,
    g: &Geometry,
    file_len: u64,
    used: &Used,
) -> Result<Vec<u64>, VdiskError> {
    let bad = bad(path, Format::Vhdx);
    let read = read_error(path);
    let chunk_ratio = SECTORS_PER_BITMAP * g.lss / g.block_size;
    let data_blocks = g.size.div_ceil(g.block_size);
    let entries = bat_entries(data_blocks, chunk_ratio);
    if entries * 8 > bat.length {
        return Err(bad(format!(
            "the BAT region ({} bytes) is too small for {entries} entries",
            bat.length
        )));
    }
    let mut raw = vec![0u8; (entries * 8) as usize];
    file.read_exact_at(&mut raw, bat.offset).map_err(read)?;
    let mut blocks = Vec::with_capacity(data_blocks as usize);
    for (j, e) in raw.chunks_exact(8).enumerate() {
        let j = j as u64;
        let e = le64(e, 0);
        let state = e & 7;
        if j % (chunk_ratio + 1) == chunk_ratio {
            if state != SB_NOT_PRESENT {
                return Err(bad(format!(
                    "sector bitmap BAT entry {j} has state {state}; a non-differencing file's must be 0"
                )));
            }
            continue;
        }
        let block = blocks.len() as u64;
        blocks.push(payload_block(e, j, block, g, file_len, used, path)?);
    }
    Ok(blocks)
}

/// The file offset of payload block `block`, whose BAT entry `j` is `e`, or 0 for zeros.
fn payload_block(
    e: u64,
    j: u64,
    block: u64,
    g: &Geometry,
    file_len: u64,
    used: &Used,
    path: &Path,
) -> Result<u64, VdiskError> {
    let bad = bad(path, Format::Vhdx);
    let state = e & 7;
    match state {
        PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED | PAYLOAD_ZERO | PAYLOAD_UNMAPPED => Ok(0),
        PAYLOAD_FULLY_PRESENT => {
            if e & 0xf_fff8 != 0 {
                return Err(bad(format!("BAT entry {j} has reserved bits set")));
            }
            let offset = e & !0xf_ffff;
            let length = g.block_size.min(g.size - block * g.block_size);
            if offset.checked_add(length).is_none_or(|end| end > file_len) {
                return Err(bad(format!(
                    "BAT entry {j}: block at {offset:#x} is past the end of the {file_len}-byte file"
                )));
            }
            if let Some(other) = overlapping(used, offset, g.block_size) {
                return Err(bad(format!(
                    "BAT entry {j}: block at {offset:#x} overlaps {other}"
                )));
            }
            Ok(offset)
        }
        PAYLOAD_PARTIALLY_PRESENT => Err(bad(format!(
            "BAT entry {j} is partially present, which only a differencing file may be"
        ))),
        _ => Err(bad(format!("BAT entry {j} has reserved state {state}"))),
    }
}

/// Checks that each payload block is in a place of its own, as every writer makes them:
/// the data a whole-disk read reads is data the file holds.
fn check_blocks_apart(blocks: &[u64], block_size: u64, path: &Path) -> Result<(), VdiskError> {
    let mut placed: Vec<(u64, usize)> = blocks
        .iter()
        .enumerate()
        .filter(|(_, &o)| o != 0)
        .map(|(i, &o)| (o, i))
        .collect();
    placed.sort_unstable();
    if let Some(w) = placed.windows(2).find(|w| w[1].0 < w[0].0 + block_size) {
        return Err(bad(path, Format::Vhdx)(format!(
            "payload blocks {} and {} overlap (at {:#x} and {:#x}, {block_size} bytes each)",
            w[0].1.min(w[1].1),
            w[0].1.max(w[1].1),
            w[0].0,
            w[1].0
        )));
    }
    Ok(())
}

impl VirtualDisk for VhdxReader {
    fn format(&self) -> Format {
        Format::Vhdx
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = read_end(offset, buf.len(), self.size)?;
        let mut at = offset;
        while at < end {
            let index = at / self.block_size;
            let within = at % self.block_size;
            let to = ((index + 1) * self.block_size).min(end);
            let out = &mut buf[(at - offset) as usize..(to - offset) as usize];
            match self.blocks.get(index as usize) {
                Some(&0) => out.fill(0),
                Some(&host) => self.file.read_exact_at(out, host + within)?,
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
            at = to;
        }
        Ok(())
    }

    /// The payload blocks the BAT gives as present.
    fn allocated(&self) -> io::Result<Vec<std::ops::Range<u64>>> {
        let mut out = Vec::new();
        for (i, &host) in self.blocks.iter().enumerate() {
            if host != 0 {
                let start = i as u64 * self.block_size;
                crate::push_range(&mut out, start..(start + self.block_size).min(self.size));
            }
        }
        Ok(out)
    }
}
