//! The `nanoimg` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod kernel_cmd;
mod look;
mod provenance;
mod run;
mod transfer;

#[derive(Parser)]
#[command(
    name = "nanoimg",
    version,
    about = "Build bootable Nanos unikernel images natively"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the kernel comes from.
#[derive(Args, Clone)]
struct KernelArgs {
    /// An unpacked Nanos release folder (kernel.img, boot.img, [bootx64.efi], [klibs/]);
    /// bypasses the release cache.
    #[arg(long, value_name = "DIR")]
    kernel_dir: Option<PathBuf>,
    /// The pinned Nanos release to use [default: the config's NanosVersion, else the newest
    /// pinned release].
    #[arg(long, value_name = "VERSION")]
    nanos_version: Option<String>,
    /// Accept a --kernel-dir folder whose files changed and record them in nanoimg.lock (as
    /// `cargo update` does for Cargo.lock); pinned releases and the cache are never updated.
    #[arg(long, conflicts_with = "locked")]
    update_lock: bool,
    #[command(flatten)]
    fetch: FetchArgs,
}

/// How releases may be obtained and verified.
#[derive(Args, Clone)]
struct FetchArgs {
    /// Never open a network connection; a release missing from the cache is an error.
    #[arg(long)]
    offline: bool,
    /// Refuse any release or file that nanoimg.lock does not already record.
    #[arg(long)]
    locked: bool,
    /// Download releases from this base URL instead of the official location [env:
    /// NANOIMG_MIRROR].
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Allow a Nanos version that nanoimg has no pin for (its hashes still go to the lock).
    #[arg(long)]
    allow_unpinned: bool,
    /// The lock file [default: nanoimg.lock next to the config, else in the current
    /// directory].
    #[arg(long, value_name = "FILE")]
    lock: Option<PathBuf>,
}

impl FetchArgs {
    fn release_options(&self) -> nanoimg::release::ReleaseOptions {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut http = nanoimg::release::HttpOptions::default();
        if let Some(t) = env("NANOIMG_HTTP_TIMEOUT").and_then(|v| v.parse::<f64>().ok()) {
            http.timeout = std::time::Duration::from_secs_f64(t);
        }
        if let Some(n) = env("NANOIMG_HTTP_ATTEMPTS").and_then(|v| v.parse().ok()) {
            http.attempts = n;
        }
        if let Some(ms) = env("NANOIMG_HTTP_RETRY_DELAY_MS").and_then(|v| v.parse().ok()) {
            http.retry_delay = std::time::Duration::from_millis(ms);
        }
        nanoimg::release::ReleaseOptions {
            offline: self.offline,
            locked: self.locked,
            update_lock: false,
            mirror: self.mirror.clone().or_else(|| env("NANOIMG_MIRROR")),
            allow_unpinned: self.allow_unpinned,
            http,
        }
    }
}

/// How the program's libraries are found.
#[derive(Args, Clone)]
struct Resolution {
    /// Resolve the interpreter and libraries inside DIR instead of / (the config's
    /// TargetRoot); DIR may be a container image (OCI layout or archive, docker-archive;
    /// PATH:TAG picks a tag), locked by digest in nanoimg.lock.
    #[arg(long, value_name = "DIR|IMAGE")]
    target_root: Option<PathBuf>,
    /// The platform to take from a container image that holds several (the target root's
    /// or --from-image's) [default: linux/ARCH, ARCH from --arch, else amd64].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<nanoimg::oci::Platform>,
    /// Also search the build host's LD_LIBRARY_PATH, after DT_RPATH, as the loader would.
    #[arg(long)]
    ld_library_path: bool,
    /// Reach this registry (of a docker:// image) over plain HTTP instead of TLS
    /// (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Also pack this library (a soname the program loads at run time, with its own
    /// dependencies), as the config's "Libraries" (repeatable).
    #[arg(long = "library", value_name = "SONAME")]
    libraries: Vec<String>,
}

