//! The tuple decoder on hostile records: input = records, each a 2-byte little-endian length
//! and its bytes, fed to one `Decoder` in v5 and then (fresh) in v4; then `root()`,
//! `nanos_dump` and a re-encode/decode round trip. See `nanoimg_fuzz::tuple_decoder`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nanoimg_fuzz::tuple_decoder(data);
});
