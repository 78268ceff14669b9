//! The raw image itself: a sparse file with the image's bytes at their offsets.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::common::read_file_at;
use crate::{is_zero, push_range, FileSums, Format, RawHashes, Sink, VirtualDisk, ZERO_BLOCK};

/// Writes the raw image into a file, leaving holes for zero blocks.
#[derive(Debug)]
pub struct RawWriter {
    out: File,
}

impl RawWriter {
    pub fn new(out: File) -> RawWriter {
        RawWriter { out }
    }
}

/// Turns direct I/O (`O_DIRECT`) on or off for `file`'s open file description (shared with
/// its clones).
pub fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor this `File` owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `data` at `offset` of `out`, leaving out the [`ZERO_BLOCK`]-aligned blocks that are
/// all zeros (which stay holes in a new file). Only whole blocks are left out — a partial
/// block at either end of `data` is written — so every write keeps the alignment of `data`,
/// as direct I/O needs (`nanoimg-stream` writes its buffers through this too).
pub fn write_skipping_zeros(out: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    let block = ZERO_BLOCK as usize;
    let mut run_start: Option<usize> = None;
    let mut i = 0;
    while i < data.len() {
        // Blocks are aligned on the disk, so the first may be short.
        let to_boundary = block - ((offset + i as u64) % ZERO_BLOCK) as usize;
        let end = (i + to_boundary).min(data.len());
        let zero = end - i == block && is_zero(&data[i..end]);
        match (zero, run_start) {
            (true, Some(s)) => {
                out.write_all_at(&data[s..i], offset + s as u64)?;
                run_start = None;
            }
            (false, None) => run_start = Some(i),
            _ => {}
        }
        i = end;
    }
    if let Some(s) = run_start {
        out.write_all_at(&data[s..], offset + s as u64)?;
    }
    Ok(())
}

impl Sink for RawWriter {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_skipping_zeros(&self.out, offset, data)
    }

    /// The file is the raw image: its digests are the raw image's.
    fn finish(self: Box<Self>, len: u64, raw: &RawHashes) -> io::Result<FileSums> {
        self.out.set_len(len)?;
        Ok(FileSums {
            size: len,
            sha256: raw.sha256,
            blake3: raw.blake3,
        })
    }
}

/// Reads a raw image.
#[derive(Debug)]
pub struct RawReader {
    file: File,
    len: u64,
    notes: Vec<String>,
}

impl RawReader {
    pub fn new(file: File, len: u64) -> RawReader {
        RawReader {
            file,
            len,
            notes: Vec::new(),
        }
    }

    /// A raw image, with a note on why it is read as one (see [`VirtualDisk::notes`]).
    pub fn with_note(file: File, len: u64, note: String) -> RawReader {
        RawReader {
            file,
            len,
            notes: vec![note],
        }
    }
}

impl VirtualDisk for RawReader {
    fn format(&self) -> Format {
        Format::Raw
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_file_at(&self.file, self.len, buf, offset)
    }
    fn allocated(&self) -> io::Result<Vec<Range<u64>>> {
        file_extents(&self.file, self.len)
    }
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

/// The parts of the first `len` bytes of `file` that hold data, by `SEEK_DATA` and
/// `SEEK_HOLE`: one range per extent the filesystem has (a filesystem without them reports
/// the whole file as data). Only the descriptor's offset moves; reads are positioned.
pub(crate) fn file_extents(file: &File, len: u64) -> io::Result<Vec<Range<u64>>> {
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < len {
        let Ok(pos) = libc::off_t::try_from(at) else {
            push_range(&mut out, at..len);
            break;
        };
        // SAFETY: lseek on a descriptor `file` owns; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // No data from here on.
                Some(libc::ENXIO) => break,
                // No SEEK_DATA here: all of it may be data.
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
                    push_range(&mut out, at..len);
                    break;
                }
                _ => return Err(e),
            }
        }
        let data = data as u64;
        if data >= len {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            len
        } else {
            (hole as u64).clamp(data + 1, len)
        };
        push_range(&mut out, data..hole);
        at = hole;
    }
    Ok(out)
}
