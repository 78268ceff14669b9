//! `nanoimg build` as stages: resolve inputs → plan → lay out → write → report (see
//! [`build`]). Each stage is a short function with a named result, so a reader follows one
//! build from top to bottom and a caller can stop after any of them.

use std::path::{Path, PathBuf};

use nanoimg_config::Config;
use nanoimg_disk::{BootImage, DiskError, Format, ImageLayout, ImageSpec, WrittenImage};
use nanoimg_elf::Arch;
use nanoimg_plan::{Inputs, Plan, PlanError};
use nanoimg_release::{KernelDir, Lock};
use nanoimg_tfs::{PlannedVolume, VolumeSpec};

use crate::kernel::{kernel, lock_path, nanos_version, KernelOptions};
use crate::{application, hex, ops_images_dir, sysroot, tfs, write_atomically, BuildError};

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
pub(crate) fn image_sums(
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

/// Builds an image. Nothing is written at the output path unless the whole image was.
///
/// The build is five stages, each a function below with a named result:
/// [`resolve`] (config + flags, lock, container images, architecture, kernel: [`Resolved`])
/// → [`plan`] (what goes where: [`Plan`]) → [`lay_out`] (both filesystems, the format and the
/// output path, the image's layout checked: [`LaidOut`]) → [`write`] (atomically:
/// [`Written`]) → [`report`] ([`BuildReport`]). The lock is saved only once the image is in
/// place. `nanoimg run PROGRAM` and `nanoimg verify` build through this same function.
pub fn build(options: &BuildOptions) -> Result<BuildReport, BuildError> {
    let mut resolved = resolve(options)?;
    let plan = plan(options, &mut resolved)?;
    let laid_out = lay_out(options, &resolved.config, &plan)?;
    let written = write(options, laid_out)?;
    resolved.lock.save()?;
    Ok(report(resolved, plan, written))
}

/// Stage 1: everything a build is made from, with the flags merged into the config.
pub struct Resolved {
    /// The config with ops's flags (`-a`, `-e`, `--mounts`, …) merged over it.
    pub config: Config,
    /// The program on the host (for `--from-image`, its file in the unpacked image).
    pub program: PathBuf,
    /// Where libraries are resolved; a container image's unpacked root when `image_root`.
    pub target_root: Option<PathBuf>,
    pub image_root: bool,
    /// Pack the image's whole filesystem (its own application, without `--prune`).
    pub pack_root: bool,
    /// The container images opened, as given, with their unpacked roots.
    pub containers: Vec<(String, nanoimg_oci::Root)>,
    /// What unpacking the images had to say (members skipped), for the plan's notes.
    pub image_notes: Vec<String>,
    pub kernel: KernelDir,
    /// The Nanos version ("" when unknown).
    pub nanos_version: String,
    pub lock: LockFile,
    pub cwd: PathBuf,
    /// The directories of `LD_LIBRARY_PATH`, when asked for.
    pub ld_library_path: Vec<String>,
}

/// The lock file, as loaded and as the build has updated it.
pub struct LockFile {
    pub path: PathBuf,
    pub lock: Lock,
    before: Lock,
}

impl LockFile {
    fn load(path: PathBuf) -> Result<LockFile, BuildError> {
        let lock = Lock::load(&path)?;
        Ok(LockFile {
            path,
            before: lock.clone(),
            lock,
        })
    }

    /// Writes the lock back if the build changed it.
    fn save(&self) -> Result<(), BuildError> {
        if self.lock != self.before {
            self.lock.save(&self.path)?;
        }
        Ok(())
    }
}

/// Stage 1: the config with the flags over it, the lock, the container images (locked by
/// digest), the architecture and the kernel.
pub fn resolve(options: &BuildOptions) -> Result<Resolved, BuildError> {
    if options.program.is_none() && options.from_image.is_none() {
        return Err(BuildError::NoProgram);
    }
    let mut config = merged_config(options)?;
    let mut lock = LockFile::load(lock_path(
        options.kernel.lock.as_deref(),
        options.config.as_deref(),
    ))?;
    let cwd = std::env::current_dir().map_err(|source| BuildError::Output {
        dir: PathBuf::from("."),
        source,
    })?;
    let ld_library_path = crate::ld_library_path(options.use_ld_library_path);
    let sources = open_images(options, &mut config, &mut lock.lock)?;
    let arch = build_arch(&sources.program, options.arch)?;
    let kernel = kernel(
        &options.kernel,
        &config,
        &sources.program,
        arch,
        &mut lock.lock,
    )?;
    let nanos_version = nanos_version(&options.kernel, &config, arch);
    Ok(Resolved {
        config,
        program: sources.program,
        target_root: sources.target_root,
        image_root: sources.image_root,
        pack_root: sources.pack_root,
        containers: sources.containers,
        image_notes: sources.notes,
        kernel,
        nanos_version,
        lock,
        cwd,
        ld_library_path,
    })
}

/// The config file (or the default one) with ops's flags merged over it, as ops does.
fn merged_config(options: &BuildOptions) -> Result<Config, BuildError> {
    let mut config = match &options.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
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
    Ok(config)
}

/// Where the program and its libraries come from once the container images are open.
struct Sources {
    program: PathBuf,
    target_root: Option<PathBuf>,
    image_root: bool,
    pack_root: bool,
    containers: Vec<(String, nanoimg_oci::Root)>,
    notes: Vec<String>,
}

/// Opens the container images a build names — `--target-root`/`TargetRoot`, then
/// `--from-image` — locked by digest; with `--from-image`, finds the program in it (or
/// merges the image's own application into `config`).
fn open_images(
    options: &BuildOptions,
    config: &mut Config,
    lock: &mut Lock,
) -> Result<Sources, BuildError> {
    let (locked, update) = (
        options.kernel.release.locked,
        options.kernel.release.update_lock,
    );
    let access = sysroot::Access {
        offline: options.kernel.release.offline,
        insecure: &options.insecure_registries,
        by_locked_digest: options.images_by_locked_digest,
    };
    let mut open_image = |spec: &str| {
        sysroot::open(
            spec,
            options.platform.as_ref(),
            lock,
            locked,
            update,
            &access,
        )
    };
    let mut sources = Sources {
        program: options.program.clone().unwrap_or_default(),
        target_root: options.target_root.clone(),
        image_root: false,
        pack_root: false,
        containers: Vec::new(),
        notes: Vec::new(),
    };
    let target_spec = sysroot::target_spec(options.target_root.as_deref(), config);
    if let Some(spec) = target_spec.as_deref().filter(|s| sysroot::is_image(s)) {
        let mut root = open_image(spec)?;
        sources.notes.append(&mut root.notes);
        sources.containers.push((spec.to_string(), root.clone()));
        sources.target_root = Some(root.dir);
        sources.image_root = true;
    }
    if let Some(spec) = &options.from_image {
        let mut root = open_image(spec)?;
        sources.notes.append(&mut root.notes);
        sources.containers.push((spec.clone(), root.clone()));
        program_from_image(options, spec, &root, config, &mut sources)?;
        if target_spec.is_none() {
            sources.target_root = Some(root.dir);
            sources.image_root = true;
        }
    }
    Ok(sources)
}

/// The program of a `--from-image` build: PROGRAM's file in the image, or the image's own
/// application (its whole filesystem packed unless `--prune`), which also names `Program`
/// in the config when the config does not.
fn program_from_image(
    options: &BuildOptions,
    spec: &str,
    root: &nanoimg_oci::Root,
    config: &mut Config,
    sources: &mut Sources,
) -> Result<(), BuildError> {
    let in_image = match &options.program {
        Some(p) => p.clone(),
        None => {
            sources.pack_root = !options.prune;
            application::merge(spec, &root.application, &root.dir, config)?
        }
    };
    sources.program = sysroot::program_in(root, &in_image)?;
    if config.program.is_none() {
        config.program = Some(in_image.to_string_lossy().into_owned());
    }
    Ok(())
}

/// The architecture to build for: the program's, unless `--arch` says otherwise (a
/// program that cannot be read is reported by the plan, with its path, once the kernel is
/// known).
fn build_arch(program: &Path, requested: Option<Arch>) -> Result<Arch, BuildError> {
    match nanoimg_plan::program_arch(program, requested) {
        Ok(arch) => Ok(arch),
        Err(e @ PlanError::RequestedArch { .. }) => Err(e.into()),
        Err(_) => Ok(requested.unwrap_or_default()),
    }
}

/// Stage 2: the plan, with what unpacking the images said first among its notes.
pub fn plan(options: &BuildOptions, resolved: &mut Resolved) -> Result<Plan, BuildError> {
    let mut plan = nanoimg_plan::plan(&Inputs {
        program: &resolved.program,
        config: &resolved.config,
        config_path: options.config.as_deref(),
        kernel: &resolved.kernel,
        nanos_version: &resolved.nanos_version,
        cwd: &resolved.cwd,
        target_root: resolved.target_root.as_deref(),
        image_root: resolved.image_root,
        ld_library_path: &resolved.ld_library_path,
        keep_mount_ids: options.keep_mount_ids,
        image_name: options.image_name.as_deref(),
        arch: options.arch,
        pack_root: resolved.pack_root,
    })?;
    let mut notes = std::mem::take(&mut resolved.image_notes);
    notes.append(&mut plan.notes);
    plan.notes = notes;
    Ok(plan)
}

/// Stage 3: where every byte of the image goes, known before a file is created.
pub struct LaidOut<'a> {
    pub boot_image: Option<BootImage>,
    pub boot_fs: PlannedVolume<'a>,
    pub root_fs: PlannedVolume<'a>,
    pub plan: &'a Plan,
    pub format: Format,
    pub output: PathBuf,
}

