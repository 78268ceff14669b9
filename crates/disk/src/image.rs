use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nanoimg_stream::{Digests, ImageWriter};
use nanoimg_vdisk::{DiskReader, Format, VdiskError, VirtualDisk};

/// A filesystem of an image, read through the image's container.
pub type ImageFs = Tfs<DiskReader<Arc<dyn VirtualDisk>>>;
use nanoimg_tfs::{PlannedVolume, ReadError, Tfs, WriteError, WrittenVolume};

use crate::boot_image::BootImage;
use crate::mbr::PartitionEntry;
use crate::{BOOT_FS_SIZE, KLOG_SIZE, PARTITION_TYPE_ESP, PARTITION_TYPE_TFS};

const SECTOR: u64 = 512;
const PARTITION_TABLE: usize = 446;

/// Why an image cannot be laid out, written or read.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("the boot filesystem needs {needed} bytes but its partition has {available} (kernel and klibs too large)")]
    BootFsTooLarge { needed: u64, available: u64 },
    #[error("the boot filesystem's metadata needs {0} log extensions; stage2 can read only one (too many klibs)")]
    BootFsLog(usize),
    #[error("the image would be {size} bytes, more than an MBR partition can describe")]
    TooLarge { size: u64 },
    #[error("boot.img is {0} bytes, not a whole number of sectors")]
    UnalignedBootImage(u64),
    #[error("cannot write the {what}: {source}")]
    Volume {
        what: &'static str,
        source: WriteError,
    },
    #[error("cannot write the image: {0}")]
    Write(std::io::Error),
    #[error("cannot write the EFI System Partition with {loader}: {source}")]
    Esp {
        loader: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read image {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadImage { path: PathBuf, reason: String },
    #[error("{path}: {what}: {source}")]
    Filesystem {
        path: PathBuf,
        what: &'static str,
        source: ReadError,
    },
}

/// The parts of a bootable image to write.
#[derive(Clone, Copy, Debug)]
pub struct ImageSpec<'a> {
    /// The BIOS boot code (`boot.img`, x86_64). Without one (aarch64) sector 0 is all zeros
    /// but for the partition table and `55 AA`, as ops writes it.
    pub boot_image: Option<&'a BootImage>,
    /// The boot filesystem (`/kernel`, `/klib/*`).
    pub boot_fs: &'a PlannedVolume<'a>,
    /// The root filesystem (the program's tree and the manifest).
    pub root_fs: &'a PlannedVolume<'a>,
    /// Zeroed bytes after the root filesystem's data, so the program can write.
    pub root_free_space: u64,
    /// Smallest total image size in bytes (ops's `BaseVolumeSz`).
    pub min_image_size: u64,
    /// The UEFI loader (`bootx64.efi`, `bootaa64.efi`): adds an ESP before the boot
    /// filesystem holding it as `\EFI\BOOT\<its name in capitals>` (a BIOS+UEFI hybrid
    /// image on x86_64).
    pub uefi_loader: Option<&'a Path>,
}

/// Where everything goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// The EFI System Partition, in UEFI hybrid images.
    pub esp_offset: Option<u64>,
    pub boot_fs_offset: u64,
    pub root_fs_offset: u64,
    /// Total image size in bytes; the root filesystem runs to the end.
    pub size: u64,
}

