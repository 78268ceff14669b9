//! The Google Compute Engine image: a gzipped tar holding one file, `disk.raw`, written as
//! GNU tar writes a sparse file (`tar --format=oldgnu -S`).
//!
//! Sources: Google's "Import boot disk images to Compute Engine" (`disk.raw`, tar, gzip,
//! `--format=oldgnu -S`); GNU tar 1.34's `sparse.c` and its output for sparse files (checked
//! byte for byte in `tests/gce.rs`); ops (`provider/gcp/gcp_image.go`, `lepton.CreateArchive`),
//! which tars the image as it is (a plain GNU-format member) into `<image>.tar.gz`.
//!
//! # What is written
//!
//! One member named `disk.raw`, mode 0644, uid and gid 0, uname and gname empty (as
//! `--numeric-owner` and ops's Go `archive/tar` write them: no user name of the build
//! machine), mtime 0, magic `ustar  \0`:
//!
//! * if the [`DataMap`](crate::DataMap) has a hole, typeflag `S` (old GNU sparse): `realsize` is the raw
//!   image's size, `size` the bytes stored, the map's ranges as (offset, numbytes) pairs, four
//!   in the header and 21 in each extension block that follows (the `isextended` bytes link
//!   them), and, as GNU tar 1.34 always ends a sparse map, a last entry (`realsize`, 0); then
//!   the bytes of the ranges, back to back;
//! * if the map has no hole (every block holds data), a regular member (typeflag `0`), as GNU
//!   tar writes a file that is not sparse.
//!
//! Then the data is padded to 512 bytes, two zero blocks end the archive and zeros pad it to
//! a whole 10240-byte record, as GNU tar's default blocking factor of 20 does. Numbers are
//! octal with a NUL; one that does not fit (a size or offset of 8 GiB or more) is GNU's
//! base-256 (first byte 0x80, the value big-endian in the rest). The header checksum is six
//! octal digits, a NUL and a space, as GNU tar writes it.
//!
//! The header's fields are set through the `tar` crate's `GnuHeader`, `GnuSparseHeader` and
//! `GnuExtSparseHeader` (whose octal and base-256 encodings are GNU's). Two things are
//! written by hand: the checksum (the crate writes it as seven digits and a NUL, not GNU's
//! six digits, NUL, space) and the archive itself, because the `tar` crate's `Builder`
//! writes no sparse members, and its reader expands a sparse member's holes into zeros
//! through `Read` (gigabytes of zeros for a mostly empty disk) where this reader needs the
//! map to leave holes.
//!
//! **Size.** Google's import documentation asks for a raw disk whose size is a whole number
//! of GB; ops does not pad (it tars the image as it is, and Compute Engine rounds the disk
//! created from the image up to whole GiB). The writer follows ops: `realsize` is the raw
//! image's size; padding, if wanted, is the image builder's choice of size.
//!
//! **gzip**: [`crate::deflate::GzipWriter`] (the header flate2's `GzBuilder` writes with
//! mtime 0, no file name or comment, OS byte 255, "unknown": nothing about the build
//! machine), deflated at level 1, the fastest, in 512 KiB blocks by input offset on every
//! core (one valid gzip stream, the same bytes whatever the core count): the holes are not in
//! the tar at all, and what is (program, libraries, proving parameters) gains little from
//! harder work — on the bench payload level 6 (gzip's default, and ops's Go
//! `gzip.NewWriter`) took 30 s against 9.4 s for level 1. The deflate backend, miniz_oxide, is
//! pure Rust, pinned by `Cargo.lock` and deterministic (no CPU-dependent paths), and nothing
//! else varies: the bytes depend on the raw image's content and its data map only. There are
//! no identifiers.
//!
//! **Streaming.** The map is known up front, so the headers are written first and every
//! byte given to `write_at` goes straight into the gzip encoder: memory is the encoder's
//! window and a 1 MiB output buffer (and the map). A range the map calls data that is not
//! given (or given as zeros) is written as zeros; a non-zero byte outside the map is an
//! error (the map was wrong).
//!
//! # Reading
//!
//! gzip cannot be read at an offset, so [`GceReader::open`] decompresses the archive once,
//! checks that it is exactly one regular or sparse member named `disk.raw` (header checksum,
//! every number, a sparse map sorted, inside `realsize` and adding up to `size`, at most
//! 1 Mi map entries, nothing but zeros after the member and at most [`MAX_TAIL`] of them,
//! the gzip CRC), and places the
//! member's data into an anonymous temporary file (`tempfile::tempfile()`: in the temporary
//! directory, already unlinked, so nothing is left behind; zero blocks are not written),
//! back to back as the tar stores it: the file is as long as the data, whatever `realsize`
//! claims. Reads go through the sparse map (holes read as zeros without touching the file),
//! and [`VirtualDisk::allocated`] is the map: a whole-disk copy costs the data, not the
//! claimed size.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use flate2::{read::MultiGzDecoder, Compression};
use tar::{EntryType, GnuExtSparseHeader, GnuHeader, GnuSparseHeader, Header};

