//! Writes an image file front to back, hashing it while the bytes go by.
//!
//! An [`ImageWriter`] is the only way nanoimg puts bytes in an image or volume file. Its
//! caller hands it the image in offset order — metadata as byte slices, runs of zeros as
//! lengths, file contents as host paths — and it
//!
//! * gathers them into buffers of [`CHUNK`] bytes that end on `CHUNK`-aligned image offsets,
//!   and writes each buffer with one positioned write (two or more when it holds zeros);
//! * leaves holes instead of writing zeros: runs of zeros given as lengths are never written,
//!   and neither is any [`HOLE_BLOCK`]-aligned block of a buffer that is all zeros, so free
//!   space and the sparse parts of files cost no disk space and no write;
//! * hashes every full buffer with BLAKE3 as it hands it over, and passes it, without
//!   copying it, to a thread that computes the SHA-256 of the whole image (both are fed zeros
//!   for the holes) and, if asked, to one that computes the SHA-256 of every file written
//!   through it — so hashing overlaps reading and writing, and nothing is read back;
//! * holds at most [`BUFFERS`] buffers: when the SHA-256 thread or the disk falls behind, the
//!   writer waits for one to come back. Memory is bounded by `BUFFERS × CHUNK` whatever the
//!   file sizes.
//!
//! File data is read straight into the buffer that is then written, so each byte is copied
//! once from the page cache into user space, and goes to the disk from there (direct I/O) or
//! back into the page cache, as `cat` would; nothing else touches it but the hashers, which
//! read the shared buffer. Buffers are `CHUNK`-aligned anonymous mappings backed by
//! transparent huge pages where the kernel allows, so filling one costs one page fault and
//! writing it pins one page.
//!
//! The writer never goes backwards: what it is given is the image, in order. It starts at
//! offset 0 of a new, empty file and [`ImageWriter::finish`] sets the file's length to the
//! end of what it was given.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use sha2::{Digest, Sha256};

use nanoimg_vdisk::raw::{set_direct, write_skipping_zeros};
pub use nanoimg_vdisk::Sink;

/// Size of a write buffer. Buffers end on multiples of this in the image, so writes are
/// aligned to it except next to holes.
pub const CHUNK: usize = 2 << 20;
/// Most buffers alive at once (being filled, being written, or waiting for the hashers).
pub const BUFFERS: usize = 8;
/// A block of zeros this size, aligned to it in the image, is left as a hole (the usual
/// filesystem block size).
pub const HOLE_BLOCK: usize = nanoimg_vdisk::ZERO_BLOCK as usize;

/// Zeros fed to the hashers for holes.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// What the hashers computed, from [`ImageWriter::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    /// SHA-256 of the whole image.
    pub sha256: [u8; 32],
    /// BLAKE3 of the whole image.
    pub blake3: [u8; 32],
    /// SHA-256 of every file written with [`ImageWriter::file_bytes`] or
    /// [`ImageWriter::copy_file`], in that order; empty unless file digests were asked for.
    pub files: Vec<[u8; 32]>,
    /// The container file a [`Sink`] wrote (its length and digests, computed as it was
    /// written); `None` when the image went to a file directly (the file is the image).
    pub file: Option<nanoimg_vdisk::FileSums>,
    /// The image's survey, from a [planning](ImageWriter::planning) writer (which hashes
    /// nothing: its digests are zeros).
    pub survey: Option<nanoimg_vdisk::Survey>,
}

/// Why a file could not be copied into the image.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source could not be opened or read.
    #[error("cannot read it: {0}")]
    Read(io::Error),
    /// The source is not `expected` bytes long any more.
    #[error("it changed while the image was written (expected {expected} bytes)")]
    Changed { expected: u64 },
    /// The image could not be written.
    #[error("cannot write the image: {0}")]
    Write(io::Error),
}

