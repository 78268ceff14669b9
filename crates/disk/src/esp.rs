//! The EFI System Partition of a UEFI hybrid image: FAT32, 33 MiB, holding
//! `\EFI\BOOT\BOOTX64.EFI` (`nanos-image-format.md` §1.5), written with the fatfs crate.
//! Timestamps and the volume id are fixed, so the partition is reproducible.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Size of the ESP partition (as ops and mkfs make it).
pub const ESP_SIZE: u64 = 33 * 1024 * 1024;
/// The volume id ops and mkfs write.
const VOLUME_ID: u32 = 0xDF43_F99E;

/// Every timestamp in the ESP: the DOS epoch, 1980-01-01 00:00:00.
#[derive(Debug)]
struct FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

/// A window `[start, start + len)` of a file, seen as a whole device.
struct Slice<'a> {
    file: &'a mut File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        // Beyond the file's current end the partition reads as zeros.
        let got = self.file.read(&mut buf[..n])?;
        buf[got..n].fill(0);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Slice<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "past the end of the ESP",
            ));
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        self.file.write_all(buf)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Slice<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .filter(|n| *n <= self.len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek outside the ESP"))?;
        self.pos = new;
        Ok(new)
    }
}

/// Formats the ESP at byte `offset` of `out` and stores `loader` as `\EFI\BOOT\BOOTX64.EFI`.
pub(crate) fn write_esp(out: &mut File, offset: u64, loader: &Path) -> io::Result<()> {
    let mut slice = Slice {
        file: out,
        start: offset,
        len: ESP_SIZE,
        pos: 0,
    };
    fatfs::format_volume(
        &mut slice,
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(512)
            .total_sectors((ESP_SIZE / 512) as u32)
            .volume_id(VOLUME_ID)
            .volume_label(*b"NO NAME    "),
    )?;
    slice.seek(SeekFrom::Start(0))?;
    let fs = fatfs::FileSystem::new(slice, fatfs::FsOptions::new().time_provider(&FIXED_TIME))?;
    {
        let boot = fs.root_dir().create_dir("EFI")?.create_dir("BOOT")?;
        let mut f = boot.create_file("BOOTX64.EFI")?;
        let mut src = File::open(loader)?;
        io::copy(&mut src, &mut f)?;
        f.flush()?;
    }
    fs.unmount()
}