use crate::common::{bad, invalid_input, read_end, read_error, HashedFile, WriteOrder};
use crate::{
    is_zero, push_range, raw::write_skipping_zeros, FileSums, Format, RawHashes, Sink, Survey,
    VdiskError, VirtualDisk,
};

const BLOCK: u64 = 512;
const RECORD: u64 = 10240;
const NAME: &str = "disk.raw";
const GZIP_LEVEL: u32 = 1;
/// The most map entries the reader takes (16 MiB of map).
const MAX_MAP_ENTRIES: usize = 1 << 20;
/// The most bytes the reader takes after the member's data (padding, end-of-archive blocks,
/// record padding: 10 KiB at most from GNU tar's default blocking factor, 1 MiB at its
/// largest common one). Without a limit, a few kilobytes of deflate after a small member
/// make the reader inflate gigabytes of zeros.
pub const MAX_TAIL: u64 = 16 << 20;
static ZEROS: [u8; 65536] = [0; 65536];

/// Writes GNU's checksum into a header block: six octal digits, NUL, space.
fn set_gnu_cksum(block: &mut [u8; 512]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| b as u32).sum();
    let digits = format!("{:06o}", sum & 0o777777);
    block[148..154].copy_from_slice(digits.as_bytes());
    block[154] = 0;
    block[155] = b' ';
}

/// The header blocks of the `disk.raw` member for a raw image of `len` bytes holding data in
/// `ranges`.
fn headers(len: u64, ranges: &[Range<u64>]) -> io::Result<Vec<u8>> {
    let stored: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    let dense = stored == len;
    let mut h = Header::new_gnu();
    h.set_path(NAME)?;
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(stored);
    let mut out = Vec::new();
    if dense {
        h.set_entry_type(EntryType::Regular);
        let mut block = *h.as_bytes();
        set_gnu_cksum(&mut block);
        out.extend_from_slice(&block);
        return Ok(out);
    }
    h.set_entry_type(EntryType::GNUSparse);
    // The map as GNU tar ends it: an entry at the end of the file.
    let entries: Vec<(u64, u64)> = ranges
        .iter()
        .map(|r| (r.start, r.end - r.start))
        .chain([(len, 0)])
        .collect();
    let set = |sp: &mut GnuSparseHeader, &(offset, n): &(u64, u64)| {
        sp.set_offset(offset);
        sp.set_length(n);
    };
    let (first, mut rest) = entries.split_at(entries.len().min(4));
    {
        let gnu = h
            .as_gnu_mut()
            .ok_or_else(|| io::Error::other("internal error: not a GNU header"))?;
        gnu.set_real_size(len);
        for (sp, e) in gnu.sparse.iter_mut().zip(first) {
            set(sp, e);
        }
        gnu.set_is_extended(!rest.is_empty());
    }
    let mut block = *h.as_bytes();
    set_gnu_cksum(&mut block);
    out.extend_from_slice(&block);
    while !rest.is_empty() {
        let (these, after) = rest.split_at(rest.len().min(21));
        let mut ext = GnuExtSparseHeader::new();
        for (sp, e) in ext.sparse.iter_mut().zip(these) {
            set(sp, e);
        }
        ext.set_is_extended(!after.is_empty());
        out.extend_from_slice(ext.as_bytes());
        rest = after;
    }
    Ok(out)
}

