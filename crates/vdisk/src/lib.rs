//! Virtual disk containers: the formats clouds and hypervisors import a disk in.
//!
//! nanoimg's image pipeline produces a *raw* disk image front to back. This crate turns that
//! stream into one of the container formats below, without a temporary raw copy and in
//! bounded memory, and reads each format back as the raw image it holds (for `inspect`,
//! `diff`, `extract`, `convert` and `run`).
//!
//! | [`Format`] | container | who takes it |
//! |---|---|---|
//! | `raw` | the bytes of the disk | QEMU, Firecracker, Gevulot, AWS `import-snapshot` (RAW) |
//! | `qcow2` | QEMU copy-on-write v3 | OpenStack, Oracle Cloud, DigitalOcean, Proxmox, plain QEMU |
//! | `vhd` | fixed VHD (the raw disk and a 512-byte footer) | Azure |
//! | `vmdk` | VMDK stream-optimized (deflated grains) | VMware vSphere, AWS VM Import |
//! | `vhdx` | VHDX, dynamic | Hyper-V |
//! | `gce` | `disk.raw` in a sparse GNU tar, gzipped | Google Compute Engine |
//!
//! # Writing
//!
//! A writer is a [`Sink`]: it is given the raw image's bytes in increasing offset order,
//! as [`Sink::write_at`] calls that never overlap or go backwards; any range never given is
//! zeros. [`Sink::finish`] completes the container. What is stored is a function of the raw
//! image's *content* only (a cluster, grain or block is stored if and only if it holds a
//! non-zero byte; sizes of buffers and how the caller split its calls never matter), and
//! every identifier, timestamp and creator field is fixed or derived from the content, so the
//! same raw image gives the same bytes in every format, whether built directly or converted
//! (`docs/reproducibility.md`).
//!
//! # Reading
//!
//! [`open`] recognises a container by its signature and returns a [`VirtualDisk`]: the raw
//! image's size and its bytes at any offset. [`DiskReader`] turns one into `Read + Seek`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod common;
pub mod gce;
pub mod qcow2;
pub mod raw;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

/// A disk container format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Raw,
    Qcow2,
    Vhd,
    Vmdk,
    Vhdx,
    Gce,
}

impl Format {
    /// Every format, in the order the documentation lists them.
    pub const ALL: [Format; 6] = [
        Format::Raw,
        Format::Qcow2,
        Format::Vhd,
        Format::Vmdk,
        Format::Vhdx,
        Format::Gce,
    ];

    /// The name on the command line and in `--json`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vhd => "vhd",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
            Format::Gce => "gce",
        }
    }

    /// QEMU's name for the format (`-drive format=…`), if QEMU reads it directly.
    pub fn qemu_name(self) -> Option<&'static str> {
        match self {
            Format::Raw => Some("raw"),
            Format::Qcow2 => Some("qcow2"),
            Format::Vhd => Some("vpc"),
            Format::Vmdk => Some("vmdk"),
            Format::Vhdx => Some("vhdx"),
            Format::Gce => None,
        }
    }

    /// Whether the writer derives identifiers from the raw image's SHA-256 (VMDK's CID,
    /// VHD's unique ID, VHDX's GUIDs): writing it then needs the whole raw image hashed.
    pub fn ids_from_content(self) -> bool {
        matches!(self, Format::Vmdk | Format::Vhd | Format::Vhdx)
    }

    /// The file name ending the platform expects (`.tar.gz` for GCE).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Raw => "img",
            Format::Qcow2 => "qcow2",
            Format::Vhd => "vhd",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
            Format::Gce => "tar.gz",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name nanoimg does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown disk format {0:?}; expected one of raw, qcow2, vhd, vmdk, vhdx, gce")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// The unit in which every writer decides what is data and what is a hole: a block of the
/// raw image this size, aligned to it, that is all zeros is never stored (the filesystem
/// block size; it divides every format's cluster, grain and block size).
pub const ZERO_BLOCK: u64 = 4096;

/// Whether `bytes` are all zeros.
pub fn is_zero(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(64);
    // Sixty-four bytes at a time; the compiler vectorises this.
    chunks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}

