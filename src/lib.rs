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
pub mod sbom_cmd;
mod sysroot;
pub use nanoimg_tfs as tfs;
pub use nanoimg_tuple as tuple;
pub use nanoimg_vdisk as vdisk;

use nanoimg_config::{Config, ConfigError};
use nanoimg_disk::Format;
use nanoimg_disk::{BootImage, BootImageError, DiskError, ImageLayout, ImageSpec};
use nanoimg_elf::Arch;
use nanoimg_plan::{Inputs, Plan, PlanError};
use nanoimg_release::{
    Cache, FetchError, KernelDir, Lock, LockError, ReleaseError, ReleaseOptions, Releases,
};
use nanoimg_tfs::{VolumeSpec, WriteError};

/// Where the kernel comes from, and how a release may be obtained.
#[derive(Clone, Debug, Default)]
pub struct KernelOptions {
    /// An unpacked Nanos release folder; bypasses the cache (still recorded in the lock).
    pub kernel_dir: Option<PathBuf>,
    /// The release to use (else the config's `NanosVersion`, else the newest pin).
    pub nanos_version: Option<String>,
    /// The lock file (else `nanoimg.lock` next to the config, else in the current directory).
    pub lock: Option<PathBuf>,
    pub release: ReleaseOptions,
}

/// The lock file to use.
pub fn lock_path(explicit: Option<&Path>, config: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match config.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("nanoimg.lock"),
        _ => PathBuf::from("nanoimg.lock"),
    }
}

/// The release cache (`$NANOIMG_CACHE`, else the XDG cache directory).
pub fn cache() -> Result<Cache, BuildError> {
    Cache::from_env().ok_or(BuildError::NoCache)
}

/// The Nanos version a build uses: `--nanos-version`, else the config's `NanosVersion`, else
/// the newest pin — except that a `--kernel-dir` folder has no known version ("").
fn nanos_version(options: &KernelOptions, config: &Config, arch: Arch) -> String {
    options
        .nanos_version
        .clone()
        .or_else(|| config.nanos_version.clone())
        .unwrap_or_else(|| match options.kernel_dir {
            Some(_) => String::new(),
            None => nanoimg_release::default_pin(arch).version,
        })
}

