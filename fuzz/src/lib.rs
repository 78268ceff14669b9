//! The bodies of nanoimg's fuzz targets, kept in a library so that the corpora can also be
//! replayed by a plain `cargo test` on a stable toolchain (see `tests/replay.rs`).
//!
//! Every function here must return normally for any input: a panic anywhere below is a bug
//! in the crate that panicked (or, for the `assert!`s here, a broken invariant).

use std::io::{self, Cursor, Read, Seek, Write};
use std::path::Path;

use nanoimg_disk::DiskImage;
use nanoimg_tfs::{Entry, Tfs};
use nanoimg_tuple::print::{nanos_dump, DumpOptions};
use nanoimg_tuple::{encode, Decoder, Encoding, Value};

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
