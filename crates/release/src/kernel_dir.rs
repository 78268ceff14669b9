use std::path::{Path, PathBuf};

use nanoimg_elf::Arch;

/// A release folder that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("kernel folder {path} does not exist or is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("kernel folder {dir} has no {name} (expected an unpacked Nanos release: kernel.img, boot.img, klibs/)")]
    Missing { dir: PathBuf, name: &'static str },
    #[error("kernel folder {dir} has no boot.img, which an x86_64 kernel needs for BIOS boot (expected an unpacked Nanos release: kernel.img, boot.img, klibs/)")]
    MissingBootImage { dir: PathBuf },
    #[error("{path} is not a 64-bit little-endian ELF kernel; expected kernel.img of an unpacked Nanos release")]
    KernelNotElf { path: PathBuf },
    #[error("{path} is a kernel for ELF machine {machine}; nanoimg knows Nanos kernels for x86_64 (62) and aarch64 (183)")]
    KernelMachine { path: PathBuf, machine: u16 },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Nanos {release} release in {dir} holds an {found} kernel.img, not {expected}")]
    WrongArch {
        release: String,
        dir: PathBuf,
        found: Arch,
        expected: Arch,
    },
}

/// The files of an unpacked Nanos release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelDir {
    pub dir: PathBuf,
    /// The kernel's architecture (its ELF machine).
    pub arch: Arch,
    /// `kernel.img`, the kernel ELF that goes to `/kernel` in the boot filesystem.
    pub kernel: PathBuf,
    /// `boot.img`, stage1 + stage2 for BIOS boot: always in an x86_64 release, never in an
    /// aarch64 one.
    pub boot: Option<PathBuf>,
    /// The UEFI loader (`bootx64.efi`, `bootaa64.efi`), when the release has one.
    pub uefi_loader: Option<PathBuf>,
    /// `klibs/`, when the release has one.
    pub klibs: Option<PathBuf>,
}

impl KernelDir {
    /// Checks that `dir` holds at least `kernel.img` (an x86_64 or aarch64 ELF, which tells
    /// the release's architecture) and, for x86_64, `boot.img`.
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
        let kernel = required("kernel.img")?;
        let machine = nanoimg_elf::elf_machine(&kernel)
            .map_err(|source| ReleaseError::Read {
                path: kernel.clone(),
                source,
            })?
            .ok_or_else(|| ReleaseError::KernelNotElf {
                path: kernel.clone(),
            })?;
        let arch = Arch::from_machine(machine).ok_or_else(|| ReleaseError::KernelMachine {
            path: kernel.clone(),
            machine,
        })?;
        let boot = file("boot.img");
        if arch.has_bios_boot() && boot.is_none() {
            return Err(ReleaseError::MissingBootImage {
                dir: dir.to_path_buf(),
            });
        }
        Ok(KernelDir {
            dir: dir.to_path_buf(),
            arch,
            kernel,
            boot: boot.filter(|_| arch.has_bios_boot()),
            uefi_loader: file(arch.uefi_loader()),
            klibs: klibs.is_dir().then_some(klibs),
        })
    }

    /// [`open`](Self::open), checking that the release is for `arch` (a fetched release).
    pub fn open_for(dir: &Path, arch: Arch, release: &str) -> Result<KernelDir, ReleaseError> {
        let k = Self::open(dir)?;
        if k.arch != arch {
            return Err(ReleaseError::WrongArch {
                release: release.to_string(),
                dir: dir.to_path_buf(),
                found: k.arch,
                expected: arch,
            });
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_header(machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // ELFCLASS64
        h[5] = 1; // little-endian
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn an_aarch64_release_has_no_boot_img_and_loads_bootaa64() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("kernel.img"), elf_header(183)).unwrap();
        std::fs::write(d.path().join("bootaa64.efi"), b"efi").unwrap();
        std::fs::write(d.path().join("bootx64.efi"), b"not this one").unwrap();
        // A stray boot.img is not an aarch64 boot loader: it is never used.
        std::fs::write(d.path().join("boot.img"), b"b").unwrap();
        let k = KernelDir::open(d.path()).unwrap();
        assert_eq!(k.arch, Arch::Aarch64);
        assert_eq!(k.boot, None);
        assert_eq!(k.uefi_loader, Some(d.path().join("bootaa64.efi")));
        let e = KernelDir::open_for(d.path(), Arch::X86_64, "0.1.55")
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds an aarch64 kernel.img, not x86_64"), "{e}");
    }

    #[test]
    fn names_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let e = KernelDir::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("has no kernel.img"), "{e}");
        std::fs::write(d.path().join("kernel.img"), b"k").unwrap();
        let e = KernelDir::open(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("kernel.img is not a 64-bit little-endian ELF kernel"),
            "{e}"
        );
        std::fs::write(d.path().join("kernel.img"), elf_header(62)).unwrap();
        let e = KernelDir::open(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("has no boot.img, which an x86_64 kernel needs"),
            "{e}"
        );
        std::fs::write(d.path().join("boot.img"), b"b").unwrap();
        let k = KernelDir::open(d.path()).unwrap();
        assert_eq!(k.uefi_loader, None);
        assert_eq!(k.arch, Arch::X86_64);
        std::fs::write(d.path().join("kernel.img"), elf_header(243)).unwrap();
        let e = KernelDir::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("ELF machine 243"), "{e}");
        let e = KernelDir::open(&d.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
