//! Nanos TFS filesystems: write them, and read them back.
//!
//! A TFS volume is a chain of *log extensions* holding the encoded tuple tree (see
//! `nanoimg-tuple`), followed by file data in sector runs (*extents*) that the tree points to.
//! Format reference: `nanos-image-format.md` §2.
//!
//! Writing is two-phase. [`plan`] takes a [`Dir`] tree whose files are host paths or bytes,
//! places every file's data (in canonical, bytewise-sorted order, from sector 1025), builds
//! and encodes the metadata record and frames it into log extensions — all without reading a
//! byte of file data. The resulting [`PlannedVolume`] knows its exact size, so a disk layout
//! can be computed before anything is written; [`PlannedVolume::write`] then streams each file
//! into place, never holding more than a copy buffer of it in memory.
//!
//! The layout is the one ops writes (one metadata record; first log extension at sector 1,
//! data from 1025, further extensions after the data) except that files are split into
//! extents of at most 32 MiB, as the kernel and mkfs do, numbers are integers, and nothing is
//! random: the same tree gives the same bytes.
//!
//! [`Tfs`] reads volumes written by nanoimg, by ops and by Nanos's own mkfs/kernel, and checks
//! every offset, length and reference on the way.

mod error;
mod read;
mod tree;
mod write;

pub use error::{ReadError, TreeError, WriteError};
pub use read::{format_uuid, Entry, Extent, FileEntry, Tfs};
pub use tree::{Dir, FileSource, Node};
pub use write::{plan, PlannedVolume, VolumeSpec, WrittenFile, WrittenVolume};

/// Bytes per sector; every TFS offset and length counts 512-byte sectors.
pub const SECTOR: u64 = 512;
/// Sectors per log extension after the initial one (512 KiB). Every writer uses this size.
pub const LOG_EXTENSION_SECTORS: u64 = 1024;
/// First sector of file data in the layout nanoimg writes (after sector 0 and extension #1).
pub const DATA_START_SECTOR: u64 = 1 + LOG_EXTENSION_SECTORS;
/// Largest extent nanoimg writes, in sectors (32 MiB, the kernel's `MAX_EXTENT_SIZE`).
pub const MAX_EXTENT_SECTORS: u64 = 65536;
/// Longest volume label in bytes (the kernel needs the NUL within 32 bytes).
pub const MAX_LABEL_LEN: usize = 31;
/// The TFS version nanoimg writes.
pub const TFS_VERSION: u64 = 5;
/// The magic at the start of every log extension.
pub const MAGIC: &[u8; 6] = b"NVMTFS";

/// Log frame identifiers (`nanos/src/fs/tlog.c`).
pub(crate) mod frame {
    pub const END_OF_LOG: u8 = 1;
    pub const TUPLE_AVAILABLE: u8 = 2;
    pub const TUPLE_EXTENDED: u8 = 3;
    pub const END_OF_SEGMENT: u8 = 4;
    pub const LOG_EXTENSION_LINK: u8 = 5;
}
