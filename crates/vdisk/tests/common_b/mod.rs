//! Shared by the VMDK and GCE tests: test images made here, fed through a `Sink` in
//! different splits, and the external tools they are checked with.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nanoimg_vdisk::{DataMap, Format, Sink, VirtualDisk};
use sha2::{Digest, Sha256};

/// A small deterministic generator (xorshift64*), so failures reproduce.
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
    /// Bytes with no zero byte (so a region is data wherever it lies).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() % 255) as u8 + 1).collect()
    }
}

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

    pub fn sha256(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut at = 0;
        let zeros = vec![0u8; 1 << 20];
        for (o, d) in &self.regions {
            while at < *o {
                let n = (o - at).min(zeros.len() as u64) as usize;
                h.update(&zeros[..n]);
                at += n as u64;
            }
            h.update(d);
            at += d.len() as u64;
        }
        while at < self.len {
            let n = (self.len - at).min(zeros.len() as u64) as usize;
            h.update(&zeros[..n]);
            at += n as u64;
        }
        h.finalize().into()
    }

    /// The data map a first pass over the image gives.
    pub fn data_map(&self) -> DataMap {
        let mut map = DataMap::default();
        for (o, d) in &self.regions {
            map.add(*o, d);
        }
        map.finish(self.len);
        map
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
pub fn feed(image: &Image, mut sink: Box<dyn Sink>, split: Split) -> std::io::Result<()> {
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
    sink.finish(image.len, &image.sha256())
}

/// Writes `image` in `format` to `path`.
pub fn write(format: Format, image: &Image, path: &Path, split: Split) -> std::io::Result<()> {
    let out = File::create(path)?;
    let map = (format == Format::Gce).then(|| image.data_map());
    let sink = nanoimg_vdisk::writer(format, out, image.len, map)?;
    feed(image, sink, split)
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

/// The path of a tool the test needs; panics (the test fails) saying what to install.
pub fn tool(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} is missing: install the Debian package {package} (apt-get install {package})"
    );
    p
}

pub fn qemu_img() -> PathBuf {
    tool("/usr/bin/qemu-img", "qemu-utils")
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
