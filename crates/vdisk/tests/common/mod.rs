//! Helpers shared by the format tests: test images (as bytes, or as regions of data), fed
//! to a writer in different splittings, read back, and checked with the external tools
//! (`qemu-img`, GNU tar).

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nanoimg_vdisk::{Format, Sink, VdiskError, VirtualDisk};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// A small deterministic generator (xorshift64*), so the tests need no extra crate and
/// failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Random bytes (some of them zero).
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    /// Bytes with no zero byte (so a region is data wherever it lies).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() % 255) as u8 + 1).collect()
    }
}

// Images as bytes (the qcow2, VHD and VHDX tests).

/// A raw image of `len` bytes: random non-zero regions of random lengths at unaligned
/// places, separated by zero regions, some of them long enough to leave whole clusters
/// and blocks empty, with data in the last bytes (a partial last cluster when `len` is not
/// a multiple of one).
pub fn test_image(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut img = vec![0u8; len];
    let mut at = rng.below(5000) as usize;
    while at < len {
        let max = if rng.below(4) == 0 { 300_000 } else { 9000 };
        let run = 1 + rng.below(max) as usize;
        let end = (at + run).min(len);
        rng.fill(&mut img[at..end]);
        // Random bytes may be zero; make the first and last of the run non-zero.
        img[at] |= 1;
        img[end - 1] |= 0x80;
        let max = if rng.below(3) == 0 { 3_000_000 } else { 70_000 };
        let gap = rng.below(max) as usize;
        at = end + gap;
    }
    if len > 0 {
        img[len - 1] = 0xaa;
    }
    img
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The size of the disk a `format` container of a `len`-byte raw image holds: VHD rounds
/// up to a MiB, VHDX and VMDK to a sector.
pub fn disk_size(format: Format, len: usize) -> usize {
    match format {
        Format::Vhd => len.div_ceil(MIB) * MIB,
        Format::Vhdx | Format::Vmdk => len.div_ceil(512) * 512,
        Format::Raw | Format::Qcow2 | Format::Gce => len,
    }
}

/// Feeds `img` to a new `format` writer at `path`, in pieces ending at `cuts` (sorted
/// offsets); pieces that are all zeros are skipped when `skip_zero` (a range no call
/// covers is zeros).
pub fn write_split(format: Format, path: &Path, img: &[u8], cuts: &[usize], skip_zero: bool) {
    let out = File::create(path).unwrap();
    let survey = format.needs_survey().then(|| nanoimg_vdisk::survey_of(img));
    let mut sink: Box<dyn Sink> = nanoimg_vdisk::writer(format, out, img.len() as u64, survey)
        .unwrap_or_else(|e| panic!("{format} writer: {e}"));
    let mut start = 0usize;
    for &cut in cuts.iter().chain(std::iter::once(&img.len())) {
        let cut = cut.clamp(start, img.len());
        let piece = &img[start..cut];
        if !(skip_zero && piece.iter().all(|&b| b == 0)) {
            sink.write_at(start as u64, piece).unwrap();
        }
        start = cut;
    }
    let sums = sink
        .finish(img.len() as u64, &nanoimg_vdisk::RawHashes::of(img))
        .unwrap();
    assert_sums_are_the_files(path, &sums);
}

/// The digests a writer computed as it wrote are those of the file it left.
pub fn assert_sums_are_the_files(path: &Path, sums: &nanoimg_vdisk::FileSums) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(sums.size, bytes.len() as u64, "{}: size", path.display());
    assert_eq!(sums.sha256, sha256(&bytes), "{}: SHA-256", path.display());
    assert_eq!(
        sums.blake3,
        *blake3::hash(&bytes).as_bytes(),
        "{}: BLAKE3",
        path.display()
    );
}

/// The survey of the image made of `pieces` (increasing), `len` bytes long, without files.
pub fn survey_of_pieces(len: u64, pieces: &[(u64, Vec<u8>)]) -> nanoimg_vdisk::Survey {
    let mut s = nanoimg_vdisk::Surveyor::new();
    for (at, data) in pieces {
        s.bytes(*at, data);
    }
    s.finish(len)
}

/// The hash states of the image made of `pieces` (increasing), `len` bytes long.
pub fn pieces_hashes(len: u64, pieces: &[(u64, Vec<u8>)]) -> nanoimg_vdisk::RawHashes {
    let mut sha256 = Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut at = 0;
    let zeros = vec![0u8; 1 << 20];
    let mut update = |b: &[u8]| {
        sha256.update(b);
        b3.update(b);
    };
    for (o, d) in pieces {
        while at < *o {
            let n = (o - at).min(zeros.len() as u64) as usize;
            update(&zeros[..n]);
            at += n as u64;
        }
        update(d);
        at += d.len() as u64;
    }
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        update(&zeros[..n]);
        at += n as u64;
    }
    nanoimg_vdisk::RawHashes::from_states(sha256, b3)
}

