//! A disk image file (the input, written to a temporary file): `DiskImage::open`, then the
//! boot and root filesystems read like `tfs_log_reader` does. See
//! `nanoimg_fuzz::partition_reader`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory"));
    nanoimg_fuzz::partition_reader(data, dir.path());
});
