//! Deflate on every core, with output that does not depend on the core count.
//!
//! Two compressors for the writers that deflate:
//!
//! * [`GzipWriter`]: a gzip stream (RFC 1952) for the GCE tar. Its input is cut into blocks
//!   of [`BLOCK`] bytes *by input offset*; each block is deflated on its own, as raw deflate
//!   ending in a sync flush (an empty stored block, so it ends on a byte boundary), and the
//!   last with the final bit, so the pieces joined in order are one valid deflate stream
//!   (pigz's scheme, without its dictionary priming). The CRC-32 of the blocks is combined
//!   in order and the trailer ends the stream.
//! * [`GrainCompressor`]: each VMDK grain a complete zlib stream (RFC 1950), miniz_oxide's
//!   compression of that grain from the initial state in one call with an output buffer of
//!   the worst-case size (the bytes of its one-shot `compress_to_vec_zlib`), grains handed
//!   back in submission order.
//!
//! A block or grain that does not compress (its first 16 KiB, tried at level 1, save less
//! than 1/32: random proving parameters, compressed archives) is *stored* (deflate's stored
//! blocks) instead of deflated for nothing ([`incompressible`]): memory speed instead of a
//! deflate's, for at most 0.01 % more bytes than deflate would give it. The choice is a
//! function of the block's bytes only.
//!
//! # Determinism
//!
//! A block's or grain's compressed bytes are a function of its bytes and the level only:
//! block boundaries are fixed offsets of the input (not where the caller's `write` calls
//! split it, not thread timing), each block or grain is compressed from the initial state, in
//! one call with an output buffer of the worst-case size, and results are handed back in
//! order. The thread count only decides *where* a block is compressed, so 1, 2 or 16 threads
//! give the same bytes (checked by the tests, with 1, 2, 3 and 8 threads and different
//! `write` splits, and pinned by digests of fixed inputs).
//!
//! # Backends, and why two
//!
//! Measured single-threaded (thread CPU time, 32 MiB inputs, on an AMD EPYC; rounded; the
//! machine was shared, so ±15 %): the gzip body at level 1 (1 MiB blocks), and 64 KiB zlib
//! grains at level 6; ratio is compressed / input.
//!
//! | input | level | miniz_oxide 0.9.1 | zlib-rs 0.6.8 |
//! |---|---|---|---|
//! | random | 1 | 250 MB/s, ratio 1.0009 | 105 MB/s, ratio 1.0547 |
//! | ELF (`/usr/bin`) | 1 | 160 MB/s, ratio 0.467 | 205 MB/s, ratio 0.507 |
//! | random, grains | 6 | 45 MB/s, ratio 1.0003 | 65 MB/s, ratio 1.0004 |
//! | ELF, grains | 6 | 30 MB/s, ratio 0.399 | 70 MB/s, ratio 0.413 |
//!
//! At level 1 zlib-rs (like zlib-ng) uses its "quick" strategy, fixed Huffman codes only: it
//! *grows* incompressible data by 5.5 % and is 2.4 times slower on it, and gives 8.6 % more
//! bytes on programs. So both the gzip stream and the VMDK grains are deflated by
//! miniz_oxide at level 1 (zlib-rs's level 6 was measured for the grains too, and QEMU's
//! level 6 in general: at 65 MB/s a core on incompressible data, a 550 MiB VMDK took three
//! times a raw build on two cores; level 1 takes a third of that).
//!
//! miniz_oxide is used directly, not through flate2, so that each block and grain is
//! compressed in one call with its whole input: nothing about the caller's call pattern can
//! reach the bytes. (flate2's backend, one for the whole workspace by feature unification,
//! stays miniz_oxide too: zlib-rs's output at levels 0, 1, 5 and 6 depends on how the input
//! is fed to it — the same 4.5 MiB through `flate2::write::ZlibEncoder` on zlib-rs in writes
//! of 1 byte, 100 bytes, 4 KiB, 64 KiB or 777,777 bytes gives other bytes than in one write.)
//!
//! miniz_oxide's output does not depend on the CPU: its compressor has no
//! architecture-specific code (its `simd` feature is the Adler-32 checksum only). It does
//! depend on its *version*, which `Cargo.lock` pins; the pinned digests in the tests say when
//! an update changes the bytes.
//!
//! # Threads and memory
//!
//! Blocks are compressed on [`threads`] worker threads (`NANOIMG_THREADS`, else the number of
//! CPUs the process may use; at most [`MAX_WORKERS`]); with one, on the caller's thread.
//! A fixed number of blocks are in flight at most, whatever the core count, and the caller
//! waits for the oldest when that many are: 2 per worker and at most 8 gzip blocks (each its
//! 512 KiB input and a 570 KiB output buffer, both recycled), 4 per worker and at most 32
//! grains (64 KiB each, and its output). Measured (the ignored test `memory`), the gzip
//! writer and the grain compressor add about 7 MiB to the peak resident memory on 2
//! threads, and at most 14 MiB on 8: buffers, each worker's compressor state (about
//! 300 KiB) and the allocator's per-thread arenas.
//!
//! On 2 otherwise idle cores (the ignored test `throughput`, 64 MiB): the gzip stream at
//! level 1 goes from 190 to 415 MB/s on random data and from 155 to 265 MB/s on programs
//! with 2 threads instead of 1; grains at level 6 from 63 to 125 MB/s and 68 to 134 MB/s
//! (measured with zlib-rs for the grains, before they moved to miniz_oxide at level 1).
//!
//! # Block size
//!
//! [`BLOCK`] is 512 KiB: each block starts with an empty window, and on programs (`/usr/bin`,
//! level 1) that costs 0.15 % more bytes than one stream (256 KiB: 0.2 %, 1 MiB: 0.09 %,
//! 4 MiB: 0.06 %), with the same speed per core; the memory in flight is proportional to it.
//! Priming each block with the previous block's last 32 KiB as a dictionary (deterministic,
//! being input) gains 0.1 % and is not offered by miniz_oxide: not done.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::Compression;
use miniz_oxide::deflate::core::CompressorOxide;
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