impl ImageLayout {
    /// Computes the layout: boot.img (or one sector without it), the klog gap, the 12 MiB
    /// boot filesystem, then the root filesystem with its free space, the whole at least
    /// `min_image_size` (rounded up to a sector).
    pub fn compute(spec: &ImageSpec) -> Result<ImageLayout, DiskError> {
        let boot_len = spec.boot_image.map_or(SECTOR, |b| b.bytes().len() as u64);
        if !boot_len.is_multiple_of(SECTOR) {
            return Err(DiskError::UnalignedBootImage(boot_len));
        }
        if spec.boot_fs.size() > BOOT_FS_SIZE {
            return Err(DiskError::BootFsTooLarge {
                needed: spec.boot_fs.size(),
                available: BOOT_FS_SIZE,
            });
        }
        if spec.boot_fs.log_extensions() > 1 {
            return Err(DiskError::BootFsLog(spec.boot_fs.log_extensions()));
        }
        let first = boot_len + KLOG_SIZE;
        let esp_offset = spec.uefi_loader.map(|_| first);
        let boot_fs_offset = first + esp_offset.map_or(0, |_| crate::ESP_SIZE);
        let root_fs_offset = boot_fs_offset + BOOT_FS_SIZE;
        let size = (root_fs_offset + spec.root_fs.size())
            .checked_add(spec.root_free_space)
            .map(|s| s.max(spec.min_image_size))
            .and_then(|s| s.checked_next_multiple_of(SECTOR))
            .ok_or(DiskError::TooLarge { size: u64::MAX })?;
        if (size - root_fs_offset) / SECTOR > u64::from(u32::MAX) {
            return Err(DiskError::TooLarge { size });
        }
        Ok(ImageLayout {
            esp_offset,
            boot_fs_offset,
            root_fs_offset,
            size,
        })
    }
}

/// What [`write_image`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenImage {
    pub layout: ImageLayout,
    pub boot_fs: WrittenVolume,
    pub root_fs: WrittenVolume,
    /// SHA-256 and BLAKE3 of the image; with file digests, those of the boot filesystem's
    /// files followed by the root filesystem's, in write order.
    pub digests: Digests,
}

/// Writes a bootable image (BIOS, or UEFI hybrid when the spec has a loader) to `out`, which
/// must be a new, empty file, front to back through an [`ImageWriter`]: regions that hold
/// only zeros (the klog gap, free space) are left as holes, and the image's SHA-256 and
/// BLAKE3 — and with `file_digests` every file's SHA-256 — are computed on the way.
pub fn write_image(
    out: &File,
    spec: &ImageSpec,
    file_digests: bool,
) -> Result<WrittenImage, DiskError> {
    write_image_as(out, spec, file_digests, Format::Raw, true)
}

/// [`write_image`] in a container `format` (`nanoimg-vdisk`): the raw image streams into the
/// format's writer, never to a temporary raw file. The digests are the container file's
/// ([`nanoimg_stream::Digests::file`]) and, with `raw_sums` (or where the format needs them,
/// [`Format::id_from_raw_sha256`]), the raw image's; without, the raw image is not hashed
/// and its `sha256` and `blake3` are zeros — hashing it costs as much CPU as the rest of the
/// build. The formats whose file begins with a
/// description of the whole disk ([`Format::needs_survey`]) get the image's survey first,
/// from a planning pass that reads no file ([`ImageWriter::planning`]), so that the
/// container is written strictly front to back, once, and hashed as it is written.
pub fn write_image_as(
    out: &File,
    spec: &ImageSpec,
    file_digests: bool,
    format: Format,
    raw_sums: bool,
) -> Result<WrittenImage, DiskError> {
    let layout = ImageLayout::compute(spec)?;
    // The ESP is built first, in memory, so that the image can be written front to back.
    let esp = match spec.uefi_loader {
        Some(loader) => Some(
            crate::esp::build_esp(loader).map_err(|source| DiskError::Esp {
                loader: loader.to_path_buf(),
                source,
            })?,
        ),
        None => None,
    };
    let mbr = mbr_sector(spec, &layout);
    let parts = Parts {
        spec,
        layout,
        mbr: &mbr,
        esp: esp.as_ref(),
    };
    if format == Format::Raw {
        return parts.emit(ImageWriter::new(out, file_digests).map_err(DiskError::Write)?);
    }
    let file = out.try_clone().map_err(DiskError::Write)?;
    let hash_raw = raw_sums || format.id_from_raw_sha256();
    let into = |sink| {
        match hash_raw {
            true => ImageWriter::with_sink(sink, file_digests),
            false => ImageWriter::with_sink_unhashed(sink, file_digests),
        }
        .map_err(DiskError::Write)
    };
    if !format.needs_survey() {
        let sink =
            nanoimg_vdisk::writer(format, file, layout.size, None).map_err(DiskError::Write)?;
        return parts.emit(into(sink)?);
    }
    // The planning pass: the image's survey, from its metadata and where its files go; no
    // file is read. Then the container, strictly front to back, in one pass that hashes the
    // container (and, when asked, the raw image) as it goes.
    let planned = parts.emit(ImageWriter::planning().map_err(DiskError::Write)?)?;
    let survey = planned.digests.survey.ok_or_else(|| {
        DiskError::Write(std::io::Error::other(
            "internal error: the planning pass gave no survey",
        ))
    })?;
    let sink =
        nanoimg_vdisk::writer(format, file, layout.size, Some(survey)).map_err(DiskError::Write)?;
    parts.emit(into(sink)?)
}

