//! VMDK stream-optimized: one hosted sparse extent with deflated grains and markers, the
//! embedded descriptor, and the grain directory at the end (VMware vSphere, AWS VM Import).
//!
//! Sources: VMware's *Virtual Disk Format 5.0* (the `SparseExtentHeader`, "Stream-Optimized
//! Compressed Sparse Extents", the marker layout) and QEMU's `block/vmdk.c` (what
//! `qemu-img convert -O vmdk -o subformat=streamOptimized` writes, and how QEMU reads a
//! `GD_AT_END` file through its footer).
//!
//! # Layout written
//!
//! | sector | what |
//! |---|---|
//! | 0 | header: `KDMV`, version 3, flags = valid newline test (bit 0) + compressed grains (bit 16) + markers (bit 17), capacity in sectors, grainSize 128 (64 KiB), descriptor at sector 1 for 20 sectors, numGTEsPerGT 512, rgdOffset 0, gdOffset `GD_AT_END` (all ones), overHead 128, the newline-detection characters `\n`, ` `, `\r`, `\n`, compressAlgorithm 1 (deflate) |
//! | 1‥20 | the descriptor text, zero padded (the same text as qemu-img's) |
//! | 21‥127 | zeros (grains start at sector 128, as in qemu-img's output: `overHead`) |
//! | 128‥ | for each grain holding a non-zero byte, in LBA order: a grain marker (LBA u64, compressed size u32) and the zlib stream (RFC 1950), padded to a sector; after the last grain a grain table covers, a GT marker and that grain table (512 × u32 sector offsets of the grain markers, 4 sectors) |
//! | end − 3 − GD − 1 | GD marker and the grain directory (one u32 per grain table: the sector of the table, 0 where no grain of it is stored) |
//! | end − 3 | footer marker, the footer (the header with the real gdOffset), end-of-stream marker |
//!
//! This is the stream layout of VMware's specification (what ovftool writes). qemu-img's own
//! streamOptimized output differs in one respect: it preallocates the grain directory and
//! tables in the front metadata area (with a redundant copy) because it writes them in
//! place; every reader that takes a stream (QEMU, VMware, AWS, VirtualBox) also takes a
//! `GD_AT_END` footer, and a true stream needs no seeking back. The reader below takes both.
//!
//! # Choices
//!
//! * **Grain stored** iff its 64 KiB hold a non-zero byte; zero grains have GTE 0 and a grain
//!   table with no stored grain is not written (GD entry 0). So the bytes depend on the raw
//!   image's content only, not on how `write_at` calls split it.
//! * **Last grain**: when the capacity is not a multiple of 64 KiB, the last grain is
//!   compressed as a full 64 KiB (the bytes past the capacity are zeros). qemu-img compresses
//!   only the bytes before the capacity; both read back the same, and a full grain is what
//!   readers that insist on one grain of inflated data (VirtualBox, VMware) expect.
//! * **Capacity** is in sectors: a raw image whose size is not a multiple of 512 is rounded
//!   up to the next sector (as qemu-img does); the reader's `size()` is then that rounded
//!   size and the added bytes read as zeros.
//! * **Compression**: miniz_oxide (pinned by `Cargo.lock`, deterministic: see
//!   [`crate::deflate`]) at level 1, as the GCE tar: QEMU's level 6 (`Z_DEFAULT_COMPRESSION`)
//!   costs twice the time and more on the data images mostly hold (programs shrink about
//!   13 % more, random proving parameters not at all). Each grain is one zlib stream
//!   compressed on its own, so grains are deflated on every core ([`GrainCompressor`]) and
//!   written in order: the bytes do not depend on the core count.
//! * **CID**: the first four bytes of the image's layout id ([`Survey`], given before the
//!   first byte), big-endian, as 8 hex digits (`ffffffff`, which means "no parent", becomes
//!   `fffffffe`), so the descriptor is final when written and the file goes strictly front
//!   to back, hashed as it is written. parentCID is `ffffffff`. There is no timestamp in the
//!   format.
//! * **Extent name**: `RW <sectors> SPARSE "disk.vmdk"`. qemu-img writes the file's own
//!   name; the writer is given an open file, and the bytes must not depend on where they are
//!   written. For a monolithic sparse file with its descriptor embedded the extent is the file
//!   itself: QEMU, VMware and AWS ignore the name (it goes stale on any rename anyway).
//! * **DDB**: as qemu-img: `ddb.virtualHWVersion = "4"`, CHS geometry with 16 heads and 63
//!   sectors and cylinders = size / (16 × 63 × 512), `ddb.adapterType = "ide"`,
//!   `ddb.toolsVersion = "2147483647"`.
//!
//! # Memory
//!
//! The writer holds one grain (64 KiB) of pending data, its compressed form, one grain table
//! (2 KiB) and the grain directory: 4 bytes per 32 MiB of virtual size (1 / 8 Mi of it, 512
//! bytes for a 4 GiB disk). The reader holds the grain directory (bounded by the file's
//! size: it must lie in the file) and one inflated grain as a cache.
//!
//! The reader checks every field before use: the header and footer markers, grain size (a
//! power of two up to 2048 sectors), table sizes (at most 512 entries), that the directory,
//! every table it names and every grain marker lie in the file, that a marker's LBA is its
//! grain's, and that a grain inflates to at most one grain (and covers what the capacity
//! needs). It reads stream-optimized files (footer or not) and plain monolithic sparse ones.
//! As QEMU, it refuses an `overHead` past the end of the file and an embedded descriptor
//! without a hexadecimal `CID` and `parentCID` (or that is not text); and it refuses a
//! child disk (a parentCID other than `ffffffff`, or a `parentFileNameHint`), which would
//! read its parent where it has no grain: nanoimg opens no file a header names. Two grain
//! directory entries sharing a grain table, or two grains at one place, are errors, so a
//! whole-disk read ([`VirtualDisk::allocated`]) reads what the file holds.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flate2::{Compression, Decompress, FlushDecompress, Status};

