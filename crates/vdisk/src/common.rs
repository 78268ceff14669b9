//! What the writers and readers of several formats share: the checks a [`Sink`]'s calls
//! get, collecting blocks, identifiers derived from the content, integer fields, errors.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{is_zero, Format, VdiskError};

#[cfg(doc)]
use crate::Sink;

pub(crate) fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The rules every writer holds a [`Sink`]'s calls to: each write ends at or before the raw
/// image's length `limit`, none starts before the end of the last one that had bytes, and
/// `finish` is given that length.
#[derive(Debug)]
pub(crate) struct WriteOrder {
    limit: u64,
    /// Where the last call with bytes ended.
    end: u64,
}

impl WriteOrder {
    pub(crate) fn new(limit: u64) -> WriteOrder {
        WriteOrder { limit, end: 0 }
    }

    /// The raw image's length the writer was made for.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Checks a write of `len` bytes at `offset` and returns where it ends.
    pub(crate) fn write(&mut self, offset: u64, len: usize) -> io::Result<u64> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.limit)
            .ok_or_else(|| {
                invalid_input(format!(
                    "write of {len} bytes at {offset} is past the disk's end ({})",
                    self.limit
                ))
            })?;
        if offset < self.end {
            return Err(invalid_input(format!(
                "write at {offset} goes back before {} (writes must come in increasing order)",
                self.end
            )));
        }
        if len > 0 {
            self.end = end;
        }
        Ok(end)
    }

    /// Checks the length `finish` is given.
    pub(crate) fn finish(&self, format: Format, len: u64) -> io::Result<()> {
        if len != self.limit {
            return Err(io::Error::other(format!(
                "internal error: {format} writer made for {} bytes, finished at {len}",
                self.limit
            )));
        }
        Ok(())
    }
}

/// Collects a raw image given front to back into whole blocks of `size` bytes, and hands
/// each block holding a non-zero byte, in increasing order, to a callback. Holds at most
/// one block. (Shared by the qcow2 and VHDX writers.)
#[derive(Debug)]
pub(crate) struct BlockBuffer {
    size: u64,
    order: WriteOrder,
    /// The block being filled, if any (its bytes are in `buf`, zeros where nothing came).
    pending: Option<u64>,
    buf: Vec<u8>,
}

impl BlockBuffer {
    /// Blocks of `size` bytes of a raw image of `limit` bytes.
    pub(crate) fn new(size: u64, limit: u64) -> BlockBuffer {
        BlockBuffer {
            size,
            order: WriteOrder::new(limit),
            pending: None,
            buf: Vec::new(),
        }
    }

    /// `data` at `offset` of the raw image; `emit(block_index, block)` for each complete
    /// block with data.
    pub(crate) fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        mut emit: impl FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = self.order.write(offset, data.len())?;
        let mut at = offset;
        while at < end {
            let index = at / self.size;
            let block_start = index * self.size;
            let to = (block_start + self.size).min(end);
            let piece = &data[(at - offset) as usize..(to - offset) as usize];
            if self.pending.is_some_and(|p| p != index) {
                self.flush(&mut emit)?;
            }
            if self.pending == Some(index) {
                let from = (at - block_start) as usize;
                self.buf[from..from + piece.len()].copy_from_slice(piece);
            } else if is_zero(piece) {
                // Nothing to keep: the block so far is zeros.
            } else if piece.len() as u64 == self.size {
                emit(index, piece)?;
            } else {
                if self.buf.is_empty() {
                    self.buf = vec![0; self.size as usize];
                } else {
                    self.buf.fill(0);
                }
                let from = (at - block_start) as usize;
                self.buf[from..from + piece.len()].copy_from_slice(piece);
                self.pending = Some(index);
            }
            at = to;
        }
        Ok(())
    }

    /// The raw image is `len` bytes long (checked against the writer's): hands over the
    /// block being filled, if it has data.
    pub(crate) fn finish(
        &mut self,
        format: Format,
        len: u64,
        emit: impl FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.order.finish(format, len)?;
        self.flush(emit)
    }

    /// Hands over the block being filled, if it has data.
    fn flush(&mut self, mut emit: impl FnMut(u64, &[u8]) -> io::Result<()>) -> io::Result<()> {
        if let Some(index) = self.pending.take() {
            if !is_zero(&self.buf) {
                emit(index, &self.buf)?;
            }
        }
        Ok(())
    }
}

