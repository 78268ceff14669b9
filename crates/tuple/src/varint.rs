//! TFS varints: base-128, **most significant group first** (not LEB128).
//!
//! Every byte but the last has bit 7 set: 0 → `00`, 128 → `81 00`, 1024 → `88 00`.

/// Appends `value` as a TFS varint.
pub fn push(out: &mut Vec<u8>, value: u64) {
    let mut groups = [0u8; 10];
    let mut n = 0;
    let mut v = value;
    loop {
        groups[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(if i == 0 { groups[i] } else { groups[i] | 0x80 });
    }
}

/// The encoded length of `value` in bytes.
pub fn len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Reads a varint at `*pos`, advancing it. `None` if the input ends first or the value does
/// not fit in 64 bits.
pub fn read(input: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    loop {
        let byte = *input.get(*pos)?;
        *pos += 1;
        if value > (u64::MAX >> 7) {
            return None;
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        for (v, bytes) in [
            (0u64, &[0x00][..]),
            (127, &[0x7f]),
            (128, &[0x81, 0x00]),
            (1024, &[0x88, 0x00]),
            (3073, &[0x98, 0x01]),
        ] {
            let mut out = Vec::new();
            push(&mut out, v);
            assert_eq!(out, bytes, "encoding {v}");
            assert_eq!(len(v), bytes.len());
            let mut pos = 0;
            assert_eq!(read(&out, &mut pos), Some(v));
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn round_trip_extremes() {
        for v in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 56) - 1] {
            let mut out = Vec::new();
            push(&mut out, v);
            assert_eq!(out.len(), len(v));
            let mut pos = 0;
            assert_eq!(read(&out, &mut pos), Some(v));
        }
    }

    #[test]
    fn truncated_and_overflowing_input_is_refused() {
        let mut pos = 0;
        assert_eq!(read(&[0x81], &mut pos), None);
        let mut pos = 0;
        assert_eq!(read(&[0xff; 11], &mut pos), None);
    }
}
