//! A disk container file (the input, written to a temporary file with its `FUZZHOLE`
//! markers unfolded into holes): `nanoimg_vdisk::open`, then bounded reads through
//! `read_exact_at` and `DiskReader`. See `nanoimg_fuzz::vdisk_reader`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory"));
    nanoimg_fuzz::vdisk_reader(data, dir.path());
});