/// 16 bytes derived from the raw image's SHA-256 for the identifier named `label`: the
/// first 16 bytes of SHA-256(`label` ‖ `raw_sha256`). Callers set the UUID version bits.
pub(crate) fn derived_id(label: &str, raw_sha256: &[u8; 32]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(raw_sha256);
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// The end of a read of `len` bytes at `offset` from a disk of `size` bytes; reading past
/// the end is `UnexpectedEof`.
pub(crate) fn read_end(offset: u64, len: usize, size: u64) -> io::Result<u64> {
    offset
        .checked_add(len as u64)
        .filter(|&e| e <= size)
        .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

/// `read_exact_at` of a disk whose first `size` bytes of `file` are the raw image.
pub(crate) fn read_file_at(file: &File, size: u64, buf: &mut [u8], offset: u64) -> io::Result<()> {
    read_end(offset, buf.len(), size)?;
    file.read_exact_at(buf, offset)
}

/// The error for a file at `path` that breaks `format`'s rules, as
/// [`VdiskError::Bad`] (when opening).
pub(crate) fn bad(path: &Path, format: Format) -> impl Fn(String) -> VdiskError + Copy + '_ {
    move |reason| VdiskError::Bad {
        path: path.to_path_buf(),
        format,
        reason,
    }
}

/// The error for a file at `path` that cannot be read, as [`VdiskError::Read`].
pub(crate) fn read_error(path: &Path) -> impl Fn(io::Error) -> VdiskError + Copy + '_ {
    move |source| VdiskError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// The error for a file at `path` that breaks `format`'s rules, found after opening it
/// (when reading).
pub(crate) fn invalid_data(path: &Path, format: Format, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: not a valid {format} image: {reason}", path.display()),
    )
}

pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(b, at))
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(b, at))
}

pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(array(b, at))
}

/// The `N` bytes of `b` at `at`.
fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut x = [0u8; N];
    x.copy_from_slice(&b[at..at + N]);
    x
}

/// Size of [`HashedFile`]'s write buffers.
const OUT_BUF: usize = 1 << 20;
/// Buffers queued for the SHA-256 thread at most.
const OUT_QUEUE: usize = 4;
/// Alignment of the buffers (and of direct writes).
const ALIGN: usize = 4096;

/// A buffer of `OUT_BUF` bytes aligned to [`ALIGN`], as direct I/O needs, filled to `len`.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is owned memory, handed from thread to thread, never shared.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn layout() -> std::alloc::Layout {
        // Constants: a power of two alignment, a size that is a multiple of it.
        std::alloc::Layout::from_size_align(OUT_BUF, ALIGN).expect("a valid buffer layout")
    }

    fn new() -> AlignedBuf {
        let layout = Self::layout();
        // SAFETY: the layout's size is not zero.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        match std::ptr::NonNull::new(ptr) {
            Some(ptr) => AlignedBuf { ptr, len: 0 },
            None => std::alloc::handle_alloc_error(layout),
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes from `ptr` are initialised (the allocation is zeroed) and owned.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes with zeros up to the next multiple of [`ALIGN`] (a direct write's length).
    fn padded(&mut self) -> &[u8] {
        let n = self.len.next_multiple_of(ALIGN);
        // SAFETY: `n` is at most OUT_BUF (a multiple of ALIGN); the bytes are owned.
        unsafe {
            std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, n - self.len);
            std::slice::from_raw_parts(self.ptr.as_ptr(), n)
        }
    }

    fn room(&self) -> usize {
        OUT_BUF - self.len
    }

    /// Appends `data` (at most [`room`](Self::room) bytes).
    fn extend(&mut self, data: &[u8]) {
        let n = data.len().min(self.room());
        // SAFETY: `n` bytes fit after `len`; the regions do not overlap (`data` is not ours).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
    }

    /// Appends `n` zeros (at most [`room`](Self::room)).
    fn extend_zeros(&mut self, n: usize) {
        let n = n.min(self.room());
        // SAFETY: `n` bytes fit after `len`.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, n) };
        self.len += n;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout()) };
    }
}

enum HashMsg {
    /// A full buffer, and the file offset of its first byte.
    Data(AlignedBuf, u64),
    Zeros(u64),
}

/// A new file written strictly front to back and hashed as it is written: BLAKE3 by the
/// thread that fills it, the writes and then SHA-256 on a thread each, so a container's
/// digests never need the finished file read back and hashing never waits for the disk.
/// Zero blocks become holes (as [`crate::raw::write_skipping_zeros`] leaves them). The
/// writes are direct (`O_DIRECT`, from 4 KiB-aligned buffers at 1 MiB offsets: no copy into
/// the page cache, nothing left for the final `fsync`) when the file allows it, else
/// buffered, with write-back started as they go ([`writeback`]). Memory: at most
/// `2 * OUT_QUEUE + 3` buffers of 1 MiB.
pub(crate) struct HashedFile {
    file: File,
    buf: AlignedBuf,
    /// The file offset of the buffer's first byte.
    buf_at: u64,
    direct: bool,
    blake3: blake3::Hasher,
    tx: Option<std::sync::mpsc::SyncSender<HashMsg>>,
    writer: Option<std::thread::JoinHandle<io::Result<()>>>,
    sha: Option<std::thread::JoinHandle<[u8; 32]>>,
    spare: std::sync::mpsc::Receiver<AlignedBuf>,
}

