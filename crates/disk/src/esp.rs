//! The EFI System Partition of a UEFI hybrid image: FAT32, 33 MiB, holding
//! `\EFI\BOOT\BOOTX64.EFI` (`nanos-image-format.md` §1.5), written with the fatfs crate.
//! Timestamps and the volume id are fixed, so the partition is reproducible.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use nanoimg_stream::ImageWriter;

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

/// The ESP while fatfs builds it: a 33 MiB device in memory that keeps only the sectors
/// holding something other than zeros (the boot sectors, the two FATs' used entries, the
/// directories and the loader), so it is emitted in order into the image afterwards.
#[derive(Debug, Default)]
pub(crate) struct SparseEsp {
    sectors: BTreeMap<u64, Box<[u8; SECTOR]>>,
    pos: u64,
}

const SECTOR: usize = 512;

impl SparseEsp {
    /// Writes the partition at the writer's position: its non-zero sectors, zeros between.
    pub(crate) fn emit(&self, out: &mut ImageWriter) -> io::Result<()> {
        let base = out.position();
        for (index, sector) in &self.sectors {
            out.pad_to(base + index * SECTOR as u64)?;
            out.write(&sector[..])?;
        }
        out.pad_to(base + ESP_SIZE)
    }
}

impl Read for SparseEsp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (ESP_SIZE.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < n {
            let index = self.pos / SECTOR as u64;
            let within = (self.pos % SECTOR as u64) as usize;
            let k = (SECTOR - within).min(n - done);
            match self.sectors.get(&index) {
                Some(s) => buf[done..done + k].copy_from_slice(&s[within..within + k]),
                None => buf[done..done + k].fill(0),
            }
            done += k;
            self.pos += k as u64;
        }
        Ok(n)
    }
}

impl Write for SparseEsp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > ESP_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "past the end of the ESP",
            ));
        }
        let mut done = 0;
        while done < buf.len() {
            let index = self.pos / SECTOR as u64;
            let within = (self.pos % SECTOR as u64) as usize;
            let k = (SECTOR - within).min(buf.len() - done);
            let part = &buf[done..done + k];
            let sector = self
                .sectors
                .entry(index)
                .or_insert_with(|| Box::new([0; SECTOR]));
            sector[within..within + k].copy_from_slice(part);
            if sector.iter().all(|&b| b == 0) {
                self.sectors.remove(&index);
            }
            done += k;
            self.pos += k as u64;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SparseEsp {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => ESP_SIZE.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .filter(|n| *n <= ESP_SIZE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek outside the ESP"))?;
        self.pos = new;
        Ok(new)
    }
}

/// Formats an ESP in memory and stores `loader` as `\EFI\BOOT\` and its file name in
/// capitals (`BOOTX64.EFI`, `BOOTAA64.EFI`: the removable-media paths UEFI firmware boots).
pub(crate) fn build_esp(loader: &Path) -> io::Result<SparseEsp> {
    let mut esp = SparseEsp::default();
    fatfs::format_volume(
        &mut esp,
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(512)
            .total_sectors((ESP_SIZE / 512) as u32)
            .volume_id(VOLUME_ID)
            .volume_label(*b"NO NAME    "),
    )?;
    esp.seek(SeekFrom::Start(0))?;
    let fs = fatfs::FileSystem::new(&mut esp, fatfs::FsOptions::new().time_provider(&FIXED_TIME))?;
    {
        let boot = fs.root_dir().create_dir("EFI")?.create_dir("BOOT")?;
        let name = loader
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_uppercase())
            .ok_or_else(|| io::Error::other("the UEFI loader path has no file name"))?;
        let mut f = boot.create_file(&name)?;
        let mut src = File::open(loader)?;
        io::copy(&mut src, &mut f)?;
        f.flush()?;
    }
    fs.unmount()?;
    Ok(esp)
}
