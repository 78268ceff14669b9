//! The bodies of nanoimg's fuzz targets, kept in a library so that the corpora can also be
//! replayed by a plain `cargo test` on a stable toolchain (see `tests/replay.rs`).
//!
//! Every function here must return normally for any input: a panic anywhere below is a bug
//! in the crate that panicked (or, for the `assert!`s here, a broken invariant).

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nanoimg_disk::DiskImage;
use nanoimg_tfs::{Entry, Tfs};
use nanoimg_tuple::print::{nanos_dump, DumpOptions};
use nanoimg_tuple::{encode, Decoder, Encoding, Value};
use nanoimg_vdisk::{DiskReader, VirtualDisk};

/// Bytes of file data that one input may make `copy_file` produce, over all of its files.
/// A hostile `filelength` claims up to 2^64 bytes, all holes that read as zeros.
pub const COPY_CAP: u64 = 16 << 20;

/// A `Write` that counts bytes and refuses to go past a cap.
#[derive(Debug)]
pub struct CappedSink {
    pub written: u64,
    pub cap: u64,
}

impl CappedSink {
    pub fn new(cap: u64) -> Self {
        CappedSink { written: 0, cap }
    }
}

impl Write for CappedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.cap - self.written;
        if left == 0 && !buf.is_empty() {
            return Err(io::Error::other("fuzz output cap reached"));
        }
        let n = (buf.len() as u64).min(left) as usize;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Splits `data` into records: each is a 2-byte little-endian length and that many bytes
/// (or whatever is left). An input without a full length prefix is one record.
pub fn split_records(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    if rest.len() < 2 {
        return vec![rest];
    }
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        let n = len.min(body.len());
        out.push(&body[..n]);
        rest = &body[n..];
    }
    out
}