use crate::common::{
    bad, invalid_data, invalid_input, le32, le64, read_end, read_error, HashedFile, WriteOrder,
};
use crate::deflate::{Grain, GrainCompressor};
use crate::{
    is_zero, push_range, FileSums, Format, RawHashes, Sink, Survey, VdiskError, VirtualDisk,
};

const SECTOR: u64 = 512;
/// Sectors in a grain (64 KiB).
const GRAIN_SECTORS: u64 = 128;
const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
const GTES_PER_GT: u64 = 512;
/// Sectors of one grain table.
const GT_SECTORS: u64 = GTES_PER_GT * 4 / SECTOR;
const DESC_OFFSET: u64 = 1;
const DESC_SECTORS: u64 = 20;
const OVERHEAD: u64 = 128;
const GD_AT_END: u64 = u64::MAX;
const MAGIC: &[u8; 4] = b"KDMV";
const FLAG_NL_DETECT: u32 = 1;
const FLAG_ZERO_GRAIN: u32 = 1 << 2;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;
const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;
const COMPRESSION_LEVEL: u32 = 1;
/// Where the 8 hex digits of the CID sit in the descriptor (after `CID=`).
const CID_PLACEHOLDER: &str = "CID=00000000\n";

/// The 512-byte sparse extent header (and footer).
fn header(capacity: u64, gd_offset: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&3u32.to_le_bytes());
    h[8..12].copy_from_slice(&(FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS).to_le_bytes());
    h[12..20].copy_from_slice(&capacity.to_le_bytes());
    h[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
    h[28..36].copy_from_slice(&DESC_OFFSET.to_le_bytes());
    h[36..44].copy_from_slice(&DESC_SECTORS.to_le_bytes());
    h[44..48].copy_from_slice(&(GTES_PER_GT as u32).to_le_bytes());
    h[48..56].copy_from_slice(&0u64.to_le_bytes()); // rgdOffset: no redundant directory
    h[56..64].copy_from_slice(&gd_offset.to_le_bytes());
    h[64..72].copy_from_slice(&OVERHEAD.to_le_bytes());
    h[72] = 0; // uncleanShutdown
    h[73..77].copy_from_slice(b"\n \r\n");
    h[77..79].copy_from_slice(&1u16.to_le_bytes()); // compressAlgorithm: deflate
    h
}