/// Finds the kernel folder for a build: `--kernel-dir`, or a pinned release for `arch` from
/// the cache or the network. Records what was used in `lock`; says on stderr when a
/// download's SHA-256 is trusted on first use.
pub fn kernel(
    options: &KernelOptions,
    config: &Config,
    program: &Path,
    arch: Arch,
    lock: &mut Lock,
) -> Result<KernelDir, BuildError> {
    if let Some(dir) = &options.kernel_dir {
        let k = KernelDir::open(dir)?;
        // Before the lock is consulted: a folder of the wrong architecture is the problem
        // to report, not that the lock recorded another one.
        if k.arch != arch {
            return Err(PlanError::ArchMismatch {
                program: program.to_path_buf(),
                program_arch: arch,
                kernel: k.kernel,
                kernel_arch: k.arch,
            }
            .into());
        }
        nanoimg_release::lock_kernel_dir(
            &k,
            lock,
            options.release.locked,
            options.release.update_lock,
        )?;
        return Ok(k);
    }
    let version = nanos_version(options, config, arch);
    let releases = Releases::new(cache()?, options.release.clone());
    let fetched = releases.get(&version, arch, lock)?;
    if fetched.trusted_on_first_use {
        eprintln!(
            "nanoimg: Nanos {} has no pinned SHA-256; trusting it on first use: sha256 {} (recorded in the lock)",
            nanoimg_release::release_name(&version, arch),
            fetched.locked.sha256
        );
    }
    Ok(fetched.kernel_dir)
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The program on the host (with `from_image`: its path inside the image); `None` with
    /// `from_image`: the image's own application (its `Entrypoint` + `Cmd`, `Env`,
    /// `WorkingDir`; see [`application`]).
    pub program: Option<PathBuf>,
    /// The ops config file, if any.
    pub config: Option<PathBuf>,
    /// Where the kernel comes from.
    pub kernel: KernelOptions,
    /// Where to write the image; by default where ops puts it, `~/.ops/images/<image name>`.
    pub output: Option<PathBuf>,
    /// Where to resolve the interpreter and libraries (overrides the config's `TargetRoot`).
    pub target_root: Option<PathBuf>,
    /// Also search the build host's `LD_LIBRARY_PATH` (after `DT_RPATH`, as the loader does).
    pub use_ld_library_path: bool,
    /// ops's `-a`: replaces the config's `Args`.
    pub args: Option<Vec<String>>,
    /// ops's `-e K=V`: added to (and overriding) the config's `Env`.
    pub envs: Vec<(String, String)>,
    /// ops's `--mounts VOLUME:PATH`: added to the config's `Mounts`.
    pub mounts: Vec<(String, String)>,
    /// ops's `-i`: the image name (output file name and the name derived from it).
    pub image_name: Option<String>,
    /// Keep `Mounts` keys as written instead of renumbering them as ops's onprem build does.
    pub keep_mount_ids: bool,
    /// The root filesystem's UUID, instead of the one derived from the image's content.
    pub uuid: Option<[u8; 16]>,
    /// Mixed into the derived UUIDs.
    pub seed: Option<String>,
    /// Make a BIOS+UEFI hybrid image (as the config's `Uefi`).
    pub uefi: bool,
    /// `--arch`: the architecture to build for; by default the program's.
    pub arch: Option<Arch>,
    /// `--from-image IMAGE`: `program` is a path inside this container image, which is also
    /// the target root unless one is given.
    pub from_image: Option<String>,
    /// `--prune`: for the image's own application, pack only the program's closure and what
    /// the config names instead of the image's whole filesystem.
    pub prune: bool,
    /// `--platform`: which image to take from a container image holding several.
    pub platform: Option<nanoimg_oci::Platform>,
    /// `--library SONAME`: added to the config's `Libraries`.
    pub libraries: Vec<String>,
    /// `--format`: the disk format to write (else the config's `DiskFormat`, else raw).
    pub format: Option<Format>,
    /// Also compute the SHA-256 of every file in the image for [`BuildReport::files`] (one
    /// more hash of all the data, on its own thread; `--json` asks for it).
    pub file_digests: bool,
    /// `--raw-sums`: for a container format, also hash the raw image inside it
    /// ([`BuildReport::raw`]). It costs as much CPU as the rest of the build, so it is asked
    /// for; `raw` and `vhd` (whose footer holds an id taken from it) always have it.
    pub raw_sums: bool,
    /// `--insecure-registry HOST:PORT`: registries (of `docker://` images) reached over
    /// plain HTTP instead of TLS.
    pub insecure_registries: Vec<String>,
    /// `docker://` images the lock has an entry for are fetched by that entry's digest, not
    /// by their tag (`nanoimg verify`: the recorded image, wherever the tag has moved).
    pub images_by_locked_digest: bool,
    /// `nanoimg run --missing-files` (ops's): the `missing_files` flag in the manifest, as
    /// the config's `Debugflags` would set it (the kernel lists at exit the files the
    /// program could not open).
    pub missing_files: bool,
}

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
fn ld_library_path(wanted: bool) -> Vec<String> {
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
        Some(s) => Some(sysroot::open(
            s,
            platform.as_ref(),
            &mut Lock::default(),
            false,
            false,
            &sysroot::Access {
                offline: false,
                insecure: insecure_registries,
                by_locked_digest: false,
            },
        )?),
        None => None,
    };
    let target_root = image_root.as_ref().map(|r| r.dir.as_path()).or(target_root);
    let kernel = KernelDir {
        dir: PathBuf::new(),
        arch: Arch::default(),
        kernel: PathBuf::new(),
        boot: None,
        uefi_loader: None,
        klibs: None,
    };
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
    let mut layers = std::collections::BTreeMap::new();
    if let Some(root) = &image_root {
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
    }
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