/// Frames records the way [`split_records`] reads them (for the seed generator).
pub fn join_records<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let len = u16::try_from(r.len()).expect("record under 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// `tuple_decoder`: the records of `data` through one [`Decoder`], in each encoding; then the
/// root, its `dump` text, and a re-encoding that must decode to the same tree.
pub fn tuple_decoder(data: &[u8]) {
    let records = split_records(data);
    for (encoding, parent_links) in [(Encoding::V5, true), (Encoding::V4, false)] {
        let mut d = Decoder::new();
        for r in &records {
            // The decoder's state after a bad record must still be safe to use.
            let _ = d.record(r, encoding);
        }
        let Ok(root) = d.root() else { continue };
        let value = Value::Tuple(root);
        let _ = nanos_dump(
            &value,
            DumpOptions {
                parent_links,
                limit: 1 << 20,
            },
        );
        let Value::Tuple(root) = value else {
            unreachable!()
        };
        // What the decoder produced, nanoimg's encoder can write (unless it holds one of the
        // buffers the encoding reserves), and it reads back as the same tree.
        if let Ok(bytes) = encode(&root) {
            let mut again = Decoder::new();
            again
                .record(&bytes, Encoding::V5)
                .expect("re-encoded record decodes");
            assert_eq!(again.root().expect("re-encoded root"), root);
        }
    }
}

/// Reads every file of a volume's tree into a [`CappedSink`] with `budget` bytes left.
fn copy_tree<R: Read + Seek>(
    fs: &mut Tfs<R>,
    dir: &std::collections::BTreeMap<Vec<u8>, Entry>,
    sink: &mut CappedSink,
) {
    for entry in dir.values() {
        match entry {
            Entry::File(f) => {
                if sink.written >= sink.cap {
                    return;
                }
                let before = sink.written;
                if let Ok(n) = fs.copy_file(f, sink) {
                    assert_eq!(n, f.len, "copy_file returns the file length");
                    assert_eq!(sink.written - before, n, "copy_file writes the file length");
                }
            }
            Entry::Dir(d) => copy_tree(fs, d, sink),
            Entry::Symlink(_) | Entry::Other(_) => {}
        }
    }
}

/// Everything a reader of an opened volume does with it.
fn read_volume<R: Read + Seek>(fs: &mut Tfs<R>) {
    let _ = (fs.version(), fs.uuid_string(), fs.label(), fs.size());
    let _ = fs.log_extensions();
    let _ = nanos_dump(
        &Value::Tuple(fs.root().clone()),
        DumpOptions {
            parent_links: true,
            limit: 1 << 20,
        },
    );
    let Ok(tree) = fs.tree() else { return };
    let mut sink = CappedSink::new(COPY_CAP);
    copy_tree(fs, &tree, &mut sink);
}

/// `tfs_log_reader`: `data` as a raw TFS volume (zero-padded to one sector).
pub fn tfs_log_reader(data: &[u8]) {
    if data.len() < 512 {
        // Shorter than the initial sector: an error, not a panic.
        let _ = Tfs::open(Cursor::new(data), 0, data.len() as u64);
    }
    let mut volume = data.to_vec();
    if volume.len() < 512 {
        volume.resize(512, 0);
    }
    let size = volume.len() as u64;
    if let Ok(mut fs) = Tfs::open(Cursor::new(volume), 0, size) {
        read_volume(&mut fs);
    }
}

/// `partition_reader`: `data` as a disk image file, partitioned or raw, with both of its
/// filesystems opened and read.
pub fn partition_reader(data: &[u8], dir: &Path) {
    let path = dir.join("disk.img");
    std::fs::write(&path, data).expect("write the image file");
    let Ok(img) = DiskImage::open(&path) else {
        return;
    };
    let _ = (img.size(), img.mbr(), img.esp(), img.stage2_len());
    let _ = (img.boot_partition(), img.root_partition());
    if let Ok(Some(mut fs)) = img.boot_fs() {
        read_volume(&mut fs);
    }
    if let Ok(mut fs) = img.root_fs() {
        read_volume(&mut fs);
    }
}

/// In a `vdisk_reader` input, `HOLE` and a 4-byte little-endian count stand for that many
/// zero bytes of the file (left as a hole). Containers are mostly zeros at fixed offsets
/// (qcow2's 64 KiB clusters, VHDX's 1 MiB regions at 1 MiB and beyond): folded, a valid one
/// is a few kilobytes, which libFuzzer can hold and mutate. An input without the marker is
/// the file as it is.
pub const HOLE: &[u8; 8] = b"FUZZHOLE";

/// Holes stop growing the file at this size (the literal bytes still follow), so that a
/// reader's allocations bounded by the file's length stay bounded here too.
pub const HOLE_CAP: u64 = 64 << 20;

/// Bytes read from an opened container in one call (at most).
pub const READ_CAP: usize = 64 << 10;

/// The file an input stands for: `(file offset, bytes)` pieces, and the file's length.
pub fn unfold(data: &[u8]) -> (Vec<(u64, &[u8])>, u64) {
    let mut pieces = Vec::new();
    let mut at = 0u64;
    let mut rest = data;
    loop {
        let marker = rest.windows(HOLE.len()).position(|w| w == HOLE);
        let literal = match marker {
            Some(i) if rest.len() >= i + HOLE.len() + 4 => &rest[..i],
            // No marker, or one without a full count: the rest is literal.
            _ => rest,
        };
        if !literal.is_empty() {
            pieces.push((at, literal));
            at += literal.len() as u64;
        }
        if literal.len() == rest.len() {
            return (pieces, at);
        }
        let count = &rest[literal.len() + HOLE.len()..literal.len() + HOLE.len() + 4];
        let n = u32::from_le_bytes([count[0], count[1], count[2], count[3]]);
        at = at.max((at + u64::from(n)).min(HOLE_CAP));
        rest = &rest[literal.len() + HOLE.len() + 4..];
    }
}

/// The inverse of [`unfold`] for the seed generator: every run of at least `min_run` zeros
/// becomes a hole marker.
pub fn fold(file: &[u8], min_run: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < file.len() {
        let zeros = file[i..].iter().take_while(|&&b| b == 0).count();
        if zeros >= min_run.max(1) {
            let mut left = zeros;
            while left > 0 {
                let n = left.min(u32::MAX as usize);
                out.extend_from_slice(HOLE);
                out.extend_from_slice(&(n as u32).to_le_bytes());
                left -= n;
            }
            i += zeros;
        } else {
            out.push(file[i]);
            i += 1;
        }
    }
    out
}

/// Writes the file an input stands for (see [`unfold`]) at `path`.
pub fn write_unfolded(data: &[u8], path: &Path) -> io::Result<()> {
    let (pieces, len) = unfold(data);
    let file = File::create(path)?;
    for (at, bytes) in pieces {
        file.write_all_at(bytes, at)?;
    }
    file.set_len(len)
}

/// Reads `len` bytes at `offset` (capped to [`READ_CAP`]), checking that a read past the
/// end is an error; the bytes if it succeeded.
fn read_range<'a>(
    disk: &dyn VirtualDisk,
    buf: &'a mut [u8],
    offset: u64,
    len: usize,
) -> Option<&'a [u8]> {
    let buf = &mut buf[..len.min(READ_CAP)];
    let past_end = offset
        .checked_add(buf.len() as u64)
        .is_none_or(|end| end > disk.size());
    match disk.read_exact_at(buf, offset) {
        Ok(()) => {
            assert!(!past_end, "a read past the end of the disk succeeded");
            Some(buf)
        }
        Err(_) => None,
    }
}