/// A metadata marker sector: `numSectors` of what follows, size 0, the type.
fn marker(num_sectors: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[0..8].copy_from_slice(&num_sectors.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

/// The descriptor text qemu-img writes for streamOptimized, with the CID placeholder.
fn descriptor(capacity: u64) -> String {
    let cylinders = capacity * SECTOR / (16 * 63 * SECTOR);
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         {CID_PLACEHOLDER}\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"disk.vmdk\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"16\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.adapterType = \"ide\"\n\
         ddb.toolsVersion = \"2147483647\"\n"
    )
}

/// The CID for a raw image with this layout id ([`Survey::layout_id`]).
pub fn cid(layout_id: &[u8; 32]) -> u32 {
    let cid = u32::from_be_bytes([layout_id[0], layout_id[1], layout_id[2], layout_id[3]]);
    if cid == u32::MAX {
        cid - 1
    } else {
        cid
    }
}

/// Writes a stream-optimized VMDK front to back.
#[derive(Debug)]
pub struct VmdkWriter {
    out: HashedFile,
    /// The raw image's length, and the checks of the calls.
    order: WriteOrder,
    capacity: u64,
    /// The grain being gathered, and which grain it is.
    grain: Vec<u8>,
    grain_index: Option<u64>,
    /// The grain table being filled, and which it is.
    gt: Vec<u32>,
    gt_index: u64,
    /// Sector of each grain table (0: none stored).
    gd: Vec<u32>,
    /// Deflates grains on every core, handing them back in order.
    compressor: GrainCompressor,
}

impl VmdkWriter {
    /// A writer for a raw image of `virtual_size` bytes (not zero) into `out`, a new empty
    /// file. The header and descriptor (with the CID from the survey's layout id) are
    /// written at once.
    pub fn new(out: File, virtual_size: u64, survey: Survey) -> io::Result<VmdkWriter> {
        if virtual_size == 0 {
            return Err(invalid_input("a VMDK cannot hold an empty disk".into()));
        }
        let capacity = virtual_size.div_ceil(SECTOR);
        let grains = capacity.div_ceil(GRAIN_SECTORS);
        let gts = grains.div_ceil(GTES_PER_GT);
        // (The tables hold 32-bit sector offsets: `sector` refuses a file past 2 TiB.)
        if gts > u32::MAX as u64 {
            return Err(invalid_input(format!(
                "{virtual_size} bytes is too large for a VMDK sparse extent"
            )));
        }
        let desc = descriptor(capacity).replace(
            CID_PLACEHOLDER,
            &format!("CID={:08x}\n", cid(&survey.layout_id)),
        );
        let mut desc_area = vec![0u8; (DESC_SECTORS * SECTOR) as usize];
        desc_area[..desc.len()].copy_from_slice(desc.as_bytes());
        let mut out = HashedFile::new(out)?;
        out.append(&header(capacity, GD_AT_END))?;
        out.append(&desc_area)?;
        out.pad_to(OVERHEAD * SECTOR)?;
        Ok(VmdkWriter {
            out,
            order: WriteOrder::new(virtual_size),
            capacity,
            grain: vec![0u8; GRAIN as usize],
            grain_index: None,
            gt: vec![0u32; GTES_PER_GT as usize],
            gt_index: 0,
            gd: vec![0u32; gts as usize],
            compressor: GrainCompressor::new(Compression::new(COMPRESSION_LEVEL)),
        })
    }

    fn sector(&self) -> io::Result<u32> {
        debug_assert_eq!(self.out.position() % SECTOR, 0);
        u32::try_from(self.out.position() / SECTOR)
            .map_err(|_| io::Error::other("the VMDK grew past 2 TiB, beyond 32-bit sector offsets"))
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.append(bytes)
    }

    fn pad_to_sector(&mut self) -> io::Result<()> {
        let pad = (SECTOR - self.out.position() % SECTOR) % SECTOR;
        self.emit(&[0u8; SECTOR as usize][..pad as usize])
    }

    /// Hands the gathered grain to the compressor if it holds a non-zero byte, and clears it;
    /// writes out the grain the compressor gives back, if any.
    fn flush_grain(&mut self) -> io::Result<()> {
        let Some(g) = self.grain_index.take() else {
            return Ok(());
        };
        if is_zero(&self.grain) {
            return Ok(());
        }
        let done = self.compressor.submit(g, &self.grain)?;
        self.grain.fill(0);
        if let Some(done) = done {
            self.write_grain(done)?;
        }
        Ok(())
    }

    /// Writes the compressed grain `done` (grains come back in increasing order): its
    /// marker, its zlib stream, padding to a sector; the grain table before, when it is the
    /// first grain of another table.
    fn write_grain(&mut self, done: Grain) -> io::Result<()> {
        let g = done.tag;
        let table = g / GTES_PER_GT;
        if table != self.gt_index {
            self.flush_gt()?;
            self.gt_index = table;
        }
        let at = self.sector()?;
        let mut m = [0u8; 12];
        m[0..8].copy_from_slice(&(g * GRAIN_SECTORS).to_le_bytes());
        m[8..12].copy_from_slice(&(done.zlib.len() as u32).to_le_bytes());
        self.emit(&m)?;
        self.emit(&done.zlib)?;
        self.pad_to_sector()?;
        self.gt[(g % GTES_PER_GT) as usize] = at;
        Ok(())
    }

    /// Writes the current grain table (with its marker) if it has a stored grain.
    fn flush_gt(&mut self) -> io::Result<()> {
        if self.gt.iter().all(|&e| e == 0) {
            return Ok(());
        }
        self.emit(&marker(GT_SECTORS, MARKER_GT))?;
        let at = self.sector()?;
        let mut bytes = Vec::with_capacity((GT_SECTORS * SECTOR) as usize);
        for e in &self.gt {
            bytes.extend_from_slice(&e.to_le_bytes());
        }
        self.emit(&bytes)?;
        self.gd[self.gt_index as usize] = at;
        self.gt.fill(0);
        Ok(())
    }
}

impl Sink for VmdkWriter {
    fn write_at(&mut self, offset: u64, mut data: &[u8]) -> io::Result<()> {
        self.order.write(offset, data.len())?;
        let mut at = offset;
        while !data.is_empty() {
            let g = at / GRAIN;
            if self.grain_index != Some(g) {
                self.flush_grain()?;
                self.grain_index = Some(g);
            }
            let in_grain = (at % GRAIN) as usize;
            let n = (GRAIN as usize - in_grain).min(data.len());
            self.grain[in_grain..in_grain + n].copy_from_slice(&data[..n]);
            data = &data[n..];
            at += n as u64;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, len: u64, _raw: &RawHashes) -> io::Result<FileSums> {
        self.order.finish(Format::Vmdk, len)?;
        self.flush_grain()?;
        while let Some(done) = self.compressor.next_grain()? {
            self.write_grain(done)?;
        }
        self.flush_gt()?;
        let gd_sectors = (self.gd.len() as u64 * 4).div_ceil(SECTOR);
        self.emit(&marker(gd_sectors, MARKER_GD))?;
        let gd_at = self.out.position() / SECTOR;
        let mut bytes = Vec::with_capacity((gd_sectors * SECTOR) as usize);
        for e in &self.gd {
            bytes.extend_from_slice(&e.to_le_bytes());
        }
        bytes.resize((gd_sectors * SECTOR) as usize, 0);
        self.emit(&bytes)?;
        self.emit(&marker(1, MARKER_FOOTER))?;
        let footer = header(self.capacity, gd_at);
        self.emit(&footer)?;
        self.emit(&marker(0, MARKER_EOS))?;
        self.out.finish()
    }
}

/// The header fields the reader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    version: u32,
    flags: u32,
    capacity: u64,
    grain_sectors: u64,
    gtes_per_gt: u32,
    gd_offset: u64,
    /// Where grains may start (sectors): `overHead`.
    overhead: u64,
    desc_offset: u64,
    desc_sectors: u64,
    compress_algorithm: u16,
}

fn parse_header(h: &[u8; 512]) -> Result<Header, String> {
    if &h[0..4] != MAGIC {
        return Err("no KDMV magic".into());
    }
    let header = Header {
        version: le32(h, 4),
        flags: le32(h, 8),
        capacity: le64(h, 12),
        grain_sectors: le64(h, 20),
        gtes_per_gt: le32(h, 44),
        gd_offset: le64(h, 56),
        overhead: le64(h, 64),
        desc_offset: le64(h, 28),
        desc_sectors: le64(h, 36),
        compress_algorithm: u16::from_le_bytes([h[77], h[78]]),
    };
    if !(1..=3).contains(&header.version) {
        return Err(format!("unsupported version {}", header.version));
    }
    if header.flags & FLAG_NL_DETECT != 0 && &h[73..77] != b"\n \r\n" {
        return Err("the newline-detection characters are altered (a text-mode transfer?)".into());
    }
    Ok(header)
}

/// Reads a hosted sparse VMDK extent (stream-optimized or monolithic sparse).
#[derive(Debug)]
pub struct VmdkReader {
    file: File,
    path: PathBuf,
    file_len: u64,
    size: u64,
    grain_bytes: u64,
    gtes_per_gt: u64,
    compressed: bool,
    zero_grain: bool,
    /// Sector of each grain table, each checked to lie in the file.
    gd: Vec<u32>,
    /// The last grain inflated.
    cache: Mutex<Option<(u64, Vec<u8>)>>,
}

impl VmdkReader {
    pub fn open(file: File, path: &Path) -> Result<VmdkReader, VdiskError> {
        let bad = bad(path, Format::Vmdk);
        let read = read_error(path);
        let file_len = file.metadata().map_err(read)?.len();
        let Headers {
            first,
            header,
            whose,
        } = read_headers(&file, path, file_len)?;
        // As QEMU ("File truncated"): the grains start inside the file.
        if header.overhead > file_len / SECTOR {
            return Err(bad(format!(
                "{whose} overHead {} ({:#x}) sectors is past the end of the {file_len}-byte file",
                header.overhead, header.overhead
            )));
        }
        descriptor_check(&file, file_len, &first).map_err(&bad)?;
        let g = grains(&header, path)?;
        let gd = read_grain_directory(&file, path, &header, g.gtes, file_len)?;
        check_grain_tables_unshared(&gd, path)?;
        Ok(VmdkReader {
            file,
            path: path.to_path_buf(),
            file_len,
            size: g.size,
            grain_bytes: g.sectors * SECTOR,
            gtes_per_gt: g.gtes,
            compressed: g.compressed,
            zero_grain: header.flags & FLAG_ZERO_GRAIN != 0,
            gd,
            cache: Mutex::new(None),
        })
    }

    fn corrupt(&self, reason: String) -> io::Error {
        invalid_data(&self.path, Format::Vmdk, reason)
    }

    /// The grain table entry of grain `g`: 0 for none.
    fn gte(&self, g: u64) -> io::Result<u32> {
        let Some(&gt) = self.gd.get((g / self.gtes_per_gt) as usize) else {
            return Ok(0);
        };
        if gt == 0 {
            return Ok(0);
        }
        let mut e = [0u8; 4];
        self.file
            .read_exact_at(&mut e, gt as u64 * SECTOR + (g % self.gtes_per_gt) * 4)?;
        Ok(u32::from_le_bytes(e))
    }

    /// Inflates grain `g` from the grain marker at sector `at`.
    fn inflate(&self, g: u64, at: u64) -> io::Result<Vec<u8>> {
        let pos = at * SECTOR;
        if pos + 12 > self.file_len {
            return Err(self.corrupt(format!("grain {g}'s marker at sector {at} is past the end")));
        }
        let mut m = [0u8; 12];
        self.file.read_exact_at(&mut m, pos)?;
        let lba = le64(&m, 0);
        let len = le32(&m, 8) as u64;
        let grain_sectors = self.grain_bytes / SECTOR;
        if lba != g * grain_sectors {
            return Err(self.corrupt(format!(
                "grain {g}'s marker at sector {at} is for sector {lba}"
            )));
        }
        // Deflate never grows a grain by more than a little.
        if len == 0 || len > self.grain_bytes * 2 + 4096 || pos + 12 + len > self.file_len {
            return Err(self.corrupt(format!(
                "grain {g}'s marker at sector {at} gives {len} bytes of data"
            )));
        }
        let mut input = vec![0u8; len as usize];
        self.file.read_exact_at(&mut input, pos + 12)?;
        let mut out = vec![0u8; self.grain_bytes as usize];
        let mut z = Decompress::new(true);
        let status = z
            .decompress(&input, &mut out, FlushDecompress::Finish)
            .map_err(|e| self.corrupt(format!("grain {g} does not inflate: {e}")))?;
        // The bytes the capacity needs from this grain (all but a partial last grain).
        let needed = (self.size - g * self.grain_bytes).min(self.grain_bytes);
        if status != Status::StreamEnd || z.total_out() < needed {
            return Err(self.corrupt(format!(
                "grain {g} does not inflate to one grain ({} bytes, {status:?})",
                z.total_out()
            )));
        }
        Ok(out)
    }
}

/// The headers of an extent: the first sector's, and the one that holds (the footer's, if
/// the first gives the grain directory as at the end).
struct Headers {
    first: Header,
    header: Header,
    /// Whose `header` is: "the header's" or "the footer's".
    whose: &'static str,
}

/// How the grains are stored, from the header that holds.
struct Grains {
    compressed: bool,
    /// Sectors per grain.
    sectors: u64,
    /// Entries per grain table.
    gtes: u64,
    /// The virtual disk's size in bytes.
    size: u64,
}

/// Reads the header of the `file_len`-byte file, and its footer if the header says the
/// grain directory is at the end.
fn read_headers(file: &File, path: &Path, file_len: u64) -> Result<Headers, VdiskError> {
    let bad = bad(path, Format::Vmdk);
    let read = read_error(path);
    if file_len < SECTOR {
        return Err(bad(format!("{file_len} bytes, shorter than the header")));
    }
    let mut h = [0u8; 512];
    file.read_exact_at(&mut h, 0).map_err(read)?;
    let header = parse_header(&h).map_err(&bad)?;
    if header.gd_offset != GD_AT_END {
        return Ok(Headers {
            first: header,
            header,
            whose: "the header's",
        });
    }
    Ok(Headers {
        first: header,
        header: read_footer(file, path, file_len, &header)?,
        whose: "the footer's",
    })
}

/// Reads the footer of a stream-optimized extent whose `header` gives the grain directory
/// as at the end, checked to agree with the header.
fn read_footer(
    file: &File,
    path: &Path,
    file_len: u64,
    header: &Header,
) -> Result<Header, VdiskError> {
    let bad = bad(path, Format::Vmdk);
    let read = read_error(path);
    // Footer marker, footer, end-of-stream marker: the last three sectors.
    if file_len < 4 * SECTOR {
        return Err(bad(
            "grain directory at the end, but no room for a footer".into()
        ));
    }
    let mut tail = [0u8; 1536];
    file.read_exact_at(&mut tail, file_len - 1536)
        .map_err(read)?;
    if le32(&tail, 8) != 0 || le32(&tail, 12) != MARKER_FOOTER {
        return Err(bad(
            "grain directory at the end, but no footer marker".into()
        ));
    }
    if le64(&tail, 1024) != 0 || le32(&tail, 1032) != 0 || le32(&tail, 1036) != MARKER_EOS {
        return Err(bad("no end-of-stream marker after the footer".into()));
    }
    let mut f = [0u8; 512];
    f.copy_from_slice(&tail[512..1024]);
    let footer = parse_header(&f).map_err(|e| bad(format!("footer: {e}")))?;
    if footer.gd_offset == GD_AT_END {
        return Err(bad("the footer does not give the grain directory".into()));
    }
    if footer.capacity != header.capacity || footer.grain_sectors != header.grain_sectors {
        return Err(bad("the footer disagrees with the header".into()));
    }
    Ok(footer)
}

/// How `header` says the grains are stored, checked.
fn grains(header: &Header, path: &Path) -> Result<Grains, VdiskError> {
    let bad = bad(path, Format::Vmdk);
    let compressed = match header.compress_algorithm {
        0 => false,
        1 => header.flags & FLAG_COMPRESSED != 0,
        n => return Err(bad(format!("unknown compression algorithm {n}"))),
    };
    if compressed && header.flags & FLAG_MARKERS == 0 {
        return Err(bad(
            "compressed grains without markers are not supported".into()
        ));
    }
    let gs = header.grain_sectors;
    if !gs.is_power_of_two() || gs > 2048 {
        return Err(bad(format!("grain size of {gs} sectors")));
    }
    let gtes = header.gtes_per_gt as u64;
    if !(1..=512).contains(&gtes) {
        return Err(bad(format!("{gtes} entries per grain table")));
    }
    let size = header
        .capacity
        .checked_mul(SECTOR)
        .ok_or_else(|| bad(format!("capacity of {} sectors", header.capacity)))?;
    Ok(Grains {
        compressed,
        sectors: gs,
        gtes,
        size,
    })
}

/// Reads the grain directory `header` gives (tables of `gtes` entries): the sector of each
/// grain table, each checked to lie in the `file_len`-byte file, or 0.
fn read_grain_directory(
    file: &File,
    path: &Path,
    header: &Header,
    gtes: u64,
    file_len: u64,
) -> Result<Vec<u32>, VdiskError> {
    let bad = bad(path, Format::Vmdk);
    let read = read_error(path);
    let gd_entries = header
        .capacity
        .div_ceil(header.grain_sectors)
        .div_ceil(gtes);
    let gd_bytes = gd_entries
        .checked_mul(4)
        .filter(|&n| {
            header
                .gd_offset
                .checked_mul(SECTOR)
                .and_then(|at| at.checked_add(n))
                .is_some_and(|end| end <= file_len)
        })
        .ok_or_else(|| {
            bad(format!(
                "the grain directory ({gd_entries} entries at sector {}) is not in the file",
                header.gd_offset
            ))
        })?;
    let mut raw = vec![0u8; gd_bytes as usize];
    file.read_exact_at(&mut raw, header.gd_offset * SECTOR)
        .map_err(read)?;
    let gd: Vec<u32> = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
    for (i, &gt) in gd.iter().enumerate() {
        if gt != 0 && gt as u64 * SECTOR + gtes * 4 > file_len {
            return Err(bad(format!(
                "grain table {i} at sector {gt} is not in the file"
            )));
        }
    }
    Ok(gd)
}

/// Checks there is one grain table per directory entry, as every writer makes them: the
/// tables a whole-disk read walks are tables the file holds.
fn check_grain_tables_unshared(gd: &[u32], path: &Path) -> Result<(), VdiskError> {
    let mut tables: Vec<(u32, usize)> = gd
        .iter()
        .enumerate()
        .filter(|(_, &gt)| gt != 0)
        .map(|(i, &gt)| (gt, i))
        .collect();
    tables.sort_unstable();
    if let Some(w) = tables.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(bad(path, Format::Vmdk)(format!(
            "grain directory entries {} and {} both point to the grain table at sector {}",
            w[0].1.min(w[1].1),
            w[0].1.max(w[1].1),
            w[0].0
        )));
    }
    Ok(())
}

