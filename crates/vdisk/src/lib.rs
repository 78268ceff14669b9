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
//! zeros. [`Sink::finish`] completes the container. The formats whose file begins with a
//! description of the whole disk are given the image's [`Survey`] first: which blocks a
//! file's data touches and which others hold a non-zero byte. Those are stored (a file's
//! block of zeros too) and nothing else; a block outside the survey must be zeros. What is
//! stored is thus a function of the raw image and where its files lie (sizes of buffers and
//! how the caller split its calls never matter), and every identifier, timestamp and
//! creator field is fixed or derived from the survey or the content, so the same image gives
//! the same bytes in every format, whether built directly or converted
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
pub mod deflate;
pub mod gce;
pub mod qcow2;
pub mod raw;
mod survey;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

pub use survey::{survey_of, Survey, Surveyor};

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

    /// Whether the writer needs the image's [`Survey`] before it starts: the formats whose
    /// file begins with a description of the whole disk (qcow2's tables, VHDX's BAT, the
    /// GCE tar's sparse map) or an identifier (VMDK's CID, VHDX's GUIDs).
    pub fn needs_survey(self) -> bool {
        matches!(
            self,
            Format::Qcow2 | Format::Vmdk | Format::Vhdx | Format::Gce
        )
    }

    /// Whether the writer derives an identifier from the raw image's SHA-256 (VHD's unique
    /// ID, in its footer): writing it needs the whole raw image hashed.
    pub fn id_from_raw_sha256(self) -> bool {
        self == Format::Vhd
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

/// The raw image's digests, handed to [`Sink::finish`], with the hash states at its end
/// when the writer of this pass computed them: a container that is the raw image followed by
/// a trailer (fixed VHD) continues them instead of hashing the image again. A writer that
/// did not hash the raw image gives no states (and zeros for digests).
#[derive(Clone)]
pub struct RawHashes {
    pub sha256: [u8; 32],
    pub blake3: [u8; 32],
    pub states: Option<(sha2::Sha256, blake3::Hasher)>,
}

impl RawHashes {
    /// The states at the end of `state`, and their digests.
    pub fn from_states(sha256: sha2::Sha256, blake3: blake3::Hasher) -> RawHashes {
        use sha2::Digest;
        RawHashes {
            sha256: sha256.clone().finalize().into(),
            blake3: *blake3.finalize().as_bytes(),
            states: Some((sha256, blake3)),
        }
    }

    /// For the raw image `bytes` (tests and small images).
    pub fn of(bytes: &[u8]) -> RawHashes {
        use sha2::Digest;
        let mut sha256 = sha2::Sha256::new();
        sha256.update(bytes);
        let mut blake3 = blake3::Hasher::new();
        blake3.update(bytes);
        RawHashes::from_states(sha256, blake3)
    }
}

impl fmt::Debug for RawHashes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawHashes").finish_non_exhaustive()
    }
}

/// A written file's length and digests, computed from the bytes as they were written (the
/// file is never read back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSums {
    pub size: u64,
    pub sha256: [u8; 32],
    pub blake3: [u8; 32],
}

/// Receives a raw image front to back and writes it in a container format.
pub trait Sink: Send {
    /// Bytes `data` of the raw image at `offset`. Calls come in increasing offset order and
    /// never overlap; a range no call covers is zeros.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// The raw image is `len` bytes long (every call above ended at or before it) and `raw`
    /// holds its hash states: writes what the container still lacks and returns the file's
    /// length and digests, computed as it was written. The output is not synced.
    fn finish(self: Box<Self>, len: u64, raw: &RawHashes) -> io::Result<FileSums>;
}

/// A writer for `format` into `out`, a new empty file, for a raw image of exactly
/// `virtual_size` bytes. The formats for which [`Format::needs_survey`] is true need the
/// raw image's [`Survey`] first; the others ignore it.
pub fn writer(
    format: Format,
    out: File,
    virtual_size: u64,
    survey: Option<Survey>,
) -> io::Result<Box<dyn Sink>> {
    let surveyed = || {
        survey.clone().ok_or_else(|| {
            io::Error::other(format!(
                "internal error: the {format} writer needs the image's survey first"
            ))
        })
    };
    Ok(match format {
        Format::Raw => Box::new(raw::RawWriter::new(out)),
        Format::Qcow2 => Box::new(qcow2::Qcow2Writer::new(out, virtual_size, surveyed()?)?),
        Format::Vhd => Box::new(vhd::VhdWriter::new(out, virtual_size)?),
        Format::Vmdk => Box::new(vmdk::VmdkWriter::new(out, virtual_size, surveyed()?)?),
        Format::Vhdx => Box::new(vhdx::VhdxWriter::new(out, virtual_size, surveyed()?)?),
        Format::Gce => Box::new(gce::GceWriter::new(out, virtual_size, surveyed()?)?),
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

    /// Adds `range` (a union of blocks; calls in increasing order of their starts).
    pub fn add_range(&mut self, range: std::ops::Range<u64>) {
        match self.ranges.last_mut() {
            Some(last) if last.end >= range.start => last.end = last.end.max(range.end),
            _ => self.ranges.push(range),
        }
    }

    /// The ranges either map holds.
    pub fn union(a: &DataMap, b: &DataMap) -> DataMap {
        let mut all: Vec<&std::ops::Range<u64>> = a.ranges.iter().chain(&b.ranges).collect();
        all.sort_by_key(|r| r.start);
        let mut out = DataMap::default();
        for r in all {
            out.add_range(r.clone());
        }
        out
    }

    /// Cuts the last range at the image's end.
    pub fn finish(&mut self, len: u64) {
        if let Some(last) = self.ranges.last_mut() {
            last.end = last.end.min(len);
        }
        self.ranges.retain(|r| !r.is_empty());
    }

    /// The indices of the `unit`-byte blocks of the image (a multiple of [`ZERO_BLOCK`])
    /// that hold data, increasing: the clusters, grains or blocks a writer stores.
    pub fn units(&self, unit: u64) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        for r in &self.ranges {
            let (first, last) = (r.start / unit, (r.end - 1) / unit);
            let from = match out.last() {
                Some(&l) if l >= first => l + 1,
                _ => first,
            };
            out.extend(from..=last);
        }
        out
    }

    /// Bytes of data.
    pub fn data_len(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_of_a_map() {
        let map = DataMap {
            ranges: vec![4096..8192, 60_000..70_000, 200_000..200_100],
        };
        assert_eq!(map.units(65_536), vec![0, 1, 3]);
        assert_eq!(map.units(1 << 20), vec![0]);
        assert_eq!(DataMap::default().units(4096), Vec::<u64>::new());
    }
}