/// The gzip stream's block: its input is cut every `BLOCK` bytes of input offset.
pub const BLOCK: usize = 512 << 10;
/// The most worker threads either compressor starts.
pub const MAX_WORKERS: usize = 8;
/// The most gzip blocks in flight (being compressed or waiting to be written).
const GZIP_IN_FLIGHT: usize = 8;
/// The most grains in flight.
const GRAINS_IN_FLIGHT: usize = 32;
/// The environment variable that sets the number of compression threads.
pub const THREADS_VAR: &str = "NANOIMG_THREADS";

/// gzip's OS byte: unknown (flate2's `GzBuilder` default, and what gce.rs sets).
const GZIP_OS: u8 = 255;

/// How many threads to compress on: `NANOIMG_THREADS` if it is a whole number of at least 1,
/// else [`std::thread::available_parallelism`] (1 if unknown). The output never depends on
/// it; it is there for tests and for sharing a machine.
pub fn threads() -> usize {
    parse_threads(std::env::var(THREADS_VAR).ok().as_deref(), || {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    })
}

fn parse_threads(var: Option<&str>, available: impl FnOnce() -> usize) -> usize {
    match var.and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) if n >= 1 => n,
        _ => available().max(1),
    }
}

/// Runs jobs on worker threads (or inline with one), handing results back in submission
/// order with at most `max_in_flight` outstanding.
struct Ordered<J, R> {
    mode: Mode<J, R>,
    max_in_flight: usize,
}

type Job<J, R> = (J, SyncSender<R>);

enum Mode<J, R> {
    Inline(Box<dyn FnMut(J) -> R + Send>),
    Threads {
        jobs: Option<SyncSender<Job<J, R>>>,
        workers: Vec<JoinHandle<()>>,
        pending: VecDeque<Receiver<R>>,
    },
}

impl<J: Send + 'static, R: Send + 'static> Ordered<J, R> {
    /// `workers` threads (inline if 1), each with its own state from `make`, running `work`.
    fn new<S, M, F>(workers: usize, max_in_flight: usize, make: M, work: F) -> Ordered<J, R>
    where
        S: Send + 'static,
        M: Fn() -> S + Send + Sync + 'static,
        F: Fn(&mut S, J) -> R + Send + Sync + 'static,
    {
        if workers <= 1 {
            let mut state = make();
            return Ordered {
                mode: Mode::Inline(Box::new(move |job| work(&mut state, job))),
                max_in_flight: 1,
            };
        }
        let max_in_flight = max_in_flight.max(workers);
        let (tx, rx) = mpsc::sync_channel::<Job<J, R>>(max_in_flight);
        let rx = Arc::new(Mutex::new(rx));
        let make = Arc::new(make);
        let work = Arc::new(work);
        let workers = (0..workers)
            .map(|_| {
                let (rx, make, work) = (rx.clone(), make.clone(), work.clone());
                std::thread::spawn(move || {
                    let mut state = make();
                    loop {
                        // The lock is held only while taking a job, never while working.
                        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((job, reply)) = next else { return };
                        // The caller may have gone (dropped without finishing): nothing to do.
                        let _ = reply.send(work(&mut state, job));
                    }
                })
            })
            .collect();
        Ordered {
            mode: Mode::Threads {
                jobs: Some(tx),
                workers,
                pending: VecDeque::new(),
            },
            max_in_flight,
        }
    }

    /// Queues `job`. If that many were already in flight, first waits for the oldest and
    /// returns its result (inline, returns this job's own).
    fn submit(&mut self, job: J) -> io::Result<Option<R>> {
        match &mut self.mode {
            Mode::Inline(work) => Ok(Some(work(job))),
            Mode::Threads { jobs, pending, .. } => {
                let oldest = if pending.len() >= self.max_in_flight {
                    Some(wait(pending.pop_front().expect("in flight"))?)
                } else {
                    None
                };
                let (reply, result) = mpsc::sync_channel(1);
                jobs.as_ref()
                    .expect("open until dropped")
                    .send((job, reply))
                    .map_err(|_| stopped())?;
                pending.push_back(result);
                Ok(oldest)
            }
        }
    }