/// Receives a raw image front to back and writes it in a container format.
pub trait Sink: Send {
    /// Bytes `data` of the raw image at `offset`. Calls come in increasing offset order and
    /// never overlap; a range no call covers is zeros.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// The raw image is `len` bytes long (every call above ended at or before it) and its
    /// SHA-256 is `raw_sha256`: writes what the container still lacks and flushes it. Every
    /// identifier a format needs (UUIDs, VMDK's CID) is derived from `raw_sha256`, so it
    /// depends on the content only. The output is not synced.
    fn finish(self: Box<Self>, len: u64, raw_sha256: &[u8; 32]) -> io::Result<()>;
}

/// A writer for `format` into `out`, a new empty file, for a raw image of exactly
/// `virtual_size` bytes. GCE needs to know where the data is before it starts: `data_map`
/// gives the raw image's [`ZERO_BLOCK`]-aligned ranges holding non-zero bytes (see
/// [`DataMap`]); the other formats ignore it.
pub fn writer(
    format: Format,
    out: File,
    virtual_size: u64,
    data_map: Option<DataMap>,
) -> io::Result<Box<dyn Sink>> {
    Ok(match format {
        Format::Raw => Box::new(raw::RawWriter::new(out)),
        Format::Qcow2 => Box::new(qcow2::Qcow2Writer::new(out, virtual_size)?),
        Format::Vhd => Box::new(vhd::VhdWriter::new(out, virtual_size)?),
        Format::Vmdk => Box::new(vmdk::VmdkWriter::new(out, virtual_size)?),
        Format::Vhdx => Box::new(vhdx::VhdxWriter::new(out, virtual_size)?),
        Format::Gce => {
            let map = data_map.ok_or_else(|| {
                io::Error::other("internal error: the GCE tar needs the data map first")
            })?;
            Box::new(gce::GceWriter::new(out, virtual_size, map)?)
        }
    })
}

/// Where a raw image holds data: sorted, disjoint, non-adjacent ranges, each a union of
/// [`ZERO_BLOCK`]-aligned blocks (the last may end at the image's end) with a non-zero byte.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataMap {
    pub ranges: Vec<std::ops::Range<u64>>,
}

impl DataMap {
    /// Notes `data` at `offset` (calls in increasing offset order, as a [`Sink`] gets them):
    /// adds every block of it that is not all zeros.
    pub fn add(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let block_end = ((at / ZERO_BLOCK) + 1) * ZERO_BLOCK;
            let to = block_end.min(end);
            let slice = &data[(at - offset) as usize..(to - offset) as usize];
            if !is_zero(slice) {
                let start = at / ZERO_BLOCK * ZERO_BLOCK;
                match self.ranges.last_mut() {
                    Some(last) if last.end >= start => last.end = last.end.max(block_end),
                    _ => self.ranges.push(start..block_end),
                }
            }
            at = to;
        }
    }

    /// Cuts the last range at the image's end.
    pub fn finish(&mut self, len: u64) {
        if let Some(last) = self.ranges.last_mut() {
            last.end = last.end.min(len);
        }
        self.ranges.retain(|r| !r.is_empty());
    }

    /// Bytes of data.
    pub fn data_len(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }
}

/// A [`Sink`] that only records the [`DataMap`] (the first of the two passes a GCE tar
/// needs).
#[derive(Debug, Default)]
pub struct MapSink {
    pub map: std::sync::Arc<std::sync::Mutex<DataMap>>,
}

impl Sink for MapSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.map
            .lock()
            .map_err(|_| io::Error::other("data map lock poisoned"))?
            .add(offset, data);
        Ok(())
    }
    fn finish(self: Box<Self>, len: u64, _raw_sha256: &[u8; 32]) -> io::Result<()> {
        self.map
            .lock()
            .map_err(|_| io::Error::other("data map lock poisoned"))?
            .finish(len);
        Ok(())
    }
}

/// Why a container could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VdiskError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file claims a format (by its signature) but breaks its rules.
    #[error("{path}: not a valid {format} image: {reason}")]
    Bad {
        path: PathBuf,
        format: Format,
        reason: String,
    },
}