/// Fixed splittings of an image of `len` bytes: one call; 512-byte calls; 1 MiB calls;
/// odd sizes (4093, 65537); random cuts.
pub fn splittings(len: usize, seed: u64) -> Vec<(Vec<usize>, bool)> {
    let every = |step: usize| (1..).map(|i| i * step).take_while(|&c| c < len).collect();
    let mut rng = Rng::new(seed);
    let mut random: Vec<usize> = (0..200)
        .map(|_| rng.below(len as u64 + 1) as usize)
        .collect();
    random.sort_unstable();
    vec![
        (vec![], false),
        (every(512), true),
        (every(1 << 20), false),
        (every(4093), true),
        (every(65537), false),
        (random, true),
    ]
}

/// Writes the raw image to `path` (sparse), for `qemu-img compare`.
pub fn write_raw(path: &Path, img: &[u8]) {
    write_split(Format::Raw, path, img, &[], false);
}

/// Reads back `path` through `nanoimg_vdisk::open`, which must recognise `format`, and
/// returns the whole disk.
pub fn read_back(path: &Path, format: Format) -> Vec<u8> {
    let disk = nanoimg_vdisk::open(path).unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(disk.format(), format);
    let mut buf = vec![0u8; disk.size() as usize];
    // In uneven pieces, to cross cluster and block boundaries.
    let mut at = 0usize;
    let mut step = 1usize;
    while at < buf.len() {
        let end = (at + step).min(buf.len());
        disk.read_exact_at(&mut buf[at..end], at as u64).unwrap();
        at = end;
        step = step * 7 % 300_007 + 1;
    }
    let mut one = [0u8; 1];
    let err = disk.read_exact_at(&mut one, disk.size()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_allocated_covers_the_data(&*disk, &buf);
    buf
}

/// `disk.allocated()` is sorted, disjoint, non-adjacent ranges inside the disk, and every
/// non-zero byte of `whole` (the whole disk) is in one.
pub fn assert_allocated_covers_the_data(disk: &dyn VirtualDisk, whole: &[u8]) {
    let ranges = disk.allocated().unwrap();
    let mut prev = None::<u64>;
    for r in &ranges {
        assert!(r.start < r.end && r.end <= disk.size(), "{r:?}");
        if let Some(p) = prev {
            assert!(
                r.start > p,
                "ranges not sorted, disjoint and apart: {ranges:?}"
            );
        }
        prev = Some(r.end);
    }
    let mut at = 0usize;
    for r in ranges
        .iter()
        .chain(std::iter::once(&(whole.len() as u64..whole.len() as u64)))
    {
        let gap = &whole[at..r.start as usize];
        if let Some(i) = gap.iter().position(|&b| b != 0) {
            panic!("non-zero byte at {} outside the allocated ranges", at + i);
        }
        at = r.end as usize;
    }
}

/// `path`, read back as `format`, is `img` padded with zeros to the format's disk size.
pub fn assert_reads_back(path: &Path, format: Format, img: &[u8]) {
    let back = read_back(path, format);
    assert_eq!(back.len(), disk_size(format, img.len()), "disk size");
    assert!(back[..img.len()] == *img, "read back differs");
    assert!(
        back[img.len()..].iter().all(|&b| b == 0),
        "padding not zeros"
    );
}

/// Writes `img` in `format` in every fixed splitting (the bytes must be the same each
/// time), reads it back, and has qemu-img check it (but VHD: `qemu-img check` does not
/// support the vpc format, it exits 63), compare it with the raw image and see its size.
/// Returns the directory and the file written.
pub fn round_trip(format: Format, img: &[u8], seed: u64) -> (tempfile::TempDir, PathBuf) {
    let qemu_format = format.qemu_name().unwrap();
    let dir = tmp();
    let out = file(&dir, &format!("out.{}", format.extension()));
    let raw = file(&dir, "raw.img");
    let mut first: Option<Vec<u8>> = None;
    for (cuts, skip) in splittings(img.len(), seed) {
        write_split(format, &out, img, &cuts, skip);
        let bytes = std::fs::read(&out).unwrap();
        match &first {
            None => first = Some(bytes),
            Some(f) => assert!(*f == bytes, "a different splitting gave different bytes"),
        }
    }
    assert_reads_back(&out, format, img);
    write_raw(&raw, img);
    if format != Format::Vhd {
        qemu_check(&out, qemu_format);
    }
    qemu_compare(&raw, &out, qemu_format);
    // For VHD: QEMU sees exactly the current size (creator "qem2"), not the CHS geometry's.
    assert_eq!(
        qemu_virtual_size(&out, qemu_format),
        disk_size(format, img.len()) as u64
    );
    (dir, out)
}

/// `img` in `format`, written in one call and cut at `cuts` (sorted) with the zero pieces
/// left out, gives the same bytes, which read back as `img`.
pub fn assert_cuts_do_not_matter(format: Format, img: &[u8], cuts: &[usize]) {
    let dir = tmp();
    let a = file(&dir, &format!("a.{}", format.extension()));
    let b = file(&dir, &format!("b.{}", format.extension()));
    write_split(format, &a, img, &[], false);
    write_split(format, &b, img, cuts, true);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "cutting the writes changed the bytes"
    );
    assert_reads_back(&b, format, img);
}

