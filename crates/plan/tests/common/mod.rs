//! Helpers shared by the plan's integration tests.

/// The 64-byte header of a static x86_64 executable (nothing here runs it).
pub fn tiny_static_elf() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[16] = 2;
    h[18] = 62;
    h[20] = 1;
    h[24..32].copy_from_slice(&0x40_1000u64.to_le_bytes());
    h[52] = 64;
    h[54] = 56;
    h
}