impl std::fmt::Debug for HashedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashedFile")
            .field("position", &self.position())
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

fn hash_stopped() -> io::Error {
    io::Error::other("the SHA-256 thread of a container writer stopped")
}

/// The writing thread of a [`HashedFile`]: writes each buffer at its offset (direct while
/// the file takes it), then passes it on to the SHA-256 thread, in order.
fn write_buffers(
    file: File,
    mut direct: bool,
    rx: std::sync::mpsc::Receiver<HashMsg>,
    sha: std::sync::mpsc::SyncSender<HashMsg>,
) -> io::Result<()> {
    for mut msg in rx {
        if let HashMsg::Data(buf, at) = &mut msg {
            // A direct write is of whole aligned blocks: the last is padded with zeros,
            // which `finish` cuts off again. A filesystem may accept O_DIRECT and refuse
            // the writes: buffered from then on.
            if direct && crate::raw::write_skipping_zeros(&file, *at, buf.padded()).is_err() {
                crate::raw::set_direct(&file, false)?;
                direct = false;
            }
            if !direct {
                crate::raw::write_skipping_zeros(&file, *at, buf.bytes())?;
                writeback(&file, *at, buf.len as u64);
            }
        }
        sha.send(msg).map_err(|_| hash_stopped())?;
    }
    Ok(())
}

impl HashedFile {
    pub(crate) fn new(file: File) -> io::Result<HashedFile> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<HashMsg>(OUT_QUEUE);
        let (sha_tx, sha_rx) = std::sync::mpsc::sync_channel::<HashMsg>(OUT_QUEUE);
        let (spare_tx, spare) = std::sync::mpsc::channel::<AlignedBuf>();
        let sha = std::thread::Builder::new()
            .name("nanoimg-file-sha256".to_owned())
            .spawn(move || {
                let mut h = Sha256::new();
                for msg in sha_rx {
                    match msg {
                        HashMsg::Data(b, _) => {
                            h.update(b.bytes());
                            let _ = spare_tx.send(b);
                        }
                        HashMsg::Zeros(n) => for_zeros(n, |z| h.update(z)),
                    }
                }
                h.finalize().into()
            })?;
        let direct = crate::raw::set_direct(&file, true).is_ok();
        let out = file.try_clone()?;
        let writer = std::thread::Builder::new()
            .name("nanoimg-file-write".to_owned())
            .spawn(move || write_buffers(out, direct, rx, sha_tx))?;
        Ok(HashedFile {
            file,
            buf: AlignedBuf::new(),
            buf_at: 0,
            direct,
            blake3: blake3::Hasher::new(),
            tx: Some(tx),
            writer: Some(writer),
            sha: Some(sha),
            spare,
        })
    }

    /// Bytes given so far: the offset of the next one.
    pub(crate) fn position(&self) -> u64 {
        self.buf_at + self.buf.len as u64
    }

    fn send(&mut self, msg: HashMsg) -> io::Result<()> {
        let sent = self.tx.as_ref().map(|tx| tx.send(msg).is_ok());
        match sent {
            Some(true) => Ok(()),
            _ => Err(self.stop_writer().err().unwrap_or_else(hash_stopped)),
        }
    }

    /// Closes the writing thread's queue and waits for it: why it stopped, if it failed.
    fn stop_writer(&mut self) -> io::Result<()> {
        drop(self.tx.take());
        match self.writer.take() {
            Some(w) => w.join().map_err(|_| {
                io::Error::other("the writing thread of a container writer panicked")
            })?,
            None => Ok(()),
        }
    }

    /// Hashes what is buffered and hands it to the writing thread.
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.len == 0 {
            return Ok(());
        }
        self.blake3.update(self.buf.bytes());
        let next = match self.spare.try_recv() {
            Ok(mut b) => {
                b.len = 0;
                b
            }
            Err(_) => AlignedBuf::new(),
        };
        let full = std::mem::replace(&mut self.buf, next);
        let at = self.buf_at;
        self.buf_at += full.len as u64;
        self.send(HashMsg::Data(full, at))
    }

    /// Appends `data`.
    pub(crate) fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let k = self.buf.room().min(data.len());
            self.buf.extend(&data[..k]);
            data = &data[k..];
            if self.buf.room() == 0 {
                self.flush_buf()?;
            }
        }
        Ok(())
    }

    /// Appends `n` zero bytes: long runs become a hole without being written.
    pub(crate) fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        if self.buf.len > 0 {
            let k = (self.buf.room() as u64).min(n) as usize;
            self.buf.extend_zeros(k);
            n -= k as u64;
            if self.buf.room() == 0 {
                self.flush_buf()?;
            }
        }
        if n == 0 {
            return Ok(());
        }
        // The buffer is empty: whole buffers of zeros are a hole, hashed but not written.
        let whole = n / OUT_BUF as u64 * OUT_BUF as u64;
        if whole > 0 {
            for_zeros(whole, |z| {
                self.blake3.update(z);
            });
            self.send(HashMsg::Zeros(whole))?;
            self.buf_at += whole;
            n -= whole;
        }
        self.buf.extend_zeros(n as usize);
        Ok(())
    }

    /// Appends zeros up to file offset `to` (nothing if already there).
    pub(crate) fn pad_to(&mut self, to: u64) -> io::Result<()> {
        let at = self.position();
        if to < at {
            return Err(io::Error::other(format!(
                "internal error: a container writer went back from {at} to {to}"
            )));
        }
        self.zeros(to - at)
    }

    /// Writes what is left, sets the file's length to [`position`](Self::position) and
    /// returns the file's length and digests.
    pub(crate) fn finish(mut self) -> io::Result<crate::FileSums> {
        self.flush_buf()?;
        self.stop_writer()?;
        let size = self.position();
        // Also cuts the zeros a direct write added to the last block.
        self.file.set_len(size)?;
        if self.direct {
            // The descriptor is shared with the caller's `File`: leave it as it was.
            let _ = crate::raw::set_direct(&self.file, false);
        }
        let sha256 = self
            .sha
            .take()
            .ok_or_else(hash_stopped)?
            .join()
            .map_err(|_| hash_stopped())?;
        Ok(crate::FileSums {
            size,
            sha256,
            blake3: *self.blake3.finalize().as_bytes(),
        })
    }
}

