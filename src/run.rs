//! `nanoimg run`: boot an image (or build a program, then boot it) under QEMU, the way ops
//! runs it locally or the way a Gevulot node runs a prover. The QEMU knowledge is in
//! `nanoimg-run`; this is the command line around it.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use nanoimg::run::missing::{self, ConsoleScan};
use nanoimg::run::{Accel, Outcome, PortForward, Profile, RunSpec, Share};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelArg {
    Kvm,
    Tcg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BootArg {
    Bios,
    Uefi,
}

#[derive(clap::Args)]
pub struct RunCommand {
    /// The image to boot, or a program to build first (an ELF executable, or anything given
    /// with -c).
    target: PathBuf,
    #[command(flatten)]
    build: crate::BuildArgs,
    /// Keep the image built from a program, or the raw image converted from a GCE tar,
    /// here [default: a temporary file, removed after the run].
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: Option<PathBuf>,
    /// Boot as a Gevulot (v1) node does: the disk read-only, isa-debug-exit, virtio-rng, no
    /// network, 2 vCPUs and 2048 MiB unless given, --workspace shared with mount tag 0.
    #[arg(long, requires = "workspace")]
    gevulot: bool,
    /// With --gevulot: the workspace folder the node shares with the prover (created if
    /// missing).
    #[arg(long, value_name = "DIR", requires = "gevulot")]
    workspace: Option<PathBuf>,
    /// Forward a host TCP port to the guest (repeatable): PORT, or HOST:GUEST.
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    ports: Vec<PortForward>,
    /// The guest's memory (k, m or g suffix) [default: 2g].
    #[arg(long, value_name = "SIZE", value_parser = crate::size)]
    memory: Option<u64>,
    /// The guest's vCPUs [default: 1, or 2 with --gevulot].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    smp: Option<u32>,
    /// Attach a data volume as another disk (repeatable); the manifest mounts it by label.
    #[arg(long = "volume", value_name = "FILE")]
    volumes: Vec<PathBuf>,
    /// Share a host folder over 9p (repeatable), with mount tags following those of the
    /// config's host folders: the manifest mounts it as %N.
    #[arg(long = "share", value_name = "DIR")]
    shares: Vec<PathBuf>,
    /// The accelerator [default: KVM when it can run the guest, else TCG].
    #[arg(long, value_enum)]
    accel: Option<AccelArg>,
    /// How an image with an EFI System Partition boots [default: uefi].
    #[arg(long, value_enum)]
    boot: Option<BootArg>,
    /// The OVMF firmware for a UEFI boot [default: the distribution's].
    #[arg(long, value_name = "FILE")]
    firmware: Option<PathBuf>,
    /// Stop the VM after this many seconds and exit with 124.
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    timeout: Option<Duration>,
    /// Print the QEMU command line, one shell-quoted argument per line, instead of running it.
    #[arg(long)]
    print_command: bool,
    /// As ops's: build with Nanos's `missing_files` flag, so the kernel lists at exit the
    /// files the program tried to open that were not in the image; then say, for each, the
    /// config line that packs it from the build's target root (or that the root lacks it).
    /// An image must have been built with the flag.
    #[arg(long)]
    missing_files: bool,
    /// Appended to QEMU's command line.
    #[arg(last = true, value_name = "QEMU_ARGS")]
    qemu_args: Vec<OsString>,
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
enum RunCliError {
    #[error(transparent)]
    Build(#[from] nanoimg::BuildError),
    #[error(transparent)]
    Image(#[from] nanoimg::run::ImageError),
    #[error(transparent)]
    Run(#[from] nanoimg::run::RunError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether `target` is a program to build rather than an image to boot.
fn is_program(target: &Path, has_config: bool) -> Result<bool, RunCliError> {
    if has_config {
        return Ok(true);
    }
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(target).map_err(|source| RunCliError::Read {
        path: target.to_path_buf(),
        source,
    })?;
    let n = f.read(&mut magic).map_err(|source| RunCliError::Read {
        path: target.to_path_buf(),
        source,
    })?;
    Ok(n == 4 && magic == *b"\x7fELF")
}

pub fn run(cmd: RunCommand) -> ExitCode {
    match start(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", crate::error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// After a `--missing-files` run: the kernel's list, each name with the config line that
/// packs it from the build's target root (`built`), one printable line each on stderr.
fn report_missing(
    scan: std::sync::Arc<std::sync::Mutex<ConsoleScan>>,
    built: Option<&nanoimg::BuildReport>,
) {
    let scan = match std::sync::Arc::try_unwrap(scan) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        Err(shared) => std::mem::take(&mut *shared.lock().unwrap_or_else(|e| e.into_inner())),
    };
    let Some(list) = scan.finish() else {
        crate::say("the kernel printed no list of missing files: it prints one when the program exits, and this run ended before that");
        return;
    };
    let lookup = built.map(|b| {
        missing::look_up(
            &list.names,
            &missing::TargetRoot {
                dir: &b.target_root,
                image: b.image_root,
                arch: b.plan.arch,
                runtime_loads: &b.plan.runtime_loads,
            },
        )
    });
    for line in missing::report_lines(&list, lookup.as_ref()) {
        crate::say(line);
    }
}

fn start(mut cmd: RunCommand) -> Result<ExitCode, RunCliError> {
    let profile = if cmd.gevulot {
        Profile::Gevulot
    } else {
        Profile::Ops
    };
    if cmd.gevulot && !cmd.ports.is_empty() {
        return Err(RunCliError::Usage(
            "a Gevulot node gives the VM no network, so -p does not apply with --gevulot".into(),
        ));
    }
    // A program is built first, into -o or a temporary file kept for the run (as is the raw
    // image a GCE tar is converted into: both live until the run ends).
    let mut temporaries = Vec::new();
    let target = resolve_target(&cmd, &mut temporaries)?;
    let facts = nanoimg::run::image_facts(&target.image)?;
    check_facts(&cmd, &target.image, &facts)?;
    let arch = facts.arch;
    let (image, disk_format) = bootable_disk(&cmd, target.image, &facts, &mut temporaries)?;
    let mut spec = RunSpec::new(nanoimg::display_path(&image), profile);
    spec.arch = arch;
    spec.disk_format = disk_format;
    set_resources(&mut spec, &mut cmd);
    add_shares(&mut spec, &cmd, &target.build_shares)?;
    set_boot(&mut spec, &cmd, &facts, &image)?;
    let forced = cmd.accel.map(|a| match a {
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
    });
    let path = std::env::var_os("PATH");
    if cmd.print_command {
        print_command(&spec, forced, path.as_deref());
        return Ok(ExitCode::SUCCESS);
    }
    let qemu = nanoimg::run::find_qemu(path.as_deref(), arch)?;
    let scan = std::sync::Arc::new(std::sync::Mutex::new(ConsoleScan::new()));
    let outcome = launch(&qemu, &spec, &cmd, forced, facts.debug_exit, &scan)?;
    drop(temporaries);
    if cmd.missing_files {
        report_missing(scan, target.built.as_ref());
    }
    Ok(exit_code(outcome, facts.debug_exit, cmd.timeout, &qemu))
}

/// The image `run` is to boot, and what building it (when the target was a program) left.
struct Target {
    image: PathBuf,
    /// The host folders of the build's config, in mount-tag order.
    build_shares: Vec<PathBuf>,
    /// The build's report, when a program was built: its target root, for --missing-files.
    built: Option<nanoimg::BuildReport>,
}

/// The image to boot: pulled from a registry, built from a program, or the target itself.
fn resolve_target(
    cmd: &RunCommand,
    temporaries: &mut Vec<nanoimg::atomic::TempFile>,
) -> Result<Target, RunCliError> {
    let docker = cmd
        .target
        .to_str()
        .filter(|t| nanoimg::registry::is_reference(t));
    if let Some(reference) = docker {
        // An image pushed with `nanoimg push`: pulled into the cache by digest, run from there.
        let image =
            crate::transfer::pull_to_cache(reference, &cmd.build.resolution.insecure_registries)
                .map_err(|e| RunCliError::Usage(e.to_string()))?;
        Ok(Target {
            image,
            build_shares: Vec::new(),
            built: None,
        })
    } else if cmd.build.from_image.is_some() || is_program(&cmd.target, cmd.build.config.is_some())?
    {
        build_program(cmd, temporaries)
    } else {
        if let Some(flag) = cmd.build.first_given() {
            return Err(RunCliError::Usage(format!(
                "{} is an image, so {flag} (a build flag) would change nothing; give the program (an ELF executable) or -c CONFIG to build first",
                cmd.target.display()
            )));
        }
        Ok(Target {
            image: cmd.target.clone(),
            build_shares: Vec::new(),
            built: None,
        })
    }
}

/// Builds the program `cmd` names into -o or a temporary file, printing the plan's notes.
fn build_program(
    cmd: &RunCommand,
    temporaries: &mut Vec<nanoimg::atomic::TempFile>,
) -> Result<Target, RunCliError> {
    if cmd.print_command && cmd.output.is_none() {
        return Err(RunCliError::Usage(
            "--print-command with a program: give -o IMAGE, so the printed command has an image to boot".into(),
        ));
    }
    let output = match &cmd.output {
        Some(o) => o.clone(),
        None => temporary_image(temporaries)?,
    };
    let report = nanoimg::build(&nanoimg::BuildOptions {
        missing_files: cmd.missing_files,
        raw_sums: false,
        ..cmd
            .build
            .clone()
            .options(cmd.target.clone(), Some(output), false)
    })?;
    for note in &report.plan.notes {
        crate::say(note);
    }
    Ok(Target {
        image: report.output.clone(),
        build_shares: report.plan.shares.clone(),
        built: Some(report),
    })
}

/// Prints the image's notes, and refuses a run its facts rule out (--missing-files on an
/// image built without the flag, --gevulot with a non-x86_64 image); warns of what would
/// stop it working on a Gevulot node.
fn check_facts(
    cmd: &RunCommand,
    image: &Path,
    facts: &nanoimg::run::ImageFacts,
) -> Result<(), RunCliError> {
    for note in &facts.notes {
        crate::say(format!("note: {note}"));
    }
    let arch = facts.arch;
    if cmd.missing_files && !facts.missing_files {
        return Err(RunCliError::Usage(format!(
            "{} was built without Nanos's missing_files flag, so its kernel keeps no list of the files the program failed to open; run the program instead (nanoimg run PROGRAM [-c CONFIG] --missing-files builds it with the flag), or rebuild the image with \"Debugflags\": [\"missing_files\"] in its config",
            image.display()
        )));
    }
    if cmd.gevulot && arch != nanoimg::run::Arch::X86_64 {
        return Err(RunCliError::Usage(format!(
            "{} is an {arch} image, and the Gevulot node runs x86_64 VMs (q35); run it without --gevulot (ops's local shape), sharing the workspace with --share",
            image.display()
        )));
    }
    if cmd.gevulot {
        for problem in &facts.gevulot_problems {
            eprintln!(
                "nanoimg: warning: this image cannot work on a Gevulot node as it is: {problem}"
            );
        }
    }
    Ok(())
}

/// The disk QEMU boots and its QEMU format name: the image itself, or the raw image of a
/// format QEMU cannot read.
fn bootable_disk(
    cmd: &RunCommand,
    image: PathBuf,
    facts: &nanoimg::run::ImageFacts,
    temporaries: &mut Vec<nanoimg::atomic::TempFile>,
) -> Result<(PathBuf, &'static str), RunCliError> {
    // A GCE tar is not something QEMU reads: its raw image is booted instead, converted
    // into -o or a temporary file removed after the run (and on an interrupt).
    let Some(name) = facts.format.qemu_name() else {
        return Ok((convert_to_raw(cmd, &image, facts, temporaries)?, "raw"));
    };
    Ok((image, name))
}

/// Converts `image` (of a format QEMU cannot boot) into a raw image in -o or a temporary
/// file; its path.
fn convert_to_raw(
    cmd: &RunCommand,
    image: &Path,
    facts: &nanoimg::run::ImageFacts,
    temporaries: &mut Vec<nanoimg::atomic::TempFile>,
) -> Result<PathBuf, RunCliError> {
    let output = match &cmd.output {
        Some(o) => o.clone(),
        None if cmd.print_command => {
            return Err(RunCliError::Usage(format!(
                "--print-command with a {} image: give -o DISK.img, so the printed command has the raw image to boot (or convert it first: nanoimg convert {} DISK.img --format raw)",
                facts.format,
                image.display()
            )))
        }
        None => temporary_image(temporaries)?,
    };
    crate::say(format!(
        "{} is a {} image, which QEMU cannot boot: booting its raw image, converted into {}",
        image.display(),
        facts.format,
        if cmd.output.is_none() {
            "a temporary file".to_string()
        } else {
            output.display().to_string()
        }
    ));
    let r = nanoimg::convert(image, &output, nanoimg::vdisk::Format::Raw, false)?;
    for note in &r.notes {
        crate::say(format!("note: {note}"));
    }
    Ok(r.output)
}

/// Moves the guest's memory, vCPUs, ports, volumes and extra QEMU arguments from `cmd` into
/// `spec`.
fn set_resources(spec: &mut RunSpec, cmd: &mut RunCommand) {
    if let Some(m) = cmd.memory {
        spec.memory_mib = m.div_ceil(1 << 20);
    }
    if cmd.smp.is_some() {
        spec.smp = cmd.smp;
    }
    spec.ports = std::mem::take(&mut cmd.ports);
    spec.volumes = cmd
        .volumes
        .iter()
        .map(|v| nanoimg::display_path(v))
        .collect();
    spec.extra = std::mem::take(&mut cmd.qemu_args);
}

/// The 9p shares: the Gevulot workspace (created if missing) or the build's host folders,
/// then each --share with the mount tags after theirs.
fn add_shares(
    spec: &mut RunSpec,
    cmd: &RunCommand,
    build_shares: &[PathBuf],
) -> Result<(), RunCliError> {
    if let Some(ws) = &cmd.workspace {
        std::fs::create_dir_all(ws).map_err(|source| RunCliError::Read {
            path: ws.clone(),
            source,
        })?;
        spec.shares.push(Share {
            path: nanoimg::display_path(ws),
            tag: 0,
        });
    } else {
        for (tag, host) in build_shares.iter().enumerate() {
            if host.is_dir() {
                spec.shares.push(Share {
                    path: host.clone(),
                    tag: tag as u32,
                });
            } else {
                eprintln!(
                    "nanoimg: mount %{tag} has no host folder ({} does not exist); give one with --share",
                    host.display()
                );
            }
        }
    }
    let first_tag = spec.shares.iter().map(|s| s.tag + 1).max().unwrap_or(0);
    for (i, dir) in cmd.shares.iter().enumerate() {
        if !dir.is_dir() {
            return Err(RunCliError::Usage(format!(
                "--share {}: no such folder; give a host folder to share",
                dir.display()
            )));
        }
        spec.shares.push(Share {
            path: nanoimg::display_path(dir),
            tag: first_tag + i as u32,
        });
    }
    Ok(())
}

/// How the guest boots: the firmware for UEFI, the kernel out of an arm64 image, or BIOS.
fn set_boot(
    spec: &mut RunSpec,
    cmd: &RunCommand,
    facts: &nanoimg::run::ImageFacts,
    image: &Path,
) -> Result<(), RunCliError> {
    let arch = facts.arch;
    let uefi = match cmd.boot {
        Some(BootArg::Uefi) if !facts.uefi => {
            return Err(RunCliError::Usage(format!(
                "{} has no EFI System Partition, so it cannot boot through UEFI; build it with --uefi, or boot it through BIOS",
                image.display()
            )))
        }
        Some(BootArg::Bios) => false,
        _ => facts.uefi,
    };
    if uefi {
        spec.firmware = Some(nanoimg::run::find_ovmf(
            cmd.firmware.as_deref(),
            nanoimg::run::firmware_for(arch).0,
            arch,
        )?);
    } else if cmd.firmware.is_some() {
        return Err(RunCliError::Usage(match arch {
            nanoimg::run::Arch::X86_64 => "--firmware is the OVMF image for a UEFI boot, and this one boots through BIOS (SeaBIOS)".into(),
            _ => "--firmware is the AAVMF image for a UEFI boot, and this one boots its kernel directly (-kernel)".into(),
        }));
    } else if arch == nanoimg::run::Arch::Aarch64 {
        // As ops runs an arm64 image: QEMU loads the kernel itself, taken out of the image
        // into the cache (named by its SHA-256, so --print-command stays runnable).
        let dir = nanoimg::cache()?.root().join("kernels");
        spec.kernel = Some(nanoimg::run::extract_kernel(image, &dir)?);
    }
    Ok(())
}

/// --print-command: the QEMU command line, one shell-quoted argument per line.
fn print_command(spec: &RunSpec, forced: Option<Accel>, path: Option<&std::ffi::OsStr>) {
    let arch = spec.arch;
    let qemu = nanoimg::run::find_qemu(path, arch)
        .unwrap_or_else(|_| PathBuf::from(nanoimg::run::qemu_for(arch).0));
    let accel = nanoimg::run::accel_for(forced, arch, nanoimg::run::kvm_device()).0;
    println!("{}", nanoimg::run::shell_quote(qemu.as_os_str()));
    for a in nanoimg::run::args(spec, accel) {
        println!("{}", nanoimg::run::shell_quote(&a));
    }
}

/// Runs the VM to its end, scanning the console for the kernel's list with --missing-files.
fn launch(
    qemu: &Path,
    spec: &RunSpec,
    cmd: &RunCommand,
    forced: Option<Accel>,
    debug_exit: bool,
    scan: &std::sync::Arc<std::sync::Mutex<ConsoleScan>>,
) -> Result<Outcome, RunCliError> {
    Ok(if cmd.missing_files {
        nanoimg::run::run_scanning(
            qemu,
            spec,
            forced,
            cmd.timeout,
            debug_exit,
            scan.clone(),
            &mut |note| crate::say(note),
        )?
    } else {
        nanoimg::run::run(qemu, spec, forced, cmd.timeout, debug_exit, &mut |note| {
            crate::say(note)
        })?
    })
}

/// The exit code of `nanoimg run` for how the VM ended, with a line on stderr where the
/// program's own status is not it.
fn exit_code(
    outcome: Outcome,
    debug_exit: bool,
    timeout: Option<Duration>,
    qemu: &Path,
) -> ExitCode {
    match outcome {
        Outcome::Exited(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        Outcome::PoweredOff => {
            if !debug_exit {
                eprintln!(
                    "nanoimg: the VM powered off; the program's exit status is not visible (put \"debug_exit\" in ManifestPassthrough to have nanoimg run exit with it)"
                );
            }
            ExitCode::SUCCESS
        }
        Outcome::TimedOut => {
            eprintln!(
                "error: the VM was still running after {} s and was stopped (--timeout)",
                timeout.map_or(0.0, |t| t.as_secs_f64())
            );
            ExitCode::from(124)
        }
        Outcome::QemuFailed(status) => {
            eprintln!(
                "error: {} failed ({}); its messages are above",
                qemu.display(),
                status.map_or("killed by a signal".to_string(), |s| format!(
                    "exit status {s}"
                ))
            );
            ExitCode::FAILURE
        }
    }
}

/// A temporary file for the image `run` boots (built or converted), in the temporary
/// directory, kept in `temporaries` (removed when dropped, and on Ctrl-C); its path.
fn temporary_image(
    temporaries: &mut Vec<nanoimg::atomic::TempFile>,
) -> Result<std::path::PathBuf, RunCliError> {
    let t = nanoimg::atomic::TempFile::in_dir(&std::env::temp_dir(), ".nanoimg-run-").map_err(
        |source| RunCliError::Read {
            path: std::env::temp_dir(),
            source,
        },
    )?;
    let path = t.path().to_path_buf();
    temporaries.push(t);
    Ok(path)
}
