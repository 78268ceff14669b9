use std::path::{Path, PathBuf};

/// A release folder that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("kernel folder {path} does not exist or is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("kernel folder {dir} has no {name} (expected an unpacked Nanos release: kernel.img, boot.img, klibs/)")]
    Missing { dir: PathBuf, name: &'static str },
}

/// The files of an unpacked Nanos release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelDir {
    pub dir: PathBuf,
    /// `kernel.img`, the kernel ELF that goes to `/kernel` in the boot filesystem.
    pub kernel: PathBuf,
    /// `boot.img`, stage1 + stage2 for BIOS boot.
    pub boot: PathBuf,
    /// `bootx64.efi`, the UEFI loader, when the release has one.
    pub uefi_loader: Option<PathBuf>,
    /// `klibs/`, when the release has one.
    pub klibs: Option<PathBuf>,
}

impl KernelDir {
    /// Checks that `dir` holds at least `kernel.img` and `boot.img`.
    pub fn open(dir: &Path) -> Result<KernelDir, ReleaseError> {
        if !dir.is_dir() {
            return Err(ReleaseError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        let file = |name: &'static str| {
            let p = dir.join(name);
            p.is_file().then_some(p)
        };
        let required = |name| {
            file(name).ok_or(ReleaseError::Missing {
                dir: dir.to_path_buf(),
                name,
            })
        };
        let klibs = dir.join("klibs");
        Ok(KernelDir {
            dir: dir.to_path_buf(),
            kernel: required("kernel.img")?,
            boot: required("boot.img")?,
            uefi_loader: file("bootx64.efi"),
            klibs: klibs.is_dir().then_some(klibs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let e = KernelDir::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("has no kernel.img"), "{e}");
        std::fs::write(d.path().join("kernel.img"), b"k").unwrap();
        let e = KernelDir::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("has no boot.img"), "{e}");
        std::fs::write(d.path().join("boot.img"), b"b").unwrap();
        let k = KernelDir::open(d.path()).unwrap();
        assert_eq!(k.uefi_loader, None);
        let e = KernelDir::open(&d.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
