//! What the image itself says about how it can be run: UEFI or BIOS, whether Nanos reports
//! the program's exit code, and whether it fits the Gevulot node.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nanoimg_disk::{DiskImage, ImageFs};
use nanoimg_elf::Arch;
use nanoimg_tfs::{Entry, FileEntry};
use nanoimg_tuple::Value;
use sha2::Digest;

/// The facts about an image that shape its run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFacts {
    /// The architecture of its kernel (`/kernel` in the boot filesystem).
    pub arch: Arch,
    /// The container it is stored in.
    pub format: nanoimg_disk::Format,
    /// It has an EFI System Partition (a `--uefi` image).
    pub uefi: bool,
    /// Its manifest has `debug_exit`: Nanos reports the program's exit code to QEMU.
    pub debug_exit: bool,
    /// Its manifest has `missing_files`: the kernel lists, at exit, the files the program
    /// failed to open ([`crate::missing`]).
    pub missing_files: bool,
    /// Why it cannot work on a Gevulot node as it is (empty when it can).
    pub gevulot_problems: Vec<String>,
    /// What its container's reader noticed (`nanoimg_vdisk::VirtualDisk::notes`: a file
    /// read as raw although it looks like a damaged VHD, for one).
    pub notes: Vec<String>,
}

/// An image that cannot be booted.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path} is not a bootable Nanos image: {reason}; build one with `nanoimg build`")]
    NotAnImage { path: PathBuf, reason: String },
    #[error("{path} is a data volume, not a bootable image; attach it to a VM with --volume")]
    Volume { path: PathBuf },
    #[error("cannot write the kernel of {image} to {dir}: {source}")]
    KernelOut {
        image: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },
}

/// The boot filesystem's `/kernel` of the image at `path`, opened.
fn kernel_file(path: &Path, img: &DiskImage) -> Result<(ImageFs, FileEntry), ImageError> {
    let not_image = |reason: String| ImageError::NotAnImage {
        path: path.to_path_buf(),
        reason,
    };
    let fs = img
        .boot_fs()
        .map_err(|e| not_image(e.to_string()))?
        .ok_or_else(|| not_image("it has no boot filesystem".into()))?;
    let tree = fs.tree().map_err(|e| not_image(e.to_string()))?;
    match tree.get(&b"kernel"[..]) {
        Some(Entry::File(f)) => {
            let f = f.clone();
            Ok((fs, f))
        }
        _ => Err(not_image("its boot filesystem has no /kernel".into())),
    }
}

/// Keeps the first bytes written to it and counts the rest.
struct Head {
    bytes: Vec<u8>,
}

impl Write for Head {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = 64usize.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&buf[..room.min(buf.len())]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the image's kernel into `dir` as `kernel-<sha256>.img` (for QEMU's `-kernel`) and
/// returns its path. Named by content, so a kernel already there is reused and a printed
/// command line stays valid; written under a temporary name and renamed into place.
pub fn extract_kernel(path: &Path, dir: &Path) -> Result<PathBuf, ImageError> {
    let not_image = |reason: String| ImageError::NotAnImage {
        path: path.to_path_buf(),
        reason,
    };
    let out_err = |source| ImageError::KernelOut {
        image: path.to_path_buf(),
        dir: dir.to_path_buf(),
        source,
    };
    let img = DiskImage::open(path).map_err(|e| not_image(e.to_string()))?;
    let (mut fs, file) = kernel_file(path, &img)?;
    std::fs::create_dir_all(dir).map_err(out_err)?;
    let mut tmp = nanoimg_atomic::TempFile::in_dir(dir, "kernel-").map_err(out_err)?;
    struct Hashing<'a> {
        out: &'a mut std::fs::File,
        sha: sha2::Sha256,
    }
    impl Write for Hashing<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.out.write(buf)?;
            self.sha.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.out.flush()
        }
    }
    let mut w = Hashing {
        out: tmp.as_file_mut(),
        sha: sha2::Sha256::new(),
    };
    fs.copy_file(&file, &mut w)
        .map_err(|e| not_image(e.to_string()))?;
    let hex: String = w
        .sha
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let target = dir.join(format!("kernel-{hex}.img"));
    if target.is_file() {
        return Ok(target);
    }
    tmp.persist(&target).map_err(out_err)?;
    Ok(target)
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
    let arch = {
        let (mut boot, kernel) = kernel_file(path, &img)?;
        let mut head = Head { bytes: Vec::new() };
        boot.copy_file(&kernel, &mut head)
            .map_err(|e| not_image(e.to_string()))?;
        nanoimg_elf::machine_of_header(&head.bytes)
            .and_then(Arch::from_machine)
            .ok_or_else(|| not_image("its /kernel is not an x86_64 or aarch64 ELF".into()))?
    };
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
        arch,
        format: img.format(),
        uefi: img.esp().is_some(),
        debug_exit: root.contains_key(&b"debug_exit"[..]),
        missing_files: root.contains_key(crate::missing::MANIFEST_KEY.as_bytes()),
        gevulot_problems,
        notes: img.disk().notes(),
    })
}