    /// The oldest result, waiting for it; `None` if nothing is in flight.
    fn oldest(&mut self) -> io::Result<Option<R>> {
        match &mut self.mode {
            Mode::Inline(_) => Ok(None),
            Mode::Threads { pending, .. } => pending.pop_front().map(wait).transpose(),
        }
    }

    fn in_flight(&self) -> usize {
        match &self.mode {
            Mode::Inline(_) => 0,
            Mode::Threads { pending, .. } => pending.len(),
        }
    }
}

fn wait<R>(result: Receiver<R>) -> io::Result<R> {
    result.recv().map_err(|_| stopped())
}

fn stopped() -> io::Error {
    io::Error::other("internal error: a compression thread stopped")
}

impl<J, R> Drop for Ordered<J, R> {
    fn drop(&mut self) {
        if let Mode::Threads { jobs, workers, .. } = &mut self.mode {
            // Closing the queue ends every worker once it has taken what is left.
            drop(jobs.take());
            for w in workers.drain(..) {
                let _ = w.join();
            }
        }
    }
}

/// A gzip block to compress, and buffers to reuse.
struct Block {
    input: Vec<u8>,
    output: Vec<u8>,
    last: bool,
}

/// A compressed block: the raw deflate bytes in `output`, the CRC-32 of `input`.
struct Deflated {
    input: Vec<u8>,
    output: Vec<u8>,
    crc: crc32fast::Hasher,
}

/// miniz_oxide's worst case for `n` bytes (its `mz_deflateBound`), which also covers the sync
/// flush's empty stored block.
fn deflate_bound(n: usize) -> usize {
    (128 + n + n / 10).max(128 + n + (n / (31 * 1024) + 1) * 5)
}

/// The bytes of a block or grain tried at level 1 to tell whether it compresses.
const TRIAL: usize = 16 << 10;
/// A trial that saves less than this fraction (1/32, about 3 %) says "incompressible".
const TRIAL_SAVING: usize = 32;

/// Whether `data` (a block or a grain) would not shrink: its first [`TRIAL`] bytes deflated
/// at level 1 by a fresh compressor save less than 1/[`TRIAL_SAVING`]. A function of the
/// bytes only, so the choice (and the output) does not depend on threads or timing; data
/// that does not compress (random proving parameters, compressed archives) is then stored
/// instead of deflated for nothing, at memory speed.
pub fn incompressible(data: &[u8]) -> bool {
    let trial = &data[..data.len().min(TRIAL)];
    if trial.len() < 1024 {
        return false;
    }
    let out = miniz_oxide::deflate::compress_to_vec(trial, 1);
    out.len() + trial.len() / TRIAL_SAVING >= trial.len()
}

/// `data` as deflate stored blocks (RFC 1951 §3.2.4: BTYPE 00, each at most 65,535 bytes),
/// appended to `out`, which ends on a byte boundary (the start, or after a sync flush); the
/// final bit on the last block if `last`. They end on a byte boundary too.
fn stored_blocks(data: &[u8], last: bool, out: &mut Vec<u8>) {
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[u8::from(last), 0, 0, 0xff, 0xff]);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let final_bit = last && chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(final_bit));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Deflates one gzip block: raw deflate from an empty window, ending with a sync flush, or
/// for the last block the final block.
fn deflate_block(c: &mut CompressorOxide, block: Block) -> io::Result<Deflated> {
    let Block {
        input,
        mut output,
        last,
    } = block;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&input);
    if incompressible(&input) {
        output.clear();
        stored_blocks(&input, last, &mut output);
        return Ok(Deflated { input, output, crc });
    }
    c.reset();
    // One call into a buffer of the worst-case size: miniz_oxide writes a second sync marker
    // if a sync flush is resumed, so the bytes would otherwise depend on the buffer.
    let bound = deflate_bound(input.len());
    output.clear();
    output.resize(bound, 0);
    let flush = if last { MZFlush::Finish } else { MZFlush::Sync };
    let r = miniz_oxide::deflate::stream::deflate(c, &input, &mut output, flush);
    let done = match r.status {
        Ok(MZStatus::StreamEnd) => last,
        Ok(MZStatus::Ok) => !last,
        _ => false,
    };
    if !done || r.bytes_consumed != input.len() || r.bytes_written >= bound {
        return Err(io::Error::other(format!(
            "internal error: deflating a {}-byte block: {:?}, {} bytes taken, {} written",
            input.len(),
            r.status,
            r.bytes_consumed,
            r.bytes_written
        )));
    }
    output.truncate(r.bytes_written);
    Ok(Deflated { input, output, crc })
}

