//! The raw image itself: a sparse file with the image's bytes at their offsets.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::common::read_file_at;
use crate::{is_zero, Format, Sink, VirtualDisk, ZERO_BLOCK};

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

/// Writes `data` at `offset` of `out`, skipping [`ZERO_BLOCK`]-aligned blocks of zeros
/// (which stay holes in a new file).
pub fn write_skipping_zeros(out: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    let end = offset + data.len() as u64;
    let mut at = offset;
    // The start of a run of non-zero blocks not yet written.
    let mut run: Option<u64> = None;
    while at < end {
        let to = ((at / ZERO_BLOCK + 1) * ZERO_BLOCK).min(end);
        let zero = is_zero(&data[(at - offset) as usize..(to - offset) as usize]);
        match (zero, run) {
            (true, Some(from)) => {
                out.write_all_at(
                    &data[(from - offset) as usize..(at - offset) as usize],
                    from,
                )?;
                run = None;
            }
            (false, None) => run = Some(at),
            _ => {}
        }
        at = to;
    }
    if let Some(from) = run {
        out.write_all_at(&data[(from - offset) as usize..], from)?;
    }
    Ok(())
}

impl Sink for RawWriter {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_skipping_zeros(&self.out, offset, data)
    }

    fn finish(self: Box<Self>, len: u64, _raw_sha256: &[u8; 32]) -> io::Result<()> {
        self.out.set_len(len)
    }
}

/// Reads a raw image.
#[derive(Debug)]
pub struct RawReader {
    file: File,
    len: u64,
}

impl RawReader {
    pub fn new(file: File, len: u64) -> RawReader {
        RawReader { file, len }
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
}