/// What was built.
#[derive(Clone, Debug)]
pub struct BuildReport {
    pub output: PathBuf,
    pub layout: ImageLayout,
    pub plan: Plan,
    /// The container format written.
    pub format: Format,
    /// The file written.
    pub file: Sums,
    /// The raw image inside it (the same as the file for `raw`), so that pipelines can
    /// compare images across formats: for a container format only with
    /// [`BuildOptions::raw_sums`] (or `vhd`); its size is [`ImageLayout::size`].
    pub raw: Option<Sums>,
    pub boot_uuid: [u8; 16],
    pub root_uuid: [u8; 16],
    /// The Nanos version ("" when unknown) and the SHA-256 of the kernel and boot.img used.
    pub nanos_version: String,
    /// The kernel's SHA-256 is known when [`BuildOptions::file_digests`] asked for them.
    pub kernel_sha256: Option<String>,
    /// SHA-256 of the `boot.img` used (none for aarch64).
    pub boot_img_sha256: Option<String>,
    /// Every regular file in the image.
    pub files: Vec<ImageFile>,
    /// The root the build resolved the program's libraries (and a root's `Files`, `Dirs`,
    /// `MapDirs`) in: `/`, a target root folder, or a container image unpacked in the cache
    /// (`image_root`).
    pub target_root: PathBuf,
    pub image_root: bool,
    /// The container images opened for the build (`--target-root`/`TargetRoot`, then
    /// `--from-image`), each as given and its unpacked root (which layer wrote each path):
    /// for the SBOM.
    pub containers: Vec<(String, nanoimg_oci::Root)>,
}

/// A written file's size and hashes (hex).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Sums {
    pub size: u64,
    pub sha256: String,
    pub blake3: String,
}

/// The sums of an image just written, and of the raw image it holds (`raw_size` bytes;
/// `raw_hashed` when the writer hashed it): both computed on the way (the raw image's by the
/// image writer, a container's by its writer as it wrote the file), never by reading the
/// file back. For `raw` they are the same.
fn image_sums(
    raw_size: u64,
    raw_hashed: bool,
    digests: &nanoimg_stream::Digests,
) -> (Sums, Option<Sums>) {
    let raw = Sums {
        size: raw_size,
        sha256: hex(&digests.sha256),
        blake3: hex(&digests.blake3),
    };
    match &digests.file {
        None => (raw.clone(), Some(raw)),
        Some(f) => {
            let file = Sums {
                size: f.size,
                sha256: hex(&f.sha256),
                blake3: hex(&f.blake3),
            };
            (file, raw_hashed.then_some(raw))
        }
    }
}

/// One file of a built image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageFile {
    /// `boot` or `root`.
    pub filesystem: &'static str,
    pub path: String,
    pub size: u64,
    /// Its SHA-256, when [`BuildOptions::file_digests`] asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The host file it came from, or `None` for files nanoimg generates.
    pub source: Option<PathBuf>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What was written to one filesystem, with each file's digest if they were computed.
fn image_files(
    filesystem: &'static str,
    written: &nanoimg_tfs::WrittenVolume,
    digests: &mut impl Iterator<Item = [u8; 32]>,
) -> Vec<ImageFile> {
    written
        .files
        .iter()
        .map(|f| ImageFile {
            filesystem,
            path: String::from_utf8_lossy(&f.path).into_owned(),
            size: f.len,
            sha256: digests.next().map(|d| hex(&d)),
            source: f.host.clone(),
        })
        .collect()
}

/// Writes a new file at `output` atomically: `write` fills a temporary file beside it, which
/// is synced and renamed into place only if that succeeded (else, and on an interrupt, it is
/// removed). The file gets the mode a new file gets under the umask.
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