/// How `build` (and `run PROGRAM`) shape the image.
#[derive(Args, Clone)]
struct BuildArgs {
    /// An ops config.json.
    #[arg(short = 'c', long = "config", value_name = "CONFIG.json")]
    config: Option<PathBuf>,
    #[command(flatten)]
    kernel: KernelArgs,
    /// An argument after argv[0] (repeatable); replaces the config's Args, as ops's -a.
    #[arg(
        short = 'a',
        long = "args",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    args: Vec<String>,
    /// An environment variable K=V, added to the config's Env (repeatable).
    #[arg(short = 'e', long = "envs", value_name = "K=V", value_parser = key_value)]
    envs: Vec<(String, String)>,
    /// A mount VOLUME:PATH, added to the config's Mounts (repeatable).
    #[arg(long = "mounts", value_name = "VOLUME:PATH", value_parser = volume_path)]
    mounts: Vec<(String, String)>,
    /// The image name (the default output's file name), as ops's -i.
    #[arg(short = 'i', long = "imagename", value_name = "NAME")]
    image_name: Option<String>,
    /// Keep Mounts keys as written; by default %N keys and host folders are renumbered
    /// %0, %1, ... as ops's local (onprem) build does.
    #[arg(long)]
    keep_mount_ids: bool,
    /// The root filesystem's UUID (8-4-4-4-12 hex) instead of the one derived from the
    /// image's content.
    #[arg(long, value_name = "UUID", value_parser = uuid)]
    uuid: Option<[u8; 16]>,
    /// A string mixed into the derived filesystem UUIDs.
    #[arg(long, value_name = "STRING")]
    seed: Option<String>,
    /// Make an image that boots through UEFI (the config's Uefi): an EFI System Partition
    /// with the release's bootx64.efi (x86_64, which still boots through BIOS too) or
    /// bootaa64.efi (arm64) comes first.
    #[arg(long)]
    uefi: bool,
    /// The architecture to build for, as ops spells it (amd64, arm64; also x86_64,
    /// aarch64) [default: the program's]. Picks the release (arm64: the -virt one);
    /// program, libraries, kernel and klibs must all be of it.
    #[arg(long, value_name = "ARCH")]
    arch: Option<nanoimg::elf::Arch>,
    /// Take the program from this container image: PROGRAM is then its absolute path inside
    /// the image, which is also the target root unless one is given. Without PROGRAM, the
    /// image's own application: its Entrypoint + Cmd, Env and WorkingDir, with its whole
    /// filesystem packed (see --prune).
    #[arg(long, value_name = "IMAGE")]
    from_image: Option<String>,
    /// With --from-image and no PROGRAM: pack only the program's closure, the paths the
    /// config names and the libraries packed ELFs need, not the image's whole filesystem.
    #[arg(long, requires = "from_image")]
    prune: bool,
    #[command(flatten)]
    resolution: Resolution,
}