/// 1 MiB of random data at each of 0, 1 MiB, 1 GiB, 3 GiB + 12345 and 1 MiB before `len`.
pub fn sparse_pieces(seed: u64, len: u64) -> Vec<(u64, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    [0u64, 1 << 20, 1 << 30, (3 << 30) + 12345, len - (1 << 20)]
        .into_iter()
        .map(|at| {
            let mut data = vec![0u8; 1 << 20];
            rng.fill(&mut data);
            (at, data)
        })
        .collect()
}

/// Writes a `len`-byte raw image whose data is `pieces` (in increasing order, each given
/// in one call) in `format` to `out`, and as a sparse raw image to `raw` (all-zero pieces
/// are holes there).
pub fn write_pieces(format: Format, out: &Path, raw: &Path, len: u64, pieces: &[(u64, Vec<u8>)]) {
    let survey = format.needs_survey().then(|| survey_of_pieces(len, pieces));
    let mut sink = nanoimg_vdisk::writer(format, File::create(out).unwrap(), len, survey).unwrap();
    let rawf = File::create(raw).unwrap();
    for (at, data) in pieces {
        sink.write_at(*at, data).unwrap();
        if data.iter().any(|&b| b != 0) {
            rawf.write_all_at(data, *at).unwrap();
        }
    }
    rawf.set_len(len).unwrap();
    let sums = sink
        .finish(
            len,
            &nanoimg_vdisk::RawHashes::of(&std::fs::read(raw).unwrap()),
        )
        .unwrap();
    assert_sums_are_the_files(out, &sums);
}

/// `path` opens as a `len`-byte disk holding `pieces`.
pub fn assert_pieces(path: &Path, len: u64, pieces: &[(u64, Vec<u8>)]) {
    let disk = nanoimg_vdisk::open(path).unwrap();
    assert_eq!(disk.size(), len);
    for (at, data) in pieces {
        let mut buf = vec![0u8; data.len()];
        disk.read_exact_at(&mut buf, *at).unwrap();
        assert!(buf == *data, "at {at}");
    }
}

/// A `format` writer for a `len`-byte image takes a write at 4096, then refuses one
/// going back (to 0 and into it) and one past the end.
pub fn assert_refuses_out_of_order_and_past_end(format: Format, len: u64) {
    let dir = tmp();
    let f = File::create(file(&dir, "x")).unwrap();
    let survey = survey_of_pieces(len, &[(4096, vec![1; 10])]);
    let mut sink = nanoimg_vdisk::writer(format, f, len, Some(survey)).unwrap();
    sink.write_at(4096, &[1; 10]).unwrap();
    assert!(sink.write_at(0, &[1; 10]).is_err(), "backwards to 0");
    assert!(sink.write_at(4000, &[1; 10]).is_err(), "backwards into it");
    assert!(sink.write_at(len - 5, &[1; 10]).is_err(), "past the end");
}

// Images as regions of data (the VMDK and GCE tests).

/// A raw image as regions of data at offsets (sorted, disjoint); the rest is zeros.
#[derive(Clone, Debug)]
pub struct Image {
    pub len: u64,
    pub regions: Vec<(u64, Vec<u8>)>,
}

