//! MBR partition entries, with Nanos's CHS packing.

/// One 16-byte MBR partition entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionEntry {
    pub status: u8,
    pub chs_first: [u8; 3],
    pub partition_type: u8,
    pub chs_last: [u8; 3],
    pub lba_start: u32,
    pub sectors: u32,
}

/// Nanos's CHS bytes for a byte offset (`mbr_chs` in `nanos/src/runtime/storage.h`): the two
/// high cylinder bits are ORed *unshifted* into the sector byte. Readers ignore CHS; nanoimg
/// reproduces it so its MBR matches the one ops and mkfs write.
pub fn chs(offset: u64) -> [u8; 3] {
    let s = offset / 512;
    let (mut cyl, mut head, mut sec) = ((s / 63) / 255, (s / 63) % 255, s % 63 + 1);
    if cyl > 1023 {
        (cyl, head, sec) = (1023, 254, 63);
    }
    [head as u8, ((cyl >> 8) | sec) as u8, (cyl & 0xff) as u8]
}

impl PartitionEntry {
    /// An active entry for `size` bytes at byte `offset`, as Nanos's writers make them.
    /// Offsets and sizes must be sector multiples that fit the 32-bit fields (checked by the
    /// caller).
    pub fn new(partition_type: u8, offset: u64, size: u64) -> PartitionEntry {
        PartitionEntry {
            status: 0x80,
            chs_first: chs(offset),
            partition_type,
            chs_last: chs(offset + size - 512),
            lba_start: (offset / 512) as u32,
            sectors: (size / 512) as u32,
        }
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.status;
        b[1..4].copy_from_slice(&self.chs_first);
        b[4] = self.partition_type;
        b[5..8].copy_from_slice(&self.chs_last);
        b[8..12].copy_from_slice(&self.lba_start.to_le_bytes());
        b[12..16].copy_from_slice(&self.sectors.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 16]) -> PartitionEntry {
        PartitionEntry {
            status: b[0],
            chs_first: [b[1], b[2], b[3]],
            partition_type: b[4],
            chs_last: [b[5], b[6], b[7]],
            lba_start: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            sectors: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        }
    }

    /// Whether the entry is all zeros (unused).
    pub fn is_empty(&self) -> bool {
        *self == PartitionEntry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boot FS entry at LBA 103 from the format document (checked against ops).
    #[test]
    fn matches_the_documented_entry() {
        let e = PartitionEntry::new(0x83, 103 * 512, 12 * 1024 * 1024);
        assert_eq!(
            e.to_bytes(),
            [0x80, 0x01, 0x29, 0x00, 0x83, 0x88, 0x2E, 0x01, 0x67, 0, 0, 0, 0, 0x60, 0, 0]
        );
        assert_eq!(PartitionEntry::from_bytes(&e.to_bytes()), e);
    }

    #[test]
    fn chs_quirk_and_clamp() {
        // cylinder 256: Nanos ORs 1 into the sector bits instead of shifting to bit 6.
        let s = 256 * 255 * 63;
        assert_eq!(chs(s * 512), [0, 1 | 1, 0]);
        assert_eq!(chs(u64::from(u32::MAX) * 512), [254, 3 | 63, 0xff]);
    }
}
