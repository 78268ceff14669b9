//! `cargo xtask e2e`: build real images with the nanoimg CLI and boot them.
//!
//! Steps: check prerequisites, compile the samples into a temporary work
//! directory, build `nanoimg` in release mode, then for every case write an
//! ops-format `config.json`, run `nanoimg build` (with `--uefi` for a hybrid
//! image), boot the image with `nanoimg run IMAGE --accel tcg --timeout N`
//! (with the case's own options, e.g. `--gevulot --workspace DIR`,
//! `--volume FILE`, `--boot bios`, `-p HOST:GUEST`; the product's QEMU
//! command line is what gets tested), check its exit status, look for the
//! expected lines on the serial console (its stdout, ANSI escapes ignored),
//! then check any files the guest had to leave on the host.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use crate::boot::{self, Accel, Boot, RunOptions};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::apps;
use crate::arm64;
use crate::endings;
use crate::expect;
use crate::formats;
use crate::gevulot;
use crate::guestfs;
use crate::missing_files;
use crate::portfwd;
use crate::prereq::{self, Tools};
use crate::samples::{self, Sample, Scenario};
use crate::sysroot;
use crate::volume;

/// Exit status when a case failed or the runner hit an error.
pub const EXIT_FAILED: u8 = 1;
/// Exit status when nothing was tested (missing prerequisites, no case).
pub const EXIT_NOT_RUN: u8 = 2;

/// Console lines shown when a case fails.
const CONSOLE_TAIL_LINES: usize = 40;

/// Last stdout line of a successful `nanoimg build`.
const IMAGE_MARKER: &str = "Bootable image file:";

#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// Nanos release folder containing kernel.img and boot.img
    /// [default: $NANOIMG_E2E_KERNEL_DIR]
    #[arg(long, value_name = "DIR")]
    pub kernel_dir: Option<PathBuf>,

    /// Copy every built image, console log and build log into DIR
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,

    /// `nanoimg run --timeout N` for every boot (the `timeout` case has its
    /// own 5 s): a boot that takes longer fails the case
    #[arg(long, value_name = "N", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,

    /// Use this nanoimg binary instead of building one with
    /// `cargo build --release -p nanoimg`
    #[arg(long, value_name = "PATH")]
    pub nanoimg_bin: Option<PathBuf>,

    /// Unpacked arm64 Nanos release (a nanos-release-linux-<v>-virt tarball:
    /// kernel.img, bootaa64.efi, klibs/) for the arm64-* cases; without it
    /// (or --skip-arm64) they fail [default: $NANOIMG_E2E_ARM64_KERNEL_DIR]
    #[arg(long, value_name = "DIR")]
    pub arm64_kernel_dir: Option<PathBuf>,

    /// Do not run the arm64-* cases (one line says they were skipped)
    #[arg(long, conflicts_with = "arm64_kernel_dir")]
    pub skip_arm64: bool,
}