impl Image {
    /// Random non-zero regions at unaligned places, with zero gaps between them.
    pub fn random(seed: u64, len: u64, regions: usize, max_region: u64) -> Image {
        let mut rng = Rng::new(seed);
        let mut starts: Vec<u64> = (0..regions).map(|_| rng.below(len)).collect();
        starts.sort_unstable();
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        for s in starts {
            let s = match out.last() {
                Some((o, d)) if s < o + d.len() as u64 + 1 => o + d.len() as u64 + 1,
                _ => s,
            };
            if s >= len {
                break;
            }
            let n = (1 + rng.below(max_region)).min(len - s);
            out.push((s, rng.bytes(n as usize)));
        }
        Image { len, regions: out }
    }

    /// Adds a region (kept sorted; must not overlap).
    pub fn with(mut self, offset: u64, data: Vec<u8>) -> Image {
        self.regions.push((offset, data));
        self.regions.sort_by_key(|r| r.0);
        self
    }

    /// The bytes of `[from, from + n)`.
    pub fn read(&self, from: u64, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        let to = from + n as u64;
        for (o, d) in &self.regions {
            let (a, b) = ((*o).max(from), (o + d.len() as u64).min(to));
            if a < b {
                buf[(a - from) as usize..(b - from) as usize]
                    .copy_from_slice(&d[(a - o) as usize..(b - o) as usize]);
            }
        }
        buf
    }

    /// The survey a first pass over the image gives.
    pub fn survey(&self) -> nanoimg_vdisk::Survey {
        survey_of_pieces(self.len, &self.regions)
    }

    /// The raw image's hash states (for a writer's `finish`).
    pub fn raw_hashes(&self) -> nanoimg_vdisk::RawHashes {
        pieces_hashes(self.len, &self.regions)
    }

    /// Writes the image as a sparse raw file.
    pub fn write_raw(&self, path: &Path) {
        let f = File::create(path).unwrap();
        for (o, d) in &self.regions {
            f.write_all_at(d, *o).unwrap();
        }
        f.set_len(self.len).unwrap();
    }
}

/// How the image's bytes are cut into `write_at` calls.
#[derive(Clone, Copy, Debug)]
pub enum Split {
    /// Each region as one call.
    Regions,
    /// The whole image front to back, zeros included, in calls of this many bytes.
    Dense(usize),
    /// Each region cut at random sizes (1 byte up to 100 KiB), seeded.
    Random(u64),
}

/// Feeds `image` to `sink` cut as `split` says, then finishes it.
pub fn feed(
    image: &Image,
    mut sink: Box<dyn Sink>,
    split: Split,
) -> std::io::Result<nanoimg_vdisk::FileSums> {
    match split {
        Split::Regions => {
            for (o, d) in &image.regions {
                sink.write_at(*o, d)?;
            }
        }
        Split::Dense(n) => {
            let mut at = 0;
            while at < image.len {
                let k = (n as u64).min(image.len - at) as usize;
                sink.write_at(at, &image.read(at, k))?;
                at += k as u64;
            }
        }
        Split::Random(seed) => {
            let mut rng = Rng::new(seed);
            for (o, d) in &image.regions {
                let mut i = 0;
                while i < d.len() {
                    let k = (1 + rng.below(100 << 10) as usize).min(d.len() - i);
                    sink.write_at(o + i as u64, &d[i..i + k])?;
                    i += k;
                }
            }
        }
    }
    sink.finish(image.len, &image.raw_hashes())
}

/// Writes `image` in `format` to `path` (checking the digests the writer computed).
pub fn write(format: Format, image: &Image, path: &Path, split: Split) -> std::io::Result<()> {
    let out = File::create(path)?;
    let survey = format.needs_survey().then(|| image.survey());
    let sink = nanoimg_vdisk::writer(format, out, image.len, survey)?;
    let sums = feed(image, sink, split)?;
    assert_sums_are_the_files(path, &sums);
    Ok(())
}

pub fn read_file(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(path).unwrap().read_to_end(&mut v).unwrap();
    v
}