/// A gzip stream (RFC 1952) compressed in parallel, deterministically.
///
/// The header is the one gce.rs's `GzBuilder::new().mtime(0).operating_system(255)` writes: no
/// file name, comment or extra field, mtime 0, XFL 4 at level 1 or less ("fastest") and 2 at
/// 9 ("best"), else 0, OS 255. The body is the input cut every [`BLOCK`] bytes, each block
/// deflated by miniz_oxide at the given level on its own (see the [module](self) docs); the
/// trailer is the CRC-32 and the length modulo 2³². The bytes depend on the input and the
/// level only: not on the thread count or how `write` calls split the input.
///
/// Call [`finish`](Self::finish): dropping the writer loses what has not been written. Output
/// goes to `W` a block at a time, in calls of up to 570 KiB.
pub struct GzipWriter<W: Write> {
    out: W,
    level: u8,
    header_written: bool,
    /// The block being filled.
    buf: Vec<u8>,
    /// Buffers back from compressed blocks, for the next ones.
    spare: Vec<(Vec<u8>, Vec<u8>)>,
    pool: Ordered<Block, io::Result<Deflated>>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> std::fmt::Debug for GzipWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipWriter")
            .field("level", &self.level)
            .field("len", &self.len)
            .field("in_flight", &self.pool.in_flight())
            .finish_non_exhaustive()
    }
}

impl<W: Write> GzipWriter<W> {
    /// A gzip stream into `out` at `level` (0 to 9; gce.rs uses 1), on [`threads`] threads.
    pub fn new(out: W, level: Compression) -> GzipWriter<W> {
        GzipWriter::with_threads(out, level, threads())
    }

    /// The same on `threads` threads (1: on the caller's); the bytes are the same for any.
    pub fn with_threads(out: W, level: Compression, threads: usize) -> GzipWriter<W> {
        let level = level.level().min(9) as u8;
        let workers = threads.clamp(1, MAX_WORKERS);
        let pool = Ordered::new(
            workers,
            (2 * workers).min(GZIP_IN_FLIGHT),
            move || {
                let mut c = Box::<CompressorOxide>::default();
                c.set_format_and_level(DataFormat::Raw, level);
                c
            },
            |c: &mut Box<CompressorOxide>, block| deflate_block(c, block),
        );
        GzipWriter {
            out,
            level,
            header_written: false,
            buf: Vec::with_capacity(BLOCK),
            spare: Vec::new(),
            pool,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    /// The gzip header's ten bytes.
    fn header(&self) -> [u8; 10] {
        let xfl = if self.level >= 9 {
            2
        } else if self.level <= 1 {
            4
        } else {
            0
        };
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, GZIP_OS]
    }

    /// Writes a compressed block out and keeps its buffers.
    fn emit(&mut self, done: io::Result<Deflated>) -> io::Result<()> {
        let done = done?;
        if !self.header_written {
            self.out.write_all(&self.header())?;
            self.header_written = true;
        }
        self.out.write_all(&done.output)?;
        self.crc.combine(&done.crc);
        self.spare.push((done.input, done.output));
        Ok(())
    }

    /// Sends the block being filled to be compressed.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let (mut input, output) = self.spare.pop().unwrap_or_default();
        input.clear();
        input.reserve_exact(BLOCK);
        std::mem::swap(&mut input, &mut self.buf);
        if let Some(done) = self.pool.submit(Block {
            input,
            output,
            last,
        })? {
            self.emit(done)?;
        }
        Ok(())
    }

    /// Writes every block in flight.
    fn drain(&mut self) -> io::Result<()> {
        while let Some(done) = self.pool.oldest()? {
            self.emit(done)?;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the output (not flushed).
    pub fn finish(mut self) -> io::Result<W> {
        // The last block: what is buffered (a whole block if the input is a multiple of
        // BLOCK, since a full block waits for the next byte), or empty if there was no input.
        self.submit(true)?;
        self.drain()?;
        debug_assert!(self.header_written, "the last block writes the header");
        let crc = self.crc.clone().finalize();
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.to_le_bytes());
        trailer[4..].copy_from_slice(&(self.len as u32).to_le_bytes());
        self.out.write_all(&trailer)?;
        // Stop the workers before giving the output back.
        let GzipWriter { out, pool, .. } = self;
        drop(pool);
        Ok(out)
    }

    /// The bytes of input so far.
    pub fn total_in(&self) -> u64 {
        self.len
    }

    /// The output.
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            // A full block is sent only when more input comes, so that the last block (full
            // or not) is the one `finish` ends the stream with.
            if self.buf.len() == BLOCK {
                self.submit(false)?;
            }
            let n = (BLOCK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            self.len += n as u64;
            rest = &rest[n..];
        }
        Ok(data.len())
    }

    /// Writes the blocks already sent to be compressed and flushes the output. The block
    /// being filled stays: its boundary is fixed by offset, so a flush cannot end it early.
    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.out.flush()
    }
}

/// A grain's compressed form, handed back in submission order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grain {
    /// The caller's tag, as submitted (a grain number, an LBA).
    pub tag: u64,
    /// A complete zlib stream (RFC 1950) of the grain.
    pub zlib: Vec<u8>,
}

/// A grain to compress, with the tag and a buffer to give back.
struct GrainJob {
    tag: u64,
    input: Vec<u8>,
}