fn write_atomically<T>(
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

/// Builds an image. Nothing is written at the output path unless the whole image was.
pub fn build(options: &BuildOptions) -> Result<BuildReport, BuildError> {
    if options.program.is_none() && options.from_image.is_none() {
        return Err(BuildError::NoProgram);
    }
    let mut config = match &options.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    // ops merges its flags over the config.
    if let Some(args) = &options.args {
        config.args = args.clone();
    }
    for (k, v) in &options.envs {
        config.env.insert(k.clone(), v.clone());
    }
    for (k, v) in &options.mounts {
        config.mounts.insert(k.clone(), v.clone());
    }
    config.uefi |= options.uefi;
    config.libraries.extend(options.libraries.iter().cloned());
    if options.missing_files {
        config.debugflags.push("missing_files".into());
    }
    let lock_file = lock_path(options.kernel.lock.as_deref(), options.config.as_deref());
    let mut lock = Lock::load(&lock_file)?;
    let locked_before = lock.clone();
    let cwd = std::env::current_dir().map_err(|source| BuildError::Output {
        dir: PathBuf::from("."),
        source,
    })?;
    let ld = ld_library_path(options.use_ld_library_path);
    // Container images as the target root or the program's source, locked by digest.
    let (locked, update) = (
        options.kernel.release.locked,
        options.kernel.release.update_lock,
    );
    let access = sysroot::Access {
        offline: options.kernel.release.offline,
        insecure: &options.insecure_registries,
        by_locked_digest: options.images_by_locked_digest,
    };
    let mut program = options.program.clone().unwrap_or_default();
    let mut target_root = options.target_root.clone();
    let mut image_root = false;
    // The image's own application: its whole filesystem is packed unless --prune.
    let mut pack_root = false;
    // What unpacking the images had to say (members skipped), for the plan's notes.
    let mut image_notes = Vec::new();
    let mut containers = Vec::new();
    let target_spec = sysroot::target_spec(options.target_root.as_deref(), &config);
    let mut open_image = |spec: &str| {
        sysroot::open(
            spec,
            options.platform.as_ref(),
            &mut lock,
            locked,
            update,
            &access,
        )
    };
    if let Some(spec) = target_spec.as_deref().filter(|s| sysroot::is_image(s)) {
        let mut root = open_image(spec)?;
        image_notes.append(&mut root.notes);
        containers.push((spec.to_string(), root.clone()));
        target_root = Some(root.dir);
        image_root = true;
    }
    if let Some(spec) = &options.from_image {
        let mut root = open_image(spec)?;
        image_notes.append(&mut root.notes);
        containers.push((spec.clone(), root.clone()));
        let in_image = match &options.program {
            Some(p) => p.clone(),
            None => {
                pack_root = !options.prune;
                application::merge(spec, &root.application, &root.dir, &mut config)?
            }
        };
        program = sysroot::program_in(&root, &in_image)?;
        if config.program.is_none() {
            config.program = Some(in_image.to_string_lossy().into_owned());
        }
        if target_spec.is_none() {
            target_root = Some(root.dir);
            image_root = true;
        }
    }
    // The release follows the program's architecture unless --arch says otherwise (a
    // program that cannot be read is reported by the plan, with its path).
    let arch = match nanoimg_plan::program_arch(&program, options.arch) {
        Ok(arch) => arch,
        Err(e @ PlanError::RequestedArch { .. }) => return Err(e.into()),
        // Reported by the plan, with the program's path, once the kernel is known.
        Err(_) => options.arch.unwrap_or_default(),
    };
    let kernel_dir = kernel(&options.kernel, &config, &program, arch, &mut lock)?;
    let nanos_version = nanos_version(&options.kernel, &config, arch);
    let mut plan = nanoimg_plan::plan(&Inputs {
        program: &program,
        config: &config,
        config_path: options.config.as_deref(),
        kernel: &kernel_dir,
        nanos_version: &nanos_version,
        cwd: &cwd,
        target_root: target_root.as_deref(),
        image_root,
        ld_library_path: &ld,
        keep_mount_ids: options.keep_mount_ids,
        image_name: options.image_name.as_deref(),
        arch: options.arch,
        pack_root,
    })?;
    image_notes.append(&mut plan.notes);
    plan.notes = image_notes;
    let boot_image = plan
        .boot_image
        .as_deref()
        .map(BootImage::read)
        .transpose()?;

    let seed = options.seed.clone().unwrap_or_default();
    let boot_fs = tfs::plan(&VolumeSpec {
        seed: seed.as_bytes(),
        ..VolumeSpec::new(&plan.boot)
    })
    .map_err(|source| BuildError::Volume {
        what: "boot filesystem",
        source,
    })?;
    let root_fs = tfs::plan(&VolumeSpec {
        uuid: options.uuid,
        seed: seed.as_bytes(),
        manifest: &plan.manifest,
        ..VolumeSpec::new(&plan.root)
    })
    .map_err(|source| BuildError::Volume {
        what: "root filesystem",
        source,
    })?;
    let spec = ImageSpec {
        boot_image: boot_image.as_ref(),
        boot_fs: &boot_fs,
        root_fs: &root_fs,
        root_free_space: plan.root_free_space,
        min_image_size: plan.min_image_size,
        uefi_loader: plan.uefi_loader.as_deref(),
    };

    let format = match options.format {
        Some(f) => f,
        None => match &config.disk_format {
            Some(name) => name.parse().map_err(|e| BuildError::DiskFormat {
                name: name.clone(),
                source: e,
            })?,
            None => Format::Raw,
        },
    };
    let output = match &options.output {
        Some(o) => o.clone(),
        None => {
            let dir = ops_images_dir().ok_or(BuildError::NoOutput)?;
            std::fs::create_dir_all(&dir).map_err(|source| BuildError::Output {
                dir: dir.clone(),
                source,
            })?;
            // ops names a raw image by the image name alone; other formats get their ending.
            match format {
                Format::Raw => dir.join(&plan.image_name),
                f => dir.join(format!("{}.{}", plan.image_name, f.extension())),
            }
        }
    };
    if output.is_dir() {
        return Err(BuildError::OutputIsDir { path: output });
    }
    let disk_err = |source| BuildError::Disk {
        path: output.clone(),
        source: Box::new(source),
    };
    // Lay out first, so that a too-large kernel fails before any file is created.
    ImageLayout::compute(&spec).map_err(disk_err)?;

    let (written, (file_sums, raw_sums)) = write_atomically(&output, |file| {
        let raw_sums = options.raw_sums || format.id_from_raw_sha256();
        let written =
            nanoimg_disk::write_image_as(file, &spec, options.file_digests, format, raw_sums)
                .map_err(disk_err)?;
        let sums = image_sums(written.layout.size, raw_sums, &written.digests);
        Ok((written, sums))
    })?;
    // The lock is written only once the image is in place.
    if lock != locked_before {
        lock.save(&lock_file)?;
    }
    let mut digests = written.digests.files.iter().copied();
    let mut files = image_files("boot", &written.boot_fs, &mut digests);
    files.extend(image_files("root", &written.root_fs, &mut digests));
    let kernel_sha256 = files
        .iter()
        .find(|f| f.filesystem == "boot" && f.path == "/kernel")
        .and_then(|f| f.sha256.clone());
    let boot_img_sha256 = boot_image.as_ref().map(|b| {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(b.bytes()))
    });
    Ok(BuildReport {
        output,
        layout: written.layout,
        format,
        file: file_sums,
        raw: raw_sums,
        boot_uuid: written.boot_fs.uuid,
        root_uuid: written.root_fs.uuid,
        nanos_version,
        kernel_sha256,
        boot_img_sha256,
        files,
        plan,
        target_root: target_root
            .or_else(|| config.target_root.as_ref().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/")),
        image_root,
        containers,
    })
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

/// What [`convert`] wrote.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    pub output: PathBuf,
    /// The container read and the one written.
    pub from: Format,
    pub format: Format,
    /// Size of the file written.
    pub file_size: u64,
    /// Size of the raw image (the same in input and output).
    pub raw_size: u64,
    /// Bytes of the raw image read: those of the input's allocated ranges (the rest was
    /// given to the writer as holes without being read), and how many ranges.
    pub data: u64,
    pub ranges: usize,
    /// The sums of the file written and of the raw image, when asked for.
    pub file: Option<Sums>,
    pub raw: Option<Sums>,
    /// What the reader noticed about the input (`VirtualDisk::notes`), one line each.
    pub notes: Vec<String>,
}

/// Why an image cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Read(#[from] nanoimg_vdisk::VdiskError),
    #[error("{path}: cannot read the raw image at byte {offset}: {source}")]
    ReadAt {
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
    #[error("{path}: cannot write the {format} image: {source}")]
    Write {
        path: PathBuf,
        format: Format,
        source: std::io::Error,
    },
}

/// Copies the raw image held in `input` (any format `nanoimg-vdisk` reads: a raw image or
/// volume, qcow2, VHD, VMDK, VHDX, a GCE tar) into `output` in `format`, streaming, through
/// the same writers a build uses, so a converted image has the bytes a direct build would.
/// Nothing is left at `output` unless the whole file was written.
///
/// Only the input's allocated ranges (`VirtualDisk::allocated`: its own map, or the file's
/// extents) are read; the rest goes to the writer as holes, so the work follows the data
/// stored, not the size a header claims, and the output is as sparse as the format allows.
/// With `sums`, the SHA-256 and BLAKE3 of the file and of the raw image are computed as
/// well: those cover every byte, holes included, so they cost time in proportion to the
/// disk's size (as they do for VMDK, VHD and VHDX output, whose identifiers are derived from
/// the raw image's SHA-256).
pub fn convert(
    input: &Path,
    output: &Path,
    format: Format,
    sums: bool,
) -> Result<ConvertReport, BuildError> {
    use nanoimg_stream::{ImageWriter, CHUNK};
    let disk = nanoimg_vdisk::open(input).map_err(ConvertError::from)?;
    let size = disk.size();
    let from = disk.format();
    let read_err = |offset, source| ConvertError::ReadAt {
        path: input.to_path_buf(),
        offset,
        source,
    };
    let write_err = |source| ConvertError::Write {
        path: output.to_path_buf(),
        format,
        source,
    };
    if output.is_dir() {
        return Err(BuildError::OutputIsDir {
            path: output.to_path_buf(),
        });
    }
    let ranges = disk.allocated().map_err(|e| read_err(0, e))?;
    let data: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    // Calls `each` with the allocated ranges' bytes, in pieces that end on CHUNK
    // boundaries of the raw image.
    let for_each_piece = |each: &mut EachPiece| {
        let mut buf = vec![0u8; CHUNK];
        for r in &ranges {
            let mut at = r.start;
            while at < r.end {
                let to = r.end.min((at / CHUNK as u64 + 1) * CHUNK as u64);
                let piece = &mut buf[..(to - at) as usize];
                disk.read_exact_at(piece, at).map_err(|e| read_err(at, e))?;
                each(at, piece)?;
                at = to;
            }
        }
        Ok::<(), ConvertError>(())
    };
    // The raw image is hashed for --sums, and for VHD, whose unique id derives from its
    // SHA-256: those hashes cover every byte, holes included.
    let hash = sums || format.id_from_raw_sha256();
    // Hands the allocated ranges to `w` (the rest as holes) and finishes it.
    let feed = |mut w: ImageWriter<'_>| {
        for_each_piece(&mut |at, data| {
            w.pad_to(at).map_err(write_err)?;
            if nanoimg_vdisk::is_zero(data) {
                w.zeros(data.len() as u64)
            } else {
                w.write(data)
            }
            .map_err(write_err)
        })?;
        w.pad_to(size).map_err(write_err)?;
        w.finish().map_err(write_err)
    };
    let survey = match format.needs_survey() {
        true => Some(survey_of_disk(input, size, for_each_piece)?),
        false => None,
    };
    let (file_size, sums) = write_atomically(output, |file| {
        let out = file.try_clone().map_err(write_err)?;
        let sink = nanoimg_vdisk::writer(format, out, size, survey).map_err(write_err)?;
        let digests = feed(
            match hash {
                true => ImageWriter::with_sink(sink, false),
                false => ImageWriter::with_sink_unhashed(sink, false),
            }
            .map_err(write_err)?,
        )?;
        let file_size = file.metadata().map_err(write_err)?.len();
        Ok((file_size, sums.then(|| image_sums(size, true, &digests))))
    })?;
    let (file, raw) = sums.unzip();
    Ok(ConvertReport {
        output: output.to_path_buf(),
        from,
        format,
        file_size,
        raw_size: size,
        data,
        ranges: ranges.len(),
        file,
        raw: raw.flatten(),
        notes: disk.notes(),
    })
}

/// What `convert` calls with each piece of the input's allocated bytes, in order.
type EachPiece<'a> = dyn FnMut(u64, &[u8]) -> Result<(), ConvertError> + 'a;

/// The survey of the image at `input` (`size` bytes), whose allocated bytes `pieces` gives:
/// where a Nanos image's files lie comes from its filesystems, so the survey is the one its
/// build had and the converted file has a build's bytes; any other disk has no files, and
/// its survey maps the blocks with a non-zero byte.
fn survey_of_disk(
    input: &Path,
    size: u64,
    pieces: impl FnOnce(&mut EachPiece) -> Result<(), ConvertError>,
) -> Result<nanoimg_vdisk::Survey, ConvertError> {
    let mut surveyor = nanoimg_vdisk::Surveyor::new();
    // Not a Nanos image, or one whose filesystems cannot be read: a disk without files.
    let files = nanoimg_disk::DiskImage::open(input)
        .and_then(|image| image.file_data())
        .unwrap_or_default();
    for range in files {
        surveyor.file(range);
    }
    pieces(&mut |at, data| {
        surveyor.bytes(at, data);
        Ok(())
    })?;
    Ok(surveyor.finish(size))
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