/// The most descriptor text read (QEMU reads at most 1 MiB).
const MAX_DESC_SECTORS: u64 = 2048;

/// Checks the descriptor embedded in the extent `header` is the first sector of: text,
/// with the `CID` and `parentCID` QEMU needs, for a standalone disk (parentCID `ffffffff`
/// and no `parentFileNameHint`: a child disk reads its parent where it has no grain, and
/// nanoimg opens no file a header names).
fn descriptor_check(file: &File, file_len: u64, header: &Header) -> Result<(), String> {
    let (at, n) = (header.desc_offset, header.desc_sectors);
    if at == 0 || n == 0 {
        return Err(format!(
            "no embedded descriptor (descriptorOffset {at}, descriptorSize {n}): an extent of a disk described in another file"
        ));
    }
    if n > MAX_DESC_SECTORS
        || at
            .checked_add(n)
            .and_then(|e| e.checked_mul(SECTOR))
            .is_none_or(|end| end > file_len)
    {
        return Err(format!(
            "the embedded descriptor ({n} sectors at sector {at}) is not in the {file_len}-byte file"
        ));
    }
    let mut raw = vec![0u8; (n * SECTOR) as usize];
    file.read_exact_at(&mut raw, at * SECTOR)
        .map_err(|e| format!("cannot read the embedded descriptor: {e}"))?;
    let text = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    if let Some(i) = text
        .iter()
        .position(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f)
    {
        return Err(format!(
            "the embedded descriptor (sector {at}) is not text: byte {:#04x} at offset {i}",
            text[i]
        ));
    }
    let text = String::from_utf8_lossy(text);
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    let cid = |key: &str| -> Result<u32, String> {
        let v = value(key).ok_or_else(|| format!("the embedded descriptor has no {key} line"))?;
        if v.is_empty() || v.len() > 8 {
            return Err(format!(
                "the embedded descriptor's {key} {v:?} is not 1 to 8 hexadecimal digits"
            ));
        }
        u32::from_str_radix(&v, 16).map_err(|_| {
            format!("the embedded descriptor's {key} {v:?} is not 1 to 8 hexadecimal digits")
        })
    };
    cid("CID")?;
    let parent = cid("parentCID")?;
    let hint = value("parentFileNameHint");
    if parent != NO_PARENT || hint.is_some() {
        let hint = match hint {
            Some(h) => format!("parentFileNameHint {h:?}"),
            None => "no parentFileNameHint".into(),
        };
        return Err(format!(
            "a child disk (parentCID {parent:08x}, {hint}); nanoimg reads only standalone disks"
        ));
    }
    Ok(())
}