/// [`CHUNK`] bytes of zeroed memory, aligned to `CHUNK` and mapped with transparent huge
/// pages where the kernel allows: one page fault instead of 512 when it is first filled,
/// one page to pin for each direct write, and fewer TLB misses for the hashers. (It is
/// aligned to [`HOLE_BLOCK`] in any case, as direct I/O needs.)
struct Buf {
    ptr: std::ptr::NonNull<u8>,
}

// SAFETY: `Buf` owns its mapping exclusively; it is plain memory.
unsafe impl Send for Buf {}
// SAFETY: shared access only reads.
unsafe impl Sync for Buf {}

impl Buf {
    fn new() -> io::Result<Buf> {
        // Map twice the size, keep the aligned `CHUNK` inside, unmap the rest.
        let len = 2 * CHUNK;
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = raw as usize;
        let start = base.next_multiple_of(CHUNK);
        let head = start - base;
        let tail = len - head - CHUNK;
        // SAFETY: both ranges lie inside the mapping made above and outside the part kept.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((start + CHUNK) as *mut libc::c_void, tail);
            }
            // Only advice: without huge pages the buffer works the same.
            libc::madvise(start as *mut libc::c_void, CHUNK, libc::MADV_HUGEPAGE);
        }
        let ptr = std::ptr::NonNull::new(start as *mut u8)
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Buf { ptr })
    }

    fn get(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `CHUNK` bytes, zero-filled by the kernel, owned
        // by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), CHUNK) }
    }

    fn get_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `get`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), CHUNK) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` and nothing borrows it any more.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), CHUNK);
        }
    }
}

/// A buffer on its way through the disk writer and the hashers. When the last of them drops
/// it, the memory goes back to the pool.
struct Block {
    data: Option<Buf>,
    pool: Sender<Buf>,
}

impl Block {
    fn bytes(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], Buf::get)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(buf) = self.data.take() {
            // The writer may be gone (error path); then the memory is simply freed.
            let _ = self.pool.send(buf);
        }
    }
}

/// To the disk writer: write the first `len` bytes of the block at image offset `offset`.
struct WriteMsg {
    block: Arc<Block>,
    len: usize,
    offset: u64,
}

/// To the image hashers: the next bytes of the image.
enum ImageMsg {
    /// The first `n` bytes of the block.
    Data(Arc<Block>, usize),
    /// This many zeros (a hole).
    Zeros(u64),
}

/// To the file hasher.
enum FileMsg {
    /// More bytes of the current file.
    Data(Arc<Block>, Range<usize>),
    /// The current file is complete.
    End,
}

/// A file-hashing event recorded against the buffer being filled, sent when it is full.
enum Pending {
    Data(Range<usize>),
    End,
}

struct Worker<T> {
    tx: SyncSender<T>,
    handle: JoinHandle<Sha256>,
}

struct DiskWriter {
    tx: SyncSender<WriteMsg>,
    /// Gives back the sink, when the image goes to one, for its `finish`.
    handle: JoinHandle<io::Result<Option<Box<dyn Sink>>>>,
}

struct FileWorker {
    tx: SyncSender<FileMsg>,
    handle: JoinHandle<Vec<[u8; 32]>>,
    pending: Vec<Pending>,
}

/// Writes an image in offset order; see the crate documentation.
pub struct ImageWriter<'f> {
    /// The image file, when the raw image is written directly (else a [`Sink`] gets it).
    out: Option<&'f File>,
    /// The buffer being filled; `buf[..fill]` holds image bytes from `buf_start`.
    buf: Buf,
    buf_start: u64,
    fill: usize,
    /// How much of `buf` this round may use, so that it ends `CHUNK`-aligned.
    cap: usize,
    pool_tx: Sender<Buf>,
    pool_rx: Receiver<Buf>,
    allocated: usize,
    disk: Option<DiskWriter>,
    sha256: Worker<ImageMsg>,
    blake3: blake3::Hasher,
    files: Option<FileWorker>,
    /// Whether the image is hashed (not for a pass that only maps where the data is).
    hash: bool,
    /// The directory of the last file copied, kept open: files come in tree order, so the
    /// next one is usually beside it and is opened relative to it, without a path walk.
    dir: Option<(PathBuf, File)>,
    /// For a [planning](Self::planning) writer: where the files' data and the other bytes go.
    plan: Option<nanoimg_vdisk::Surveyor>,
}

fn cap_for(offset: u64) -> usize {
    CHUNK - (offset % CHUNK as u64) as usize
}

fn stopped() -> io::Error {
    io::Error::other("a hashing thread stopped")
}

/// Starts the thread that computes the image's SHA-256. It is the one stage that cannot be
/// split (each block depends on the one before), so it gets a thread to itself; BLAKE3, about
/// three times faster, is computed by the writing thread when it hands a buffer over.
fn spawn_sha256() -> io::Result<Worker<ImageMsg>> {
    let (tx, rx) = mpsc::sync_channel::<ImageMsg>(BUFFERS);
    let handle = thread::Builder::new()
        .name("nanoimg-sha256".to_owned())
        .spawn(move || {
            let mut hasher = Sha256::new();
            for msg in rx {
                match msg {
                    ImageMsg::Data(block, n) => hasher.update(&block.bytes()[..n]),
                    ImageMsg::Zeros(n) => for_zeros(n, |z| hasher.update(z)),
                }
            }
            hasher
        })?;
    Ok(Worker { tx, handle })
}

/// Hands `n` zero bytes to `update`, in slices of [`ZEROS`].
fn for_zeros(mut n: u64, mut update: impl FnMut(&[u8])) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// Starts the thread that writes full buffers to the file, with direct I/O when the file
/// allows it (the data then goes from the buffer to the disk, without a copy in the page
/// cache and without write-back work left for the final sync), else through the page cache.
/// Starts the thread that hands full buffers to a [`Sink`] (a container format's writer),
/// in offset order.
fn spawn_sink_writer(mut sink: Box<dyn Sink>) -> io::Result<DiskWriter> {
    let (tx, rx) = mpsc::sync_channel::<WriteMsg>(BUFFERS);
    let handle = thread::Builder::new()
        .name("nanoimg-format".to_owned())
        .spawn(move || {
            for msg in rx {
                sink.write_at(msg.offset, &msg.block.bytes()[..msg.len])?;
            }
            Ok(Some(sink))
        })?;
    Ok(DiskWriter { tx, handle })
}

fn spawn_disk_writer(out: &File, try_direct: bool) -> io::Result<DiskWriter> {
    let file = out.try_clone()?;
    let mut direct = try_direct && set_direct(&file, true).is_ok();
    let (tx, rx) = mpsc::sync_channel::<WriteMsg>(BUFFERS);
    let handle = thread::Builder::new()
        .name("nanoimg-write".to_owned())
        .spawn(move || {
            let result = (|| {
                for msg in rx {
                    let data = &msg.block.bytes()[..msg.len];
                    match write_skipping_zeros(&file, msg.offset, data) {
                        // A filesystem may accept O_DIRECT and then refuse the writes
                        // (other alignments, no direct I/O after all): write through the page
                        // cache from then on. An error that is not about direct I/O comes
                        // back again from the buffered write and is reported.
                        Err(_) if direct => {
                            set_direct(&file, false)?;
                            direct = false;
                            write_skipping_zeros(&file, msg.offset, data)?;
                        }
                        r => r?,
                    }
                }
                Ok(())
            })();
            if direct {
                // The descriptor is shared with the caller's `File`: leave it as it was.
                let _ = set_direct(&file, false);
            }
            result.map(|()| None)
        })?;
    Ok(DiskWriter { tx, handle })
}

/// Turns `O_DIRECT` on or off for the open file.
fn spawn_file_hasher() -> io::Result<FileWorker> {
    let (tx, rx) = mpsc::sync_channel::<FileMsg>(BUFFERS * 64);
    let handle = thread::Builder::new()
        .name("nanoimg-file-sha256".to_owned())
        .spawn(move || {
            let mut digests = Vec::new();
            let mut h = Sha256::new();
            for msg in rx {
                match msg {
                    FileMsg::Data(block, range) => h.update(&block.bytes()[range]),
                    FileMsg::End => digests.push(h.finalize_reset().into()),
                }
            }
            digests
        })?;
    Ok(FileWorker {
        tx,
        handle,
        pending: Vec::new(),
    })
}

impl<'f> ImageWriter<'f> {
    /// A writer for `out`, a new empty file, starting at its offset 0. With `file_digests`,
    /// the SHA-256 of every file written through it is computed as well.
    pub fn new(out: &'f File, file_digests: bool) -> io::Result<ImageWriter<'f>> {
        Self::with_direct_io(out, file_digests, true)
    }

    /// As [`new`](Self::new), choosing whether to try direct I/O (`new` does); without it,
    /// or where the file refuses it, writes go through the page cache.
    pub fn with_direct_io(
        out: &'f File,
        file_digests: bool,
        direct_io: bool,
    ) -> io::Result<ImageWriter<'f>> {
        Self::start(
            Some(out),
            Some(spawn_disk_writer(out, direct_io)?),
            file_digests,
        )
    }

    /// A writer that hands the raw image, front to back, to `sink` (a container format's
    /// writer, `nanoimg-vdisk`) and calls its `finish` with the image's length and SHA-256.
    /// The digests are still those of the raw image.
    pub fn with_sink(sink: Box<dyn Sink>, file_digests: bool) -> io::Result<ImageWriter<'f>> {
        Self::start(None, Some(spawn_sink_writer(sink)?), file_digests)
    }

    /// A writer that writes and hashes nothing and reads no file: it is told the image as the
    /// others are, takes file data as a length, and [`finish`](Self::finish) returns the
    /// image's [`Survey`](nanoimg_vdisk::Survey) (`Digests::survey`) — what the formats
    /// whose file begins with a description of the whole disk need before their first byte.
    /// Its cost follows the metadata, not the data.
    pub fn planning() -> io::Result<ImageWriter<'f>> {
        let mut w = Self::start(None, None, false)?;
        w.hash = false;
        w.plan = Some(nanoimg_vdisk::Surveyor::new());
        Ok(w)
    }

    /// [`with_sink`](Self::with_sink) without hashing the raw image (whose sums nobody asked
    /// for: its `sha256` and `blake3` are zeros); the container file's sums and, with
    /// `file_digests`, the files' are still computed.
    pub fn with_sink_unhashed(
        sink: Box<dyn Sink>,
        file_digests: bool,
    ) -> io::Result<ImageWriter<'f>> {
        let mut w = Self::start(None, Some(spawn_sink_writer(sink)?), file_digests)?;
        w.hash = false;
        Ok(w)
    }

    fn start(
        out: Option<&'f File>,
        disk: Option<DiskWriter>,
        file_digests: bool,
    ) -> io::Result<ImageWriter<'f>> {
        let (pool_tx, pool_rx) = mpsc::channel();
        let sha256 = spawn_sha256()?;
        let blake3 = blake3::Hasher::new();
        let files = if file_digests {
            Some(spawn_file_hasher()?)
        } else {
            None
        };
        Ok(ImageWriter {
            out,
            buf: Buf::new()?,
            buf_start: 0,
            fill: 0,
            cap: CHUNK,
            pool_tx,
            pool_rx,
            allocated: 1,
            disk,
            sha256,
            blake3,
            files,
            hash: true,
            dir: None,
            plan: None,
        })
    }

    /// Bytes of the image given so far: the offset the next byte goes to.
    pub fn position(&self) -> u64 {
        self.buf_start + self.fill as u64
    }

    /// Appends image bytes (metadata, boot code...).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.append(bytes, false)
    }

    /// Appends `n` zero bytes. Whole buffers of them become a hole without being written or
    /// even set in memory.
    pub fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        if self.plan.is_some() {
            self.buf_start += n;
            return Ok(());
        }
        while n > 0 {
            let room = (self.cap - self.fill) as u64;
            if self.fill == 0 && n >= room {
                // Skip to the last CHUNK boundary within reach.
                let k = room + (n - room) / CHUNK as u64 * CHUNK as u64;
                self.send_image(|| ImageMsg::Zeros(k))?;
                if self.hash {
                    for_zeros(k, |z| {
                        self.blake3.update(z);
                    });
                }
                self.buf_start += k;
                self.cap = cap_for(self.buf_start);
                n -= k;
            } else {
                let k = n.min(room) as usize;
                self.buf.get_mut()[self.fill..self.fill + k].fill(0);
                self.fill += k;
                n -= k as u64;
                self.flush_if_full()?;
            }
        }
        Ok(())
    }

    /// Appends zeros up to image offset `offset`. Going backwards is an error.
    pub fn pad_to(&mut self, offset: u64) -> io::Result<()> {
        let at = self.position();
        if offset < at {
            return Err(io::Error::other(format!(
                "internal error: asked to write at byte {offset} after byte {at}"
            )));
        }
        self.zeros(offset - at)
    }

    /// Appends a whole file given as bytes (a generated file).
    pub fn file_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.append(bytes, true)?;
        self.note_file_end()
    }

    /// Appends exactly `len` bytes read from the host file at `path`, reading it straight
    /// into the write buffers. A file that is now shorter or longer is an error.
    pub fn copy_file(&mut self, path: &Path, len: u64) -> Result<(), CopyError> {
        if let Some(plan) = &mut self.plan {
            // The build's second pass reads the file, and checks it.
            plan.file(self.buf_start..self.buf_start + len);
            self.buf_start += len;
            return Ok(());
        }
        let mut file = self.open_source(path).map_err(CopyError::Read)?;
        let mut left = len;
        // Whether a read already came back short of what was asked (end of file).
        let mut at_end = false;
        while left > 0 {
            let room = self.cap - self.fill;
            // Asking for one byte more than is left tells, by a short read, that the file
            // ends where it should, without another read to probe for it.
            let ask = (left + 1).min(room as u64) as usize;
            let n = match file.read(&mut self.buf.get_mut()[self.fill..self.fill + ask]) {
                Ok(0) => return Err(CopyError::Changed { expected: len }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            if n as u64 > left {
                return Err(CopyError::Changed { expected: len });
            }
            at_end = n < ask;
            self.note_file_data(self.fill..self.fill + n);
            self.fill += n;
            left -= n as u64;
            self.flush_if_full().map_err(CopyError::Write)?;
        }
        if !at_end {
            let mut probe = [0u8; 1];
            loop {
                match file.read(&mut probe) {
                    Ok(0) => break,
                    Ok(_) => return Err(CopyError::Changed { expected: len }),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CopyError::Read(e)),
                }
            }
        }
        self.note_file_end().map_err(CopyError::Write)
    }

    /// Opens a file to copy, relative to its directory when that is the last one used (a
    /// third of the cost of a small file's open, read and close is the path walk).
    fn open_source(&mut self, path: &Path) -> io::Result<File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        use std::os::unix::ffi::OsStrExt;
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return File::open(path);
        };
        if self.dir.as_ref().is_none_or(|(p, _)| p != parent) {
            // Any trouble with the directory shows again, with its proper error, below.
            self.dir = File::open(parent).ok().map(|d| (parent.to_path_buf(), d));
        }
        let (Some((_, dir)), Ok(name)) = (&self.dir, std::ffi::CString::new(name.as_bytes()))
        else {
            return File::open(path);
        };
        // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string; the
        // descriptor returned, if any, is new and owned by nobody else.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Writes what is buffered, sets the file's length to [`position`](Self::position) (or
    /// finishes the sink's container) and returns the digests. The file is not synced.
    pub fn finish(mut self) -> io::Result<Digests> {
        if let Some(plan) = self.plan.take() {
            return Ok(Digests {
                sha256: [0; 32],
                blake3: [0; 32],
                files: Vec::new(),
                file: None,
                survey: Some(plan.finish(self.position())),
            });
        }
        self.flush()?;
        let mut sink = None;
        if let Some(disk) = self.disk.take() {
            drop(disk.tx);
            sink = disk.handle.join().map_err(|_| stopped())??;
        }
        let len = self.position();
        if let Some(out) = self.out {
            // Also cuts the zeros a direct write added to the last block.
            out.set_len(len)?;
        }
        let ImageWriter {
            sha256,
            blake3,
            hash,
            files,
            ..
        } = self;
        let join = |w: Worker<ImageMsg>| {
            drop(w.tx);
            w.handle.join().map_err(|_| stopped())
        };
        let sha256 = join(sha256)?;
        let raw = match hash {
            true => nanoimg_vdisk::RawHashes::from_states(sha256, blake3),
            false => nanoimg_vdisk::RawHashes {
                sha256: [0; 32],
                blake3: [0; 32],
                states: None,
            },
        };
        let file = match sink {
            Some(sink) => Some(sink.finish(len, &raw)?),
            None => None,
        };
        let (sha256, blake3) = (raw.sha256, raw.blake3);
        let files = match files {
            Some(w) => {
                drop(w.tx);
                w.handle.join().map_err(|_| stopped())?
            }
            None => Vec::new(),
        };
        Ok(Digests {
            sha256,
            blake3,
            files,
            file,
            survey: None,
        })
    }

    fn note_file_data(&mut self, range: Range<usize>) {
        if let Some(w) = &mut self.files {
            if !range.is_empty() {
                w.pending.push(Pending::Data(range));
            }
        }
    }

    /// Ends the current file: at once when no file data waits in the buffer, else right
    /// after that data when the buffer is handed over. (So events wait only while the buffer
    /// holds data, and an empty buffer never has to be handed over.)
    fn note_file_end(&mut self) -> io::Result<()> {
        if let Some(w) = &mut self.files {
            if w.pending.is_empty() {
                w.tx.send(FileMsg::End).map_err(|_| stopped())?;
            } else {
                w.pending.push(Pending::End);
            }
        }
        Ok(())
    }

    /// Appends bytes, as part of the current file if `file`.
    fn append(&mut self, mut bytes: &[u8], file: bool) -> io::Result<()> {
        if let Some(plan) = &mut self.plan {
            let range = self.buf_start..self.buf_start + bytes.len() as u64;
            match file {
                true => plan.file(range.clone()),
                false => plan.bytes(range.start, bytes),
            }
            self.buf_start = range.end;
            return Ok(());
        }
        while !bytes.is_empty() {
            let n = bytes.len().min(self.cap - self.fill);
            self.buf.get_mut()[self.fill..self.fill + n].copy_from_slice(&bytes[..n]);
            if file {
                self.note_file_data(self.fill..self.fill + n);
            }
            self.fill += n;
            bytes = &bytes[n..];
            self.flush_if_full()?;
        }
        Ok(())
    }

    fn send_image(&self, msg: impl Fn() -> ImageMsg) -> io::Result<()> {
        if !self.hash {
            return Ok(());
        }
        self.sha256.tx.send(msg()).map_err(|_| stopped())
    }

    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.fill == self.cap {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffer (skipping all-zero blocks), hands it to the hashers and takes a
    /// fresh one.
    fn flush(&mut self) -> io::Result<()> {
        if self.fill == 0 {
            return Ok(());
        }
        // Direct I/O writes whole blocks: the last buffer is padded with zeros, which
        // `finish` cuts off again.
        let n = self.fill;
        let padded = n.next_multiple_of(HOLE_BLOCK);
        self.buf.get_mut()[n..padded].fill(0);
        if self.hash {
            self.blake3.update(&self.buf.get()[..n]);
        }
        let fresh = self.next_buffer()?;
        let block = Arc::new(Block {
            data: Some(std::mem::replace(&mut self.buf, fresh)),
            pool: self.pool_tx.clone(),
        });
        let msg = WriteMsg {
            block: block.clone(),
            // Direct writes are of whole blocks; a sink gets exactly the image's bytes.
            len: if self.out.is_some() { padded } else { n },
            offset: self.buf_start,
        };
        let sent = self.disk.as_ref().map(|d| d.tx.send(msg));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.disk_error());
        }
        self.send_image(|| ImageMsg::Data(block.clone(), n))?;
        if let Some(w) = &mut self.files {
            for p in w.pending.drain(..) {
                let msg = match p {
                    Pending::Data(r) => FileMsg::Data(block.clone(), r),
                    Pending::End => FileMsg::End,
                };
                w.tx.send(msg).map_err(|_| stopped())?;
            }
        }
        self.buf_start += n as u64;
        self.fill = 0;
        self.cap = cap_for(self.buf_start);
        Ok(())
    }

    /// Why the disk writer stopped (it stops only on an error).
    fn disk_error(&mut self) -> io::Error {
        match self.disk.take().map(|d| {
            drop(d.tx);
            d.handle.join()
        }) {
            Some(Ok(Err(e))) => e,
            _ => stopped(),
        }
    }

    /// A free buffer: a new one while fewer than [`BUFFERS`] exist, else the next one the
    /// disk writer and hashers give back.
    fn next_buffer(&mut self) -> io::Result<Buf> {
        if let Ok(b) = self.pool_rx.try_recv() {
            return Ok(b);
        }
        if self.allocated < BUFFERS {
            self.allocated += 1;
            return Buf::new();
        }
        // Blocks return when their last user drops them; this writer holds a sender, so
        // this only fails if that invariant is broken, and then a new buffer is the safe
        // answer.
        self.pool_rx.recv().or_else(|_| Buf::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nanoimg_vdisk::is_zero;

    #[test]
    fn all_zero_sees_a_late_byte() {
        let mut b = vec![0u8; HOLE_BLOCK + 3];
        assert!(is_zero(&b));
        b[HOLE_BLOCK + 2] = 1;
        assert!(!is_zero(&b));
        b[HOLE_BLOCK + 2] = 0;
        b[100] = 0x80;
        assert!(!is_zero(&b));
    }

    #[test]
    fn buffers_are_aligned_zeroed_and_writable() {
        let mut bufs: Vec<Buf> = (0..3).map(|_| Buf::new().unwrap()).collect();
        for (i, b) in bufs.iter_mut().enumerate() {
            assert_eq!(b.get().as_ptr() as usize % CHUNK, 0);
            assert_eq!(b.get().len(), CHUNK);
            assert!(is_zero(b.get()));
            b.get_mut()[CHUNK - 1] = i as u8 + 1;
            b.get_mut()[0] = 0xaa;
        }
        // Each buffer is its own memory.
        for (i, b) in bufs.iter().enumerate() {
            assert_eq!((b.get()[0], b.get()[CHUNK - 1]), (0xaa, i as u8 + 1));
        }
    }

    #[test]
    fn buffers_end_on_chunk_boundaries() {
        assert_eq!(cap_for(0), CHUNK);
        assert_eq!(cap_for(512), CHUNK - 512);
        assert_eq!(cap_for(CHUNK as u64 * 3), CHUNK);
    }
}
