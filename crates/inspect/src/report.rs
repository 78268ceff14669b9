use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use nanoimg_disk::{DiskError, DiskImage, ImageFs, Partition};
use nanoimg_tfs::{Entry, FileEntry, ReadError, SECTOR};
use nanoimg_tuple::print::{nanos_dump, DumpOptions};
use nanoimg_tuple::{Tuple, Value};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Sparse files may be larger than their volume, but not by more than this.
const MAX_FILE_BEYOND_VOLUME: u64 = 4 << 30;
/// All files of a volume together may claim at most this much more than the volume holds
/// (holes are hashed as zeros, so their length costs time).
const MAX_TOTAL_BEYOND_VOLUME: u64 = 16 << 30;
/// The dump-style metadata text kept in a report.
const METADATA_LIMIT: usize = 64 << 20;

/// Why an image cannot be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("{path}: {what}: {source}")]
    Read {
        path: PathBuf,
        what: &'static str,
        source: ReadError,
    },
    #[error("{path}: file {file:?} claims {len} bytes, more than the volume could hold")]
    Implausible {
        path: PathBuf,
        file: String,
        len: u64,
    },
    #[error("cannot read {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot extract into {path}: it exists and is not a folder; give a new or empty folder"
    )]
    NotAFolder { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Unsafe { path: PathBuf, reason: String },
    #[error("{path}: {file} is {len} bytes, more than nanoimg reads of it ({limit})")]
    TooLarge {
        path: PathBuf,
        file: String,
        len: u64,
        limit: u64,
    },
}

/// One MBR partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    pub index: usize,
    /// `esp`, `boot` or `root`.
    pub role: &'static str,
    pub partition_type: u8,
    pub active: bool,
    pub offset: u64,
    pub size: u64,
}

/// A file, directory or link of a filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FileInfo {
    File {
        size: u64,
        sha256: String,
        /// First sector of its data (for on-disk order), if it has any.
        #[serde(skip_serializing_if = "Option::is_none")]
        first_sector: Option<u64>,
    },
    Dir,
    Symlink {
        target: String,
    },
    Other,
}

/// One TFS filesystem.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FsReport {
    pub offset: u64,
    pub size: u64,
    pub label: String,
    pub uuid: String,
    pub version: u64,
    pub log_extensions: usize,
    /// Root tuple keys other than `children`, as Nanos's dump prints each value.
    pub manifest: BTreeMap<String, String>,
    /// The root tuple without `children`: what `manifest` one-lines, kept whole so that
    /// `diff` can name the changed leaves. Not part of the JSON report.
    #[serde(skip)]
    pub root_tuple: Tuple,
    /// The whole metadata, exactly as Nanos's `dump` prints it.
    pub metadata: String,
    /// Every entry by path.
    pub files: BTreeMap<String, FileInfo>,
    /// Sectors used: the end of the last extent or log extension.
    pub used_bytes: u64,
}

/// What an image holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub path: PathBuf,
    /// The container the image is stored in (`raw`, `qcow2`, `vhd`, `vmdk`, `vhdx`, `gce`).
    pub format: String,
    /// Size of the raw image (whatever the container).
    pub size: u64,
    /// `bios`, `uefi`, `no-bootloader` (an aarch64 image booted with its kernel given to the
    /// hypervisor) or `volume` (a raw TFS volume).
    pub layout: &'static str,
    pub stage2_len: Option<u64>,
    /// SHA-256 of the bootloader bytes: MBR code (0..446) and stage2.
    pub bootloader_sha256: Option<String>,
    pub partitions: Vec<PartitionInfo>,
    pub boot: Option<FsReport>,
    pub root: FsReport,
    /// What the container's reader noticed (`VirtualDisk::notes`), one line each; left out
    /// of the JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One line of a value as dump prints it.
pub(crate) fn one_line(v: &Value) -> String {
    nanos_dump(
        v,
        DumpOptions {
            parent_links: false,
            limit: 1 << 20,
        },
    )
    .split('\n')
    .map(str::trim)
    .collect::<Vec<_>>()
    .join(" ")
}

struct HashSink(Sha256);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Running totals of a walk: sectors used and bytes that will be hashed.
pub(crate) struct Totals {
    pub(crate) used: u64,
    pub(crate) claimed: u64,
}

fn walk(
    fs: &mut ImageFs,
    path: &Path,
    dir: &BTreeMap<Vec<u8>, Entry>,
    prefix: &str,
    out: &mut BTreeMap<String, FileInfo>,
    totals: &mut Totals,
) -> Result<(), InspectError> {
    for (name, entry) in dir {
        let p = format!("{prefix}/{}", String::from_utf8_lossy(name));
        let info = match entry {
            Entry::Dir(d) => {
                walk(fs, path, d, &p, out, totals)?;
                FileInfo::Dir
            }
            Entry::Symlink(t) => FileInfo::Symlink {
                target: String::from_utf8_lossy(t).into_owned(),
            },
            Entry::Other(_) => FileInfo::Other,
            Entry::File(f) => file_info(fs, path, &p, f, totals)?,
        };
        out.insert(p, info);
    }
    Ok(())
}