/// `parentCID` of a disk without a parent.
const NO_PARENT: u32 = u32::MAX;

impl VirtualDisk for VmdkReader {
    fn format(&self) -> Format {
        Format::Vmdk
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_end(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let g = at / self.grain_bytes;
            let in_grain = at % self.grain_bytes;
            let n = ((self.grain_bytes - in_grain) as usize).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            let gte = self.gte(g)?;
            if gte == 0 || (gte == 1 && self.zero_grain) {
                dst.fill(0);
            } else if self.compressed {
                let mut cache = self
                    .cache
                    .lock()
                    .map_err(|_| io::Error::other("vmdk grain cache lock poisoned"))?;
                let hit = matches!(&*cache, Some((cached, _)) if *cached == g);
                if !hit {
                    *cache = Some((g, self.inflate(g, gte as u64)?));
                }
                if let Some((_, grain)) = &*cache {
                    dst.copy_from_slice(&grain[in_grain as usize..in_grain as usize + n]);
                }
            } else {
                let pos = gte as u64 * SECTOR + in_grain;
                if pos + n as u64 > self.file_len {
                    return Err(self.corrupt(format!(
                        "grain {g} at sector {gte} is past the end of the file"
                    )));
                }
                self.file.read_exact_at(dst, pos)?;
            }
            done += n;
        }
        Ok(())
    }