impl BuildArgs {
    /// The first flag given that only shapes a build (for `run IMAGE`, where it would do
    /// nothing).
    fn first_given(&self) -> Option<&'static str> {
        [
            (self.kernel.kernel_dir.is_some(), "--kernel-dir"),
            (self.kernel.nanos_version.is_some(), "--nanos-version"),
            (!self.args.is_empty(), "-a"),
            (!self.envs.is_empty(), "-e"),
            (!self.mounts.is_empty(), "--mounts"),
            (self.image_name.is_some(), "-i"),
            (self.uuid.is_some(), "--uuid"),
            (self.seed.is_some(), "--seed"),
            (self.uefi, "--uefi"),
            (self.arch.is_some(), "--arch"),
            (self.resolution.target_root.is_some(), "--target-root"),
            (self.from_image.is_some(), "--from-image"),
            (self.prune, "--prune"),
            (self.resolution.platform.is_some(), "--platform"),
            (!self.resolution.libraries.is_empty(), "--library"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// The build of `program` into `output`.
    fn options(
        self,
        program: impl Into<Option<PathBuf>>,
        output: Option<PathBuf>,
        file_digests: bool,
    ) -> nanoimg::BuildOptions {
        nanoimg::BuildOptions {
            program: program.into(),
            config: self.config,
            kernel: nanoimg::KernelOptions {
                kernel_dir: self.kernel.kernel_dir,
                nanos_version: self.kernel.nanos_version,
                lock: self.kernel.fetch.lock.clone(),
                release: nanoimg::release::ReleaseOptions {
                    update_lock: self.kernel.update_lock,
                    ..self.kernel.fetch.release_options()
                },
            },
            output,
            target_root: self.resolution.target_root,
            use_ld_library_path: self.resolution.ld_library_path,
            args: (!self.args.is_empty()).then_some(self.args),
            envs: self.envs,
            mounts: self.mounts,
            image_name: self.image_name,
            keep_mount_ids: self.keep_mount_ids,
            uuid: self.uuid,
            seed: self.seed,
            uefi: self.uefi,
            libraries: self.resolution.libraries,
            from_image: self.from_image,
            prune: self.prune,
            // A container image's platform follows --arch unless --platform is given.
            platform: self.resolution.platform.or_else(|| {
                self.arch.map(|a| nanoimg::oci::Platform {
                    architecture: a.ops_name().into(),
                    ..Default::default()
                })
            }),
            arch: self.arch,
            format: None,
            file_digests,
            insecure_registries: self.resolution.insecure_registries,
            images_by_locked_digest: false,
            missing_files: false,
            raw_sums: false,
        }
    }
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Package a program as a bootable Nanos disk image (like `ops build`).
    Build {
        /// The program to run in the image [default with --from-image: the image's
        /// Entrypoint + Cmd].
        #[arg(required_unless_present = "from_image")]
        program: Option<PathBuf>,
        #[command(flatten)]
        build: BuildArgs,
        /// Where to write the image [default: where ops puts it, ~/.ops/images/<name>, honouring
        /// OPS_HOME].
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
        /// The disk format to write [default: the config's DiskFormat, else raw]: raw, qcow2
        /// (OpenStack, Oracle Cloud, DigitalOcean, QEMU), vhd (Azure: fixed VHD), vmdk (vSphere,
        /// AWS VM Import: stream-optimized), vhdx (Hyper-V), gce (Google Compute Engine:
        /// disk.raw in a sparse .tar.gz).
        #[arg(long, value_name = "FORMAT")]
        format: Option<nanoimg::vdisk::Format>,
        /// Also list the config fields that do not affect a locally built image.
        #[arg(short = 'v', long)]
        verbose: bool,
        /// Print one JSON object describing the image instead of the summary lines.
        #[arg(long)]
        json: bool,
        /// For a container format, also print the SHA-256 and BLAKE3 of the raw image inside
        /// it (one more hash of every byte; raw and vhd always have them).
        #[arg(long)]
        raw_sums: bool,
        /// Also write an in-toto statement with SLSA v1 provenance of the image to FILE
        /// (`nanoimg verify` rebuilds from it).
        #[arg(long, value_name = "FILE")]
        provenance: Option<PathBuf>,
        #[command(flatten)]
        sbom: SbomArgs,
    },
    /// Rebuild an image from its provenance (`build --provenance`) and compare. Exit status:
    /// 0 rebuilt byte for byte, 1 different (or an input changed; each said), 2 an input is
    /// missing or an error.
    Verify {
        /// The image to check.
        image: PathBuf,
        /// The statement `build --provenance` wrote.
        #[arg(long, value_name = "FILE")]
        provenance: PathBuf,
        /// Reach this registry (of a recorded docker:// image) over plain HTTP instead of
        /// TLS (repeatable).
        #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
        insecure_registries: Vec<String>,
    },
    /// Write the software bill of materials of an existing image (any format), from what it
    /// holds: every file with its SHA-256, the Nanos release, and the Debian packages owning
    /// files when the image holds a dpkg database.
    Sbom {
        /// The image to describe.
        image: PathBuf,
        /// Write the document to FILE (atomically) instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The format: spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.5 JSON).
        #[arg(long, value_name = "FORMAT", default_value = "spdx")]
        format: nanoimg::sbom_cmd::SbomFormat,
    },
    /// Write an existing image or volume (raw, or any format nanoimg writes) in another disk
    /// format, streaming; the result has the bytes a build with --format would write.
    Convert {
        /// The image or volume to read.
        image: PathBuf,
        /// The file to write.
        out: PathBuf,
        /// The format to write: raw, qcow2, vhd, vmdk, vhdx or gce.
        #[arg(long, value_name = "FORMAT")]
        format: nanoimg::vdisk::Format,
        /// Also compute the SHA-256 and BLAKE3 of the file and of the raw image. They cover
        /// every byte, holes included, so they take time in proportion to the disk's size;
        /// without them the work follows the data stored.
        #[arg(long)]
        sums: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Boot an image under QEMU as its platform will (like `ops run`), or build a program
    /// first and boot it. The console is on stdout; with `debug_exit` in the manifest the exit
    /// status is the program's.
    Run(run::RunCommand),
    /// Show the interpreter and libraries a program needs, where each was found and why
    /// (read from its ELF headers; the program is never run).
    Deps {
        /// The program.
        program: PathBuf,
        /// An ops config.json (its Program sets the path $ORIGIN refers to).
        #[arg(short = 'c', long = "config", value_name = "CONFIG.json")]
        config: Option<PathBuf>,
        #[command(flatten)]
        resolution: Resolution,
        /// The architecture the program must be of, as ops spells it (amd64, arm64; also
        /// x86_64, aarch64) [default: the program's]; also picks a container image's
        /// platform (linux/ARCH) unless --platform is given.
        #[arg(long, value_name = "ARCH")]
        arch: Option<nanoimg::elf::Arch>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Describe an image (or raw TFS volume): partitions, boot filesystem, manifest.
    Inspect {
        image: PathBuf,
        /// Also list every file with its size, link target and SHA-256.
        #[arg(long)]
        files: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Say why two images differ. Exit status: 0 same, 1 different, 2 error.
    Diff {
        a: PathBuf,
        b: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write an image's root tree into DIR (which must not exist or be empty).
    Extract { image: PathBuf, dir: PathBuf },
    /// Data volumes: raw TFS filesystems (no MBR) that Nanos mounts through Mounts.
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
    /// Upload a built image (any format) to a registry as an OCI artifact; prints the
    /// manifest digest.
    Push {
        /// The image file.
        image: PathBuf,
        /// Where: docker://HOST[:PORT]/REPO:TAG.
        reference: String,
        /// Reach this registry over plain HTTP instead of TLS (repeatable).
        #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
        insecure_registries: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Download an image pushed with `nanoimg push` (docker://HOST/REPO:TAG or
    /// …@sha256:DIGEST), verified as it streams, written atomically.
    Pull {
        /// docker://HOST[:PORT]/REPO[:TAG] or docker://HOST[:PORT]/REPO@sha256:HEX.
        reference: String,
        /// The file to write.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// Reach this registry over plain HTTP instead of TLS (repeatable).
        #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
        insecure_registries: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Pinned Nanos releases: fetch, list, verify the cache.
    Kernel {
        #[command(subcommand)]
        command: KernelCommand,
    },
}

#[derive(Subcommand)]
enum VolumeCommand {
    /// Make a volume from a folder; mount it by label (Mounts: {"LABEL": "/path"}), UUID or
    /// attach id.
    Create {
        /// The folder whose content the volume holds.
        source: PathBuf,
        /// The volume file to write.
        #[arg(short = 'o', long = "output", value_name = "VOLUME")]
        output: PathBuf,
        /// The volume label (at most 31 bytes).
        #[arg(long, default_value = "")]
        label: String,
        /// The volume's size (k, m or g suffix); at least the data plus 8 MiB free.
        #[arg(long, value_name = "SIZE", value_parser = size)]
        size: Option<u64>,
        /// A string mixed into the derived UUID.
        #[arg(long, value_name = "STRING")]
        seed: Option<String>,
    },
}

fn size(s: &str) -> Result<u64, String> {
    nanoimg::config::parse_size(s)
        .ok_or_else(|| format!("{s:?} is not a size (digits with k, m or g)"))
}

#[derive(Subcommand)]
enum KernelCommand {
    /// Download, verify and cache a release (the newest pinned one by default), and record it
    /// in the lock.
    Fetch {
        version: Option<String>,
        /// The architecture of the release: amd64, or arm64 for the -virt release.
        #[arg(long, value_name = "ARCH", default_value = "amd64")]
        arch: nanoimg::elf::Arch,
        #[command(flatten)]
        fetch: FetchArgs,
    },
    /// The pinned releases, whether each is cached, and their hashes.
    List,
    /// Re-hash the cached releases recorded in the lock.
    Verify {
        /// The lock file [default: ./nanoimg.lock].
        #[arg(long, value_name = "FILE")]
        lock: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // A closed stdout (`nanoimg inspect x | head`) ends the process quietly, as it does for
    // other command-line tools, instead of a panic in println!.
    // SAFETY: setting a signal's disposition to the default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // SIGINT, SIGTERM and SIGHUP remove unfinished outputs and exit 130, 143 or 129.
    if let Err(e) = nanoimg::atomic::interrupt::install() {
        eprintln!("error: cannot install the signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let status = dispatch(cli.command);
    // An error that an interrupt caused is not reported: the handler ends the process.
    nanoimg::atomic::interrupt::wait_if_interrupted();
    status
}

/// Runs the subcommand; its exit status.
fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Build {
            program,
            build: b,
            output,
            format,
            verbose,
            json,
            raw_sums,
            provenance,
            sbom,
        } => {
            let file_digests = json || provenance.is_some() || sbom.sbom.is_some();
            let options = build_options(b, program, output, format, raw_sums, file_digests);
            finish(build(options, verbose, json, provenance, &sbom))
        }
        Command::Verify {
            image,
            provenance,
            insecure_registries,
        } => provenance::verify(&image, &provenance, &insecure_registries),
        Command::Sbom {
            image,
            output,
            format,
        } => finish(
            nanoimg::sbom_cmd::sbom_of_image(&image, output.as_deref(), format)
                .map_err(nanoimg::BuildError::from),
        ),
        Command::Convert {
            image,
            out,
            format,
            json,
            sums,
        } => finish(convert(&image, &out, format, sums, json)),
        Command::Run(r) => run::run(r),
        Command::Deps {
            program,
            config,
            resolution,
            arch,
            json,
        } => finish(deps(&program, config, resolution, arch, json)),
        Command::Kernel { command } => finish(kernel_cmd::kernel(command)),
        Command::Push {
            image,
            reference,
            insecure_registries: insecure,
            json,
        } => finish(transfer::push(&image, &reference, &insecure, json)),
        Command::Pull {
            reference,
            output,
            insecure_registries: insecure,
            json,
        } => finish(transfer::pull(&reference, &output, &insecure, json)),
        Command::Inspect { image, files, json } => finish(look::inspect(&image, files, json)),
        Command::Diff { a, b, json } => diff(&a, &b, json),
        Command::Extract { image, dir } => finish(look::extract(&image, &dir)),
        Command::Volume { command } => finish(volume(command)),
    }
}

/// `nanoimg diff A B`: 0 the same, 1 different, 2 an error (said in one line).
fn diff(a: &std::path::Path, b: &std::path::Path, json: bool) -> ExitCode {
    match look::diff(a, b, json) {
        Ok(true) => ExitCode::from(1),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_line(&e));
            ExitCode::from(2)
        }
    }
}

/// `nanoimg volume create`: writes the volume and prints its size, UUID and hashes.
fn volume(command: VolumeCommand) -> Result<(), nanoimg::BuildError> {
    let VolumeCommand::Create {
        source,
        output,
        label,
        size,
        seed,
    } = command;
    let r = nanoimg::create_volume(&source, &output, &label, size, seed.as_deref())?;
    for note in &r.notes {
        say(note);
    }
    println!("Volume size: {} bytes", r.size);
    println!("UUID: {}", nanoimg::tfs::format_uuid(&r.uuid));
    println!("SHA-256: {}", r.sha256);
    println!("BLAKE3: {}", r.blake3);
    println!("Volume file:{}", nanoimg::display_path(&r.output).display());
    Ok(())
}

/// The exit status of a command that failed with `result`'s error (printed as one line).
fn finish<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Prints one `nanoimg: ` line on stderr, made [`nanoimg::printable`].
pub(crate) fn say(text: impl std::fmt::Display) {
    eprintln!("nanoimg: {}", nanoimg::printable(&text.to_string()));
}

/// The one line an error is reported with (made [`nanoimg::printable`]): the error, and
/// what to do about the system errors whose remedy does not depend on the command (a full
/// disk, a missing permission).
fn error_line(e: &dyn std::fmt::Display) -> String {
    let text = nanoimg::printable(&e.to_string());
    let remedy = [
        (
            "(os error 28)",
            "the disk is full: free space on it, or write the output elsewhere",
        ),
        (
            "(os error 122)",
            "the disk quota is used up: free space, or write the output elsewhere",
        ),
        (
            "(os error 13)",
            "check the permissions of that path, or write the output elsewhere",
        ),
        (
            "(os error 30)",
            "that filesystem is read-only: write the output elsewhere",
        ),
    ]
    .into_iter()
    .find(|(code, _)| text.contains(code))
    .map(|(_, remedy)| remedy);
    match remedy {
        Some(r) => format!("error: {text}; {r}"),
        None => format!("error: {text}"),
    }
}

/// `K=V` for `-e` (split at the first `=`, unlike ops, which cuts values containing `=`).
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

/// `VOLUME:PATH` for `--mounts` (split at the first `:`, so PATH may end in `:ro`).
fn volume_path(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((k, v)) if !k.is_empty() && v.starts_with('/') => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not VOLUME:/path")),
    }
}

fn uuid(s: &str) -> Result<[u8; 16], String> {
    nanoimg::parse_uuid(s).ok_or_else(|| format!("{s:?} is not a UUID (8-4-4-4-12 hex digits)"))
}

/// `build --sbom FILE [--sbom-format FORMAT]`.
#[derive(Args)]
struct SbomArgs {
    /// Also write a software bill of materials of the image to FILE (after the image,
    /// atomically): every packed file with its SHA-256 and source, the owning Debian
    /// packages, the Nanos release and the container images used.
    #[arg(long, value_name = "FILE")]
    sbom: Option<PathBuf>,
    /// The SBOM's format: spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.5 JSON).
    #[arg(long, value_name = "FORMAT", default_value = "spdx", requires = "sbom")]
    sbom_format: nanoimg::sbom_cmd::SbomFormat,
}

/// The build the `build` subcommand's flags ask for.
fn build_options(
    b: BuildArgs,
    program: Option<PathBuf>,
    output: Option<PathBuf>,
    format: Option<nanoimg::vdisk::Format>,
    raw_sums: bool,
    file_digests: bool,
) -> nanoimg::BuildOptions {
    nanoimg::BuildOptions {
        format,
        raw_sums,
        ..b.options(program, output, file_digests)
    }
}

/// `nanoimg build`: builds the image, writes the documents asked for, prints the report.
fn build(
    options: nanoimg::BuildOptions,
    verbose: bool,
    json: bool,
    provenance: Option<PathBuf>,
    sbom: &SbomArgs,
) -> Result<(), nanoimg::BuildError> {
    if verbose {
        say_ignored_fields(&options);
    }
    // The documents are written after the image: a path that cannot take them is refused
    // before anything is built.
    if let Some(p) = &provenance {
        nanoimg::check_document_path("provenance", p)?;
    }
    if let Some(p) = &sbom.sbom {
        nanoimg::check_document_path("SBOM", p)?;
    }
    let report = nanoimg::build(&options)?;
    if let Some(p) = &provenance {
        provenance::write(p, &options, &report)?;
    }
    if let Some(file) = &sbom.sbom {
        nanoimg::sbom_cmd::write(&report, &options, file, sbom.sbom_format)?;
    }
    print_build_report(&report, json, provenance.as_deref(), sbom.sbom.as_deref());
    Ok(())
}

/// With -v: one line for each field of the config that does not change a locally built
/// image.
fn say_ignored_fields(options: &nanoimg::BuildOptions) {
    if let Some(text) = options
        .config
        .as_ref()
        .and_then(|c| std::fs::read_to_string(c).ok())
    {
        for field in nanoimg::config::Config::ignored_fields(&text) {
            eprintln!("nanoimg: ignoring {field} (it does not change a locally built image)");
        }
    }
}

/// What a build did: the plan's notes, what was packed and the hints on stderr, then the
/// image (one JSON object with --json, else the summary lines) on stdout.
fn print_build_report(
    report: &nanoimg::BuildReport,
    json: bool,
    provenance: Option<&std::path::Path>,
    sbom: Option<&std::path::Path>,
) {
    for note in &report.plan.notes {
        say(note);
    }
    for d in &report.plan.dependencies {
        say(format!(
            "packed {} <- {}",
            d.guest_path,
            d.host_path.display()
        ));
    }
    for hint in &report.plan.runtime_loads {
        say(format!("hint: {hint}"));
    }
    say(report.plan.packed);
    let path = nanoimg::display_path(&report.output);
    if json {
        let value = build_json(report, &path, provenance, sbom);
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return;
    }
    print_sums(
        report.format,
        &report.file,
        report.layout.size,
        report.raw.as_ref(),
    );
    println!("Bootable image file:{}", path.display());
}

/// The JSON object `build --json` prints about the image at `path`.
fn build_json(
    report: &nanoimg::BuildReport,
    path: &std::path::Path,
    provenance: Option<&std::path::Path>,
    sbom: Option<&std::path::Path>,
) -> serde_json::Value {
    serde_json::json!({
        "path": path,
        "format": report.format.name(),
        "size": report.file.size,
        "sha256": report.file.sha256,
        "blake3": report.file.blake3,
        "raw": match &report.raw {
            Some(raw) => serde_json::to_value(raw).unwrap_or_default(),
            None => serde_json::json!({"size": report.layout.size}),
        },
        "filesystems": {
            "boot": {"uuid": nanoimg::tfs::format_uuid(&report.boot_uuid)},
            "root": {"uuid": nanoimg::tfs::format_uuid(&report.root_uuid)},
        },
        "nanos": {
            "version": report.nanos_version,
            "kernel_sha256": report.kernel_sha256,
            "arch": report.plan.arch.ops_name(),
            "boot_img_sha256": report.boot_img_sha256,
        },
        "program": report.plan.program_path,
        "packed": report.plan.packed,
        "files": report.files,
        "provenance": provenance.map(nanoimg::display_path),
        "sbom": sbom.map(nanoimg::display_path),
    })
}

/// The summary lines of a written image: its size and hashes (ops's `Image size` line), and
/// for a container format those of the raw image inside it (`raw_size` bytes; its hashes
/// when they were computed) as well.
fn print_sums(
    format: nanoimg::vdisk::Format,
    file: &nanoimg::Sums,
    raw_size: u64,
    raw: Option<&nanoimg::Sums>,
) {
    if format == nanoimg::vdisk::Format::Raw {
        println!("Image size: {} bytes", file.size);
    } else {
        println!(
            "Image size: {} bytes ({format}; raw image {raw_size} bytes)",
            file.size
        );
    }
    println!("SHA-256: {}", file.sha256);
    println!("BLAKE3: {}", file.blake3);
    if let (false, Some(raw)) = (format == nanoimg::vdisk::Format::Raw, raw) {
        println!("Raw image SHA-256: {}", raw.sha256);
        println!("Raw image BLAKE3: {}", raw.blake3);
    }
}

fn convert(
    image: &std::path::Path,
    out: &std::path::Path,
    format: nanoimg::vdisk::Format,
    sums: bool,
    json: bool,
) -> Result<(), nanoimg::BuildError> {
    let r = nanoimg::convert(image, out, format, sums)?;
    for note in &r.notes {
        say(format!("note: {note}"));
    }
    let path = nanoimg::display_path(&r.output);
    if json {
        let mut value = serde_json::json!({
            "path": path,
            "from": r.from.name(),
            "format": r.format.name(),
            "size": r.file_size,
            "raw_size": r.raw_size,
            "data": r.data,
        });
        if let (Some(file), Some(raw)) = (&r.file, &r.raw) {
            value["sha256"] = file.sha256.clone().into();
            value["blake3"] = file.blake3.clone().into();
            value["raw"] = serde_json::to_value(raw).unwrap_or_default();
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    match (&r.file, &r.raw) {
        (Some(file), Some(raw)) => print_sums(r.format, file, r.raw_size, Some(raw)),
        _ if r.format == nanoimg::vdisk::Format::Raw => {
            println!("Image size: {} bytes", r.file_size)
        }
        _ => println!(
            "Image size: {} bytes ({}; raw image {} bytes)",
            r.file_size, r.format, r.raw_size
        ),
    }
    println!(
        "Data read: {} bytes in {} range(s) of the {}-byte raw image",
        r.data, r.ranges, r.raw_size
    );
    println!("Image file:{}", path.display());
    Ok(())
}

/// `nanoimg deps`: resolves the program's closure and prints it (one JSON object with
/// --json).
fn deps(
    program: &std::path::Path,
    config: Option<PathBuf>,
    resolution: Resolution,
    arch: Option<nanoimg::elf::Arch>,
    json: bool,
) -> Result<(), nanoimg::BuildError> {
    // A container image's platform follows --arch unless --platform is given, as in build.
    let platform = resolution.platform.or_else(|| {
        arch.map(|a| nanoimg::oci::Platform {
            architecture: a.ops_name().into(),
            ..Default::default()
        })
    });
    let report = nanoimg::deps(
        program,
        config.as_deref(),
        resolution.target_root.as_deref(),
        resolution.ld_library_path,
        &resolution.libraries,
        platform,
        arch,
        &resolution.insecure_registries,
    )?;
    for note in &report.notes {
        say(note);
    }
    if json {
        print_deps_json(program, &report);
    } else {
        print_deps(&report);
    }
    Ok(())
}

/// `deps --json`: the program, its dependencies, runtime loads and layers as one object.
fn print_deps_json(program: &std::path::Path, report: &nanoimg::DepsReport) {
    let info = &report.resolution.program;
    let value = serde_json::json!({
        "program": {
            "host_path": nanoimg::display_path(program),
            "guest_path": report.program_path,
            "kind": info.kind,
            "interpreter": info.interpreter,
            "needed": info.needed,
            "rpath": info.rpath,
            "runpath": info.runpath,
        },
        "dependencies": report.resolution.dependencies,
        "runtime_loads": report.runtime_loads,
        "layers": report.layers,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
}

/// `deps`: the program, then one line per dependency saying where it was found and why,
/// then what it may load at run time.
fn print_deps(report: &nanoimg::DepsReport) {
    let info = &report.resolution.program;
    let kind = serde_json::to_value(info.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    println!(
        "{} ({kind} {} ELF)",
        report.program_path, report.resolution.program.arch
    );
    for d in &report.resolution.dependencies {
        println!(
            "{}",
            nanoimg::printable(&dependency_line(d, &report.layers))
        );
    }
    if !report.runtime_loads.is_empty() {
        println!("may load at run time (not packed):");
        for hint in &report.runtime_loads {
            println!("  {}", nanoimg::printable(&hint.to_string()));
        }
    }
}

/// The line `deps` prints for `d`: its guest and host paths, the rule that found it, and
/// the layer it came from (in `layers`, by guest path).
fn dependency_line(
    d: &nanoimg::elf::Dependency,
    layers: &std::collections::BTreeMap<String, String>,
) -> String {
    let why = match d.rule {
        nanoimg::elf::Rule::Interpreter => format!("PT_INTERP of {}", d.needed_by),
        rule => format!(
            "{} needed by {}, found by {}",
            d.name,
            d.needed_by,
            serde_json::to_value(rule)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
    };
    let layer = layers
        .get(&d.guest_path)
        .map(|l| format!(", layer {}", &l[..l.len().min(19)]))
        .unwrap_or_default();
    format!(
        "  {} <- {} ({why}{layer})",
        d.guest_path,
        d.host_path.display()
    )
}
