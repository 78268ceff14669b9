//! Fixed VHD: the raw disk followed by a 512-byte footer (Azure's format).
//!
//! Specification: Microsoft's "Virtual Hard Disk Image Format Specification" (version 1.0,
//! the hard disk footer and its CHS geometry algorithm, appendix); how QEMU reads it: QEMU's
//! `block/vpc.c`.
//!
//! # What the writer stores
//!
//! The file is the raw image at its own offsets (zero blocks of [`ZERO_BLOCK`] left as holes,
//! so the file is sparse on disk), zeros up to the VHD's *current size*, then the footer.
//!
//! * Current size: the raw image's length rounded **up to a whole MiB**, the padding zeros.
//!   Azure accepts only a fixed VHD whose virtual size is a multiple of 1 MiB; a raw image
//!   that already is one is not changed. Reading the VHD back gives the padded size.
//! * Original size = current size; disk type 2 (fixed); features 2 (reserved bit, always
//!   set); file format version 0x00010000; data offset 0xFFFFFFFFFFFFFFFF (no dynamic header);
//!   saved state 0.
//! * Geometry: the specification's CHS algorithm on current size / 512 sectors (capped at
//!   65535 × 16 × 255). This is the one field where the footer differs from qemu-img's
//!   `force_size` output (besides timestamp, unique ID and checksum): qemu-img then writes
//!   the maximum geometry, 65535/16/255. Neither Hyper-V, Azure nor QEMU (given `"qem2"`)
//!   takes the size from the geometry.
//! * Timestamp: 0, that is 2000-01-01 00:00:00 UTC (the field counts seconds from then): a
//!   fixed value, so the file depends on the content only.
//! * Creator application `"qem2"`, creator version 0x00050003, creator host OS `"Wi2k"`: the
//!   fields `qemu-img convert -O vpc -o subformat=fixed,force_size` writes, the command
//!   Azure's documentation gives for making an uploadable VHD. The choice matters: QEMU's
//!   `vpc.c` takes a VHD's size from its CHS geometry, which rounds most sizes *down* (and
//!   caps them near 127 GiB), unless the creator application is one that uses the current
//!   size (`"win "`, `"qem2"`, `"d2v "`, `"CTXS"`, `"tap\0"`) or the geometry is the maximum.
//!   With `"qem2"`, QEMU sees exactly the current size, as Hyper-V and Azure do.
//! * Unique ID: the first 16 bytes of SHA-256(`"nanoimg vhd unique-id"` ‖ raw SHA-256), with
//!   the RFC 4122 version 4 and variant bits set (byte 6 = `0x4?`, byte 8 = `0b10??????`),
//!   stored in that byte order.
//! * Checksum: the one's complement of the sum of the footer's bytes, checksum field zero.
//!
//! The largest disk written is 2040 GiB (0xFF000000 sectors, QEMU's limit for VHD; Hyper-V's
//! is 2040 GiB too). Memory: nothing beyond the caller's buffers.
//!
//! # Reading
//!
//! [`VhdReader`] takes the footer in the last 512 bytes: cookie, checksum, disk type 2
//! (a dynamic or differencing VHD is refused with that reason), a current size that fits in
//! the file before the footer. The disk is the first current-size bytes of the file (the
//! specification's size, not the CHS geometry); its data is where the file has data
//! (`SEEK_DATA`). A file whose last 512 bytes look like a footer with a damaged cookie
//! ([`damaged_footer`]) is read by [`crate::open`] as a raw disk, with a note saying so.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::Digest;

use crate::common::{bad, be32, be64, derived_id, for_zeros, read_error, read_file_at, WriteOrder};
use crate::raw::write_skipping_zeros;
use crate::{FileSums, Format, RawHashes, Sink, VdiskError, VirtualDisk};

#[cfg(doc)]
use crate::ZERO_BLOCK;

const FOOTER: u64 = 512;
const COOKIE: &[u8; 8] = b"conectix";
const MIB: u64 = 1 << 20;
/// The largest VHD: 0xFF000000 sectors of 512 bytes, 2040 GiB.
pub const MAX_SIZE: u64 = 0xff00_0000 * 512;
const DISK_FIXED: u32 = 2;

/// The VHD's current size for a raw image of `len` bytes: `len` rounded up to a MiB.
pub fn current_size(len: u64) -> io::Result<u64> {
    len.checked_next_multiple_of(MIB)
        .filter(|&s| s <= MAX_SIZE)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes is larger than a VHD can be ({MAX_SIZE} bytes, 2040 GiB)"),
            )
        })
}

/// The specification's CHS geometry for `size` bytes: (cylinders, heads, sectors per track).
pub fn geometry(size: u64) -> (u16, u8, u8) {
    let total = (size / 512).min(65535 * 16 * 255);
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        let mut s = 17;
        let mut c = total / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

fn checksum(footer: &[u8]) -> u32 {
    !footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |s, (_, &b)| s.wrapping_add(u32::from(b)))
}

/// The footer of a fixed VHD of `size` bytes.
pub fn footer(size: u64, raw_sha256: &[u8; 32]) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(COOKIE);
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
    // 24: timestamp 0 (2000-01-01 00:00:00 UTC).
    f[28..32].copy_from_slice(b"qem2");
    f[32..36].copy_from_slice(&0x0005_0003u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (c, h, s) = geometry(size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&DISK_FIXED.to_be_bytes());
    let mut id = derived_id("nanoimg vhd unique-id", raw_sha256);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    f[68..84].copy_from_slice(&id);
    // 84: saved state 0.
    let sum = checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    f
}

