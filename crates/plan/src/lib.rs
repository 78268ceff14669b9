//! The build plan: what goes into an image, decided before a byte is written.
//!
//! [`plan`] turns a program, its ops config and a Nanos release into two directory trees —
//! the boot filesystem (`/kernel`, `/klib/*`) and the root filesystem — plus the manifest
//! keys of the root tuple and the sizes the image must have. Files are referenced by host
//! path, not read; `nanoimg-tfs` and `nanoimg-disk` stream them into place later.
//!
//! The rules follow `ops build` (`docs/ops-compatibility.md` lists every difference):
//! - the program's image path is the config's `Program` with a leading `./` dropped, made
//!   absolute and cleaned, or `/<file name>` without one; argv\[0\] is `Program` as written
//!   (or the file name), followed by `Args`;
//! - a dynamic program's interpreter and libraries are resolved from its ELF headers by
//!   `nanoimg-elf` (in `TargetRoot` or `/`) and stored where the guest's loader will open
//!   them; nothing is executed. Files the user adds explicitly win over found libraries.
//!   `Libraries` (nanoimg only) names more sonames to pack the same way, with their own
//!   dependencies; what the program may load at run time and the closure lacks is reported
//!   as [`Plan::runtime_loads`] hints (only with evidence, see
//!   [`nanoimg_elf::Resolver::runtime_loads_of`]);
//! - every other ELF file packed (by `Files`, `Dirs`, `MapDirs` or the whole root) gets its
//!   own closure ([`nanoimg_elf::Resolver::needed_closure`]): what it needs and the image
//!   lacks is added from the root, with its own closure; a library nothing has is a note
//!   naming the ELF and the soname, never an error (only the program's own libraries must
//!   be found). At most [`nanoimg_elf::MAX_PACKED_ELFS`] ELF files are examined, the rest
//!   counted in a note;
//! - with [`Inputs::pack_root`] every entry of the target root is packed at its own path
//!   (folders, files, hard links as files, symbolic links exactly as written; device files,
//!   FIFOs and sockets skipped with one note). What the program and config pack is placed
//!   over it, each path resolved through the root's links as the guest will: an entry that
//!   is the root's own file there (the program or a library from the same root, an absolute
//!   `Files` entry of an image root) is packed once, as the root's; any other one (a host
//!   file, a `MapDirs` target elsewhere) replaces the root's entry at that path, with one
//!   note counting them. A regular file of the root at `/etc/passwd`, `/etc/resolv.conf` or
//!   `/proc/sys/kernel/hostname` counts as provided (nothing is generated over it; a link
//!   there that leads nowhere in the root is replaced by the generated file). Generated
//!   files are not counted in [`Plan::packed`]. Libraries are then only checked, not added (the root
//!   is all there), and unresolvable ones are notes, as they would fail in the container
//!   too; [`Plan::packed`] sums up what each source packed;
//! - `Files` and `Dirs` are relative to the working directory, `MapDirs` keys to the
//!   config's directory; nothing may climb above the image root;
//! - `Mounts` get ops's onprem renumbering (see [`manifest::mounts`]) and their mount points
//!   are created; `Klibs` go to the boot filesystem with `klibs: bootfs`; `NameServers`,
//!   `/etc/passwd` and the hostname are generated as ops generates them;
//! - `ManifestPassthrough` keys are copied into the manifest last, overriding anything;
//! - the root filesystem gets [`DEFAULT_FREE_SPACE`] of free space unless `readonly_rootfs`
//!   is set, and the image is at least `BaseVolumeSz` bytes.

mod boot_tree;
mod host_tree;
mod manifest;
mod packing;
mod root_tree;

pub use host_tree::folder_tree;
pub use packing::{Count, Packed};
pub use root_tree::MAX_UNRESOLVED_NOTES;

use std::path::{Path, PathBuf};

use nanoimg_config::{Config, ConfigError};
use nanoimg_elf::{Arch, Dependency, Resolution, ResolveError, Resolver, RuntimeLoad, Unresolved};
use nanoimg_release::KernelDir;
use nanoimg_tfs::{Dir, TreeError};
use nanoimg_tuple::Tuple;

/// Free space given to a writable root filesystem when the config does not ask for a size:
/// enough for the kernel's log growth (which reserves 2 × 512 KiB before allocating any data)
/// and a few MiB of files.
pub const DEFAULT_FREE_SPACE: u64 = 8 * 1024 * 1024;