/// Compresses VMDK grains as zlib streams in parallel, results in submission order.
///
/// Each grain's stream is [`zlib_one_shot`] of it (miniz_oxide, the whole grain in one
/// call; see the [module](self) docs), so they do not depend on the thread count. Memory: at most 32
/// grains in flight, each copied in.
pub struct GrainCompressor {
    pool: Ordered<GrainJob, io::Result<(Grain, Vec<u8>)>>,
    /// Input buffers back from compressed grains.
    spare: Vec<Vec<u8>>,
}

impl std::fmt::Debug for GrainCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrainCompressor")
            .field("in_flight", &self.pool.in_flight())
            .finish_non_exhaustive()
    }
}

/// A miniz_oxide compressor for zlib streams, reused, and its output buffer.
struct ZlibState {
    c: Box<CompressorOxide>,
    out: Vec<u8>,
}

impl ZlibState {
    /// At `level` (0 to 9).
    fn new(level: u32) -> ZlibState {
        let mut c = Box::<CompressorOxide>::default();
        c.set_format_and_level(DataFormat::Zlib, level.min(9) as u8);
        ZlibState { c, out: Vec::new() }
    }

    /// `data` as one zlib stream (RFC 1950): from the initial state, the whole input in one
    /// call with the final flush, into a buffer of the worst-case size, so that nothing
    /// about the call pattern can change the bytes.
    fn compress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        if incompressible(data) {
            // A zlib stream of stored blocks: header (deflate, 32 KiB window, no dictionary,
            // fastest), the blocks, Adler-32.
            let mut out = Vec::with_capacity(data.len() + 16);
            out.extend_from_slice(&[0x78, 0x01]);
            stored_blocks(data, true, &mut out);
            out.extend_from_slice(&adler32(data).to_be_bytes());
            return Ok(out);
        }
        let bound = deflate_bound(data.len()) + 6;
        self.out.clear();
        self.out.resize(bound, 0);
        self.c.reset();
        let r = miniz_oxide::deflate::stream::deflate(
            &mut self.c,
            data,
            &mut self.out,
            MZFlush::Finish,
        );
        match r.status {
            Ok(MZStatus::StreamEnd)
                if r.bytes_consumed == data.len() && r.bytes_written < bound =>
            {
                Ok(self.out[..r.bytes_written].to_vec())
            }
            other => Err(io::Error::other(format!(
                "internal error: deflating a {}-byte grain: {other:?}",
                data.len()
            ))),
        }
    }
}

/// Adler-32 (RFC 1950) of `data`.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes at most between reductions keep `b` in 32 bits (zlib's NMAX).
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// `data` as one zlib stream (RFC 1950) at `level`, as [`GrainCompressor`] gives it.
pub fn zlib_one_shot(data: &[u8], level: Compression) -> io::Result<Vec<u8>> {
    ZlibState::new(level.level()).compress(data)
}

impl GrainCompressor {
    /// A compressor at `level` (vmdk.rs uses 6) on [`threads`] threads.
    pub fn new(level: Compression) -> GrainCompressor {
        GrainCompressor::with_threads(level, threads())
    }

    /// The same on `threads` threads (1: on the caller's, at [`submit`](Self::submit)).
    pub fn with_threads(level: Compression, threads: usize) -> GrainCompressor {
        let workers = threads.clamp(1, MAX_WORKERS);
        let level = level.level();
        GrainCompressor {
            pool: Ordered::new(
                workers,
                (4 * workers).min(GRAINS_IN_FLIGHT),
                move || ZlibState::new(level),
                |z: &mut ZlibState, job: GrainJob| {
                    let zlib = z.compress(&job.input)?;
                    Ok((Grain { tag: job.tag, zlib }, job.input))
                },
            ),
            spare: Vec::new(),
        }
    }

    /// Queues `grain` (copied) under `tag`. Returns the oldest grain's result if the queue was
    /// full and this waited for it (with one thread, this grain's own, at once): write it
    /// out, then go on; [`next_grain`](Self::next_grain) gives the rest.
    pub fn submit(&mut self, tag: u64, grain: &[u8]) -> io::Result<Option<Grain>> {
        let mut input = self.spare.pop().unwrap_or_default();
        input.clear();
        input.extend_from_slice(grain);
        Ok(match self.pool.submit(GrainJob { tag, input })? {
            Some(done) => Some(self.keep(done)?),
            None => None,
        })
    }

    /// The oldest grain in flight, waiting for it; `None` when none is.
    pub fn next_grain(&mut self) -> io::Result<Option<Grain>> {
        Ok(match self.pool.oldest()? {
            Some(done) => Some(self.keep(done)?),
            None => None,
        })
    }

    /// Grains submitted and not yet handed back.
    pub fn in_flight(&self) -> usize {
        self.pool.in_flight()
    }