impl io::Write for HashedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hands `n` zero bytes to `update`, 64 KiB at a time.
pub(crate) fn for_zeros(mut n: u64, mut update: impl FnMut(&[u8])) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// How far behind the newest write the writer waits for the disk (see [`writeback`]).
const WRITEBACK_LAG: u64 = 16 << 20;

/// Starts writing `len` bytes at `offset` of `file` back to the disk now, and waits for
/// what was written [`WRITEBACK_LAG`] before it: a file written front to back then leaves
/// little for the final `fsync`, and the page cache does not fill with dirty pages (as a
/// direct write would not). Only advice: errors are ignored (the final `fsync` reports them).
pub(crate) fn writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: sync_file_range on a descriptor this `File` owns; no memory is passed.
    unsafe {
        libc::sync_file_range(
            fd,
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
        if offset >= WRITEBACK_LAG {
            libc::sync_file_range(
                fd,
                (offset - WRITEBACK_LAG) as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
    }
}

/// The units (clusters, blocks) a [`crate::Survey`] names, increasing, each stored in its
/// slot (the `i`-th unit in slot `i`): a writer that lays its file out from the survey is
/// given the data of some of them (a unit never given is stored as zeros: it holds only a
/// file's zeros) and of no other.
#[derive(Debug)]
pub(crate) struct SurveyedUnits {
    pub(crate) units: Vec<u64>,
    /// Units passed so far.
    next: usize,
    /// What a unit is called in messages (`cluster`, `block`).
    what: &'static str,
}

impl SurveyedUnits {
    pub(crate) fn new(units: Vec<u64>, what: &'static str) -> SurveyedUnits {
        SurveyedUnits {
            units,
            next: 0,
            what,
        }
    }

    /// The slot of unit `index`, which holds data (units come in increasing order); the
    /// units before it that were never given are zeros.
    pub(crate) fn slot(&mut self, index: u64) -> io::Result<u64> {
        let skipped = self.units[self.next..].partition_point(|&u| u < index);
        self.next += skipped;
        if self.units.get(self.next) != Some(&index) {
            return Err(io::Error::other(format!(
                "internal error: {} {index} holds data but is not in the image's survey",
                self.what
            )));
        }
        self.next += 1;
        Ok(self.next as u64 - 1)
    }

    /// Slots in all.
    pub(crate) fn len(&self) -> u64 {
        self.units.len() as u64
    }
}