/// What to build from.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The program on the host.
    pub program: &'a Path,
    pub config: &'a Config,
    /// The config file's path; relative `MapDirs` keys and mount directories are relative to
    /// its directory (else to `cwd`).
    pub config_path: Option<&'a Path>,
    pub kernel: &'a KernelDir,
    /// The Nanos version used, for `NANOS_VERSION` ("" when not known).
    pub nanos_version: &'a str,
    /// The directory `Files` and `Dirs` are relative to.
    pub cwd: &'a Path,
    /// Where to resolve libraries, overriding the config's `TargetRoot`; `/` when neither.
    pub target_root: Option<&'a Path>,
    /// The target root is a container image's unpacked root: absolute `Files` and `Dirs`
    /// entries then name paths inside it (resolved there, chroot-style), not host paths.
    pub image_root: bool,
    /// Directories searched after `DT_RPATH`, as `LD_LIBRARY_PATH` (only when asked for).
    pub ld_library_path: &'a [String],
    /// Keep `Mounts` keys as written instead of renumbering them as ops's onprem build does.
    pub keep_mount_ids: bool,
    /// The image name (ops's `-i`), overriding the one derived from the config or program.
    pub image_name: Option<&'a str>,
    /// The architecture asked for (`--arch`); the program, its libraries, the kernel and the
    /// klibs must all be of it. Without it they must agree with the program.
    pub arch: Option<Arch>,
    /// Pack every entry of the target root at the same path (`nanoimg build --from-image
    /// IMAGE` without a program: interpreters load files nobody can predict). Needs a
    /// target root; see [`plan`] for what wins where the program or config packs the same
    /// path.
    pub pack_root: bool,
}

/// Everything the image will contain.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The boot filesystem tree.
    pub boot: Dir,
    /// The root filesystem tree.
    pub root: Dir,
    /// Root tuple keys besides `children`.
    pub manifest: Tuple,
    /// The boot.img to use (x86_64; an aarch64 image has none).
    pub boot_image: Option<PathBuf>,
    /// The architecture of the program and the kernel.
    pub arch: Arch,
    /// The UEFI loader, when a BIOS+UEFI hybrid image is asked for (`Uefi`).
    pub uefi_loader: Option<PathBuf>,
    /// The program's path in the image.
    pub program_path: String,
    /// Zeroed space after the root filesystem's data.
    pub root_free_space: u64,
    /// Smallest total image size.
    pub min_image_size: u64,
    /// The image's name as ops derives it: the program's base name up to its first `.`.
    pub image_name: String,
    /// The interpreter and libraries packed for a dynamic program.
    pub dependencies: Vec<Dependency>,
    /// Libraries the program, its libraries or the other packed ELF files may load at run
    /// time that are not packed.
    pub runtime_loads: Vec<RuntimeLoad>,
    /// Libraries other packed ELF files need that neither the image nor the root has (each
    /// also a note).
    pub unresolved: Vec<Unresolved>,
    /// What was packed, by source.
    pub packed: Packed,
    /// Things worth telling the user (renumbered mounts, skipped symlinks...).
    pub notes: Vec<String>,
    /// The host folder of each 9p attach id the manifest mounts (`%0`, `%1`, ... in order), as
    /// ops's onprem run shares them; it may not exist (a `%N` key names no folder).
    pub shares: Vec<PathBuf>,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read program {path}: {source}")]
    Program {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("program {path} is not a regular file")]
    ProgramNotFile { path: PathBuf },
    #[error("cannot read kernel {path}: {source}")]
    Kernel {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("volume source {path} {reason}; give the folder whose content the volume should hold")]
    VolumeSource { path: PathBuf, reason: &'static str },
    #[error("target root {path} does not exist or is not a folder (--target-root or the config's TargetRoot); give the folder that holds the program's libraries")]
    TargetRoot { path: PathBuf },
    #[error(
        "packing the whole root needs a target root (--target-root, TargetRoot or --from-image)"
    )]
    PackRootWithoutRoot,
    #[error("config Program {0:?} does not name a file")]
    BadProgramPath(String),
    #[error("{field} entry {entry:?} escapes the image root")]
    Escapes { field: &'static str, entry: String },
    #[error("{field} entry {entry:?}: {host}: {source}")]
    Missing {
        field: &'static str,
        entry: String,
        host: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: nanoimg needs UTF-8 file names")]
    NonUtf8 { path: PathBuf },
    #[error("{path:?} would be added to the image twice, from different sources")]
    Conflict { path: String },
    #[error("MapDirs pattern {pattern:?}: {reason}")]
    BadGlob { pattern: String, reason: String },
    #[error("MapDirs target {dest:?} has the same name as an argument (ops refuses this too)")]
    MapDirNamedLikeArg { dest: String },
    #[error("Mounts {key:?}: mount point {path:?} must be an absolute path other than /")]
    BadMount { key: String, path: String },
    #[error("klib {name:?} is not in {dir}")]
    MissingKlib { name: String, dir: PathBuf },
    #[error("klibs requested but no klib folder: set KlibDir or use a release with klibs/")]
    NoKlibDir,
    #[error("a UEFI image needs the release's {loader}, and {dir} has none")]
    NoUefiLoader { dir: PathBuf, loader: &'static str },
    #[error("program {program} is {program_arch} but the kernel {kernel} is {kernel_arch}; use a Nanos release for {program_arch} (--arch {}, or a --kernel-dir holding one)", program_arch.ops_name())]
    ArchMismatch {
        program: PathBuf,
        program_arch: Arch,
        kernel: PathBuf,
        kernel_arch: Arch,
    },
    #[error("--arch {} asks for {requested}, but program {program} is {program_arch}; build the program for {requested}, or drop --arch", requested.ops_name())]
    RequestedArch {
        program: PathBuf,
        program_arch: Arch,
        requested: Arch,
    },
    #[error(
        "kernel {path} is not an x86_64 or aarch64 ELF kernel; give kernel.img of a Nanos release"
    )]
    KernelNotElf { path: PathBuf },
    #[error("klib {path} is {}, but the kernel {kernel} is {kernel_arch}; use the klibs of the same release (KlibDir)", klib_arch.map_or("not an x86_64 or aarch64 ELF", Arch::name))]
    KlibArch {
        path: PathBuf,
        klib_arch: Option<Arch>,
        kernel: PathBuf,
        kernel_arch: Arch,
    },
    #[error("config {field}: {reason}")]
    Unsupported {
        field: &'static str,
        reason: &'static str,
    },
    #[error("ManifestPassthrough \"children\": the filesystem tree cannot be replaced")]
    PassthroughChildren,
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// The architecture of the program at `program` (its ELF header), which must be `requested`
/// when that is given (`--arch`).
pub fn program_arch(program: &Path, requested: Option<Arch>) -> Result<Arch, PlanError> {
    let arch = nanoimg_elf::inspect(program)
        .map_err(ResolveError::from)?
        .arch;
    match requested {
        Some(requested) if requested != arch => Err(PlanError::RequestedArch {
            program: program.to_path_buf(),
            program_arch: arch,
            requested,
        }),
        _ => Ok(arch),
    }
}

/// The image path for a config `Program` value, as ops computes it: a leading `./` dropped,
/// then `"/" + path`, cleaned (`.` and empty components removed, `..` applied).
pub fn image_path(program: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in program.trim_start_matches("./").split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| format!("/{}", parts.join("/")))
}

