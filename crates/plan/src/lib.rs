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

mod host_tree;
mod manifest;
mod packing;

pub use host_tree::folder_tree;
pub use packing::{Count, Packed};

use std::path::{Path, PathBuf};

use nanoimg_config::{Config, ConfigError};
use nanoimg_elf::{
    Arch, Dependency, ImageView, Resolution, ResolveError, Resolver, RuntimeLoad, Unresolved,
    MAX_PACKED_ELFS,
};
use nanoimg_release::KernelDir;
use nanoimg_tfs::{Dir, FileSource, Node, TreeError};
use nanoimg_tuple::{Tuple, Value};

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

/// Makes the plan.
pub fn plan(inputs: &Inputs) -> Result<Plan, PlanError> {
    let config = inputs.config;
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
    let program_err = |source| PlanError::Program {
        path: inputs.program.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(inputs.program).map_err(program_err)?;
    if !meta.is_file() {
        return Err(PlanError::ProgramNotFile {
            path: inputs.program.to_path_buf(),
        });
    }
    // Fail now, not halfway through writing, if the program cannot be opened.
    std::fs::File::open(inputs.program).map_err(program_err)?;
    let (program_path, argv0) = program_paths(inputs.program, config)?;
    let image_name = image_name(inputs, &program_path);
    // Program, kernel (and below, libraries and klibs) must be of one architecture; say so
    // before anything is searched for in the wrong place.
    let program_arch = program_arch(inputs.program, inputs.arch)?;
    let kernel_path = config
        .kernel
        .as_ref()
        .map(|k| inputs.cwd.join(k))
        .unwrap_or_else(|| inputs.kernel.kernel.clone());
    let kernel_arch = nanoimg_elf::elf_machine(&kernel_path)
        .map_err(|source| PlanError::Kernel {
            path: kernel_path.clone(),
            source,
        })?
        .and_then(Arch::from_machine)
        .ok_or_else(|| PlanError::KernelNotElf {
            path: kernel_path.clone(),
        })?;
    if kernel_arch != program_arch {
        return Err(PlanError::ArchMismatch {
            program: inputs.program.to_path_buf(),
            program_arch,
            kernel: kernel_path,
            kernel_arch,
        });
    }
    let config_dir = inputs
        .config_path
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| inputs.cwd.join(p))
        .unwrap_or_else(|| inputs.cwd.to_path_buf());
    let mut notes = Vec::new();

    // The files ops generates where nothing provides them.
    let name_servers = if config.name_servers.is_empty() {
        vec!["8.8.8.8".to_string()]
    } else {
        config.name_servers.clone()
    };
    let resolv: String = name_servers
        .iter()
        .map(|ns| format!("nameserver  {ns}\n"))
        .collect();
    let generated = [
        ("/etc/passwd", b"root:x:0:0:root:/root:/bin/nobash".to_vec()),
        ("/etc/resolv.conf", resolv.into_bytes()),
        ("/proc/sys/kernel/hostname", b"uniboot".to_vec()),
    ];

    // The root tree: the program, what the user adds, the libraries, mount points; then the
    // whole root under them (pack_root); then the libraries the other packed ELF files
    // need; then the files ops generates where nothing provided them.
    let whole_root = match (inputs.pack_root, target_root(inputs)) {
        (false, _) => None,
        (true, Some(r)) => Some(r),
        (true, None) => return Err(PlanError::PackRootWithoutRoot),
    };
    let mut packed = Packed::default();
    let mut root = Dir::new();
    root.insert(
        program_path.as_bytes(),
        Node::File(FileSource::Host {
            path: inputs.program.to_path_buf(),
            len: meta.len(),
        }),
    )?;
    let after_program = packing::totals(&root);
    let image_root = target_root(inputs).filter(|_| inputs.image_root);
    let sources = host_tree::Sources {
        cwd: inputs.cwd,
        image_root: image_root.as_deref(),
    };
    host_tree::add_files(&mut root, &config.files, &sources)?;
    host_tree::add_dirs(&mut root, &config.dirs, &sources, &mut notes)?;
    host_tree::add_map_dirs(
        &mut root,
        &config.map_dirs,
        &config_dir,
        target_root(inputs).as_deref(),
        &config.args,
        &mut notes,
    )?;
    packed.config = packing::totals(&root).since(after_program);
    let before_libraries = packing::totals(&root);
    let resolver = resolver(inputs)?;
    let resolution =
        resolver.resolve_with(inputs.program, &program_path, &inputs.config.libraries)?;
    for dep in &resolution.dependencies {
        if root.get(dep.guest_path.as_bytes()).is_some() {
            notes.push(format!(
                "keeping {} as given instead of the library found at {}",
                dep.guest_path,
                dep.host_path.display()
            ));
            continue;
        }
        let source = FileSource::host(&dep.host_path).map_err(|source| PlanError::Program {
            path: dep.host_path.clone(),
            source,
        })?;
        root.insert(dep.guest_path.as_bytes(), Node::File(source))?;
    }
    packed.program = after_program + packing::totals(&root).since(before_libraries);
    let (mounts, mount_notes, shares) =
        manifest::mounts(config, &config_dir, inputs.keep_mount_ids)?;
    notes.extend(mount_notes);
    for path in config.mounts.values() {
        let dir = path.split(':').next().unwrap_or(path);
        host_tree::add(&mut root, dir, Node::Dir(Dir::new()))?;
    }
    if let Some(dir) = &whole_root {
        let mut skipped = packing::Skipped::default();
        let base = packing::walk_root(dir, &mut skipped)?;
        // The root provides a generated file only with a regular file there (a link to
        // nowhere, as a container's /etc/resolv.conf often is, gets the generated one).
        for (path, bytes) in &generated {
            let provided = matches!(
                packing::TreeView(&base).file(path),
                nanoimg_elf::InImage::File(_)
            );
            if !provided && root.get(path.as_bytes()).is_none() {
                root.insert(
                    path.as_bytes(),
                    Node::File(FileSource::Bytes(bytes.clone())),
                )?;
            }
        }
        let explicit = packing::totals(&root);
        let (tree, replaced) = packing::overlay(base, &root)?;
        root = tree;
        packed.root = packing::totals(&root).since(explicit);
        if let Some(first) = &skipped.first {
            notes.push(format!(
                "skipped {} device {}, FIFOs and sockets of the root (the first: {})",
                skipped.count,
                if skipped.count == 1 { "file" } else { "files" },
                first.display()
            ));
        }
        if let Some(first) = replaced.first() {
            notes.push(format!(
                "{} {} of the root replaced by what the program, the config or nanoimg packs there (the first: {first})",
                replaced.len(),
                if replaced.len() == 1 { "path" } else { "paths" },
            ));
        }
    }

    // Every other ELF file packed: its libraries, found as its loader will find them.
    let closure_paths: std::collections::BTreeSet<&str> = std::iter::once(program_path.as_str())
        .chain(
            resolution
                .dependencies
                .iter()
                .map(|d| d.guest_path.as_str()),
        )
        .collect();
    let others: Vec<(String, PathBuf)> = root
        .files()
        .into_iter()
        .filter_map(|(path, source)| match source {
            // Shorter than an ELF header: not worth opening.
            FileSource::Host { path: host, len } if *len >= 64 => {
                let guest = String::from_utf8(path).ok()?;
                (!closure_paths.contains(guest.as_str())).then(|| (guest, host.clone()))
            }
            _ => None,
        })
        .collect();
    let needed = resolver.needed_closure(
        program_arch,
        &others,
        &packing::TreeView(&root),
        whole_root.is_none(),
        MAX_PACKED_ELFS,
    );
    packed.elf_files = needed.examined.len() as u64;
    for dep in &needed.added {
        let source = FileSource::host(&dep.host_path).map_err(|source| PlanError::Program {
            path: dep.host_path.clone(),
            source,
        })?;
        packed.needed.files += 1;
        packed.needed.bytes += source.len();
        root.insert(dep.guest_path.as_bytes(), Node::File(source))?;
    }
    notes.extend(unresolved_notes(&needed.unresolved, resolver.root()));
    if needed.not_examined > 0 {
        notes.push(format!(
            "{} more ELF files are packed but were not checked for the libraries they need: \
             nanoimg examines {MAX_PACKED_ELFS} per build",
            needed.not_examined
        ));
    }
    let runtime_loads = resolver.runtime_loads_of(
        &resolution,
        inputs.program,
        &program_path,
        &needed.examined,
        Some(&packing::TreeView(&root)),
    );
    for (path, bytes) in &generated {
        if root.get(path.as_bytes()).is_none() {
            root.insert(
                path.as_bytes(),
                Node::File(FileSource::Bytes(bytes.clone())),
            )?;
        }
    }

    // The boot tree: the kernel and the klibs.
    let mut boot = Dir::new();
    let kernel = FileSource::host(&kernel_path).map_err(|source| PlanError::Kernel {
        path: kernel_path.clone(),
        source,
    })?;
    boot.insert(b"/kernel", Node::File(kernel))?;
    let klibs = manifest::klibs(config);
    if !klibs.is_empty() {
        let dir = config
            .klib_dir
            .as_ref()
            .map(|d| inputs.cwd.join(d))
            .or_else(|| inputs.kernel.klibs.clone())
            .ok_or(PlanError::NoKlibDir)?;
        for name in &klibs {
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
            if klib_arch != Some(kernel_arch) {
                return Err(PlanError::KlibArch {
                    path: host,
                    klib_arch,
                    kernel: kernel_path,
                    kernel_arch,
                });
            }
            let source = FileSource::host(&host).map_err(|source| PlanError::Kernel {
                path: host.clone(),
                source,
            })?;
            boot.insert(format!("/klib/{name}").as_bytes(), Node::File(source))?;
        }
    }
    // ops always takes the loader from the release folder, whatever UefiBoot says.
    let uefi_loader = match config.uefi {
        false => None,
        true => Some(
            inputs
                .kernel
                .uefi_loader
                .clone()
                .ok_or_else(|| PlanError::NoUefiLoader {
                    dir: inputs.kernel.dir.clone(),
                    loader: kernel_arch.uefi_loader(),
                })?,
        ),
    };
    // aarch64 has no BIOS boot code: `Boot` cannot apply to it.
    let boot_image = if kernel_arch.has_bios_boot() {
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
    };

    // The manifest.
    let mut manifest = Tuple::new();
    manifest.insert(b"program".to_vec(), Value::string(&program_path));
    let mut argv = vec![Value::string(&argv0)];
    argv.extend(config.args.iter().map(Value::string));
    manifest.insert(b"arguments".to_vec(), Value::Vector(argv));
    manifest.insert(
        b"environment".to_vec(),
        Value::Tuple(manifest::environment(
            config,
            inputs.nanos_version,
            kernel_arch,
            &image_name,
        )),
    );
    manifest::settings(config, &mut manifest);
    if !mounts.is_empty() {
        manifest.insert(b"mounts".to_vec(), Value::Tuple(mounts));
    }
    if !klibs.is_empty() {
        manifest.insert(b"klibs".to_vec(), Value::string("bootfs"));
    }
    for (key, value) in &config.manifest_passthrough {
        if key == "children" {
            return Err(PlanError::PassthroughChildren);
        }
        manifest.insert(key.as_bytes().to_vec(), manifest::passthrough_value(value));
    }

    let config_path = inputs.config_path.unwrap_or(Path::new("config"));
    let min_image_size = config.base_volume_size(config_path)?.unwrap_or(0);
    let readonly = manifest.contains_key(&b"readonly_rootfs"[..]);
    Ok(Plan {
        boot,
        root,
        manifest,
        boot_image,
        arch: kernel_arch,
        uefi_loader,
        program_path,
        root_free_space: if readonly { 0 } else { DEFAULT_FREE_SPACE },
        min_image_size,
        image_name,
        dependencies: resolution
            .dependencies
            .into_iter()
            .chain(needed.added)
            .collect(),
        runtime_loads,
        unresolved: needed.unresolved,
        packed,
        notes,
        shares,
    })
}

/// Notes for the libraries packed ELF files need and nothing has: one per (ELF, name), at
/// most [`MAX_UNRESOLVED_NOTES`], then one counting the rest.
fn unresolved_notes(unresolved: &[Unresolved], root: &Path) -> Vec<String> {
    let mut notes: Vec<String> = unresolved
        .iter()
        .take(MAX_UNRESOLVED_NOTES)
        .map(|u| {
            format!(
                "{} needs {}, which neither the image nor {} has; it will not load in the guest",
                u.object,
                u.name,
                root.display()
            )
        })
        .collect();
    if unresolved.len() > MAX_UNRESOLVED_NOTES {
        notes.push(format!(
            "{} more libraries needed by packed ELF files are missing (not listed)",
            unresolved.len() - MAX_UNRESOLVED_NOTES
        ));
    }
    notes
}

/// The unresolved needs listed one by one in the notes.
pub const MAX_UNRESOLVED_NOTES: usize = 20;

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
