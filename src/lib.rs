//! nanoimg builds bootable Nanos unikernel disk images natively: no ops, no Go, no
//! subprocess.
//!
//! This crate is the thin facade over the pipeline that the `nanoimg` binary drives:
//!
//! ```text
//! KernelDir (nanoimg-release) ─┐
//! Config (nanoimg-config) ─────┼─> Plan (nanoimg-plan) ─> PlannedVolume ×2 (nanoimg-tfs)
//! program ─────────────────────┘                           └─> image file (nanoimg-disk)
//! ```
//!
//! [`build`] runs it end to end and writes the image atomically: to a temporary file beside
//! the output, renamed into place only when complete.

use std::path::{Path, PathBuf};

pub use nanoimg_atomic as atomic;
pub use nanoimg_config as config;
pub use nanoimg_disk as disk;
pub use nanoimg_elf as elf;
pub use nanoimg_inspect as inspect;
pub use nanoimg_oci as oci;
pub use nanoimg_plan as plan;
pub use nanoimg_registry as registry;
pub use nanoimg_release as release;
pub use nanoimg_run as run;

pub mod application;
mod build;
mod convert;
mod kernel;
pub mod sbom_cmd;
mod sysroot;

pub(crate) use build::image_sums;
pub use build::{
    build, BuildOptions, BuildReport, ImageFile, LaidOut, LockFile, Resolved, Sums, Written,
};
pub use convert::{convert, ConvertError, ConvertReport};
pub use kernel::{cache, kernel, lock_path, KernelOptions};
pub use nanoimg_tfs as tfs;
pub use nanoimg_tuple as tuple;
pub use nanoimg_vdisk as vdisk;

use nanoimg_config::{Config, ConfigError};
use nanoimg_disk::{BootImageError, DiskError};
use nanoimg_elf::Arch;
use nanoimg_plan::{Inputs, PlanError};
use nanoimg_release::{FetchError, KernelDir, Lock, LockError, ReleaseError};
use nanoimg_tfs::{VolumeSpec, WriteError};

/// Most characters of one message line nanoimg prints; a longer one is cut with `…`.
pub const MAX_LINE: usize = 2000;

/// `text` made safe to print as one line on a terminal or in a CI log: every control
/// character (newline, carriage return, ESC, …, and Unicode's other line and paragraph
/// separators) written as an escape (`\n`, `\x1b`, `\u{2028}`), and the whole cut to
/// [`MAX_LINE`] characters. Values from images and configs reach messages, so an image
/// could otherwise forge lines ("nanoimg: all good") or colour the terminal; every error,
/// note and hint the CLI prints goes through this. Backslashes are kept as they are, so
/// text already escaped (by `nanoimg-oci`) is not escaped twice.
pub fn printable(text: &str) -> String {
    escape_controls(text, MAX_LINE)
}

