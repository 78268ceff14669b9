//! What the image itself says about how it can be run: UEFI or BIOS, whether Nanos reports
//! the program's exit code, and whether it fits the Gevulot node.

use std::path::{Path, PathBuf};

use nanoimg_disk::DiskImage;
use nanoimg_tfs::Entry;
use nanoimg_tuple::Value;

/// The facts about an image that shape its run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFacts {
    /// It has an EFI System Partition (a `--uefi` image).
    pub uefi: bool,
    /// Its manifest has `debug_exit`: Nanos reports the program's exit code to QEMU.
    pub debug_exit: bool,
    /// Why it cannot work on a Gevulot node as it is (empty when it can).
    pub gevulot_problems: Vec<String>,
}

/// An image that cannot be booted.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path} is not a bootable Nanos image: {reason}; build one with `nanoimg build`")]
    NotAnImage { path: PathBuf, reason: String },
    #[error("{path} is a data volume, not a bootable image; attach it to a VM with --volume")]
    Volume { path: PathBuf },
}

/// Reads the partition table and the root filesystem's manifest of `path`.
pub fn image_facts(path: &Path) -> Result<ImageFacts, ImageError> {
    let not_image = |reason: String| ImageError::NotAnImage {
        path: path.to_path_buf(),
        reason,
    };
    let img = DiskImage::open(path).map_err(|e| not_image(e.to_string()))?;
    if img.mbr().is_none() {
        return Err(ImageError::Volume {
            path: path.to_path_buf(),
        });
    }
    let fs = img.root_fs().map_err(|e| not_image(e.to_string()))?;
    let root = fs.root();
    let mut gevulot_problems = Vec::new();
    let workspace = root
        .get(&b"mounts"[..])
        .and_then(Value::as_tuple)
        .and_then(|m| m.get(&b"%0"[..]))
        .and_then(Value::as_bytes)
        .is_some_and(|p| p == b"/workspace");
    if !workspace {
        gevulot_problems.push(
            "its manifest does not mount attach id %0 at /workspace (Mounts {\"%1\": \"/workspace\"} in the config, which nanoimg renumbers to %0)"
                .to_string(),
        );
    } else {
        let tree = fs.tree().map_err(|e| not_image(e.to_string()))?;
        if !matches!(tree.get(&b"workspace"[..]), Some(Entry::Dir(_))) {
            gevulot_problems.push("it has no /workspace folder to mount the workspace on".into());
        }
    }
    let readonly = root
        .get(&b"readonly_rootfs"[..])
        .and_then(Value::as_bytes)
        .is_some_and(|v| v == b"true");
    if !readonly {
        gevulot_problems.push(
            "its root filesystem is not read-only, but the node attaches the disk read-only (ManifestPassthrough {\"readonly_rootfs\": \"true\"})"
                .to_string(),
        );
    }
    Ok(ImageFacts {
        uefi: img.esp().is_some(),
        debug_exit: root.contains_key(&b"debug_exit"[..]),
        gevulot_problems,
    })
}
