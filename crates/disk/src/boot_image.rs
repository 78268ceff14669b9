use std::path::{Path, PathBuf};

/// Offset of the stage2 region record in the MBR (`struct region` before the partitions).
const REGION_OFFSET: usize = 426;
/// `REGION_FILESYSTEM`: the region type stage1 records for stage2.
const REGION_FILESYSTEM: u32 = 12;
/// A boot.img larger than this is not a Nanos bootloader (stage2 is ~48 KiB).
const MAX_BOOT_IMAGE: u64 = 16 * 1024 * 1024;

/// What is wrong with a boot.img.
#[derive(Debug, thiserror::Error)]
pub enum BootImageError {
    #[error("cannot read boot image {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("boot image {path} is {len} bytes, too {which} for a Nanos bootloader")]
    Size {
        path: PathBuf,
        len: u64,
        which: &'static str,
    },
    #[error("boot image {path} has no MBR signature (55 AA at byte 510)")]
    NoSignature { path: PathBuf },
    #[error("boot image {path} is not a Nanos bootloader: its region record at byte 426 has type {ty}, not 12 (a stage2 record)")]
    NotStage2 { path: PathBuf, ty: u32 },
    #[error("boot image {path} is {len} bytes but its stage2 record says 512 + {stage2} bytes")]
    LengthMismatch {
        path: PathBuf,
        len: u64,
        stage2: u64,
    },
}

/// A checked Nanos `boot.img`: stage1 (the MBR sector) followed by stage2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootImage {
    bytes: Vec<u8>,
    stage2_len: u64,
}

impl BootImage {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<BootImage, BootImageError> {
        let read = |source| BootImageError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_BOOT_IMAGE {
            return Err(BootImageError::Size {
                path: path.to_path_buf(),
                len,
                which: "large",
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        BootImage::parse(bytes, path)
    }

    /// Checks `bytes` (read from `path`, named in errors): the `55 AA` signature, a region
    /// record of type 12 at byte 426, and a length of 512 + the stage2 length it records.
    pub fn parse(bytes: Vec<u8>, path: &Path) -> Result<BootImage, BootImageError> {
        let path = path.to_path_buf();
        let len = bytes.len() as u64;
        if bytes.len() < 512 {
            return Err(BootImageError::Size {
                path,
                len,
                which: "small",
            });
        }
        if bytes[510..512] != [0x55, 0xAA] {
            return Err(BootImageError::NoSignature { path });
        }
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
        let ty = u32::from_le_bytes(
            bytes[REGION_OFFSET + 16..REGION_OFFSET + 20]
                .try_into()
                .expect("4 bytes"),
        );
        if ty != REGION_FILESYSTEM {
            return Err(BootImageError::NotStage2 { path, ty });
        }
        let stage2_len = u64_at(REGION_OFFSET + 8);
        if stage2_len.checked_add(512) != Some(len) {
            return Err(BootImageError::LengthMismatch {
                path,
                len,
                stage2: stage2_len,
            });
        }
        Ok(BootImage { bytes, stage2_len })
    }

    /// The whole boot.img.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length of stage2 in bytes, as its region record says.
    pub fn stage2_len(&self) -> u64 {
        self.stage2_len
    }
}

#[cfg(test)]
pub(crate) fn fake_boot_image(stage2_sectors: u64) -> Vec<u8> {
    let mut b = vec![0xEBu8; 512 + (stage2_sectors * 512) as usize];
    b[REGION_OFFSET..REGION_OFFSET + 8].copy_from_slice(&0x8000u64.to_le_bytes());
    b[REGION_OFFSET + 8..REGION_OFFSET + 16].copy_from_slice(&(stage2_sectors * 512).to_le_bytes());
    b[REGION_OFFSET + 16..REGION_OFFSET + 20].copy_from_slice(&REGION_FILESYSTEM.to_le_bytes());
    b[446..510].fill(0);
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: Vec<u8>) -> Result<BootImage, BootImageError> {
        BootImage::parse(b, Path::new("boot.img"))
    }

    #[test]
    fn accepts_a_stage2_record() {
        let b = parse(fake_boot_image(94)).unwrap();
        assert_eq!(b.stage2_len(), 94 * 512);
    }

    #[test]
    fn refuses_what_is_not_a_nanos_boot_image() {
        let mut b = fake_boot_image(94);
        b[REGION_OFFSET + 16] = 1;
        let e = parse(b).unwrap_err().to_string();
        assert!(
            e.contains("type 1, not 12") && e.contains("boot.img"),
            "{e}"
        );

        let mut b = fake_boot_image(94);
        b[511] = 0;
        assert!(matches!(parse(b), Err(BootImageError::NoSignature { .. })));

        let mut b = fake_boot_image(94);
        b.truncate(b.len() - 512);
        assert!(matches!(
            parse(b),
            Err(BootImageError::LengthMismatch { .. })
        ));

        assert!(matches!(
            parse(vec![0; 100]),
            Err(BootImageError::Size { .. })
        ));
    }
}
