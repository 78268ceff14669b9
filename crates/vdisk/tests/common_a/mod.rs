//! Helpers shared by the qcow2, VHD and VHDX tests: test images, feeding a writer in
//! different splittings, and running `qemu-img`.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use nanoimg_vdisk::{Format, Sink};
use sha2::{Digest, Sha256};

pub const QEMU_IMG: &str = "/usr/bin/qemu-img";

/// `qemu-img`, which these tests need: they fail, never pass silently, without it.
pub fn qemu_img() -> Command {
    assert!(
        Path::new(QEMU_IMG).exists(),
        "{QEMU_IMG} is missing: install qemu-utils (apt-get install qemu-utils) to run the \
         disk format tests"
    );
    Command::new(QEMU_IMG)
}

/// A small xorshift generator, so the tests need no extra crate and are reproducible.
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> TestRng {
        TestRng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A raw image of `len` bytes: random non-zero regions of random lengths at unaligned
/// places, separated by zero regions, some of them long enough to leave whole clusters
/// and blocks empty, with data in the last bytes (a partial last cluster when `len` is not
/// a multiple of one).
pub fn test_image(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = TestRng::new(seed);
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

/// Feeds `img` to a new `format` writer at `path`, in pieces ending at `cuts` (sorted
/// offsets); pieces that are all zeros are skipped when `skip_zero` (a range no call
/// covers is zeros).
pub fn write_split(format: Format, path: &Path, img: &[u8], cuts: &[usize], skip_zero: bool) {
    let out = File::create(path).unwrap();
    let mut sink: Box<dyn Sink> = nanoimg_vdisk::writer(format, out, img.len() as u64, None)
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
    sink.finish(img.len() as u64, &sha256(img)).unwrap();
}

/// Fixed splittings of an image of `len` bytes: one call; 512-byte calls; 1 MiB calls;
/// odd sizes (4093, 65537); random cuts.
pub fn splittings(len: usize, seed: u64) -> Vec<(Vec<usize>, bool)> {
    let every = |step: usize| (1..).map(|i| i * step).take_while(|&c| c < len).collect();
    let mut rng = TestRng::new(seed);
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
    buf
}

/// `qemu-img check -f <qemu_format>`: exits 0 and finds no errors.
pub fn qemu_check(path: &Path, qemu_format: &str) -> String {
    let out = qemu_img()
        .args(["check", "-f", qemu_format])
        .arg(path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "qemu-img check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
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

/// `qemu-img compare -f raw -F <qemu_format> raw out`: "Images are identical."
pub fn qemu_compare(raw: &Path, path: &Path, qemu_format: &str) -> String {
    let out = qemu_img()
        .args(["compare", "-f", "raw", "-F", qemu_format])
        .arg(raw)
        .arg(path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("Images are identical."),
        "qemu-img compare ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// `qemu-img info --output=json`'s virtual size.
pub fn qemu_virtual_size(path: &Path, qemu_format: &str) -> u64 {
    let out = qemu_img()
        .args(["info", "--output=json", "-f", qemu_format])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img info: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["virtual-size"].as_u64().unwrap()
}

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
        Err(nanoimg_vdisk::VdiskError::Bad {
            format: f, reason, ..
        }) => {
            assert_eq!(f, format, "{reason}");
            reason
        }
        Err(e) => panic!("expected a Bad error, got {e}"),
    }
}