/// `vdisk_reader`: `data` (unfolded, see [`unfold`]) as a container file: `open`, then a
/// bounded set of reads through `read_exact_at` and through [`DiskReader`], which must agree.
pub fn vdisk_reader(data: &[u8], dir: &Path) {
    let path = dir.join("disk");
    write_unfolded(data, &path).expect("write the container file");
    let Ok(disk) = nanoimg_vdisk::open(&path) else {
        return;
    };
    let _ = disk.format();
    let size = disk.size();
    let mut buf = vec![0u8; READ_CAP];
    let mut again = vec![0u8; READ_CAP];

    // The first 64 KiB, whole, then in three uneven pieces: the same bytes either way.
    let head = size.min(READ_CAP as u64) as usize;
    if let Some(whole) = read_range(&*disk, &mut buf, 0, head) {
        let cuts = [0, head.min(1000), head.min(30_001), head];
        for w in cuts.windows(2) {
            if let Some(piece) = read_range(&*disk, &mut again, w[0] as u64, w[1] - w[0]) {
                assert_eq!(piece, &whole[w[0]..w[1]], "split read differs");
            }
        }
    }
    // The allocated ranges: sorted, disjoint, apart, inside the disk, and no byte of the
    // head outside them is non-zero.
    if let Ok(ranges) = disk.allocated() {
        let mut prev = None::<u64>;
        for r in &ranges {
            assert!(r.start < r.end && r.end <= size, "allocated range {r:?}");
            assert!(prev.is_none_or(|p| r.start > p), "allocated ranges out of order");
            prev = Some(r.end);
        }
        if let Some(whole) = read_range(&*disk, &mut buf, 0, head) {
            for (i, &b) in whole.iter().enumerate() {
                let i = i as u64;
                let k = ranges.partition_point(|r| r.end <= i);
                assert!(
                    b == 0 || ranges.get(k).is_some_and(|r| r.start <= i),
                    "non-zero byte {i} outside the allocated ranges"
                );
            }
        }
    }

    // The last 4 KiB, a few ranges in the middle and across cluster, grain and block
    // boundaries, reads crossing the end and past it, an empty read at the end.
    let ranges = [
        (size.saturating_sub(4096), 4096),
        (size / 2, 4096),
        (size / 3 / 512 * 512, 8192),
        ((size / 4).saturating_sub(100), 200),
        (65536 - 100, 200),
        ((1 << 20) - 100, 200),
        (size.saturating_sub(100), 200),
        (size, 1),
        (size, 0),
        (u64::MAX - 10, 100),
    ];
    for (offset, len) in ranges {
        let _ = read_range(&*disk, &mut buf, offset, len);
    }

    // Read + Seek: the middle, the end, a window; what reads must match read_exact_at.
    let mut r = DiskReader::new(&*disk);
    let mid = size / 2;
    if r.seek(SeekFrom::Start(mid)).is_ok() {
        let mut got = Vec::new();
        if (&mut r).take(5000).read_to_end(&mut got).is_ok() {
            assert_eq!(
                got.len() as u64,
                (size - mid).min(5000),
                "short DiskReader read"
            );
            if let Some(want) = read_range(&*disk, &mut buf, mid, got.len()) {
                assert_eq!(got, want, "DiskReader differs from read_exact_at");
            }
        }
    }
    if r.seek(SeekFrom::End(-4096)).is_ok() {
        let mut got = Vec::new();
        let _ = (&mut r).take(8192).read_to_end(&mut got);
    }
    assert!(r.seek(SeekFrom::Current(i64::MIN)).is_err() || size > i64::MAX as u64);
    let mut w = DiskReader::window(&*disk, size / 3, 3000);
    let mut got = Vec::new();
    let _ = (&mut w).take(8192).read_to_end(&mut got);
}
