//! A raw TFS volume (the input, zero-padded to one sector): `Tfs::open`, the tree, and every
//! file copied into a sink capped at 16 MiB per input. See `nanoimg_fuzz::tfs_log_reader`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nanoimg_fuzz::tfs_log_reader(data);
});
