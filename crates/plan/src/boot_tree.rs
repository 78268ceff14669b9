//! The boot side of a plan: the kernel (whose architecture the program's must be), the boot
//! filesystem (`/kernel`, `/klib/*`), the UEFI loader and the BIOS boot code.

use std::collections::BTreeSet;
use std::path::PathBuf;

use nanoimg_elf::Arch;
use nanoimg_tfs::{Dir, FileSource, Node};

use crate::{manifest, Inputs, PlanError};

/// The kernel an image boots.
pub(crate) struct Kernel {
    pub path: PathBuf,
    pub arch: Arch,
}

/// The config's `Kernel`, else the release's kernel; it must be of `program_arch`.
pub(crate) fn kernel(inputs: &Inputs, program_arch: Arch) -> Result<Kernel, PlanError> {
    let path = inputs
        .config
        .kernel
        .as_ref()
        .map(|k| inputs.cwd.join(k))
        .unwrap_or_else(|| inputs.kernel.kernel.clone());
    let arch = nanoimg_elf::elf_machine(&path)
        .map_err(|source| PlanError::Kernel {
            path: path.clone(),
            source,
        })?
        .and_then(Arch::from_machine)
        .ok_or_else(|| PlanError::KernelNotElf { path: path.clone() })?;
    if arch != program_arch {
        return Err(PlanError::ArchMismatch {
            program: inputs.program.to_path_buf(),
            program_arch,
            kernel: path,
            kernel_arch: arch,
        });
    }
    Ok(Kernel { path, arch })
}

/// Everything an image boots from besides the root filesystem.
pub(crate) struct BootSide {
    /// The boot filesystem: the kernel and the klibs.
    pub tree: Dir,
    /// The klibs packed (the manifest says `klibs: bootfs` when there are any).
    pub klibs: BTreeSet<String>,
    pub uefi_loader: Option<PathBuf>,
    pub boot_image: Option<PathBuf>,
}

/// The boot filesystem, the UEFI loader (with `Uefi`) and the boot.img (x86_64).
pub(crate) fn boot_side(
    inputs: &Inputs,
    kernel: &Kernel,
    notes: &mut Vec<String>,
) -> Result<BootSide, PlanError> {
    let mut tree = Dir::new();
    let source = FileSource::host(&kernel.path).map_err(|source| PlanError::Kernel {
        path: kernel.path.clone(),
        source,
    })?;
    tree.insert(b"/kernel", Node::File(source))?;
    let klibs = manifest::klibs(inputs.config);
    if !klibs.is_empty() {
        add_klibs(&mut tree, inputs, kernel, &klibs)?;
    }
    Ok(BootSide {
        tree,
        klibs,
        uefi_loader: uefi_loader(inputs, kernel.arch)?,
        boot_image: boot_image(inputs, kernel.arch, notes),
    })
}

/// The klibs under `/klib`, from `KlibDir` or the release; each of the kernel's
/// architecture.
fn add_klibs(
    tree: &mut Dir,
    inputs: &Inputs,
    kernel: &Kernel,
    klibs: &BTreeSet<String>,
) -> Result<(), PlanError> {
    let dir = inputs
        .config
        .klib_dir
        .as_ref()
        .map(|d| inputs.cwd.join(d))
        .or_else(|| inputs.kernel.klibs.clone())
        .ok_or(PlanError::NoKlibDir)?;
    for name in klibs {
        let host = dir.join(name);
        if !host.is_file() {
            return Err(PlanError::MissingKlib {
                name: name.clone(),
                dir,
            });
        }
        let klib_arch = nanoimg_elf::elf_machine(&host)
            .map_err(|source| PlanError::Kernel {
                path: host.clone(),
                source,
            })?
            .and_then(Arch::from_machine);
        if klib_arch != Some(kernel.arch) {
            return Err(PlanError::KlibArch {
                path: host,
                klib_arch,
                kernel: kernel.path.clone(),
                kernel_arch: kernel.arch,
            });
        }
        let source = FileSource::host(&host).map_err(|source| PlanError::Kernel {
            path: host.clone(),
            source,
        })?;
        tree.insert(format!("/klib/{name}").as_bytes(), Node::File(source))?;
    }
    Ok(())
}

/// The UEFI loader of a hybrid image: ops always takes it from the release folder, whatever
/// `UefiBoot` says.
fn uefi_loader(inputs: &Inputs, arch: Arch) -> Result<Option<PathBuf>, PlanError> {
    if !inputs.config.uefi {
        return Ok(None);
    }
    let loader = inputs
        .kernel
        .uefi_loader
        .clone()
        .ok_or_else(|| PlanError::NoUefiLoader {
            dir: inputs.kernel.dir.clone(),
            loader: arch.uefi_loader(),
        })?;
    Ok(Some(loader))
}

/// The BIOS boot code: the config's `Boot`, else the release's. aarch64 has none, so `Boot`
/// cannot apply to it (a note says so).
fn boot_image(inputs: &Inputs, arch: Arch, notes: &mut Vec<String>) -> Option<PathBuf> {
    let config = inputs.config;
    if arch.has_bios_boot() {
        config
            .boot
            .as_ref()
            .map(|b| inputs.cwd.join(b))
            .or_else(|| inputs.kernel.boot.clone())
    } else {
        if config.boot.is_some() {
            notes.push("Boot is ignored: an aarch64 image has no BIOS boot code".into());
        }
        None
    }
}