/// Writes the GCE tar.gz front to back.
pub struct GceWriter {
    gz: crate::deflate::GzipWriter<HashedFile>,
    /// The raw image's length, and the checks of the calls.
    order: WriteOrder,
    ranges: Vec<Range<u64>>,
    /// The range being filled.
    ri: usize,
    /// The raw offset up to which the ranges' bytes are in the archive.
    done: u64,
    /// Bytes of tar written.
    tar_len: u64,
}

impl std::fmt::Debug for GceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GceWriter")
            .field("virtual_size", &self.order.limit())
            .field("ranges", &self.ranges.len())
            .field("done", &self.done)
            .field("tar_len", &self.tar_len)
            .finish_non_exhaustive()
    }
}

impl GceWriter {
    /// A writer for a raw image of `virtual_size` bytes whose data lies in the survey's
    /// map, into `out`, a new empty file. The tar headers are written at once.
    pub fn new(out: File, virtual_size: u64, survey: Survey) -> io::Result<GceWriter> {
        let map = survey.map;
        let mut prev_end = 0;
        for r in &map.ranges {
            if r.start >= r.end || r.start < prev_end || r.end > virtual_size {
                return Err(invalid_input(format!(
                    "internal error: data map range {r:?} is empty, out of order or past the \
                     image's {virtual_size} bytes"
                )));
            }
            prev_end = r.end;
        }
        let gz =
            crate::deflate::GzipWriter::new(HashedFile::new(out)?, Compression::new(GZIP_LEVEL));
        let mut w = GceWriter {
            gz,
            order: WriteOrder::new(virtual_size),
            ranges: map.ranges,
            ri: 0,
            done: 0,
            tar_len: 0,
        };
        let headers = headers(virtual_size, &w.ranges)?;
        w.emit(&headers)?;
        Ok(w)
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.gz.write_all(bytes)?;
        self.tar_len += bytes.len() as u64;
        Ok(())
    }

    fn emit_zeros(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            self.emit(&ZEROS[..k as usize])?;
            n -= k;
        }
        Ok(())
    }

    /// Fills the ranges with zeros up to raw offset `to`, moving past every range ending at or
    /// before it.
    fn zero_fill_to(&mut self, to: u64) -> io::Result<()> {
        while let Some(r) = self.ranges.get(self.ri).cloned() {
            let from = self.done.max(r.start);
            let end = r.end.min(to);
            if from < end {
                self.emit_zeros(end - from)?;
                self.done = end;
            }
            if r.end <= to {
                self.ri += 1;
            } else {
                break;
            }
        }
        Ok(())
    }
}

impl Sink for GceWriter {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = self.order.write(offset, data.len())?;
        let mut at = offset;
        while at < end {
            self.zero_fill_to(at)?;
            let slice = |a: u64, b: u64| &data[(a - offset) as usize..(b - offset) as usize];
            match self.ranges.get(self.ri).cloned() {
                Some(r) if r.start <= at => {
                    let to = r.end.min(end);
                    self.emit(slice(at, to))?;
                    self.done = to;
                    at = to;
                }
                next => {
                    let to = next.map_or(end, |r| r.start.min(end));
                    if !is_zero(slice(at, to)) {
                        return Err(io::Error::other(format!(
                            "internal error: non-zero data in {at}..{to}, outside the GCE \
                             tar's data map"
                        )));
                    }
                    at = to;
                }
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, len: u64, _raw: &RawHashes) -> io::Result<FileSums> {
        self.order.finish(Format::Gce, len)?;
        self.zero_fill_to(len)?;
        let pad = (BLOCK - self.tar_len % BLOCK) % BLOCK;
        self.emit_zeros(pad)?;
        self.emit_zeros(2 * BLOCK)?;
        let pad = (RECORD - self.tar_len % RECORD) % RECORD;
        self.emit_zeros(pad)?;
        self.gz.finish()?.finish()
    }
}

/// Reads the GCE tar.gz: the data of its `disk.raw` unpacked into an unlinked temporary
/// file, back to back as the tar stores it, with the sparse map to find it.
#[derive(Debug)]
pub struct GceReader {
    file: File,
    size: u64,
    /// The member's data: (raw offset, bytes, offset in `file`), sorted, disjoint, none
    /// empty.
    map: Vec<(u64, u64, u64)>,
}

/// Reads exactly `buf.len()` bytes, or says the archive ended.
fn read_block<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), String> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => "the archive ends inside the disk.raw member".to_owned(),
        _ => format!("cannot decompress: {e}"),
    })
}

