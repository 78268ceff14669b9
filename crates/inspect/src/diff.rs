use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::report::{inspect, FileInfo, FsReport, InspectError, Report};

/// One difference between two images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `layout`, `bootloader`, `kernel`, `klib`, `boot-file`, `manifest` or `file`.
    pub area: &'static str,
    /// What changed: a key, a path, or a layout property.
    pub name: String,
    /// The value in the first image (`None`: absent there).
    pub a: Option<String>,
    /// The value in the second image (`None`: absent there).
    pub b: Option<String>,
}

/// Why two images differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// The files are byte for byte the same.
    pub identical: bool,
    pub changes: Vec<Change>,
    /// Same metadata and files, but file data placed in another order on disk (as ops's
    /// random map order does).
    pub same_content_other_order: bool,
}

impl Diff {
    /// Whether the images differ at all.
    pub fn differs(&self) -> bool {
        !self.identical
    }
}

fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn describe(f: &FileInfo) -> String {
    match f {
        FileInfo::File { size, sha256, .. } => format!("{size} bytes, sha256 {sha256}"),
        FileInfo::Dir => "directory".into(),
        FileInfo::Symlink { target } => format!("symlink -> {target}"),
        FileInfo::Other => "other".into(),
    }
}

fn content(f: &FileInfo) -> FileInfo {
    match f {
        FileInfo::File { size, sha256, .. } => FileInfo::File {
            size: *size,
            sha256: sha256.clone(),
            first_sector: None,
        },
        other => other.clone(),
    }
}

fn compare_maps(
    changes: &mut Vec<Change>,
    area_of: impl Fn(&str) -> &'static str,
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (va, vb) = (a.get(k), b.get(k));
        if va != vb {
            changes.push(Change {
                area: area_of(k),
                name: k.clone(),
                a: va.cloned(),
                b: vb.cloned(),
            });
        }
    }
}

fn files_map(fs: &FsReport) -> BTreeMap<String, String> {
    fs.files
        .iter()
        .map(|(p, f)| (p.clone(), describe(&content(f))))
        .collect()
}

fn data_order(fs: &FsReport) -> Vec<&String> {
    let mut v: Vec<(u64, &String)> = fs
        .files
        .iter()
        .filter_map(|(p, f)| match f {
            FileInfo::File {
                first_sector: Some(s),
                ..
            } => Some((*s, p)),
            _ => None,
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

fn layout_of(r: &Report) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("layout".into(), r.layout.to_string());
    m.insert("image size".into(), r.size.to_string());
    if let Some(s) = r.stage2_len {
        m.insert("stage2 size".into(), s.to_string());
    }
    for p in &r.partitions {
        m.insert(
            format!("partition {} ({})", p.index, p.role),
            format!(
                "offset {}, size {}, type 0x{:02x}",
                p.offset, p.size, p.partition_type
            ),
        );
    }
    if let Some(b) = &r.boot {
        m.insert("boot filesystem UUID".into(), b.uuid.clone());
    }
    m.insert("root filesystem UUID".into(), r.root.uuid.clone());
    m.insert("root filesystem label".into(), r.root.label.clone());
    m.insert(
        "root filesystem free space".into(),
        r.root.size.saturating_sub(r.root.used_bytes).to_string(),
    );
    m
}

/// Compares the images (or volumes) at `a` and `b`.
pub fn diff(a: &Path, b: &Path) -> Result<Diff, InspectError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InspectError::Write { path, source }
    };
    std::fs::metadata(a).map_err(io(a))?;
    std::fs::metadata(b).map_err(io(b))?;
    if same_bytes(a, b).map_err(io(a))? {
        return Ok(Diff {
            identical: true,
            changes: Vec::new(),
            same_content_other_order: false,
        });
    }
    let (ra, rb) = (inspect(a)?, inspect(b)?);
    let mut changes = Vec::new();
    compare_maps(&mut changes, |_| "layout", &layout_of(&ra), &layout_of(&rb));
    if ra.bootloader_sha256 != rb.bootloader_sha256 {
        changes.push(Change {
            area: "bootloader",
            name: "boot.img (MBR code and stage2) sha256".into(),
            a: ra.bootloader_sha256.clone(),
            b: rb.bootloader_sha256.clone(),
        });
    }
    let empty = BTreeMap::new();
    let boot_a = ra
        .boot
        .as_ref()
        .map(files_map)
        .unwrap_or_else(|| empty.clone());
    let boot_b = rb.boot.as_ref().map(files_map).unwrap_or(empty);
    compare_maps(
        &mut changes,
        |p| match p {
            "/kernel" => "kernel",
            p if p.starts_with("/klib/") => "klib",
            _ => "boot-file",
        },
        &boot_a,
        &boot_b,
    );
    compare_maps(
        &mut changes,
        |_| "manifest",
        &ra.root.manifest,
        &rb.root.manifest,
    );
    compare_maps(
        &mut changes,
        |_| "file",
        &files_map(&ra.root),
        &files_map(&rb.root),
    );
    // A changed filesystem gets a changed UUID when UUIDs follow content (nanoimg's): report
    // a UUID change only when it is the filesystem's only change.
    let root_changed = changes
        .iter()
        .any(|c| matches!(c.area, "manifest" | "file"));
    let boot_changed = changes
        .iter()
        .any(|c| matches!(c.area, "kernel" | "klib" | "boot-file"));
    changes.retain(|c| {
        !(c.area == "layout"
            && ((c.name == "root filesystem UUID" && root_changed)
                || (c.name == "boot filesystem UUID" && boot_changed)))
    });
    let content_changed = root_changed || boot_changed;
    let same_content_other_order = !content_changed && data_order(&ra.root) != data_order(&rb.root);
    Ok(Diff {
        identical: false,
        changes,
        same_content_other_order,
    })
}