/// Sector 0: `boot.img`'s first sector (or zeros, for aarch64) with the partition table.
fn mbr_sector(spec: &ImageSpec, layout: &ImageLayout) -> Vec<u8> {
    let mut mbr = match spec.boot_image {
        Some(b) => b.bytes()[..SECTOR as usize].to_vec(),
        None => {
            let mut m = vec![0u8; SECTOR as usize];
            m[510..].copy_from_slice(&[0x55, 0xAA]);
            m
        }
    };
    let mut entries = vec![
        PartitionEntry::new(PARTITION_TYPE_TFS, layout.boot_fs_offset, BOOT_FS_SIZE),
        PartitionEntry::new(
            PARTITION_TYPE_TFS,
            layout.root_fs_offset,
            layout.size - layout.root_fs_offset,
        ),
    ];
    if let Some(esp) = layout.esp_offset {
        entries.insert(
            0,
            PartitionEntry::new(PARTITION_TYPE_ESP, esp, crate::ESP_SIZE),
        );
    }
    entries.resize(4, PartitionEntry::default());
    for (i, e) in entries.iter().enumerate() {
        let at = PARTITION_TABLE + 16 * i;
        mbr[at..at + 16].copy_from_slice(&e.to_bytes());
    }
    mbr
}

/// Everything an image is made of, ready to be written (more than once, for GCE).
struct Parts<'a> {
    spec: &'a ImageSpec<'a>,
    layout: ImageLayout,
    mbr: &'a [u8],
    esp: Option<&'a crate::esp::SparseEsp>,
}