impl LaidOut<'_> {
    /// What the disk writer takes.
    pub fn spec(&self) -> ImageSpec<'_> {
        ImageSpec {
            boot_image: self.boot_image.as_ref(),
            boot_fs: &self.boot_fs,
            root_fs: &self.root_fs,
            root_free_space: self.plan.root_free_space,
            min_image_size: self.plan.min_image_size,
            uefi_loader: self.plan.uefi_loader.as_deref(),
        }
    }

    fn disk_error(&self, source: DiskError) -> BuildError {
        BuildError::Disk {
            path: self.output.clone(),
            source: Box::new(source),
        }
    }
}

/// Stage 3: the boot code read, both filesystems laid out, the format and the output path
/// decided, and the image's layout computed — so that a too-large kernel fails before any
/// file is created.
pub fn lay_out<'a>(
    options: &'a BuildOptions,
    config: &Config,
    plan: &'a Plan,
) -> Result<LaidOut<'a>, BuildError> {
    let boot_image = plan
        .boot_image
        .as_deref()
        .map(BootImage::read)
        .transpose()?;
    let seed = options.seed.as_deref().unwrap_or_default();
    let volume_err = |what| move |source| BuildError::Volume { what, source };
    let boot_fs = tfs::plan(&VolumeSpec {
        seed: seed.as_bytes(),
        ..VolumeSpec::new(&plan.boot)
    })
    .map_err(volume_err("boot filesystem"))?;
    let root_fs = tfs::plan(&VolumeSpec {
        uuid: options.uuid,
        seed: seed.as_bytes(),
        manifest: &plan.manifest,
        ..VolumeSpec::new(&plan.root)
    })
    .map_err(volume_err("root filesystem"))?;
    let format = disk_format(options, config)?;
    let laid_out = LaidOut {
        boot_image,
        boot_fs,
        root_fs,
        plan,
        format,
        output: output_path(options, format, &plan.image_name)?,
    };
    ImageLayout::compute(&laid_out.spec()).map_err(|e| laid_out.disk_error(e))?;
    Ok(laid_out)
}