    fn keep(&mut self, done: io::Result<(Grain, Vec<u8>)>) -> io::Result<Grain> {
        let (grain, input) = done?;
        self.spare.push(input);
        Ok(grain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::{GzDecoder, MultiGzDecoder};
    use sha2::{Digest, Sha256};
    use std::io::Read;

    /// Deterministic pseudo-random bytes (xorshift64).
    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// Compressible bytes: text-like runs, zeros and some random, mixed.
    fn mixed(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let noise = random(1 << 16, 7);
        let mut i = 0u64;
        while v.len() < n {
            match i % 4 {
                0 => v.extend_from_slice(format!("line {i}: the quick brown fox\n").as_bytes()),
                1 => v.extend_from_slice(&[0u8; 300]),
                2 => v.extend_from_slice(&noise[(i as usize * 37) % 60000..][..97]),
                _ => v.extend_from_slice(&(i as u32).to_le_bytes().repeat(20)),
            }
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn gzip(data: &[u8], threads: usize, chunk: usize, level: u32) -> Vec<u8> {
        let mut w = GzipWriter::with_threads(Vec::new(), Compression::new(level), threads);
        if chunk == 0 {
            w.write_all(data).unwrap();
        } else {
            for c in data.chunks(chunk) {
                w.write_all(c).unwrap();
            }
        }
        w.finish().unwrap()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(gz).read_to_end(&mut out).unwrap();
        let mut multi = Vec::new();
        MultiGzDecoder::new(gz).read_to_end(&mut multi).unwrap();
        assert_eq!(out, multi);
        out
    }

    /// The system's `gzip -dc` (it also checks the CRC and length).
    fn system_gunzip(gz: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, gz).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .expect("gzip is installed");
        assert!(
            out.status.success(),
            "gzip -dc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn the_header_is_gzbuilders() {
        for level in [0, 1, 2, 6, 9] {
            let ours = gzip(b"hello", 1, 0, level);
            let mut theirs = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(Vec::new(), Compression::new(level));
            theirs.write_all(b"hello").unwrap();
            let theirs = theirs.finish().unwrap();
            assert_eq!(ours[..10], theirs[..10], "level {level}");
            // The trailer (CRC-32, length) too.
            assert_eq!(ours[ours.len() - 8..], theirs[theirs.len() - 8..]);
        }
    }

    #[test]
    fn empty_input_is_a_valid_empty_stream() {
        for threads in [1, 2] {
            let gz = gzip(b"", threads, 0, 1);
            assert_eq!(gunzip(&gz), b"");
            assert_eq!(system_gunzip(&gz), b"");
            assert_eq!(&gz[gz.len() - 8..], &[0u8; 8]);
        }
    }

    #[test]
    fn round_trips_at_and_around_block_boundaries() {
        let data = mixed(3 * BLOCK + 1000);
        for len in [
            1,
            1000,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK,
            3 * BLOCK + 1000,
        ] {
            let data = &data[..len];
            let one = gzip(data, 1, 0, 1);
            assert_eq!(gunzip(&one), data, "{len} bytes");
            assert_eq!(system_gunzip(&one), data, "{len} bytes");
            assert_eq!(gzip(data, 3, 4096, 1), one, "{len} bytes, 3 threads");
        }
        for level in [0, 2, 9] {
            let data = &data[..2 * BLOCK + 1];
            let gz = gzip(data, 2, 0, level);
            assert_eq!(system_gunzip(&gz), data, "level {level}");
            assert_eq!(gzip(data, 1, 1000, level), gz, "level {level}");
        }
    }

    #[test]
    fn the_bytes_do_not_depend_on_threads_or_write_splits() {
        let data = mixed(5 * BLOCK + 12345);
        for level in [1, 6] {
            let one = gzip(&data, 1, 0, level);
            assert_eq!(gunzip(&one), data);
            for threads in [2, 3, 8] {
                for chunk in [0, 1 << 16, 1_000_003] {
                    assert_eq!(
                        gzip(&data, threads, chunk, level),
                        one,
                        "level {level}, {threads} threads, writes of {chunk}"
                    );
                }
            }
        }
        // Odd split sizes, one byte at a time across a boundary included.
        let data = &data[..BLOCK + 5000];
        let one = gzip(data, 1, 0, 1);
        let mut w = GzipWriter::with_threads(Vec::new(), Compression::new(1), 2);
        let mut at = 0;
        for (i, n) in [1usize, 7, BLOCK - 10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3000]
            .into_iter()
            .enumerate()
        {
            w.write_all(&data[at..at + n]).unwrap();
            at += n;
            if i % 3 == 0 {
                w.flush().unwrap();
            }
        }
        w.write_all(&data[at..]).unwrap();
        assert_eq!(w.total_in(), data.len() as u64);
        assert_eq!(w.finish().unwrap(), one);
    }

    #[test]
    fn forty_mib_of_random_data() {
        let data = random(40 << 20, 42);
        let one = gzip(&data, 1, 0, 1);
        assert_eq!(gzip(&data, 3, 1 << 20, 1), one);
        // Incompressible data stays within miniz_oxide's bound (stored blocks).
        assert!(one.len() < data.len() + data.len() / 500, "{}", one.len());
        assert_eq!(system_gunzip(&one), data);
        assert_eq!(gunzip(&one), data);
    }

    /// The bytes on fixed inputs, pinned: the same on every CPU and thread count. If a
    /// miniz_oxide or zlib-rs update changes them, images built before and after differ
    /// (docs/reproducibility.md).
    #[test]
    fn the_bytes_are_pinned() {
        // Four blocks and some, 32 grains and some (a literal: a change of BLOCK shows here).
        let data = mixed((2 << 20) + 777);
        let gz = gzip(&data, 2, 0, 1);
        assert_eq!(
            hex(&gz),
            "a2d23e6b35f6edbf6a7222af354ec8864e27b065a8ece6ba84493ce9d4aeb03f"
        );
        let mut grains = GrainCompressor::with_threads(Compression::new(6), 2);
        let mut all = Vec::new();
        for (i, g) in data.chunks(65536).enumerate() {
            all.extend(grains.submit(i as u64, g).unwrap());
        }
        while let Some(g) = grains.next_grain().unwrap() {
            all.push(g);
        }
        let joined: Vec<u8> = all.iter().flat_map(|g| g.zlib.clone()).collect();
        assert_eq!(
            hex(&joined),
            "fc3b635830513c093a2649d8f3bd2b20f262c01cd3cc64c3c403037c68d7835a"
        );
    }

    /// miniz_oxide's one-shot compression with a fresh compressor, called here directly
    /// (not through the module), for a grain that compresses; for one that does not, the
    /// stored zlib stream, checked against flate2's decoder and zlib's Adler-32 (flate2's
    /// encoder at level 0 writes the same layout).
    fn one_shot_zlib(grain: &[u8], level: u32) -> Vec<u8> {
        if !incompressible(grain) {
            return miniz_oxide::deflate::compress_to_vec_zlib(grain, level as u8);
        }
        let z = zlib_one_shot(grain, Compression::new(level)).unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&z[..]), &mut back).unwrap();
        assert!(back == grain, "a stored grain reads back");
        let stored = miniz_oxide::deflate::compress_to_vec_zlib(grain, 0);
        assert_eq!(z[z.len() - 4..], stored[stored.len() - 4..], "Adler-32");
        z
    }

    #[test]
    fn what_does_not_compress_is_stored_and_reads_back() {
        let noise = random(3 * BLOCK + 12_345, 4);
        assert!(incompressible(&noise));
        assert!(!incompressible(&mixed(100_000)));
        assert!(!incompressible(&[0u8; 70_000]));
        assert!(!incompressible(b"short"), "too short to judge: deflated");
        // A gzip stream of stored and deflated blocks reads back, the same on 1 and 3
        // threads.
        let mut data = noise.clone();
        data.extend_from_slice(&mixed(2 * BLOCK));
        data.extend_from_slice(&noise[..BLOCK / 2]);
        let one = gzip(&data, 1, 0, 1);
        assert_eq!(gzip(&data, 3, 0, 1), one);
        assert_eq!(gunzip(&one), data);
        assert_eq!(system_gunzip(&one), data);
        assert!(
            one.len() < data.len() + data.len() / 100,
            "stored, not grown"
        );
    }

    fn compress_grains(grains: &[&[u8]], level: u32, threads: usize) -> Vec<Grain> {
        let mut c = GrainCompressor::with_threads(Compression::new(level), threads);
        let mut out = Vec::new();
        for (i, g) in grains.iter().enumerate() {
            out.extend(c.submit(1000 + i as u64, g).unwrap());
            assert!(c.in_flight() <= GRAINS_IN_FLIGHT);
        }
        while let Some(g) = c.next_grain().unwrap() {
            out.push(g);
        }
        assert_eq!(c.in_flight(), 0);
        out
    }

    #[test]
    fn grains_equal_one_shot_compression_in_order() {
        let random = random(40 * 65536, 9);
        let mixed = mixed(40 * 65536);
        let zeros = vec![0u8; 65536];
        let mut grains: Vec<&[u8]> = Vec::new();
        for i in 0..40 {
            grains.push(&mixed[i * 65536..][..65536]);
            if i % 3 == 0 {
                grains.push(&random[i * 65536..][..65536]);
            }
            if i % 7 == 0 {
                grains.push(&zeros);
            }
        }
        grains.push(&mixed[..100]);
        grains.push(b"");
        for level in [0, 1, 6, 9] {
            let expected: Vec<Vec<u8>> = grains.iter().map(|g| one_shot_zlib(g, level)).collect();
            for (g, want) in grains.iter().zip(&expected) {
                assert!(&zlib_one_shot(g, Compression::new(level)).unwrap() == want);
            }
            for threads in [1, 2, 3, 8] {
                let got = compress_grains(&grains, level, threads);
                assert_eq!(got.len(), grains.len());
                for (i, g) in got.iter().enumerate() {
                    assert_eq!(g.tag, 1000 + i as u64);
                    assert!(
                        g.zlib == expected[i],
                        "level {level}, {threads} threads, grain {i} differs"
                    );
                }
            }
        }
        // And they inflate back.
        let got = compress_grains(&grains, 6, 2);
        for (g, want) in got.iter().zip(&grains) {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&g.zlib[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(&out, want);
        }
    }

    #[test]
    fn the_thread_count_comes_from_the_variable() {
        assert_eq!(parse_threads(Some("3"), || 7), 3);
        assert_eq!(parse_threads(Some(" 16 "), || 7), 16);
        assert_eq!(parse_threads(Some("0"), || 7), 7);
        assert_eq!(parse_threads(Some("many"), || 7), 7);
        assert_eq!(parse_threads(None, || 7), 7);
        assert_eq!(parse_threads(None, || 0), 1);
        assert!(threads() >= 1);
    }

    #[test]
    fn they_can_go_into_a_sink() {
        fn send<T: Send>() {}
        send::<GzipWriter<std::io::BufWriter<std::fs::File>>>();
        send::<GrainCompressor>();
    }

    #[test]
    fn dropping_without_finishing_stops_the_workers() {
        let data = mixed(3 * BLOCK);
        let mut w = GzipWriter::with_threads(Vec::new(), Compression::new(1), 3);
        w.write_all(&data).unwrap();
        drop(w);
        let mut c = GrainCompressor::with_threads(Compression::new(6), 3);
        for i in 0..10 {
            c.submit(i, &data[..65536]).unwrap();
        }
        drop(c);
    }

    /// Concatenated ELF files from /usr/bin (typical content), else mixed bytes.
    fn programs(n: usize) -> Vec<u8> {
        let mut names: Vec<_> = std::fs::read_dir("/usr/bin")
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        let mut v = Vec::new();
        for p in names {
            if v.len() >= n {
                break;
            }
            if let Ok(b) = std::fs::read(&p) {
                if b.starts_with(b"\x7fELF") {
                    v.extend_from_slice(&b);
                }
            }
        }
        if v.len() < n {
            v.extend_from_slice(&mixed(n - v.len()));
        }
        v.truncate(n);
        v
    }

    /// The process's peak resident memory in KiB (`VmHWM`).
    fn peak_rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// `cargo test -p nanoimg-vdisk --lib deflate::tests::memory -- --ignored --exact
    /// --nocapture` (alone, as the peak is the process's): what 256 MiB of random data
    /// through the gzip writer, and 64 MiB of grains, add to the peak, on 2 and 8 threads.
    #[test]
    #[ignore]
    fn memory() {
        let chunk = random(1 << 16, 5);
        let before = peak_rss_kib();
        for threads in [2, 8] {
            let mut w = GzipWriter::with_threads(io::sink(), Compression::new(1), threads);
            for i in 0..4096u32 {
                // A different 64 KiB each time, nothing kept.
                let mut c = chunk.clone();
                c[..4].copy_from_slice(&i.to_le_bytes());
                w.write_all(&c).unwrap();
                assert!(w.pool.in_flight() <= GZIP_IN_FLIGHT && w.spare.len() <= GZIP_IN_FLIGHT);
            }
            w.finish().unwrap();
            let mut g = GrainCompressor::with_threads(Compression::new(6), threads);
            for i in 0..1024 {
                g.submit(i, &chunk).unwrap();
                assert!(g.in_flight() <= GRAINS_IN_FLIGHT);
            }
            while g.next_grain().unwrap().is_some() {}
            drop(g);
            println!(
                "{threads} threads: peak resident memory {:.1} MiB more than before the first",
                (peak_rss_kib() - before) as f64 / 1024.0
            );
        }
    }

    /// CPU seconds used by this process so far (every thread).
    fn cpu_seconds() -> f64 {
        // SAFETY: getrusage writes only the struct it is given.
        let u = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut u);
            u
        };
        let t = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        t(u.ru_utime) + t(u.ru_stime)
    }

    /// Runs `f`, printing MB/s of wall clock and of CPU time, and how many cores it kept busy.
    fn measure(what: &str, bytes: usize, f: impl FnOnce() -> usize) {
        let (t, cpu) = (std::time::Instant::now(), cpu_seconds());
        let out = f();
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        let mb = bytes as f64 / 1e6;
        println!(
            "{what}: {:6.1} MB/s ({:6.1} MB/s per CPU second, {:.2} cores busy), ratio {:.4}",
            mb / wall,
            mb / cpu,
            cpu / wall,
            out as f64 / bytes as f64
        );
    }

    /// `cargo test -p nanoimg-vdisk --lib deflate::tests::throughput -- --ignored
    /// --nocapture`: MB/s of the gzip stream (level 1) and of grains (level 6) on 1 and 2
    /// threads (wall clock, so on a busy machine it varies; the CPU time shows the work
    /// spread over the threads).
    #[test]
    #[ignore]
    fn throughput() {
        let n = 64 << 20;
        for (name, data) in [("random", random(n, 1)), ("programs", programs(n))] {
            for threads in [1, 2] {
                measure(&format!("gzip L1  {name:8} {threads} thread(s)"), n, || {
                    gzip(&data, threads, 1 << 16, 1).len()
                });
                measure(&format!("grain L6 {name:8} {threads} thread(s)"), n, || {
                    let grains: Vec<&[u8]> = data.chunks(65536).collect();
                    let out = compress_grains(&grains, 6, threads);
                    out.iter().map(|g| g.zlib.len()).sum()
                });
            }
        }
    }
}