fn sparse_entry(sp: &GnuSparseHeader) -> Result<Option<(u64, u64)>, String> {
    // GNU tar: an entry whose numbytes starts with NUL ends the map.
    if sp.numbytes[0] == 0 {
        return Ok(None);
    }
    let offset = sp.offset().map_err(|e| e.to_string())?;
    let n = sp.length().map_err(|e| e.to_string())?;
    Ok(Some((offset, n)))
}

/// The gzip stream of the archive being read.
type Gz = MultiGzDecoder<BufReader<File>>;

/// The member's data in the unpacked file: (raw offset, bytes, offset in the file), as
/// `GceReader` keeps it.
type Placed = Vec<(u64, u64, u64)>;

/// The `disk.raw` member, as its header gives it.
struct Member {
    /// The raw image's size.
    size: u64,
    /// The bytes the archive stores.
    stored: u64,
    /// Where the stored bytes go: (raw offset, bytes), in the archive's order.
    map: Vec<(u64, u64)>,
}

impl GceReader {
    pub fn open(file: File, path: &Path) -> Result<GceReader, VdiskError> {
        let mut z = MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file));
        let (block, gnu_magic) = read_member_header(&mut z, path)?;
        let member = member_map(&block, gnu_magic, &mut z, path)?;
        check_map(&member, path)?;
        let mut buf = vec![0u8; 1 << 20];
        let (out, placed) = unpack(&mut z, &member, &mut buf, path)?;
        check_tail(&mut z, member.stored, &mut buf, path)?;
        Ok(GceReader {
            file: out,
            size: member.size,
            map: placed,
        })
    }
}