/// Checks that `disk` holds `image`: its first `image.len` bytes equal, anything after them
/// (a rounding up) zeros, reads crossing the end refused.
pub fn assert_holds(disk: &dyn VirtualDisk, image: &Image) {
    assert!(
        disk.size() >= image.len,
        "size {} < {}",
        disk.size(),
        image.len
    );
    let step = 1 << 20;
    let mut at = 0;
    while at < disk.size() {
        let n = (step as u64).min(disk.size() - at) as usize;
        let mut buf = vec![0u8; n];
        disk.read_exact_at(&mut buf, at).unwrap();
        let want = image.read(at, n);
        if buf != want {
            let i = buf.iter().zip(&want).position(|(a, b)| a != b).unwrap();
            panic!("byte {} differs: {} != {}", at + i as u64, buf[i], want[i]);
        }
        at += n as u64;
    }
    // Small unaligned reads at every region's edges.
    for (o, d) in &image.regions {
        for p in [o.saturating_sub(3), o + d.len() as u64 - 1] {
            let n = 7.min(disk.size() - p) as usize;
            let mut buf = vec![0u8; n];
            disk.read_exact_at(&mut buf, p).unwrap();
            assert_eq!(buf, image.read(p, n), "at {p}");
        }
    }
    let mut one = [0u8; 1];
    let err = disk.read_exact_at(&mut one, disk.size()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let mut two = [0u8; 2];
    let err = disk.read_exact_at(&mut two, disk.size() - 1).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let err = disk.read_exact_at(&mut one, u64::MAX).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

// Opening damaged files.

/// Opening `path` with `nanoimg_vdisk::open` fails with a `Bad` error naming `format`
/// (never panics, never succeeds).
pub fn expect_bad(path: &Path, format: Format) -> String {
    match nanoimg_vdisk::open(path) {
        Ok(d) => panic!(
            "{} opened as {:?} of {} bytes",
            path.display(),
            d.format(),
            d.size()
        ),
        Err(VdiskError::Bad {
            format: f, reason, ..
        }) => {
            assert_eq!(f, format, "{reason}");
            reason
        }
        Err(e) => panic!("expected a Bad error, got {e}"),
    }
}

/// Writes `bytes` to `path`, opens it and reads it all (the first 64 MiB): must not
/// panic, whatever the bytes. Refused at open, bytes starting with `magic` must be a `Bad`
/// `format`; opened, they must be read as `format`.
pub fn try_read(path: &Path, bytes: &[u8], format: Format, magic: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).unwrap();
    let disk = match nanoimg_vdisk::open(path) {
        Ok(d) => d,
        Err(e) => {
            if bytes.starts_with(magic) {
                assert!(
                    matches!(e, VdiskError::Bad { format: f, .. } if f == format),
                    "{e:?}"
                );
            }
            return Err(e.to_string());
        }
    };
    if disk.format() != format {
        return Err(format!("not read as {format}"));
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < disk.size().min(64 << 20) {
        let n = (buf.len() as u64).min(disk.size() - at) as usize;
        disk.read_exact_at(&mut buf[..n], at)
            .map_err(|e| e.to_string())?;
        at += n as u64;
    }
    Ok(())
}

// Files and tools.

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// Bytes the file takes on disk.
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// The path of a tool the test needs; panics (the test fails, never passes silently)
/// saying what to install.
pub fn tool(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} is missing: install the Debian package {package} (apt-get install {package})"
    );
    p
}

/// `qemu-img`, to be given its arguments.
pub fn qemu_img() -> Command {
    Command::new(tool("/usr/bin/qemu-img", "qemu-utils"))
}

pub fn gnu_tar() -> PathBuf {
    tool("/usr/bin/tar", "tar")
}

/// Runs a command, returning its output (stdout and stderr as text, and the status).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `qemu-img check -f <qemu_format>`: exits 0 and finds no errors, no leaks, says nothing
/// on stderr.
pub fn qemu_check(path: &Path, qemu_format: &str) -> String {
    let (ok, stdout, stderr) = run(qemu_img().args(["check", "-f", qemu_format]).arg(path));
    assert!(ok, "qemu-img check failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("No errors were found on the image."),
        "qemu-img check:\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("leaked") && stderr.is_empty(),
        "qemu-img check:\n{stdout}\n{stderr}"
    );
    stdout
}

/// `qemu-img compare -f raw -F <qemu_format> raw out`: exits 0, "Images are identical."
/// (after a size mismatch warning when the container is padded past the raw image's
/// size); returns what it printed.
pub fn qemu_compare(raw: &Path, path: &Path, qemu_format: &str) -> String {
    let (ok, stdout, stderr) = run(qemu_img()
        .args(["compare", "-f", "raw", "-F", qemu_format])
        .arg(raw)
        .arg(path));
    assert!(
        ok && stdout.contains("Images are identical."),
        "qemu-img compare:\n{stdout}\n{stderr}"
    );
    stdout
}

/// `qemu-img info --output=json`'s virtual size.
pub fn qemu_virtual_size(path: &Path, qemu_format: &str) -> u64 {
    let (ok, stdout, stderr) = run(qemu_img()
        .args(["info", "--output=json", "-f", qemu_format])
        .arg(path));
    assert!(ok, "qemu-img info: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    json["virtual-size"].as_u64().unwrap()
}