/// `--format`, else the config's `DiskFormat`, else raw.
fn disk_format(options: &BuildOptions, config: &Config) -> Result<Format, BuildError> {
    match (options.format, &config.disk_format) {
        (Some(f), _) => Ok(f),
        (None, Some(name)) => name.parse().map_err(|e| BuildError::DiskFormat {
            name: name.clone(),
            source: e,
        }),
        (None, None) => Ok(Format::Raw),
    }
}

/// `-o`, else where ops puts images (`~/.ops/images/<image name>`, the folder created), which
/// must not be a folder.
fn output_path(
    options: &BuildOptions,
    format: Format,
    image_name: &str,
) -> Result<PathBuf, BuildError> {
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
                Format::Raw => dir.join(image_name),
                f => dir.join(format!("{image_name}.{}", f.extension())),
            }
        }
    };
    if output.is_dir() {
        return Err(BuildError::OutputIsDir { path: output });
    }
    Ok(output)
}

/// Stage 4: what was written, where, and its sums.
pub struct Written {
    pub image: WrittenImage,
    pub output: PathBuf,
    pub format: Format,
    pub file: Sums,
    pub raw: Option<Sums>,
    /// SHA-256 of the `boot.img` used (none for aarch64).
    pub boot_img_sha256: Option<String>,
}

/// Stage 4: the image written atomically in its format, hashed on the way.
pub fn write(options: &BuildOptions, laid_out: LaidOut) -> Result<Written, BuildError> {
    let format = laid_out.format;
    let spec = laid_out.spec();
    let (image, file, raw) = write_atomically(&laid_out.output, |file| {
        let raw_sums = options.raw_sums || format.id_from_raw_sha256();
        let image =
            nanoimg_disk::write_image_as(file, &spec, options.file_digests, format, raw_sums)
                .map_err(|e| laid_out.disk_error(e))?;
        let (file, raw) = image_sums(image.layout.size, raw_sums, &image.digests);
        Ok((image, file, raw))
    })?;
    let boot_img_sha256 = laid_out.boot_image.as_ref().map(|b| {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(b.bytes()))
    });
    Ok(Written {
        image,
        output: laid_out.output,
        format,
        file,
        raw,
        boot_img_sha256,
    })
}

/// Stage 5: what was built, file by file.
pub fn report(resolved: Resolved, plan: Plan, written: Written) -> BuildReport {
    let image = written.image;
    let mut digests = image.digests.files.iter().copied();
    let mut files = image_files("boot", &image.boot_fs, &mut digests);
    files.extend(image_files("root", &image.root_fs, &mut digests));
    let kernel_sha256 = files
        .iter()
        .find(|f| f.filesystem == "boot" && f.path == "/kernel")
        .and_then(|f| f.sha256.clone());
    BuildReport {
        output: written.output,
        layout: image.layout,
        format: written.format,
        file: written.file,
        raw: written.raw,
        boot_uuid: image.boot_fs.uuid,
        root_uuid: image.root_fs.uuid,
        nanos_version: resolved.nanos_version,
        kernel_sha256,
        boot_img_sha256: written.boot_img_sha256,
        files,
        plan,
        target_root: resolved
            .target_root
            .or_else(|| resolved.config.target_root.as_ref().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/")),
        image_root: resolved.image_root,
        containers: resolved.containers,
    }
}
