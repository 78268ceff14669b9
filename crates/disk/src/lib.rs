//! The Nanos bootable disk image: everything around the filesystems.
//!
//! A UEFI hybrid image puts a 33 MiB FAT32 EFI System Partition (`\EFI\BOOT\BOOTX64.EFI`)
//! before the boot filesystem, so the same image boots through BIOS and UEFI.
//!
//! An aarch64 image has no BIOS boot code: sector 0 is zeros but for the partition table and
//! `55 AA` (as ops writes it), the klog area follows at 512, and the rest is the same, with
//! `\EFI\BOOT\BOOTAA64.EFI` in the ESP when it has one.
//!
//! A BIOS image is `boot.img` (stage1 in the MBR, then stage2) · a 4 KiB klog area · the
//! 12 MiB boot filesystem holding `/kernel` · the root filesystem to the end of the disk, with
//! MBR entries for the two filesystems (`nanos-image-format.md` §1). This crate
//!
//! - checks a `boot.img` and reads the stage2 size from its region record ([`BootImage`]),
//!   because every offset after the MBR depends on it;
//! - computes the layout and writes the image from two planned TFS volumes
//!   ([`write_image`]);
//! - reads any Nanos disk image back — partitioned (BIOS or UEFI hybrid) or a raw TFS volume —
//!   and opens its filesystems ([`DiskImage`]).

mod boot_image;
mod esp;
mod image;
mod mbr;

pub use boot_image::{BootImage, BootImageError};
pub use esp::ESP_SIZE;
pub use image::{
    write_image, write_image_as, DiskError, DiskImage, ImageFs, ImageLayout, ImageSpec, Partition,
    WrittenImage,
};
pub use mbr::{chs, PartitionEntry};
pub use nanoimg_vdisk::Format;

/// The kernel's crash log area right before the first partition (`KLOG_DUMP_SIZE`).
pub const KLOG_SIZE: u64 = 4096;
/// Size of the boot filesystem partition (`BOOTFS_SIZE`).
pub const BOOT_FS_SIZE: u64 = 12 * 1024 * 1024;
/// MBR partition type of the TFS partitions.
pub const PARTITION_TYPE_TFS: u8 = 0x83;
/// MBR partition type of an EFI System Partition; entry 0 having it shifts boot/root by one.
pub const PARTITION_TYPE_ESP: u8 = 0xEF;
