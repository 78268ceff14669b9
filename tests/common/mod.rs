//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The reference images: `NANOIMG_VECTORS`, or `../shared/vectors` beside the checkout.
pub fn vectors_dir() -> PathBuf {
    let dir = std::env::var_os("NANOIMG_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"));
    assert!(
        dir.join("README.md").is_file(),
        "reference vectors not found at {} (set NANOIMG_VECTORS to the shared/vectors folder)",
        dir.display()
    );
    dir
}

/// A boot.img with a valid stage2 region record (not real boot code).
pub fn fake_boot_img(stage2_sectors: u64) -> Vec<u8> {
    let mut b = vec![0x90u8; 512 + (stage2_sectors * 512) as usize];
    b[426..434].copy_from_slice(&0x8000u64.to_le_bytes());
    b[434..442].copy_from_slice(&(stage2_sectors * 512).to_le_bytes());
    b[442..446].copy_from_slice(&12u32.to_le_bytes());
    b[446..510].fill(0);
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// A release folder with a fake kernel and boot.img, for builds that are read back, not
/// booted.
pub fn fake_release(dir: &Path) -> PathBuf {
    let k = dir.join("release");
    std::fs::create_dir_all(&k).unwrap();
    std::fs::write(k.join("kernel.img"), fake_kernel(62, 0x4B, 1_000_003)).unwrap();
    std::fs::write(k.join("boot.img"), fake_boot_img(94)).unwrap();
    k
}

/// A stand-in kernel of `len` bytes: an ELF64 header for `machine` (62 x86_64, 183
/// aarch64), then `fill` bytes. nanoimg reads only its header.
pub fn fake_kernel(machine: u16, fill: u8, len: usize) -> Vec<u8> {
    let mut k = vec![fill; len];
    k[..64].fill(0);
    k[..4].copy_from_slice(b"\x7fELF");
    k[4] = 2;
    k[5] = 1;
    k[6] = 1;
    k[18..20].copy_from_slice(&machine.to_le_bytes());
    k
}

/// Runs the nanoimg binary.
pub fn nanoimg(args: &[&std::ffi::OsStr], cwd: &Path) -> Output {
    nanoimg_env(args, cwd, &[])
}

/// Runs the nanoimg binary with extra environment variables. The release cache is always
/// set (to a folder under `cwd` unless given), so no test touches the user's cache.
pub fn nanoimg_env(args: &[&std::ffi::OsStr], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nanoimg"));
    c.args(args)
        .current_dir(cwd)
        .env("NANOIMG_CACHE", cwd.join("cache"));
    c.env_remove("NANOIMG_MIRROR");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The 64-byte header of a static x86_64 executable: enough for nanoimg to accept a file as
/// a static program (nothing in these tests runs it).
pub fn tiny_static_elf() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // little-endian
    h[6] = 1; // EV_CURRENT
    h[16] = 2; // ET_EXEC
    h[18] = 62; // EM_X86_64
    h[20] = 1;
    h[24..32].copy_from_slice(&0x40_1000u64.to_le_bytes());
    h[52] = 64; // e_ehsize
    h[54] = 56; // e_phentsize
    h
}