/// Reads the first tar header from `z`, checked to be a GNU or ustar header (which it
/// says: true for GNU) with a right checksum, for the member `disk.raw`.
fn read_member_header(z: &mut Gz, path: &Path) -> Result<([u8; 512], bool), VdiskError> {
    let bad = bad(path, Format::Gce);
    let mut block = [0u8; 512];
    read_block(z, &mut block).map_err(|e| bad(format!("no tar header: {e}")))?;
    let h = Header::from_byte_slice(&block);
    let cksum = h
        .cksum()
        .map_err(|e| bad(format!("header checksum: {e}")))? as u64;
    let mut spaced = block;
    spaced[148..156].fill(b' ');
    let unsigned: u64 = spaced.iter().map(|&b| b as u64).sum();
    let signed: i64 = spaced.iter().map(|&b| b as i8 as i64).sum();
    if cksum != unsigned && cksum as i64 != signed {
        return Err(bad("the tar header's checksum is wrong".into()));
    }
    let gnu_magic = &block[257..265] == b"ustar  \0";
    let ustar_magic = &block[257..263] == b"ustar\0";
    if !gnu_magic && !ustar_magic {
        return Err(bad("not a GNU or ustar tar header".into()));
    }
    let name_end = block[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let prefix_empty = gnu_magic || block[345..500].iter().all(|&b| b == 0);
    if &block[..name_end] != NAME.as_bytes() || !prefix_empty {
        return Err(bad(format!(
            "the member is {:?}, not {NAME}",
            String::from_utf8_lossy(&block[..name_end])
        )));
    }
    Ok((block, gnu_magic))
}

/// The member that header `block` gives: a regular file, or a GNU sparse file (then with
/// its extension headers read from `z`).
fn member_map(
    block: &[u8; 512],
    gnu_magic: bool,
    z: &mut Gz,
    path: &Path,
) -> Result<Member, VdiskError> {
    let bad = bad(path, Format::Gce);
    let h = Header::from_byte_slice(block);
    let stored = h
        .entry_size()
        .map_err(|e| bad(format!("member size: {e}")))?;
    let ty = h.entry_type();
    let (size, map) = if ty.is_file() {
        (stored, vec![(0, stored)])
    } else if ty.is_gnu_sparse() && gnu_magic {
        let gnu = h
            .as_gnu()
            .ok_or_else(|| bad("a sparse member without a GNU header".into()))?;
        sparse_map(gnu, z, path)?
    } else {
        return Err(bad(format!(
            "the member is of type {:?}, not a regular or sparse file",
            ty.as_byte() as char
        )));
    };
    Ok(Member { size, stored, map })
}

/// The real size and the sparse map of a sparse member of header `gnu`, reading its
/// extension headers from `z`.
fn sparse_map(
    gnu: &GnuHeader,
    z: &mut Gz,
    path: &Path,
) -> Result<(u64, Vec<(u64, u64)>), VdiskError> {
    let bad = bad(path, Format::Gce);
    let size = gnu.real_size().map_err(|e| bad(format!("realsize: {e}")))?;
    let mut map = Vec::new();
    take_sparse(&gnu.sparse, &mut map, path)?;
    let mut extended = gnu.is_extended();
    while extended {
        let mut ext = GnuExtSparseHeader::new();
        read_block(z, ext.as_mut_bytes()).map_err(|e| bad(format!("sparse extension: {e}")))?;
        take_sparse(&ext.sparse, &mut map, path)?;
        extended = ext.is_extended();
    }
    Ok((size, map))
}

/// Adds the entries of `sps` to `map`, up to one that ends the map; at most
/// [`MAX_MAP_ENTRIES`] in all.
fn take_sparse(
    sps: &[GnuSparseHeader],
    map: &mut Vec<(u64, u64)>,
    path: &Path,
) -> Result<(), VdiskError> {
    let bad = bad(path, Format::Gce);
    for sp in sps {
        match sparse_entry(sp).map_err(|e| bad(format!("sparse map: {e}")))? {
            Some(e) => map.push(e),
            None => break,
        }
        if map.len() > MAX_MAP_ENTRIES {
            return Err(bad(format!("more than {MAX_MAP_ENTRIES} sparse entries")));
        }
    }
    Ok(())
}

/// Checks the map: sorted, disjoint, inside the file, adding up to the stored bytes.
fn check_map(member: &Member, path: &Path) -> Result<(), VdiskError> {
    let bad = bad(path, Format::Gce);
    let (size, stored) = (member.size, member.stored);
    let mut prev_end = 0u64;
    let mut total = 0u64;
    for &(offset, n) in &member.map {
        let end = offset
            .checked_add(n)
            .filter(|&e| offset >= prev_end && e <= size)
            .ok_or_else(|| {
                bad(format!(
                    "sparse entry ({offset}, {n}) out of order or past {size} bytes"
                ))
            })?;
        prev_end = end;
        total += n;
    }
    if total != stored {
        return Err(bad(format!(
            "the sparse map holds {total} bytes, the member {stored}"
        )));
    }
    Ok(())
}

/// Unpacks the member's stored bytes from `z` into an unlinked temporary file, back to
/// back; gives it and the map to find them there.
fn unpack(
    z: &mut Gz,
    member: &Member,
    buf: &mut [u8],
    path: &Path,
) -> Result<(File, Placed), VdiskError> {
    let bad = bad(path, Format::Gce);
    let read = read_error(path);
    let out = tempfile::tempfile().map_err(read)?;
    out.set_len(member.stored).map_err(read)?;
    let mut placed = Vec::with_capacity(member.map.len());
    let mut at = 0u64;
    for &(offset, n) in &member.map {
        if n > 0 {
            placed.push((offset, n, at));
        }
        let mut done = 0;
        while done < n {
            let k = (n - done).min(buf.len() as u64) as usize;
            read_block(z, &mut buf[..k]).map_err(bad)?;
            write_skipping_zeros(&out, at, &buf[..k]).map_err(read)?;
            done += k as u64;
            at += k as u64;
        }
    }
    Ok((out, placed))
}

/// Checks what follows the member's `stored` bytes in `z`: the padding, the end-of-archive
/// blocks and the record's padding, zeros to the end.
fn check_tail(z: &mut Gz, stored: u64, buf: &mut [u8], path: &Path) -> Result<(), VdiskError> {
    let bad = bad(path, Format::Gce);
    let mut tail_bytes = 0u64;
    loop {
        let k = match z.read(buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad(format!("cannot decompress: {e}"))),
        };
        if !is_zero(&buf[..k]) {
            let pad = (BLOCK - stored % BLOCK) % BLOCK;
            return Err(bad(if tail_bytes >= pad {
                "more than the one member disk.raw".into()
            } else {
                "non-zero bytes in the member's padding".into()
            }));
        }
        tail_bytes += k as u64;
        if tail_bytes > MAX_TAIL {
            return Err(bad(format!(
                "more than {MAX_TAIL} bytes of zeros after the member"
            )));
        }
    }
    Ok(())
}