/// `text` with control characters escaped as [`printable`] does, cut to `max` characters
/// (with `…`); `usize::MAX` for no cut (listings such as `inspect`'s, whose lines are as
/// long as the values they show).
pub fn escape_controls(text: &str, max: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len().min(max));
    let mut shown = 0usize;
    for c in text.chars() {
        let before = out.len();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
        shown += out[before..].chars().count();
        if shown > max {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// Parses a UUID written as Nanos prints it (`8-4-4-4-12` hex, bytes in order).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    if groups != [8, 4, 4, 4, 12] || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Where ops puts images: `$OPS_HOME/.ops/images`, else `~/.ops/images`.
pub fn ops_images_dir() -> Option<PathBuf> {
    let home = std::env::var_os("OPS_HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("HOME"))?;
    Some(PathBuf::from(home).join(".ops").join("images"))
}

/// The directories of the build host's `LD_LIBRARY_PATH`, when asked for.
pub(crate) fn ld_library_path(wanted: bool) -> Vec<String> {
    if !wanted {
        return Vec::new();
    }
    std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect()
}

/// What `nanoimg deps` shows.
#[derive(Clone, Debug)]
pub struct DepsReport {
    pub program_path: String,
    pub resolution: nanoimg_elf::Resolution,
    /// Libraries it may load at run time that are not packed.
    pub runtime_loads: Vec<nanoimg_elf::RuntimeLoad>,
    /// When the target root is a container image: the digest of the layer each dependency
    /// came from, by its guest path.
    pub layers: std::collections::BTreeMap<String, String>,
    /// Things worth telling the user (members the image's unpacking skipped).
    pub notes: Vec<String>,
}

/// Resolves a program's dynamic closure without building anything (`nanoimg deps`).
#[allow(clippy::too_many_arguments)]
pub fn deps(
    program: &Path,
    config: Option<&Path>,
    target_root: Option<&Path>,
    use_ld_library_path: bool,
    libraries: &[String],
    platform: Option<nanoimg_oci::Platform>,
    arch: Option<Arch>,
    insecure_registries: &[String],
) -> Result<DepsReport, BuildError> {
    let mut config = match config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    config.libraries.extend_from_slice(libraries);
    let (program_path, _) = nanoimg_plan::program_paths(program, &config)?;
    if arch.is_some() {
        // The program must be of --arch, as build requires.
        nanoimg_plan::program_arch(program, arch)?;
    }
    let ld = ld_library_path(use_ld_library_path);
    // A container image as the root: unpacked (or found) in the cache; `deps` does not
    // write the lock.
    let spec = sysroot::target_spec(target_root, &config);
    let image_root = match spec.as_deref().filter(|s| sysroot::is_image(s)) {
        Some(s) => Some(deps_image_root(s, platform.as_ref(), insecure_registries)?),
        None => None,
    };
    let target_root = image_root.as_ref().map(|r| r.dir.as_path()).or(target_root);
    let kernel = no_kernel();
    let inputs = Inputs {
        program,
        config: &config,
        config_path: None,
        kernel: &kernel,
        nanos_version: "",
        cwd: Path::new("."),
        target_root,
        image_root: image_root.is_some(),
        ld_library_path: &ld,
        keep_mount_ids: false,
        image_name: None,
        arch,
        pack_root: false,
    };
    let (resolution, runtime_loads) = nanoimg_plan::resolve(&inputs, &program_path)?;
    let layers = image_root
        .as_ref()
        .map(|root| layers_of(&resolution, root))
        .unwrap_or_default();
    let notes = image_root
        .as_ref()
        .map(|r| r.notes.clone())
        .unwrap_or_default();
    Ok(DepsReport {
        program_path,
        resolution,
        runtime_loads,
        layers,
        notes,
    })
}

/// The container image `spec` as `deps`'s root, unpacked (or found) in the cache, without
/// writing the lock.
fn deps_image_root(
    spec: &str,
    platform: Option<&nanoimg_oci::Platform>,
    insecure_registries: &[String],
) -> Result<nanoimg_oci::Root, BuildError> {
    sysroot::open(
        spec,
        platform,
        &mut Lock::default(),
        false,
        false,
        &sysroot::Access {
            offline: false,
            insecure: insecure_registries,
            by_locked_digest: false,
        },
    )
}

/// A kernel folder that is none: `deps` resolves libraries only.
fn no_kernel() -> KernelDir {
    KernelDir {
        dir: PathBuf::new(),
        arch: Arch::default(),
        kernel: PathBuf::new(),
        boot: None,
        uefi_loader: None,
        klibs: None,
    }
}

/// The digest of the layer each dependency came from, by its guest path.
fn layers_of(
    resolution: &nanoimg_elf::Resolution,
    root: &nanoimg_oci::Root,
) -> std::collections::BTreeMap<String, String> {
    let mut layers = std::collections::BTreeMap::new();
    for d in &resolution.dependencies {
        let layer = d
            .host_path
            .strip_prefix(&root.dir)
            .ok()
            .and_then(|rel| root.layer_of(rel));
        if let Some(layer) = layer {
            layers.insert(d.guest_path.clone(), layer.to_string());
        }
    }
    layers
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks, before a build, that the document `what` (`--sbom`, `--provenance`) can be
/// written at `path` once the image is: its folder exists and it is not itself a folder,
/// and `SOURCE_DATE_EPOCH`, if set, is a time it can record.
pub fn check_document_path(what: &'static str, path: &Path) -> Result<(), BuildError> {
    let err = |reason: String| BuildError::Document {
        what,
        path: path.to_path_buf(),
        reason,
    };
    if path.is_dir() {
        return Err(err(
            "it is a folder; give the path of the file to write".into()
        ));
    }
    let dir = nanoimg_atomic::parent_dir(path);
    if !dir.is_dir() {
        return Err(err(format!(
            "the folder {} does not exist; create it first",
            dir.display()
        )));
    }
    // Its one time stamp comes from SOURCE_DATE_EPOCH, when set.
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        nanoimg_sbom::created(Some(&epoch)).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// Writes a new file at `output` atomically: `write` fills a temporary file beside it, which
/// is synced and renamed into place only if that succeeded (else, and on an interrupt, it is
/// removed). The file gets the mode a new file gets under the umask.
pub(crate) fn write_atomically<T>(
    output: &Path,
    write: impl FnOnce(&std::fs::File) -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    nanoimg_atomic::write_file(
        output,
        |file| write(file),
        |stage, source| match stage {
            nanoimg_atomic::Stage::Create if source.kind() == std::io::ErrorKind::NotFound => {
                BuildError::NoOutputDir {
                    path: output.to_path_buf(),
                    dir: nanoimg_atomic::parent_dir(output),
                }
            }
            nanoimg_atomic::Stage::Create => BuildError::Output {
                dir: nanoimg_atomic::parent_dir(output),
                source,
            },
            nanoimg_atomic::Stage::Persist => BuildError::Persist {
                path: output.to_path_buf(),
                source,
            },
        },
    )
}

/// Why a build failed. Every variant names the file or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("config DiskFormat {name:?}: {source}")]
    DiskFormat {
        name: String,
        source: nanoimg_vdisk::UnknownFormat,
    },
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Fetch(Box<FetchError>),
    #[error(transparent)]
    Inspect(Box<nanoimg_inspect::InspectError>),
    #[error(transparent)]
    Provenance(Box<nanoimg_provenance::ProvenanceError>),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Oci(#[from] Box<nanoimg_oci::OciError>),
    #[error(transparent)]
    ImageLock(#[from] nanoimg_release::ImageLockError),
    #[error(transparent)]
    Registry(#[from] Box<nanoimg_registry::RegistryError>),
    #[error("the image {image} is needed and --offline forbids fetching it: {what}; run once without --offline to pull it into the cache")]
    NotCached { image: String, what: String },
    #[error("{program} is not a file in the container image given with --from-image ({reason}); give the program's absolute path inside the image")]
    NotInImage { program: PathBuf, reason: String },
    #[error("the container image {image} names no program (its config has no Entrypoint or Cmd): give PROGRAM, its path inside the image")]
    NoApplication { image: String },
    #[error("the program {program:?} is not an executable file in any folder of the PATH of the container image {image} ({path}); give PROGRAM, its path inside the image")]
    ProgramNotInPath {
        image: String,
        program: String,
        path: String,
    },
    #[error("no program to build: give PROGRAM, or --from-image IMAGE to run the image's own Entrypoint + Cmd")]
    NoProgram,
    #[error("no cache directory: set NANOIMG_CACHE (or HOME / XDG_CACHE_HOME)")]
    NoCache,
    #[error("no output path: give -o, or set HOME or OPS_HOME for ops's ~/.ops/images")]
    NoOutput,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Sbom(#[from] sbom_cmd::SbomCmdError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    BootImage(#[from] BootImageError),
    #[error("cannot lay out the {what}: {source}")]
    Volume {
        what: &'static str,
        source: WriteError,
    },
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: WriteError },
    #[error("{path}: {source}")]
    Disk {
        path: PathBuf,
        source: Box<DiskError>,
    },
    #[error("cannot write {path}: the folder {dir} does not exist; create it first, or give -o a path in an existing folder")]
    NoOutputDir { path: PathBuf, dir: PathBuf },
    #[error("cannot write {path}: it is a folder; give -o the path of the file to write, e.g. {path}/NAME")]
    OutputIsDir { path: PathBuf },
    #[error("cannot write the {what} {path}: {reason}; nothing was built")]
    Document {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot create a file in {dir}: {source}")]
    Output {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot move the finished image to {path}: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<nanoimg_inspect::InspectError> for BuildError {
    fn from(e: nanoimg_inspect::InspectError) -> Self {
        BuildError::Inspect(Box::new(e))
    }
}

impl From<nanoimg_provenance::ProvenanceError> for BuildError {
    fn from(e: nanoimg_provenance::ProvenanceError) -> Self {
        BuildError::Provenance(Box::new(e))
    }
}

impl From<FetchError> for BuildError {
    fn from(e: FetchError) -> Self {
        BuildError::Fetch(Box::new(e))
    }
}

/// The absolute form of `p` for messages, or `p` itself when that fails.
pub fn display_path(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// What `nanoimg volume create` made.
#[derive(Clone, Debug)]
pub struct VolumeReport {
    pub output: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub blake3: String,
    pub uuid: [u8; 16],
    pub notes: Vec<String>,
}

/// Writes the folder `source` as a raw TFS data volume (no MBR) at `output`, atomically: at
/// least `size` bytes, and always with [`nanoimg_plan::DEFAULT_FREE_SPACE`] free after the
/// data so the guest can write.
pub fn create_volume(
    source: &Path,
    output: &Path,
    label: &str,
    size: Option<u64>,
    seed: Option<&str>,
) -> Result<VolumeReport, BuildError> {
    if output.is_dir() {
        return Err(BuildError::OutputIsDir {
            path: output.to_path_buf(),
        });
    }
    let (tree, notes) = nanoimg_plan::folder_tree(source).map_err(BuildError::Plan)?;
    let planned = tfs::plan(&VolumeSpec {
        label: label.as_bytes(),
        seed: seed.unwrap_or_default().as_bytes(),
        ..VolumeSpec::new(&tree)
    })
    .map_err(|source| BuildError::Volume {
        what: "volume",
        source,
    })?;
    let needed = planned.size() + nanoimg_plan::DEFAULT_FREE_SPACE;
    let total = size.unwrap_or(0).max(needed).next_multiple_of(512);
    let (written, digests) = write_atomically(output, |file| {
        planned
            .write_file(file, total, false)
            .map_err(|source| BuildError::Write {
                path: output.to_path_buf(),
                source,
            })
    })?;
    let (sha256, blake3) = (hex(&digests.sha256), hex(&digests.blake3));
    Ok(VolumeReport {
        output: output.to_path_buf(),
        size: total,
        sha256,
        blake3,
        uuid: written.uuid,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_and_cuts_long_lines() {
        assert_eq!(
            printable("evil\n\x1b[31mnanoimg: all good\r\t\u{7f}\u{2028}\u{202e}"),
            r"evil\n\x1b[31mnanoimg: all good\r\t\x7f\u{2028}\u{202e}"
        );
        // Backslashes stay, so text escaped before is not escaped twice.
        assert_eq!(printable(r"a\nb"), r"a\nb");
        let long = "é".repeat(10 * MAX_LINE);
        let cut = printable(&long);
        assert_eq!(cut.chars().count(), MAX_LINE + 1);
        assert!(cut.ends_with('…'));
        let newlines = "\n".repeat(MAX_LINE);
        let cut = printable(&newlines);
        assert!(cut.chars().count() <= MAX_LINE + 1 && !cut.contains('\n'));
    }
}