/// The program's path in the image and its argv\[0\]: the config's `Program` (see
/// [`image_path`]) or the host file's name.
pub fn program_paths(program: &Path, config: &Config) -> Result<(String, String), PlanError> {
    let file_name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(match &config.program {
        Some(p) => (
            image_path(p).ok_or_else(|| PlanError::BadProgramPath(p.clone()))?,
            p.clone(),
        ),
        None => (format!("/{file_name}"), file_name),
    })
}

/// The resolver for these inputs: `--target-root`, else the config's `TargetRoot`, else `/`.
/// A target root that is not a folder is an error, whether or not the program needs it.
pub fn resolver(inputs: &Inputs) -> Result<Resolver, PlanError> {
    let root = target_root(inputs).unwrap_or_else(|| PathBuf::from("/"));
    if !root.is_dir() {
        return Err(PlanError::TargetRoot { path: root });
    }
    Ok(Resolver::new(&root).with_ld_library_path(inputs.ld_library_path.to_vec()))
}

/// The program's closure, with the config's `Libraries`, and the hints about what it may
/// load at run time besides (for `plan` and `nanoimg deps`).
pub fn resolve(
    inputs: &Inputs,
    program_path: &str,
) -> Result<(Resolution, Vec<RuntimeLoad>), PlanError> {
    let resolver = resolver(inputs)?;
    let resolution =
        resolver.resolve_with(inputs.program, program_path, &inputs.config.libraries)?;
    let hints = resolver.runtime_loads(&resolution, inputs.program, program_path);
    Ok((resolution, hints))
}

fn target_root(inputs: &Inputs) -> Option<PathBuf> {
    inputs
        .target_root
        .map(Path::to_path_buf)
        .or_else(|| inputs.config.target_root.as_ref().map(PathBuf::from))
}