fn file_info(
    fs: &mut ImageFs,
    path: &Path,
    name: &str,
    f: &FileEntry,
    totals: &mut Totals,
) -> Result<FileInfo, InspectError> {
    let mut sink = HashSink(Sha256::new());
    copy_bounded(fs, path, name, f, totals, &mut sink)?;
    Ok(FileInfo::File {
        size: f.len,
        sha256: hex(&sink.0.finalize()),
        first_sector: f.extents.iter().map(|x| x.start).min(),
    })
}

/// Streams the file `name` (`f`) of `fs` into `out`, after checking that its length, and
/// the lengths of all files copied so far (`totals`), are plausible for the volume.
pub(crate) fn copy_bounded(
    fs: &mut ImageFs,
    path: &Path,
    name: &str,
    f: &FileEntry,
    totals: &mut Totals,
    out: &mut impl Write,
) -> Result<(), InspectError> {
    totals.claimed = totals.claimed.saturating_add(f.len);
    if f.len > fs.size().saturating_add(MAX_FILE_BEYOND_VOLUME)
        || totals.claimed > fs.size().saturating_add(MAX_TOTAL_BEYOND_VOLUME)
    {
        return Err(InspectError::Implausible {
            path: path.to_path_buf(),
            file: name.to_string(),
            len: f.len,
        });
    }
    for x in &f.extents {
        let end = x.start.saturating_add(x.allocated.max(x.length));
        totals.used = totals.used.max(end.saturating_mul(SECTOR));
    }
    fs.copy_file(f, out).map_err(|source| InspectError::Read {
        path: path.to_path_buf(),
        what: "reading a file",
        source,
    })?;
    Ok(())
}

fn fs_report(
    path: &Path,
    mut fs: ImageFs,
    p: Partition,
    what: &'static str,
) -> Result<FsReport, InspectError> {
    let read = |source| InspectError::Read {
        path: path.to_path_buf(),
        what,
        source,
    };
    let tree = fs.tree().map_err(read)?;
    let root: Tuple = fs.root().clone();
    let mut files = BTreeMap::new();
    let mut totals = Totals {
        used: fs
            .log_extensions()
            .iter()
            .map(|(s, n)| s.saturating_add(*n).saturating_mul(SECTOR))
            .max()
            .unwrap_or(0),
        claimed: 0,
    };
    walk(&mut fs, path, &tree, "", &mut files, &mut totals)?;
    let root_tuple: Tuple = root
        .iter()
        .filter(|(k, _)| k.as_slice() != b"children")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(FsReport {
        offset: p.offset,
        size: p.size,
        label: String::from_utf8_lossy(fs.label()).into_owned(),
        uuid: fs.uuid_string(),
        version: fs.version(),
        log_extensions: fs.log_extensions().len() - 1,
        manifest: root_tuple
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), one_line(v)))
            .collect(),
        root_tuple,
        metadata: nanos_dump(
            &Value::Tuple(root),
            DumpOptions {
                parent_links: true,
                limit: METADATA_LIMIT,
            },
        ),
        files,
        used_bytes: totals.used,
    })
}

/// Reads everything about the image (or raw TFS volume) at `path`, hashing every file.
pub fn inspect(path: &Path) -> Result<Report, InspectError> {
    let image = DiskImage::open(path)?;
    let mut partitions = Vec::new();
    if image.mbr().is_some() {
        let roles = [
            image.esp().map(|p| (p, "esp")),
            image.boot_partition().map(|p| (p, "boot")),
            Some((image.root_partition(), "root")),
        ];
        for (p, role) in roles.into_iter().flatten() {
            partitions.push(PartitionInfo {
                index: p.index,
                role,
                partition_type: p.entry.partition_type,
                active: p.entry.status == 0x80,
                offset: p.offset,
                size: p.size,
            });
        }
    }
    let bootloader_sha256 = match (image.mbr(), image.stage2_len()) {
        (Some(mbr), Some(len)) => {
            let mut h = Sha256::new();
            h.update(&mbr[..446]);
            let mut stage2 = vec![0u8; len.min(16 << 20) as usize];
            if image.disk().read_exact_at(&mut stage2, 512).is_ok() {
                h.update(&stage2);
            }
            Some(hex(&h.finalize()))
        }
        _ => None,
    };
    let boot = match (image.boot_fs()?, image.boot_partition()) {
        (Some(fs), Some(p)) => Some(fs_report(path, fs, p, "boot filesystem")?),
        _ => None,
    };
    let root = fs_report(
        path,
        image.root_fs()?,
        image.root_partition(),
        "root filesystem",
    )?;
    Ok(Report {
        path: path.to_path_buf(),
        format: image.format().to_string(),
        size: image.size(),
        layout: match (
            image.mbr().is_some(),
            image.esp().is_some(),
            image.stage2_len(),
        ) {
            (false, _, _) => "volume",
            (true, true, _) => "uefi",
            (true, false, Some(_)) => "bios",
            // aarch64: no BIOS boot code; the hypervisor loads the kernel (`-kernel`).
            (true, false, None) => "no-bootloader",
        },
        stage2_len: image.stage2_len(),
        bootloader_sha256,
        partitions,
        boot,
        root,
        notes: image.disk().notes(),
    })
}