/// Case counts of one run.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    /// 0 only if no case failed and at least one passed.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed > 0 {
            ExitCode::from(EXIT_FAILED)
        } else if self.passed == 0 {
            ExitCode::from(EXIT_NOT_RUN)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Runs the e2e test. Missing prerequisites come back as an error carrying
/// [`prereq::MissingPrerequisites`].
pub fn run(args: &E2eArgs) -> Result<Summary> {
    let tools = prereq::check(args.kernel_dir.as_deref())?;
    let nanoimg_override = args
        .nanoimg_bin
        .as_deref()
        .map(resolve_nanoimg_bin)
        .transpose()?;

    let work = tempfile::Builder::new()
        .prefix("nanoimg-e2e-")
        .tempdir()
        .context("creating the temporary work directory")?;
    let work_dir = work.path();
    if let Some(keep) = &args.keep {
        fs::create_dir_all(keep)
            .with_context(|| format!("creating --keep folder {}", keep.display()))?;
    }
    println!("e2e: kernel folder {}", tools.kernel_dir.display());
    let arm64_setup = arm64::Setup::new(args.skip_arm64, args.arm64_kernel_dir.as_deref());
    arm64_setup.announce();
    println!("e2e: work directory {}", work_dir.display());

    // Compile first: toolchain problems are prerequisites and should surface
    // before the (slower) nanoimg build.
    samples::write_sources(work_dir)?;
    let mut plan = Vec::new();
    for sample in samples::SAMPLES {
        plan.push((sample, sample.compile(&tools, work_dir)?));
    }
    // One image for every case that takes its libraries from a container
    // image (with the dlopen plugin in it).
    let image_root = if samples::SAMPLES.iter().any(Sample::uses_image) {
        let plugin = sysroot::compile_plugin(&tools, work_dir)?;
        let image = sysroot::make_image(&tools, work_dir, &plugin)
            .context("making the sysroot image with umoci")?;
        println!("e2e: sysroot image {image} (made with umoci)");
        Some(image)
    } else {
        None
    };

    let nanoimg = match nanoimg_override {
        Some(path) => path,
        None => build_nanoimg("e2e")?,
    };
    println!("e2e: using {}", nanoimg.display());

    let mut summary = Summary::default();
    // Prints a case's report, keeps its files (under `keep_under` in --keep) and counts it.
    let mut record = |case: &str, report: CaseReport, keep_under: &str| -> Result<()> {
        report.print(case);
        if let Some(keep) = &args.keep {
            let keep = keep.join(keep_under);
            fs::create_dir_all(&keep)
                .with_context(|| format!("creating --keep folder {}", keep.display()))?;
            keep_artifacts(&report.artifacts, &keep)?;
        }
        if report.passed() {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
        Ok(())
    };
    for (sample, program) in &plan {
        let target_root = image_root.as_deref().filter(|_| sample.uses_image());
        let report = run_case(
            sample,
            program,
            &tools,
            &nanoimg,
            work_dir,
            target_root,
            args.timeout_secs,
        )?;
        record(sample.case, report, "")?;
    }
    // The same sample in every disk format QEMU boots directly.
    if let Some((_, program)) = plan.iter().find(|(s, _)| s.program == formats::PROGRAM) {
        formats::run_cases(
            &tools,
            &nanoimg,
            work_dir,
            program,
            args.timeout_secs,
            &mut |case, report| record(case, report, formats::SUBDIR),
        )?;
    }
    // Whole applications from container images, by their own Entrypoint.
    apps::run_cases(
        &tools,
        &nanoimg,
        work_dir,
        args.timeout_secs,
        &mut |case, report| record(case, report, apps::SUBDIR),
    )?;
    // `nanoimg run --missing-files`: what the program failed to open, and the lines that pack it.
    missing_files::run_case(
        &tools,
        &nanoimg,
        work_dir,
        args.timeout_secs,
        &mut |case, report| record(case, report, missing_files::CASE),
    )?;
    arm64::run_cases(
        &arm64_setup,
        &tools,
        &nanoimg,
        work_dir,
        args.timeout_secs,
        &mut |case, report| record(case, report, arm64::SUBDIR),
    )?;

    println!("e2e: {} passed, {} failed", summary.passed, summary.failed);
    if let Some(keep) = &args.keep {
        println!("e2e: images and logs kept in {}", keep.display());
    } else if summary.failed > 0 {
        println!("e2e: re-run with --keep DIR to keep the images and console logs");
    }
    if summary.failed > 0 {
        eprintln!("e2e: FAILED — {} case(s) failed", summary.failed);
    } else if summary.passed == 0 {
        eprintln!("e2e: NOTHING WAS TESTED — no case ran");
    }
    Ok(summary)
}

/// Result of one case that ran.
#[derive(Debug, Default)]
pub(crate) struct CaseReport {
    pub(crate) build: Option<Duration>,
    pub(crate) boot: Option<Duration>,
    /// Why the case failed; empty means it passed.
    pub(crate) problems: Vec<String>,
    /// Output shown under a failure (build output or console tail).
    pub(crate) detail: Vec<String>,
    /// Files `--keep` copies.
    pub(crate) artifacts: Vec<PathBuf>,
}

impl CaseReport {
    pub(crate) fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn print(&self, case: &str) {
        let mut timings = Vec::new();
        if let Some(build) = self.build {
            timings.push(format!("build {} ms", build.as_millis()));
        }
        if let Some(boot) = self.boot {
            timings.push(format!("boot {:.1} s", boot.as_secs_f64()));
        }
        let timings = if timings.is_empty() {
            String::new()
        } else {
            format!(" ({})", timings.join(", "))
        };

        match self.problems.split_first() {
            None => println!("e2e: {case} ... PASS{timings}"),
            Some((first, rest)) => {
                println!("e2e: {case} ... FAIL: {first}{timings}");
                for problem in rest {
                    println!("    also: {problem}");
                }
                for line in &self.detail {
                    println!("    | {line}");
                }
            }
        }
    }
}

/// Builds, boots and checks one sample.
fn run_case(
    sample: &Sample,
    program: &Path,
    tools: &Tools,
    nanoimg: &Path,
    work_dir: &Path,
    target_root: Option<&str>,
    timeout_secs: u64,
) -> Result<CaseReport> {
    let mut report = CaseReport::default();
    let name = sample.program;

    let config_path = work_dir.join(format!("{name}.config.json"));
    let config =
        serde_json::to_vec_pretty(&ops_config(sample)).context("serializing the case config")?;
    fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    report.artifacts.push(config_path.clone());

    // The program is passed by its bare name with the work directory as
    // cwd, so `argv[0]` in the guest is exactly `name` (ops semantics).
    let image = work_dir.join(format!("{name}.img"));
    let mut command = nanoimg_build_command(
        nanoimg,
        program,
        &config_path,
        &tools.kernel_dir,
        &image,
        work_dir,
        sample.uefi_image(),
    );
    if let Some(root) = target_root {
        command.arg("--target-root").arg(root);
    }
    let Some(output) = run_build(command, sample.case, &image, work_dir, &mut report)? else {
        return Ok(report);
    };
    if let Some(root) = target_root {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let problems = sysroot::check_packed(&stderr, &sample.image_libraries());
        if !problems.is_empty() {
            report.problems.extend(problems);
            report.detail = output_tail("nanoimg build", &output);
            return Ok(report);
        }
        println!(
            "e2e: {} ... packed {} from the image root",
            sample.case,
            sample.image_libraries().join(", ")
        );
        if sample.scenario == Scenario::Dlopen
            && !check_deps_hint(sample, program, nanoimg, work_dir, root, &mut report)?
        {
            return Ok(report);
        }
    }

    let Some(options) = prepare_run(sample, nanoimg, work_dir, timeout_secs, &mut report)? else {
        return Ok(report);
    };
    let console_log = work_dir.join(format!("{name}.console.log"));
    let command = boot::command(nanoimg, &image, &options);
    let watchdog = Duration::from_secs(options.timeout_secs) + boot::WATCHDOG_GRACE;
    let mut running = boot::start(command, &console_log)?;
    report.artifacts.push(console_log);
    let exchange = match options.ports.first() {
        Some(&(host_port, _)) if sample.scenario == Scenario::PortForward => {
            let deadline = Instant::now() + Duration::from_secs(options.timeout_secs);
            Some((
                host_port,
                portfwd::exchange(host_port, deadline, &mut || {
                    running.has_exited().unwrap_or(true)
                }),
            ))
        }
        _ => None,
    };
    let boot = running.finish(watchdog)?;
    record_boot(&boot, work_dir, name, &mut report)?;

    report
        .problems
        .extend(status_problem(sample, &options, &boot));
    if sample.scenario == Scenario::Timeout {
        let limit = Duration::from_secs(endings::TIMEOUT_SECS) + endings::TIMEOUT_SLACK;
        if boot.elapsed > limit {
            report.problems.push(format!(
                "nanoimg run --timeout {} took {:.1} s to stop the VM (more than {} s)",
                endings::TIMEOUT_SECS,
                boot.elapsed.as_secs_f64(),
                limit.as_secs()
            ));
        }
    }
    if sample.accel == Accel::Default {
        match kvm_fallback(&boot.stderr, Path::new("/dev/kvm").exists()) {
            Ok(note) => println!("e2e: {} ... {note}", sample.case),
            Err(problem) => report.problems.push(problem),
        }
    }
    if let Some((host_port, exchange)) = exchange {
        let expected = portfwd::expected_reply();
        match exchange.reply {
            Some(reply) if reply == expected => println!(
                "e2e: {} ... 127.0.0.1:{host_port} replied \"{reply}\" (connection {})",
                sample.case, exchange.attempts
            ),
            Some(reply) => report.problems.push(format!(
                "127.0.0.1:{host_port} replied {reply:?}, expected {expected:?}"
            )),
            None => report.problems.push(format!(
                "no reply on 127.0.0.1:{host_port} after {} connection(s) (last: {})",
                exchange.attempts,
                exchange.last_error.as_deref().unwrap_or("none")
            )),
        }
    }
    let expected = sample.expected_lines();
    for missing in expect::missing_lines(&boot.console, &expected) {
        report.problems.push(format!("missing line \"{missing}\""));
    }
    check_host(sample, nanoimg, work_dir, &mut report)?;
    add_boot_detail(&mut report, &boot);
    Ok(report)
}

/// Runs `command` (a `nanoimg build` writing `image`, see [`nanoimg_build_command`]),
/// recording its time and its log (`<image stem>.build.log`) in `report`. Returns its
/// output when it wrote the image; otherwise the problem is recorded in `report`, with the
/// command's output as detail.
pub(crate) fn run_build(
    mut command: Command,
    case: &str,
    image: &Path,
    work_dir: &Path,
    report: &mut CaseReport,
) -> Result<Option<Output>> {
    let started = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let build_time = started.elapsed();
    report.build = Some(build_time);
    println!(
        "e2e: {case} ... nanoimg build took {} ms",
        build_time.as_millis()
    );

    let name = image
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let build_log = work_dir.join(format!("{name}.build.log"));
    fs::write(&build_log, command_log_text(&command, &output))
        .with_context(|| format!("writing {}", build_log.display()))?;
    report.artifacts.push(build_log);

    if !output.status.success() {
        report
            .problems
            .push(format!("nanoimg build exited with {}", output.status));
        report.detail = output_tail("nanoimg build", &output);
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_line = stdout.lines().rev().find(|line| !line.trim().is_empty());
    if !last_line.is_some_and(|line| line.trim_start().starts_with(IMAGE_MARKER)) {
        report.problems.push(format!(
            "nanoimg build did not print \"{IMAGE_MARKER}<path>\" as its last stdout line"
        ));
        report.detail = output_tail("nanoimg build", &output);
    }
    if !image.is_file() {
        report.problems.push(format!(
            "nanoimg build succeeded but wrote no {}",
            image.display()
        ));
        report.detail = output_tail("nanoimg build", &output);
        return Ok(None);
    }
    report.artifacts.push(image.to_path_buf());
    Ok(Some(output))
}

/// Runs `run` with `--print-command` and checks the QEMU command line it prints with
/// `check`. Returns whether it is right; if not, the problems and the output are in `report`.
pub(crate) fn check_print_command(
    mut run: Command,
    report: &mut CaseReport,
    check: impl FnOnce(&str) -> Vec<String>,
) -> Result<bool> {
    run.arg("--print-command");
    let printed = run.output().with_context(|| format!("running {run:?}"))?;
    let problems = if printed.status.success() {
        check(&String::from_utf8_lossy(&printed.stdout))
    } else {
        vec![format!(
            "nanoimg run --print-command exited with {}",
            printed.status
        )]
    };
    if problems.is_empty() {
        return Ok(true);
    }
    report.problems.extend(problems);
    report.detail = output_tail("nanoimg run --print-command", &printed);
    Ok(false)
}

/// Boots with `command` (a `nanoimg run` with `options`), keeping its console in
/// `<name>.console.log` and its command, status and stderr in `<name>.run.log` in `dir`, and
/// notes the boot time in `report`.
pub(crate) fn boot_logged(
    command: Command,
    options: &RunOptions,
    dir: &Path,
    name: &str,
    report: &mut CaseReport,
) -> Result<Boot> {
    let console_log = dir.join(format!("{name}.console.log"));
    let watchdog = Duration::from_secs(options.timeout_secs) + boot::WATCHDOG_GRACE;
    let boot = boot::start(command, &console_log)?.finish(watchdog)?;
    report.artifacts.push(console_log);
    record_boot(&boot, dir, name, report)?;
    Ok(boot)
}

/// Writes `<name>.run.log` (command, status, stderr of a finished boot) in `dir` and notes
/// the boot time in `report`.
fn record_boot(boot: &Boot, dir: &Path, name: &str, report: &mut CaseReport) -> Result<()> {
    let run_log = dir.join(format!("{name}.run.log"));
    fs::write(&run_log, run_log_text(boot))
        .with_context(|| format!("writing {}", run_log.display()))?;
    report.artifacts.push(run_log);
    report.boot = Some(boot.elapsed);
    Ok(())
}

/// Under a failed case: the `nanoimg run` command, the console's last lines and its stderr,
/// then the output of a failed host-side step (e.g. `nanoimg extract`) already in `report`.
pub(crate) fn add_boot_detail(report: &mut CaseReport, boot: &Boot) {
    if !report.passed() {
        // The console comes first; output of a failed host-side step (e.g.
        // `nanoimg extract`) follows it.
        let host_detail = std::mem::take(&mut report.detail);
        report.detail.push(format!("$ {}", boot.command_line));
        report.detail.push(format!(
            "--- last {CONSOLE_TAIL_LINES} lines of the console ---"
        ));
        report
            .detail
            .extend(expect::tail(&boot.console, CONSOLE_TAIL_LINES));
        report.detail.push("--- end of console ---".to_owned());
        if boot.stderr.trim().is_empty() {
            report
                .detail
                .push("--- nanoimg run stderr: (empty) ---".to_owned());
        } else {
            report
                .detail
                .push("--- nanoimg run stderr (last lines) ---".to_owned());
            report
                .detail
                .extend(expect::tail(&boot.stderr, CONSOLE_TAIL_LINES));
        }
        report.detail.extend(host_detail);
    }
}

/// What is wrong with how `nanoimg run` ended, if anything: it must exit with
/// the case's expected status.
fn status_problem(sample: &Sample, options: &RunOptions, boot: &Boot) -> Option<String> {
    status_problem_for(sample.expected_status(), options, boot)
}

/// [`status_problem`] for a case expecting status `expected`.
pub(crate) fn status_problem_for(
    expected: i32,
    options: &RunOptions,
    boot: &Boot,
) -> Option<String> {
    let Some(status) = boot.status else {
        return Some(format!(
            "nanoimg run was still running {} s after its --timeout {}; stopped by the runner",
            boot::WATCHDOG_GRACE.as_secs(),
            options.timeout_secs
        ));
    };
    match status.code() {
        Some(code) if code == expected => None,
        Some(code) if code == endings::TIMEOUT_STATUS => Some(format!(
            "timed out after {} s (nanoimg run --timeout, exit status {code})",
            options.timeout_secs
        )),
        Some(code) => Some(format!(
            "nanoimg run exited with {code}, expected {expected}"
        )),
        None => Some(format!("nanoimg run ended by a signal ({status})")),
    }
}

/// Reads `nanoimg run`'s stderr of a boot without `--accel`: there must be
/// one line saying it boots with TCG (KVM does not work on every host); none
/// is fine only when KVM ran the guest. Returns the note to print, or the
/// problem.
fn kvm_fallback(stderr: &str, kvm_device: bool) -> Result<String, String> {
    match boot::tcg_fallback_lines(stderr).as_slice() {
        [line] => Ok(format!("KVM->TCG fallback: {line}")),
        [] if kvm_device => Ok("no TCG fallback line: KVM ran the guest".to_owned()),
        [] => Err("no /dev/kvm, but nanoimg run did not say that it boots with TCG".to_owned()),
        lines => Err(format!(
            "{} TCG fallback lines on nanoimg run's stderr, expected one: {lines:?}",
            lines.len()
        )),
    }
}

/// The `<program>.run.log` text: the command, its status and its stderr
/// (the console is in `<program>.console.log`).
pub(crate) fn run_log_text(boot: &Boot) -> String {
    let status = match boot.status {
        Some(status) => status.to_string(),
        None => "stopped by the runner's watchdog".to_owned(),
    };
    format!(
        "$ {}\nstatus: {status}\nelapsed: {:.1} s\n--- stderr ---\n{}\n",
        boot.command_line,
        boot.elapsed.as_secs_f64(),
        boot.stderr
    )
}

/// `nanoimg deps <program> --target-root <image>` for the dlopen case: with
/// no `Libraries` in a config, it must print the hint naming the plugin.
/// Returns whether it did; a problem is recorded in `report`.
fn check_deps_hint(
    sample: &Sample,
    program: &Path,
    nanoimg: &Path,
    work_dir: &Path,
    target_root: &str,
    report: &mut CaseReport,
) -> Result<bool> {
    let mut command = Command::new(nanoimg);
    command
        .current_dir(work_dir)
        .arg("deps")
        .arg(program.file_name().unwrap_or(program.as_os_str()))
        .arg("--target-root")
        .arg(target_root)
        .stdin(Stdio::null());
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let log = work_dir.join(format!("{}.deps.log", sample.program));
    fs::write(&log, command_log_text(&command, &output))
        .with_context(|| format!("writing {}", log.display()))?;
    report.artifacts.push(log);
    let hint = sysroot::plugin_hint();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let problem = if !output.status.success() {
        format!("nanoimg deps exited with {}", output.status)
    } else if let Some(line) = text.lines().find(|line| line.contains(&hint)) {
        println!("e2e: {} ... nanoimg deps: {}", sample.case, line.trim());
        return Ok(true);
    } else {
        format!("nanoimg deps printed no line containing {hint:?}")
    };
    report.problems.push(problem);
    report.detail.push(format!("$ {command:?}"));
    report.detail.extend(output_tail("nanoimg deps", &output));
    Ok(false)
}

/// `nanoimg build <program> -c <config> --kernel-dir <dir> -o <image>
/// [--uefi]` (a case using the sysroot image adds `--target-root IMAGE`), run in `work_dir`
/// with the program given by its bare file name, so `argv[0]` in the guest is exactly that name (ops semantics).
pub(crate) fn nanoimg_build_command(
    nanoimg: &Path,
    program: &Path,
    config: &Path,
    kernel_dir: &Path,
    image: &Path,
    work_dir: &Path,
    uefi: bool,
) -> Command {
    let mut command = Command::new(nanoimg);
    command
        .current_dir(work_dir)
        .arg("build")
        .arg(program.file_name().unwrap_or(program.as_os_str()))
        .arg("-c")
        .arg(config)
        .arg("--kernel-dir")
        .arg(kernel_dir)
        .arg("-o")
        .arg(image)
        .stdin(Stdio::null());
    if uefi {
        command.arg("--uefi");
    }
    command
}

/// The ops-format config for a case (`Program` is given on the command
/// line too; ops prepends it to `Args`, making it `argv[0]`).
fn ops_config(sample: &Sample) -> Value {
    match sample.scenario {
        Scenario::Hello | Scenario::Sysroot => hello_config(sample.program, sample.case),
        Scenario::GevulotProver => gevulot::config(),
        Scenario::DataVolume => volume::config(),
        Scenario::GuestFs => guestfs::config(),
        Scenario::ExitCode => endings::exit_code_config(),
        Scenario::PortForward => portfwd::config(),
        Scenario::Timeout => endings::timeout_config(),
        Scenario::Dlopen => json!({
            "Program": sample.program,
            "Libraries": [sysroot::PLUGIN_LIBRARY],
        }),
    }
}

/// The config of the cases that print their arguments and environment
/// ([`expect::expected_lines`]).
pub(crate) fn hello_config(program: &str, case: &str) -> Value {
    json!({
        "Args": expect::ARGS,
        "Env": {
            "GREETING": expect::GREETING,
            "E2E_CASE": case,
        },
        "Program": program,
    })
}

/// Sets up the host side of a case's boot (a shared folder, a data volume,
/// a free host port) and returns its `nanoimg run` options. `None` means a
/// setup step failed; the problem is recorded in `report`.
fn prepare_run(
    sample: &Sample,
    nanoimg: &Path,
    work_dir: &Path,
    timeout_secs: u64,
    report: &mut CaseReport,
) -> Result<Option<RunOptions>> {
    let mut options = RunOptions::new(sample.run_timeout_secs(timeout_secs));
    options.accel = sample.accel;
    options.bios = sample.needs_boot_bios();
    match sample.scenario {
        Scenario::Hello
        | Scenario::ExitCode
        | Scenario::Timeout
        | Scenario::Sysroot
        | Scenario::Dlopen => {}
        Scenario::GevulotProver => {
            options.gevulot_workspace = Some(gevulot::prepare_workspace(work_dir)?);
        }
        Scenario::DataVolume => {
            volume::prepare_source(work_dir)?;
            let volume_file = volume::volume_path(work_dir);
            let command = volume::create_command(nanoimg, work_dir);
            if !run_step(command, "nanoimg volume create", sample, work_dir, report)? {
                return Ok(None);
            }
            if !volume_file.is_file() {
                report.problems.push(format!(
                    "nanoimg volume create succeeded but wrote no {}",
                    volume_file.display()
                ));
                return Ok(None);
            }
            // Kept after the boot, so it holds what the guest wrote.
            report.artifacts.push(volume_file.clone());
            options.volumes.push(volume_file);
        }
        Scenario::GuestFs => {
            guestfs::prepare_source(work_dir)?;
            let volume_file = guestfs::volume_path(work_dir);
            let command = guestfs::create_command(nanoimg, work_dir);
            if !run_step(command, "nanoimg volume create", sample, work_dir, report)? {
                return Ok(None);
            }
            let image = work_dir.join(format!("{}.img", sample.program));
            guestfs::keep_before(&image)?;
            guestfs::keep_before(&volume_file)?;
            report.artifacts.push(volume_file.clone());
            report
                .artifacts
                .push(guestfs::write_expected_listing(work_dir)?);
            options.volumes.push(volume_file);
        }
        Scenario::PortForward => {
            options
                .ports
                .push((boot::free_port()?, portfwd::GUEST_PORT));
        }
    }
    Ok(Some(options))
}

/// Checks what the guest had to leave on the host after the boot, recording
/// problems in `report`.
fn check_host(
    sample: &Sample,
    nanoimg: &Path,
    work_dir: &Path,
    report: &mut CaseReport,
) -> Result<()> {
    match sample.scenario {
        Scenario::Hello
        | Scenario::ExitCode
        | Scenario::PortForward
        | Scenario::Timeout
        | Scenario::Sysroot
        | Scenario::Dlopen => {}
        Scenario::GevulotProver => report
            .problems
            .extend(gevulot::check_output(&gevulot::workspace(work_dir))),
        Scenario::DataVolume => {
            let command = volume::extract_command(nanoimg, work_dir);
            if run_step(command, "nanoimg extract", sample, work_dir, report)? {
                report.problems.extend(volume::check_extracted(work_dir));
            }
        }
        Scenario::GuestFs => {
            let image = work_dir.join(format!("{}.img", sample.program));
            for disk in [image, guestfs::volume_path(work_dir)] {
                report
                    .problems
                    .extend(guestfs::check(nanoimg, &disk, work_dir)?);
            }
        }
    }
    Ok(())
}

/// Runs one nanoimg command of a case besides the build, logging it to
/// `<program>.<step>.log`. Returns whether it succeeded; a failure is
/// recorded in `report` with the command's output.
fn run_step(
    mut command: Command,
    step: &str,
    sample: &Sample,
    work_dir: &Path,
    report: &mut CaseReport,
) -> Result<bool> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let log_name = format!(
        "{}.{}.log",
        sample.program,
        step.trim_start_matches("nanoimg ").replace(' ', "-")
    );
    let log = work_dir.join(log_name);
    fs::write(&log, command_log_text(&command, &output))
        .with_context(|| format!("writing {}", log.display()))?;
    report.artifacts.push(log);
    if output.status.success() {
        return Ok(true);
    }
    report
        .problems
        .push(format!("{step} exited with {}", output.status));
    report.detail.push(format!("$ {command:?}"));
    report.detail.extend(output_tail(step, &output));
    Ok(false)
}

pub(crate) fn command_log_text(command: &Command, output: &Output) -> String {
    format!(
        "$ {command:?}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The last lines of a command's stdout and stderr, labelled with `step`
/// (e.g. `nanoimg build`).
pub(crate) fn output_tail(step: &str, output: &Output) -> Vec<String> {
    let mut detail = Vec::new();
    for (label, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        if text.trim().is_empty() {
            detail.push(format!("--- {step} {label}: (empty) ---"));
            continue;
        }
        detail.push(format!("--- {step} {label} (last lines) ---"));
        detail.extend(expect::tail(&text, CONSOLE_TAIL_LINES));
    }
    detail
}

/// Builds the nanoimg CLI in release mode and returns the path of the
/// binary, as reported by cargo (normally `target/release/nanoimg`).
/// `task` prefixes the progress line (`e2e`, `bench`).
pub(crate) fn build_nanoimg(task: &str) -> Result<PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root()?;
    println!("{task}: building nanoimg (cargo build --release -p nanoimg)");
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "nanoimg",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Progress and diagnostics go straight to the user.
        .stderr(Stdio::inherit());
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "building nanoimg failed ({}); see the cargo output above",
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let binary = stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|message| nanoimg_executable(&message))
        .context("cargo built nanoimg but reported no nanoimg executable")?;
    if !binary.is_file() {
        bail!("cargo reported {} but it does not exist", binary.display());
    }
    Ok(binary)
}

/// The executable path from a cargo `compiler-artifact` message for the
/// `nanoimg` binary target, if `message` is one.
fn nanoimg_executable(message: &Value) -> Option<PathBuf> {
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let target = message.get("target")?;
    if target.get("name")?.as_str()? != "nanoimg" {
        return None;
    }
    let is_bin = target
        .get("kind")?
        .as_array()?
        .iter()
        .any(|kind| kind.as_str() == Some("bin"));
    if !is_bin {
        return None;
    }
    message.get("executable")?.as_str().map(PathBuf::from)
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

pub(crate) fn resolve_nanoimg_bin(path: &Path) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("--nanoimg-bin {} is not a file", path.display());
    }
    path.canonicalize()
        .with_context(|| format!("resolving --nanoimg-bin {}", path.display()))
}

/// Copies a case's files into the `--keep` folder.
pub(crate) fn keep_artifacts(artifacts: &[PathBuf], keep: &Path) -> Result<()> {
    for artifact in artifacts {
        let file_name = artifact
            .file_name()
            .with_context(|| format!("{} has no file name", artifact.display()))?;
        let target = keep.join(file_name);
        fs::copy(artifact, &target)
            .with_context(|| format!("copying {} to {}", artifact.display(), target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_ops_format() {
        let sample = &samples::SAMPLES[0];
        let config = ops_config(sample);
        assert_eq!(config["Args"], json!(["one", "two words"]));
        assert_eq!(config["Env"]["GREETING"], "hello nanos");
        assert_eq!(config["Env"]["E2E_CASE"], sample.case);
        assert_eq!(config["Program"], sample.program);
    }

    fn case(name: &str) -> &'static Sample {
        samples::SAMPLES
            .iter()
            .find(|sample| sample.case == name)
            .unwrap_or_else(|| panic!("no case {name}"))
    }

    #[test]
    fn gevulot_prover_uses_the_documented_manifest() {
        let config = ops_config(case("gevulot-prover"));
        assert_eq!(config["Program"], "prover");
        assert_eq!(config["Mounts"], json!({"%1": "/workspace"}));
        assert_eq!(
            config["ManifestPassthrough"],
            json!({"readonly_rootfs": "true"})
        );
        assert_eq!(
            config["Env"],
            json!({"RUST_BACKTRACE": "1", "RUST_LOG": "debug"})
        );
        assert_eq!(config["Args"], json!(["one", "two words"]));
    }

    fn command_line(command: &Command) -> Vec<String> {
        std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    fn build_command_for(sample: &Sample) -> Command {
        let work = Path::new("/w");
        nanoimg_build_command(
            Path::new("/bin/nanoimg"),
            &work.join(sample.program),
            &work.join(format!("{}.config.json", sample.program)),
            Path::new("/k"),
            &work.join(format!("{}.img", sample.program)),
            work,
            sample.uefi_image(),
        )
    }

    #[test]
    fn nanoimg_build_command_line() {
        let work = Path::new("/w");
        let command = build_command_for(case("gevulot-prover"));
        assert_eq!(
            command_line(&command),
            [
                "/bin/nanoimg",
                "build",
                "prover",
                "-c",
                "/w/prover.config.json",
                "--kernel-dir",
                "/k",
                "-o",
                "/w/prover.img",
            ]
        );
        assert_eq!(command.get_current_dir(), Some(work));
    }

    #[test]
    fn uefi_cases_build_with_the_uefi_flag() {
        for name in ["uefi-ovmf", "uefi-seabios"] {
            let sample = case(name);
            let line = command_line(&build_command_for(sample));
            assert_eq!(
                line,
                [
                    "/bin/nanoimg".to_owned(),
                    "build".to_owned(),
                    sample.program.to_owned(),
                    "-c".to_owned(),
                    format!("/w/{}.config.json", sample.program),
                    "--kernel-dir".to_owned(),
                    "/k".to_owned(),
                    "-o".to_owned(),
                    format!("/w/{}.img", sample.program),
                    "--uefi".to_owned(),
                ]
            );
            // The same hello config as the BIOS cases, with its own case name.
            let config = ops_config(sample);
            assert_eq!(config["Args"], json!(["one", "two words"]));
            assert_eq!(config["Env"]["E2E_CASE"], name);
        }
        for name in ["static-c", "gevulot-prover", "data-volume"] {
            let line = command_line(&build_command_for(case(name)));
            assert!(!line.iter().any(|arg| arg == "--uefi"), "{name}");
        }
    }

    #[test]
    fn data_volume_config_mounts_the_label() {
        assert_eq!(
            ops_config(case("data-volume")),
            json!({"Program": "volume", "Mounts": {"appdata": "/data"}})
        );
    }

    /// `prepare_run` for a case that runs no command, with a 60 s timeout.
    fn run_options_of(name: &str, work_dir: &Path) -> RunOptions {
        let mut report = CaseReport::default();
        let options = prepare_run(
            case(name),
            Path::new("/nonexistent/nanoimg"),
            work_dir,
            60,
            &mut report,
        )
        .expect("prepare_run")
        .expect("setup failed");
        assert!(report.passed(), "{:?}", report.problems);
        options
    }

    /// The whole `nanoimg run` command line of a case booting `<work>/<program>.img`.
    fn run_line(name: &str, options: &RunOptions, work_dir: &Path) -> Vec<String> {
        let image = work_dir.join(format!("{}.img", case(name).program));
        boot::command_line(&boot::command(Path::new("/bin/nanoimg"), &image, options))
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn nanoimg_run_command_line_per_case() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path();
        let w = work.to_str().expect("utf-8 temp path");
        let line = |name: &str| run_line(name, &run_options_of(name, work), work);

        // Without --accel: nanoimg run's KVM attempt and TCG fallback.
        assert_eq!(
            line("static-c"),
            strings(&[
                "/bin/nanoimg",
                "run",
                &format!("{w}/hello_static.img"),
                "--timeout",
                "60"
            ])
        );
        // The image has an EFI System Partition, so UEFI is nanoimg run's default.
        for (name, program) in [
            ("static-rust", "hello_rust"),
            ("dynamic-c", "hello_dynamic"),
            ("dynamic-cpp", "hello_cpp"),
            ("dynamic-rust", "hello_rust_dynamic"),
            ("uefi-ovmf", "hello_uefi_ovmf"),
            ("exit-code", "exit_code"),
        ] {
            assert_eq!(
                line(name),
                strings(&[
                    "/bin/nanoimg",
                    "run",
                    &format!("{w}/{program}.img"),
                    "--accel",
                    "tcg",
                    "--timeout",
                    "60"
                ]),
                "{name}"
            );
        }
        assert_eq!(
            line("uefi-seabios"),
            strings(&[
                "/bin/nanoimg",
                "run",
                &format!("{w}/hello_uefi_seabios.img"),
                "--accel",
                "tcg",
                "--timeout",
                "60",
                "--boot",
                "bios"
            ])
        );
        assert_eq!(
            line("gevulot-prover"),
            strings(&[
                "/bin/nanoimg",
                "run",
                &format!("{w}/prover.img"),
                "--accel",
                "tcg",
                "--timeout",
                "60",
                "--gevulot",
                "--workspace",
                &format!("{w}/workspace")
            ])
        );
        assert!(work.join("workspace/input").is_file());
        // Its own --timeout, whatever the runner's.
        assert_eq!(
            line("timeout"),
            strings(&[
                "/bin/nanoimg",
                "run",
                &format!("{w}/looper.img"),
                "--accel",
                "tcg",
                "--timeout",
                "5"
            ])
        );
        let options = run_options_of("port-forward", work);
        let [(host_port, 8080)] = options.ports[..] else {
            panic!("ports {:?}", options.ports);
        };
        assert_ne!(host_port, 0);
        assert_eq!(
            run_line("port-forward", &options, work),
            strings(&[
                "/bin/nanoimg",
                "run",
                &format!("{w}/portfwd.img"),
                "--accel",
                "tcg",
                "--timeout",
                "60",
                "-p",
                &format!("{host_port}:8080")
            ])
        );
    }

    #[test]
    fn expected_statuses() {
        for sample in samples::SAMPLES {
            let expected = match sample.case {
                "exit-code" => 3,
                "timeout" => 124,
                _ => 0,
            };
            assert_eq!(sample.expected_status(), expected, "{}", sample.case);
        }
        assert_eq!(
            ops_config(case("exit-code"))["ManifestPassthrough"],
            json!({"debug_exit": "t"})
        );
    }

    #[cfg(unix)]
    #[test]
    fn status_must_be_the_expected_one() {
        use std::os::unix::process::ExitStatusExt;
        let boot_with = |status: Option<i32>| Boot {
            status: status.map(|code| std::process::ExitStatus::from_raw(code << 8)),
            console: String::new(),
            stderr: String::new(),
            elapsed: Duration::from_secs(1),
            command_line: String::new(),
        };
        let options = RunOptions::new(60);
        let hello = case("static-c");
        assert_eq!(status_problem(hello, &options, &boot_with(Some(0))), None);
        assert_eq!(
            status_problem(hello, &options, &boot_with(Some(1))).as_deref(),
            Some("nanoimg run exited with 1, expected 0")
        );
        assert_eq!(
            status_problem(hello, &options, &boot_with(Some(124))).as_deref(),
            Some("timed out after 60 s (nanoimg run --timeout, exit status 124)")
        );
        assert!(status_problem(hello, &options, &boot_with(None))
            .is_some_and(|p| p.contains("stopped by the runner")));
        let exit_code = case("exit-code");
        assert_eq!(
            status_problem(exit_code, &options, &boot_with(Some(3))),
            None
        );
        assert_eq!(
            status_problem(exit_code, &options, &boot_with(Some(0))).as_deref(),
            Some("nanoimg run exited with 0, expected 3")
        );
        let timeout = case("timeout");
        assert_eq!(
            status_problem(timeout, &options, &boot_with(Some(124))),
            None
        );
    }

    #[test]
    fn kvm_fallback_wants_one_line() {
        let line = "nanoimg: KVM cannot run this guest here (qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69); booting with TCG instead (slower; --accel tcg skips the attempt)";
        let stderr = format!("{line}\nnanoimg: the VM powered off\n");
        assert_eq!(
            kvm_fallback(&stderr, true),
            Ok(format!("KVM->TCG fallback: {line}"))
        );
        assert!(kvm_fallback("", true).is_ok());
        assert!(kvm_fallback("", false).is_err());
        assert!(kvm_fallback(&format!("{line}\n{line}\n"), true).is_err());
    }

    #[test]
    fn host_checks_per_case() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nanoimg = Path::new("/nonexistent/nanoimg");
        for name in ["static-c", "uefi-ovmf", "uefi-seabios"] {
            let mut report = CaseReport::default();
            check_host(case(name), nanoimg, dir.path(), &mut report).expect("check_host");
            assert!(report.passed(), "{name}: {:?}", report.problems);
        }

        gevulot::prepare_workspace(dir.path()).expect("workspace");
        let mut report = CaseReport::default();
        check_host(case("gevulot-prover"), nanoimg, dir.path(), &mut report).expect("check");
        // The guest never ran, so the output file is missing.
        assert_eq!(report.problems.len(), 1);
    }

    /// A stand-in for nanoimg: a shell script running `body`.
    #[cfg(unix)]
    fn fake_nanoimg(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-nanoimg");
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write fake nanoimg");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[cfg(unix)]
    #[test]
    fn data_volume_setup_failures_fail_the_case() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sample = case("data-volume");

        let failing = fake_nanoimg(dir.path(), "echo 'no such command: volume' >&2; exit 3");
        let mut report = CaseReport::default();
        let options = prepare_run(sample, &failing, dir.path(), 60, &mut report)
            .expect("a failing step is not a runner error");
        assert_eq!(options, None);
        assert_eq!(report.problems.len(), 1);
        assert!(
            report.problems[0].starts_with("nanoimg volume create exited with"),
            "{:?}",
            report.problems
        );
        assert!(report
            .detail
            .iter()
            .any(|line| line == "no such command: volume"));
        assert!(dir.path().join("volume.volume-create.log").is_file());
        assert!(dir.path().join("voldata/hello.txt").is_file());

        let silent = fake_nanoimg(dir.path(), "exit 0");
        let mut report = CaseReport::default();
        let options =
            prepare_run(sample, &silent, dir.path(), 60, &mut report).expect("prepare_run");
        assert_eq!(options, None);
        assert!(
            report.problems[0].contains("wrote no"),
            "{:?}",
            report.problems
        );

        // Writes the file named after -o, as the real command does.
        let writing = fake_nanoimg(
            dir.path(),
            "while [ \"$1\" != -o ]; do shift; done; echo vol > \"$2\"",
        );
        let mut report = CaseReport::default();
        let options = prepare_run(sample, &writing, dir.path(), 60, &mut report)
            .expect("prepare_run")
            .expect("setup failed");
        assert!(report.passed(), "{:?}", report.problems);
        let volume = volume::volume_path(dir.path());
        let w = dir.path().to_str().expect("utf-8 temp path");
        assert_eq!(
            run_line("data-volume", &options, dir.path()),
            strings(&[
                "/bin/nanoimg",
                "run",
                &format!("{w}/volume.img"),
                "--accel",
                "tcg",
                "--timeout",
                "60",
                "--volume",
                &format!("{w}/data.vol")
            ])
        );
        assert!(report.artifacts.contains(&volume));
    }

    #[cfg(unix)]
    #[test]
    fn guest_fs_boots_with_its_volume() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("guestfs.img"), b"image").expect("write image");
        let writing = fake_nanoimg(
            dir.path(),
            "while [ \"$1\" != -o ]; do shift; done; echo vol > \"$2\"",
        );
        let mut report = CaseReport::default();
        let options = prepare_run(case("guest-fs"), &writing, dir.path(), 60, &mut report)
            .expect("prepare_run")
            .expect("setup failed");
        assert!(report.passed(), "{:?}", report.problems);
        let w = dir.path().to_str().expect("utf-8 temp path");
        assert_eq!(
            run_line("guest-fs", &options, dir.path()),
            strings(&[
                "/bin/nanoimg",
                "run",
                &format!("{w}/guestfs.img"),
                "--accel",
                "tcg",
                "--timeout",
                "60",
                "--volume",
                &format!("{w}/guestfs-data.vol")
            ])
        );
        assert!(dir.path().join("guestfs.img.before").is_file());
        assert!(dir.path().join("guestfs-data.vol.before").is_file());
    }

    #[cfg(unix)]
    #[test]
    fn data_volume_host_check_extracts_the_volume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sample = case("data-volume");

        let failing = fake_nanoimg(dir.path(), "echo 'not a TFS volume' >&2; exit 1");
        let mut report = CaseReport::default();
        check_host(sample, &failing, dir.path(), &mut report).expect("check_host");
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].starts_with("nanoimg extract exited with"));
        assert!(report.detail.iter().any(|line| line == "not a TFS volume"));

        // `extract VOLUME DIR` producing a volume without the guest's file.
        let empty = fake_nanoimg(dir.path(), "mkdir -p \"$3\"");
        let mut report = CaseReport::default();
        check_host(sample, &empty, dir.path(), &mut report).expect("check_host");
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].contains("from-guest.txt"));

        let good = fake_nanoimg(
            dir.path(),
            "mkdir -p \"$3\" && echo written-by-guest > \"$3/from-guest.txt\"",
        );
        let mut report = CaseReport::default();
        check_host(sample, &good, dir.path(), &mut report).expect("check_host");
        assert!(report.passed(), "{:?}", report.problems);
    }

    #[test]
    fn finds_nanoimg_executable_in_cargo_messages() {
        let message = json!({
            "reason": "compiler-artifact",
            "target": {"name": "nanoimg", "kind": ["bin"]},
            "executable": "/x/target/release/nanoimg",
        });
        assert_eq!(
            nanoimg_executable(&message),
            Some(PathBuf::from("/x/target/release/nanoimg"))
        );
        let lib = json!({
            "reason": "compiler-artifact",
            "target": {"name": "nanoimg", "kind": ["lib"]},
            "executable": null,
        });
        assert_eq!(nanoimg_executable(&lib), None);
    }

    #[test]
    fn exit_code_needs_a_pass_and_no_failure() {
        let nothing = Summary {
            passed: 0,
            failed: 0,
        };
        assert_eq!(nothing.exit_code(), ExitCode::from(EXIT_NOT_RUN));
        let failed = Summary {
            passed: 2,
            failed: 1,
        };
        assert_eq!(failed.exit_code(), ExitCode::from(EXIT_FAILED));
        let passed = Summary {
            passed: 2,
            failed: 0,
        };
        assert_eq!(passed.exit_code(), ExitCode::SUCCESS);
    }
}