/// If `f`, the last 512 bytes of a file, lack the `conectix` cookie but otherwise look like
/// a VHD footer (the file format version 1.0 and a disk type of 2, 3 or 4 at their places:
/// eight bytes that a raw disk's last sector does not hold by chance), what they are.
pub fn damaged_footer(f: &[u8; 512]) -> Option<String> {
    if &f[0..8] == COOKIE {
        return None;
    }
    let version = be32(f, 12);
    let disk_type = be32(f, 60);
    if version != 0x0001_0000 || !(2..=4).contains(&disk_type) {
        return None;
    }
    Some(format!(
        "the last 512 bytes look like a VHD footer (file format version 1.0, disk type {disk_type}) whose cookie is damaged ({:?}, not \"conectix\")",
        String::from_utf8_lossy(&f[0..8])
    ))
}

/// Writes a fixed VHD (see the module documentation).
#[derive(Debug)]
pub struct VhdWriter {
    out: File,
    order: WriteOrder,
    /// Writing with direct I/O (the raw image's aligned buffers go straight to the disk).
    direct: bool,
}

impl VhdWriter {
    pub fn new(out: File, virtual_size: u64) -> io::Result<VhdWriter> {
        current_size(virtual_size)?;
        let direct = crate::raw::set_direct(&out, true).is_ok();
        Ok(VhdWriter {
            out,
            order: WriteOrder::new(virtual_size),
            direct,
        })
    }

    fn buffered(&mut self) -> io::Result<()> {
        if self.direct {
            crate::raw::set_direct(&self.out, false)?;
            self.direct = false;
        }
        Ok(())
    }
}

impl Sink for VhdWriter {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.order.write(offset, data.len())?;
        let aligned = |n: usize| n.is_multiple_of(crate::ZERO_BLOCK as usize);
        if self.direct
            && aligned(offset as usize)
            && aligned(data.len())
            && aligned(data.as_ptr() as usize)
            && write_skipping_zeros(&self.out, offset, data).is_ok()
        {
            return Ok(());
        }
        // An unaligned piece (or a filesystem refusing direct writes): buffered from here.
        self.buffered()?;
        write_skipping_zeros(&self.out, offset, data)?;
        crate::common::writeback(&self.out, offset, data.len() as u64);
        Ok(())
    }

    /// The file is the raw image, zeros up to the VHD size and the footer: its digests
    /// continue the raw image's hash states (`raw`), so nothing is hashed twice.
    fn finish(mut self: Box<Self>, len: u64, raw: &RawHashes) -> io::Result<FileSums> {
        self.order.finish(Format::Vhd, len)?;
        // The descriptor is shared with the caller's `File`: leave it as it was.
        self.buffered()?;
        let size = current_size(len)?;
        let footer = footer(size, &raw.sha256);
        self.out.set_len(size)?;
        self.out.write_all_at(&footer, size)?;
        let (mut sha256, mut blake3) = raw.states.clone().ok_or_else(|| {
            io::Error::other("internal error: the VHD writer needs the raw image's hash states")
        })?;
        for_zeros(size - len, |z| {
            sha256.update(z);
            blake3.update(z);
        });
        sha256.update(footer);
        blake3.update(&footer);
        Ok(FileSums {
            size: size + FOOTER,
            sha256: sha256.finalize().into(),
            blake3: *blake3.finalize().as_bytes(),
        })
    }
}

/// Reads a fixed VHD.
#[derive(Debug)]
pub struct VhdReader {
    file: File,
    size: u64,
}

impl VhdReader {
    pub fn open(file: File, path: &Path) -> Result<VhdReader, VdiskError> {
        let bad = bad(path, Format::Vhd);
        let read = read_error(path);
        let len = file.metadata().map_err(read)?.len();
        if len < FOOTER {
            return Err(bad(format!(
                "the file is {len} bytes, shorter than a VHD footer (512)"
            )));
        }
        let mut f = [0u8; 512];
        file.read_exact_at(&mut f, len - FOOTER).map_err(read)?;
        if &f[0..8] != COOKIE {
            return Err(bad(
                "the last 512 bytes are not a VHD footer (no \"conectix\" cookie)".into(),
            ));
        }
        let stored = be32(&f, 64);
        let sum = checksum(&f);
        if stored != sum {
            return Err(bad(format!(
                "footer checksum is {stored:#010x}, the footer's bytes give {sum:#010x}"
            )));
        }
        match be32(&f, 60) {
            DISK_FIXED => {}
            3 => return Err(bad("a dynamic VHD (only fixed VHDs are read)".into())),
            4 => return Err(bad("a differencing VHD (only fixed VHDs are read)".into())),
            t => return Err(bad(format!("unknown disk type {t}"))),
        }
        let size = be64(&f, 48);
        if size > len - FOOTER {
            return Err(bad(format!(
                "current size {size} does not fit in the {len}-byte file before the footer"
            )));
        }
        Ok(VhdReader { file, size })
    }
}

impl VirtualDisk for VhdReader {
    fn format(&self) -> Format {
        Format::Vhd
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_file_at(&self.file, self.size, buf, offset)
    }

    fn allocated(&self) -> io::Result<Vec<std::ops::Range<u64>>> {
        crate::raw::file_extents(&self.file, self.size)
    }
}