/// ops's image name: `-i`, else `RunConfig.ImageName`, else the program's base name, cut at
/// the first `.`.
fn image_name(inputs: &Inputs, program_path: &str) -> String {
    let from = inputs
        .image_name
        .map(str::to_string)
        .or_else(|| inputs.config.run_config.image_name.clone())
        .unwrap_or_else(|| program_path.to_string());
    Path::new(&from)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("image")
        .to_string()
}

/// Makes the plan: the program checked, the kernel (of the program's architecture), the
/// root tree, the boot side, the manifest.
pub fn plan(inputs: &Inputs) -> Result<Plan, PlanError> {
    let config = inputs.config;
    refuse_unsupported(config)?;
    let program_len = check_program(inputs.program)?;
    let (program_path, argv0) = program_paths(inputs.program, config)?;
    let image_name = image_name(inputs, &program_path);
    // Program, kernel (and below, libraries and klibs) must be of one architecture; say so
    // before anything is searched for in the wrong place.
    let program_arch = program_arch(inputs.program, inputs.arch)?;
    let kernel = boot_tree::kernel(inputs, program_arch)?;
    let mut notes = Vec::new();
    let program = root_tree::Program {
        path: &program_path,
        len: program_len,
        arch: program_arch,
    };
    let root = root_tree::root_tree(inputs, &program, &config_dir(inputs), &mut notes)?;
    let boot = boot_tree::boot_side(inputs, &kernel, &mut notes)?;
    let manifest = manifest::root_tuple(
        config,
        inputs.nanos_version,
        manifest::RootTuple {
            program_path: &program_path,
            argv0: &argv0,
            arch: kernel.arch,
            image_name: &image_name,
            mounts: root.mounts,
            klibs: !boot.klibs.is_empty(),
        },
    )?;
    let config_path = inputs.config_path.unwrap_or(Path::new("config"));
    let min_image_size = config.base_volume_size(config_path)?.unwrap_or(0);
    let readonly = manifest.contains_key(&b"readonly_rootfs"[..]);
    Ok(Plan {
        boot: boot.tree,
        root: root.tree,
        manifest,
        boot_image: boot.boot_image,
        arch: kernel.arch,
        uefi_loader: boot.uefi_loader,
        program_path,
        root_free_space: if readonly { 0 } else { DEFAULT_FREE_SPACE },
        min_image_size,
        image_name,
        dependencies: root
            .resolution
            .dependencies
            .into_iter()
            .chain(root.needed.added)
            .collect(),
        runtime_loads: root.runtime_loads,
        unresolved: root.needed.unresolved,
        packed: root.packed,
        notes,
        shares: root.shares,
    })
}

/// The config fields nanoimg refuses.
fn refuse_unsupported(config: &Config) -> Result<(), PlanError> {
    if config.tfs_v4 {
        return Err(PlanError::Unsupported {
            field: "TFSv4",
            reason: "the old TFS v4 encoding is only for Nanos 0.1.46 and older, which nanoimg does not pin",
        });
    }
    if config.nightly_build {
        return Err(PlanError::Unsupported {
            field: "NightlyBuild",
            reason: "nightly kernels change under the same name; pin a release with NanosVersion",
        });
    }
    Ok(())
}

/// The program's size, once it is known to be a regular file that can be opened (fail now,
/// not halfway through writing).
fn check_program(program: &Path) -> Result<u64, PlanError> {
    let program_err = |source| PlanError::Program {
        path: program.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(program).map_err(program_err)?;
    if !meta.is_file() {
        return Err(PlanError::ProgramNotFile {
            path: program.to_path_buf(),
        });
    }
    std::fs::File::open(program).map_err(program_err)?;
    Ok(meta.len())
}

/// The folder relative `MapDirs` keys and mount folders are in: the config's, else `cwd`.
fn config_dir(inputs: &Inputs) -> PathBuf {
    inputs
        .config_path
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| inputs.cwd.join(p))
        .unwrap_or_else(|| inputs.cwd.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_paths_follow_ops() {
        assert_eq!(image_path("prover").as_deref(), Some("/prover"));
        assert_eq!(
            image_path("./target/release/p").as_deref(),
            Some("/target/release/p")
        );
        assert_eq!(image_path("/usr/bin/x").as_deref(), Some("/usr/bin/x"));
        assert_eq!(image_path("a/../b//c/.").as_deref(), Some("/b/c"));
        assert_eq!(image_path("./"), None);
    }
}