impl VirtualDisk for GceReader {
    fn format(&self) -> Format {
        Format::Gce
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = read_end(offset, buf.len(), self.size)?;
        buf.fill(0);
        // The first piece of data ending after `offset`.
        let first = self.map.partition_point(|&(o, n, _)| o + n <= offset);
        for &(o, n, at) in &self.map[first..] {
            if o >= end {
                break;
            }
            let from = o.max(offset);
            let to = (o + n).min(end);
            let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
            self.file.read_exact_at(dst, at + (from - o))?;
        }
        Ok(())
    }

    /// The sparse map's data ranges.
    fn allocated(&self) -> io::Result<Vec<Range<u64>>> {
        let mut out = Vec::new();
        for &(o, n, _) in &self.map {
            push_range(&mut out, o..o + n);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The tar (not gzipped) of a GCE image of `raw`, as the writer makes it.
    fn tar_of(raw: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.tar.gz");
        let mut w = crate::writer(
            Format::Gce,
            File::create(&path).unwrap(),
            raw.len() as u64,
            Some(crate::survey_of(raw)),
        )
        .unwrap();
        w.write_at(0, raw).unwrap();
        w.finish(raw.len() as u64, &RawHashes::of(raw)).unwrap();
        let mut tar = Vec::new();
        MultiGzDecoder::new(File::open(&path).unwrap())
            .read_to_end(&mut tar)
            .unwrap();
        tar
    }

    fn open_gzipped(tar: &[u8]) -> Result<GceReader, VdiskError> {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
        z.write_all(tar).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&z.finish().unwrap()).unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        GceReader::open(file, Path::new("t.tar.gz"))
    }

    #[test]
    fn zeros_after_the_member_are_limited() {
        let tar = tar_of(&[7u8; 4096]);
        let mut padded = tar.clone();
        padded.resize(tar.len() + 1024 * 1024, 0);
        assert_eq!(open_gzipped(&padded).unwrap().size(), 4096);
        // The fuzzer's case: a small member, then (a deflate stream making) gigabytes of
        // zeros, all inflated to check them. Past MAX_TAIL it is an error.
        padded.resize(tar.len() + MAX_TAIL as usize + 1, 0);
        let err = open_gzipped(&padded).unwrap_err().to_string();
        assert!(err.contains("bytes of zeros after the member"), "{err}");
    }
}