    /// The grains the grain tables give: one read per grain table, a zero directory entry
    /// skips its whole range. Two grains at one place are an error.
    fn allocated(&self) -> io::Result<Vec<Range<u64>>> {
        let mut out = Vec::new();
        let mut places: Vec<(u32, u64)> = Vec::new();
        let mut table = vec![0u8; (self.gtes_per_gt * 4) as usize];
        for (i, &gt) in self.gd.iter().enumerate() {
            if gt == 0 {
                continue;
            }
            self.file.read_exact_at(&mut table, gt as u64 * SECTOR)?;
            for (k, e) in table.chunks_exact(4).enumerate() {
                let g = i as u64 * self.gtes_per_gt + k as u64;
                let start = g * self.grain_bytes;
                if start >= self.size {
                    break;
                }
                let gte = le32(e, 0);
                if gte == 0 || (gte == 1 && self.zero_grain) {
                    continue;
                }
                places.push((gte, g));
                push_range(&mut out, start..(start + self.grain_bytes).min(self.size));
            }
        }
        places.sort_unstable();
        if let Some(w) = places.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(self.corrupt(format!(
                "grains {} and {} are both at sector {}",
                w[0].1.min(w[1].1),
                w[0].1.max(w[1].1),
                w[0].0
            )));
        }
        Ok(out)
    }
}