/// A raw disk image held in some container: its size and its bytes.
pub trait VirtualDisk: Send + Sync + fmt::Debug {
    /// The container it is read from.
    fn format(&self) -> Format;
    /// Size of the raw image in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the raw image's bytes at `offset`. Reading past
    /// [`size`](Self::size) is an `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Where the raw image may hold data: sorted, disjoint, non-adjacent ranges inside
    /// `0..size()`; every byte outside them reads as zero (bytes inside may be zeros too).
    /// Taken from the container's own map (qcow2 L1/L2 tables, the VMDK grain directory and
    /// tables, the VHDX BAT, the GCE tar's sparse map; for a raw image or fixed VHD the
    /// file's own holes, by `SEEK_DATA`/`SEEK_HOLE`), so the work and the number of ranges
    /// follow the metadata and data present, never the size the header claims. A whole-disk
    /// copy reads these ranges and gives the rest as holes. The default: the whole disk.
    fn allocated(&self) -> io::Result<Vec<Range<u64>>> {
        Ok(if self.size() == 0 {
            Vec::new()
        } else {
            std::iter::once(0..self.size()).collect()
        })
    }

    /// What the reader noticed and the user should hear, one line each (for example, a raw
    /// disk whose last sector looks like a damaged VHD footer). Empty for most files.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Adds `r` to `ranges` (sorted, built front to back), merging it with the last range
/// when they touch or overlap. Empty ranges are left out.
pub fn push_range(ranges: &mut Vec<Range<u64>>, r: Range<u64>) {
    if r.is_empty() {
        return;
    }
    match ranges.last_mut() {
        Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
        _ => ranges.push(r),
    }
}

/// Opens `path`, recognising its format by signature: qcow2 (`QFI\xfb`), VMDK sparse
/// (`KDMV`), VHDX (`vhdxfile`), gzip (the GCE tar), a VHD footer (`conectix` in the last
/// 512 bytes); anything else is raw. A raw file whose last 512 bytes look like a VHD footer
/// with a damaged cookie is read as raw with a note saying so ([`VirtualDisk::notes`]).
pub fn open(path: &Path) -> Result<Box<dyn VirtualDisk>, VdiskError> {
    let read = |source| VdiskError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read)?;
    let len = file.metadata().map_err(read)?.len();
    let mut head = [0u8; 8];
    let n = read_up_to(&mut file, &mut head).map_err(read)?;
    let head = &head[..n];
    let mut footer = [0u8; 512];
    if len >= 512 {
        file.seek(SeekFrom::Start(len - 512)).map_err(read)?;
        read_up_to(&mut file, &mut footer).map_err(read)?;
    }
    file.seek(SeekFrom::Start(0)).map_err(read)?;
    Ok(if head.starts_with(b"QFI\xfb") {
        Box::new(qcow2::Qcow2Reader::open(file, path)?)
    } else if head.starts_with(b"KDMV") {
        Box::new(vmdk::VmdkReader::open(file, path)?)
    } else if head.starts_with(b"vhdxfile") {
        Box::new(vhdx::VhdxReader::open(file, path)?)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(gce::GceReader::open(file, path)?)
    } else if &footer[..8] == b"conectix" {
        Box::new(vhd::VhdReader::open(file, path)?)
    } else if let Some(damage) = vhd::damaged_footer(&footer) {
        Box::new(raw::RawReader::with_note(
            file,
            len,
            format!(
                "{}: {damage}; reading the file as a raw disk (the footer is its last sector)",
                path.display()
            ),
        ))
    } else {
        Box::new(raw::RawReader::new(file, len))
    })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A window of a [`VirtualDisk`] as `Read + Seek` (for the filesystem readers).
#[derive(Debug)]
pub struct DiskReader<D> {
    disk: D,
    start: u64,
    len: u64,
    pos: u64,
}

impl<D: std::ops::Deref<Target = dyn VirtualDisk>> DiskReader<D> {
    /// The whole disk.
    pub fn new(disk: D) -> DiskReader<D> {
        let len = disk.size();
        DiskReader {
            disk,
            start: 0,
            len,
            pos: 0,
        }
    }

    /// `len` bytes from `start` (clamped to the disk).
    pub fn window(disk: D, start: u64, len: u64) -> DiskReader<D> {
        let size = disk.size();
        let start = start.min(size);
        let len = len.min(size - start);
        DiskReader {
            disk,
            start,
            len,
            pos: 0,
        }
    }
}

impl<D: std::ops::Deref<Target = dyn VirtualDisk>> Read for DiskReader<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.disk
            .read_exact_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<D: std::ops::Deref<Target = dyn VirtualDisk>> Seek for DiskReader<D> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(n) => {
                self.pos = n;
                Ok(n)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the disk",
            )),
        }
    }
}