impl Parts<'_> {
    /// Writes the image front to back through `w`.
    fn emit(&self, mut w: ImageWriter) -> Result<WrittenImage, DiskError> {
        let (spec, layout) = (self.spec, self.layout);
        w.write(self.mbr).map_err(DiskError::Write)?;
        if let Some(b) = spec.boot_image {
            w.write(&b.bytes()[SECTOR as usize..])
                .map_err(DiskError::Write)?;
        }
        if let (Some(offset), Some(esp)) = (layout.esp_offset, self.esp) {
            w.pad_to(offset).map_err(DiskError::Write)?;
            esp.emit(&mut w).map_err(DiskError::Write)?;
        }
        let volume = |what| move |source| DiskError::Volume { what, source };
        w.pad_to(layout.boot_fs_offset).map_err(DiskError::Write)?;
        let boot_fs = spec
            .boot_fs
            .write(&mut w)
            .map_err(volume("boot filesystem"))?;
        w.pad_to(layout.root_fs_offset).map_err(DiskError::Write)?;
        let root_fs = spec
            .root_fs
            .write(&mut w)
            .map_err(volume("root filesystem"))?;
        w.pad_to(layout.size).map_err(DiskError::Write)?;
        let digests = w.finish().map_err(DiskError::Write)?;
        Ok(WrittenImage {
            layout,
            boot_fs,
            root_fs,
            digests,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Index in the partition table (0..4).
    pub index: usize,
    pub entry: PartitionEntry,
    /// Byte offset and size. For the root filesystem the size is what the kernel uses: the
    /// rest of the disk, whatever the entry says.
    pub offset: u64,
    pub size: u64,
}

/// A Nanos disk image opened for reading: either partitioned (BIOS, or the UEFI hybrid whose
/// first entry is the ESP) or a raw TFS volume.
#[derive(Debug)]
pub struct DiskImage {
    path: PathBuf,
    /// The raw image, read through its container (`nanoimg-vdisk`: raw, qcow2, VHD, VMDK,
    /// VHDX, GCE tar).
    disk: Arc<dyn VirtualDisk>,
    size: u64,
    mbr: Option<[u8; 512]>,
    esp: Option<Partition>,
    boot: Option<Partition>,
    root: Partition,
}

/// Opens the raw image at `path` through its container, its errors as [`DiskError`]s.
fn open_container(path: &Path) -> Result<Arc<dyn VirtualDisk>, DiskError> {
    let disk = nanoimg_vdisk::open(path).map_err(|e| match e {
        VdiskError::Read { source, .. } => DiskError::Read {
            path: path.to_path_buf(),
            source,
        },
        VdiskError::Bad { format, reason, .. } => DiskError::BadImage {
            path: path.to_path_buf(),
            reason: format!("not a valid {format} image: {reason}"),
        },
    })?;
    Ok(Arc::from(disk))
}

/// Entry `i` of the MBR partition table in `sector0`.
fn mbr_entry(sector0: &[u8; 512], i: usize) -> PartitionEntry {
    let at = PARTITION_TABLE + 16 * i;
    PartitionEntry::from_bytes(sector0[at..at + 16].try_into().expect("16 bytes"))
}

/// Partition `index` of the MBR in `sector0`, checked to lie in the `size`-byte image of
/// `path`; `whole_disk` gives it the rest of the disk, whatever its entry says.
fn mbr_partition(
    path: &Path,
    sector0: &[u8; 512],
    size: u64,
    index: usize,
    whole_disk: bool,
) -> Result<Partition, DiskError> {
    let bad = |reason: String| DiskError::BadImage {
        path: path.to_path_buf(),
        reason,
    };
    let e = mbr_entry(sector0, index);
    let offset = u64::from(e.lba_start) * SECTOR;
    if e.lba_start == 0 || offset >= size {
        return Err(bad(format!(
            "partition {index} starts at sector {}, outside the {size}-byte image",
            e.lba_start
        )));
    }
    let len = if whole_disk {
        size - offset
    } else {
        u64::from(e.sectors) * SECTOR
    };
    if offset + len > size {
        return Err(bad(format!(
            "partition {index} (sectors {}+{}) runs past the end of the {size}-byte image",
            e.lba_start, e.sectors
        )));
    }
    Ok(Partition {
        index,
        entry: e,
        offset,
        size: len,
    })
}

impl DiskImage {
    /// Opens `path` (a raw image, or one in a container format `nanoimg-vdisk` reads) and
    /// finds its filesystems the way Nanos does (`partition_get`, `mbr_read`): an MBR
    /// signature means a boot disk whose entry 0, 1 (or 1, 2 after an ESP) are the boot and
    /// root filesystems; no signature means a raw TFS volume.
    pub fn open(path: &Path) -> Result<DiskImage, DiskError> {
        let read = |source| DiskError::Read {
            path: path.to_path_buf(),
            source,
        };
        let bad = |reason: String| DiskError::BadImage {
            path: path.to_path_buf(),
            reason,
        };
        let disk = open_container(path)?;
        let size = disk.size();
        if size < SECTOR {
            return Err(bad(format!("{size} bytes is too small for a Nanos image")));
        }
        let mut sector0 = [0u8; 512];
        disk.read_exact_at(&mut sector0, 0).map_err(read)?;
        let whole = |index| Partition {
            index,
            entry: PartitionEntry::default(),
            offset: 0,
            size,
        };
        if sector0[510..512] != [0x55, 0xAA] {
            return Ok(DiskImage {
                path: path.to_path_buf(),
                disk,
                size,
                mbr: None,
                esp: None,
                boot: None,
                root: whole(0),
            });
        }
        let part =
            |index: usize, whole_disk: bool| mbr_partition(path, &sector0, size, index, whole_disk);
        let first = if mbr_entry(&sector0, 0).partition_type == PARTITION_TYPE_ESP {
            1
        } else {
            0
        };
        let esp = if first == 1 {
            Some(part(0, false)?)
        } else {
            None
        };
        Ok(DiskImage {
            path: path.to_path_buf(),
            size,
            mbr: Some(sector0),
            esp,
            boot: Some(part(first, false)?),
            root: part(first + 1, true)?,
            disk,
        })
    }

    /// The container the image is stored in.
    pub fn format(&self) -> Format {
        self.disk.format()
    }

    /// The raw image, for reading any part of it.
    pub fn disk(&self) -> &Arc<dyn VirtualDisk> {
        &self.disk
    }

    /// The image's size in bytes (of the raw image, whatever its container).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The MBR sector, if the image is partitioned.
    pub fn mbr(&self) -> Option<&[u8; 512]> {
        self.mbr.as_ref()
    }

    /// The EFI System Partition of a UEFI hybrid image.
    pub fn esp(&self) -> Option<Partition> {
        self.esp
    }

    /// The boot filesystem partition (absent for a raw volume).
    pub fn boot_partition(&self) -> Option<Partition> {
        self.boot
    }

    /// The root filesystem's place (the whole file for a raw volume).
    pub fn root_partition(&self) -> Partition {
        self.root
    }

    /// The stage2 length from the MBR's region record, if it has one.
    pub fn stage2_len(&self) -> Option<u64> {
        let mbr = self.mbr.as_ref()?;
        let ty = u32::from_le_bytes(mbr[442..446].try_into().expect("4 bytes"));
        (ty == 12).then(|| u64::from_le_bytes(mbr[434..442].try_into().expect("8 bytes")))
    }

    fn open_fs(&self, p: Partition, what: &'static str) -> Result<ImageFs, DiskError> {
        let reader = DiskReader::new(self.disk.clone());
        Tfs::open(reader, p.offset, p.size).map_err(|source| DiskError::Filesystem {
            path: self.path.clone(),
            what,
            source,
        })
    }

    /// Opens the root filesystem (or the raw volume).
    pub fn root_fs(&self) -> Result<ImageFs, DiskError> {
        self.open_fs(self.root, "root filesystem")
    }

    /// The byte ranges of the image that its files' data occupies, in both filesystems,
    /// increasing and merged where they touch: each extent's sectors up to the file's length
    /// (an extent reserved but never written holds no data). With the image's other bytes,
    /// these give its [`nanoimg_vdisk::Survey`], the one its build had.
    pub fn file_data(&self) -> Result<Vec<std::ops::Range<u64>>, DiskError> {
        let mut ranges = Vec::new();
        let fs_error = |what| {
            let path = self.path.clone();
            move |source| DiskError::Filesystem { path, what, source }
        };
        let volumes = [
            self.boot.map(|p| (p, "boot filesystem")),
            Some((self.root, "root filesystem")),
        ];
        for (p, what) in volumes.into_iter().flatten() {
            let tree = self.open_fs(p, what)?.tree().map_err(fs_error(what))?;
            let mut dirs = vec![&tree];
            while let Some(dir) = dirs.pop() {
                for entry in dir.values() {
                    match entry {
                        nanoimg_tfs::Entry::Dir(d) => dirs.push(d),
                        nanoimg_tfs::Entry::File(f) => file_ranges(p.offset, f, &mut ranges),
                        _ => {}
                    }
                }
            }
        }
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<std::ops::Range<u64>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        Ok(merged)
    }

    /// Opens the boot filesystem, if the image has one.
    pub fn boot_fs(&self) -> Result<Option<ImageFs>, DiskError> {
        self.boot
            .map(|p| self.open_fs(p, "boot filesystem"))
            .transpose()
    }
}

/// Where `file`'s data lies in an image whose volume starts at byte `base`.
fn file_ranges(base: u64, file: &nanoimg_tfs::FileEntry, out: &mut Vec<std::ops::Range<u64>>) {
    use nanoimg_tfs::SECTOR;
    for x in file.extents.iter().filter(|x| !x.uninited) {
        // The reader checked that every extent lies inside its volume.
        let from = x.file_sector.saturating_mul(SECTOR);
        let data = x
            .length
            .saturating_mul(SECTOR)
            .min(file.len.saturating_sub(from));
        let start = base.saturating_add(x.start.saturating_mul(SECTOR));
        if data > 0 {
            out.push(start..start.saturating_add(data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot_image::fake_boot_image;
    use nanoimg_tfs::{plan, Dir, Entry, FileSource, Node, VolumeSpec};
    use nanoimg_tuple::{Tuple, Value};

    #[test]
    fn writes_a_bios_image_that_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let boot_image = BootImage::parse(fake_boot_image(94), Path::new("boot.img")).unwrap();
        let mut boot = Dir::new();
        boot.insert(
            b"/kernel",
            Node::File(FileSource::Bytes(vec![0xCC; 300_004])),
        )
        .unwrap();
        let mut root = Dir::new();
        root.insert(b"/prog", Node::File(FileSource::Bytes(b"prog".to_vec())))
            .unwrap();
        let mut manifest = Tuple::new();
        manifest.insert(b"program".to_vec(), Value::string("/prog"));
        let boot_fs = plan(&VolumeSpec::new(&boot)).unwrap();
        let root_fs = plan(&VolumeSpec {
            manifest: &manifest,
            ..VolumeSpec::new(&root)
        })
        .unwrap();
        let path = dir.path().join("x.img");
        let out = File::create(&path).unwrap();
        let written = write_image(
            &out,
            &ImageSpec {
                boot_image: Some(&boot_image),
                boot_fs: &boot_fs,
                root_fs: &root_fs,
                root_free_space: 1 << 20,
                min_image_size: 0,
                uefi_loader: None,
            },
            true,
        )
        .unwrap();
        let layout = written.layout;
        drop(out);
        // The documented offsets for a 94-sector stage2.
        assert_eq!(layout.boot_fs_offset, 52_736);
        assert_eq!(layout.root_fs_offset, 12_635_648);
        assert_eq!(layout.size, 12_635_648 + root_fs.size() + (1 << 20));

        let img = DiskImage::open(&path).unwrap();
        assert_eq!(img.size(), layout.size);
        assert_eq!(img.stage2_len(), Some(94 * 512));
        let bp = img.boot_partition().unwrap();
        assert_eq!(
            bp.entry.to_bytes()[..8],
            [0x80, 0x01, 0x29, 0x00, 0x83, 0x88, 0x2E, 0x01]
        );
        assert_eq!(
            img.root_partition().size,
            layout.size - layout.root_fs_offset
        );
        let mut b = img.boot_fs().unwrap().unwrap();
        let tree = b.tree().unwrap();
        let Entry::File(k) = &tree[&b"kernel"[..]] else {
            panic!()
        };
        assert_eq!(b.read_file(k).unwrap(), vec![0xCC; 300_004]);
        let r = img.root_fs().unwrap();
        assert_eq!(r.root()[&b"program"[..]], Value::string("/prog"));
        // stage2 is copied verbatim after the MBR.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[512..48_640], &boot_image.bytes()[512..]);
        assert!(
            bytes[48_640..52_736].iter().all(|&b| b == 0),
            "klog gap is zero"
        );
    }
}
