//! `cargo xtask e2e`: the one runner of the cases in `xtask/cases/` (format: case.rs).
//!
//! For every variant of every case (architecture × disk format, see dims.rs), in its own
//! folder of a temporary work directory: write the case's files and `config.json`,
//! compile its program, `nanoimg build` the image (or, with `run.program`, let `nanoimg
//! run PROGRAM` build it), run the `after-build` steps, check `nanoimg run
//! --print-command` when there are QEMU expectations, boot the image with `nanoimg run
//! IMAGE --accel tcg --timeout N` (the product's own QEMU command line is what gets
//! tested), then check the exit status, the console (its stdout), its stderr, the
//! `after-boot` steps, the files left in the case folder and the named checks.

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::boot::{self, Boot};
use crate::case::{self, Accel, Check, Variant, Vars, When};
use crate::checks;
use crate::dims::{self, Arch};
use crate::expect;
use crate::fixtures::{self, Fixtures};
use crate::prereq;
use crate::samples;

/// Exit status when a case failed or the runner hit an error.
pub const EXIT_FAILED: u8 = 1;
/// Exit status when nothing was tested (missing prerequisites, no case).
pub const EXIT_NOT_RUN: u8 = 2;

/// Output lines shown under a failure.
const TAIL_LINES: usize = 40;

/// Last stdout line of a successful `nanoimg build`.
const IMAGE_MARKER: &str = "Bootable image file:";

/// Environment variable that supplies a default for `--arm64-kernel-dir`.
const ARM64_KERNEL_DIR_ENV: &str = "NANOIMG_E2E_ARM64_KERNEL_DIR";

#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// Nanos release folder containing kernel.img and boot.img
    /// [default: $NANOIMG_E2E_KERNEL_DIR]
    #[arg(long, value_name = "DIR")]
    pub kernel_dir: Option<PathBuf>,

    /// Copy every case's folder (image, config, console and command logs) into DIR/CASE
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,

    /// `nanoimg run --timeout N` for every boot whose case sets none
    #[arg(long, value_name = "N", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,

    /// Use this nanoimg binary instead of building one with
    /// `cargo build --release -p nanoimg`
    #[arg(long, value_name = "PATH")]
    pub nanoimg_bin: Option<PathBuf>,

    /// Unpacked arm64 Nanos release (a nanos-release-linux-<v>-virt tarball) for the
    /// arm64-* cases; without it (or --skip-arm64) they fail
    /// [default: $NANOIMG_E2E_ARM64_KERNEL_DIR]
    #[arg(long, value_name = "DIR")]
    pub arm64_kernel_dir: Option<PathBuf>,

    /// Do not run the arm64-* cases (one line says they were skipped)
    #[arg(long, conflicts_with = "arm64_kernel_dir")]
    pub skip_arm64: bool,

    /// Run only this case (a name as reported, e.g. arm64-static-c); repeatable
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,

    /// Read the case files from DIR [default: xtask/cases]
    #[arg(long, value_name = "DIR")]
    pub cases_dir: Option<PathBuf>,
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

/// What every case of a run shares.
struct Env {
    nanoimg: PathBuf,
    work: PathBuf,
    timeout_secs: u64,
    x86_kernel: PathBuf,
    arm64_kernel: Result<PathBuf, String>,
}

/// Runs the e2e test. Missing prerequisites come back as an error carrying
/// [`prereq::MissingPrerequisites`].
pub fn run(args: &E2eArgs) -> Result<Summary> {
    let x86_kernel = prereq::check(args.kernel_dir.as_deref())?;
    let cases_dir = args
        .cases_dir
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("cases"));
    let cases = case::load_dir(&cases_dir)?;
    let variants = select(args, &cases_dir, case::expand(&cases)?)?;
    let arm64_kernel = arm64_kernel(args);
    let work = tempfile::Builder::new()
        .prefix("nanoimg-e2e-")
        .tempdir()
        .context("creating the work directory")?;
    println!("e2e: kernel folder {}", x86_kernel.display());
    match &arm64_kernel {
        Ok(dir) => println!("e2e: arm64 kernel folder {}", dir.display()),
        Err(e) if variants.iter().any(|v| v.arch == Arch::Arm64) => {
            eprintln!("e2e: THE ARM64 CASES WILL FAIL: {e}")
        }
        Err(_) => {}
    }
    println!("e2e: work directory {}", work.path().display());
    let nanoimg = match &args.nanoimg_bin {
        Some(path) => resolve_nanoimg_bin(path)?,
        None => build_nanoimg("e2e")?,
    };
    println!("e2e: using {}", nanoimg.display());
    let env = Env {
        nanoimg,
        work: work.path().to_path_buf(),
        timeout_secs: args.timeout_secs,
        x86_kernel,
        arm64_kernel,
    };
    let summary = run_all(&env, &variants, args.keep.as_deref())?;
    print_summary(&summary, args.keep.as_deref());
    Ok(summary)
}

/// The variants `--case` names (all of them without one), less the arm64 ones with
/// `--skip-arm64`.
fn select<'a>(
    args: &E2eArgs,
    cases_dir: &Path,
    mut variants: Vec<Variant<'a>>,
) -> Result<Vec<Variant<'a>>> {
    for name in &args.cases {
        if !variants.iter().any(|v| &v.name == name) {
            bail!("--case {name}: no such case in {}", cases_dir.display());
        }
    }
    variants.retain(|v| args.cases.is_empty() || args.cases.contains(&v.name));
    if args.skip_arm64 {
        let (arm64, rest): (Vec<_>, Vec<_>) =
            variants.into_iter().partition(|v| v.arch == Arch::Arm64);
        let names: Vec<_> = arm64.iter().map(|v| v.name.as_str()).collect();
        println!(
            "e2e: arm64 cases skipped (--skip-arm64): {}",
            names.join(", ")
        );
        variants = rest;
    }
    Ok(variants)
}

/// The arm64 kernel folder (`--arm64-kernel-dir`, else [`ARM64_KERNEL_DIR_ENV`]), checked;
/// or why there is none.
fn arm64_kernel(args: &E2eArgs) -> Result<PathBuf, String> {
    match prereq::dir_or_env(args.arm64_kernel_dir.as_deref(), ARM64_KERNEL_DIR_ENV) {
        None => Err("no arm64 kernel folder: give --arm64-kernel-dir DIR (an unpacked nanos-release-linux-<v>-virt tarball) or --skip-arm64".to_owned()),
        Some(dir) => dims::check_arm64_kernel_dir(&dir),
    }
}

fn run_all(env: &Env, variants: &[Variant], keep: Option<&Path>) -> Result<Summary> {
    let mut summary = Summary::default();
    let mut fixtures = Fixtures::default();
    for variant in variants {
        let dir = env.work.join(&variant.name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut report = CaseReport::default();
        run_variant(env, &mut fixtures, variant, &dir, &mut report)?;
        report.print(&variant.name);
        if let Some(keep) = keep {
            keep_folder(&dir, &keep.join(&variant.name))?;
        }
        if report.problems.is_empty() {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
    }
    Ok(summary)
}

fn print_summary(summary: &Summary, keep: Option<&Path>) {
    println!("e2e: {} passed, {} failed", summary.passed, summary.failed);
    if let Some(keep) = keep {
        println!("e2e: images and logs kept in {}", keep.display());
    } else if summary.failed > 0 {
        println!("e2e: re-run with --keep DIR (and --case NAME) to keep the images and logs");
    }
    if summary.failed > 0 {
        eprintln!("e2e: FAILED — {} case(s) failed", summary.failed);
    } else if summary.passed == 0 {
        eprintln!("e2e: NOTHING WAS TESTED — no case ran");
    }
}

/// Result of one case.
#[derive(Debug, Default)]
struct CaseReport {
    build: Option<Duration>,
    boot: Option<Duration>,
    /// Why the case failed; empty means it passed.
    problems: Vec<String>,
    /// Output shown under a failure.
    detail: Vec<String>,
}

impl CaseReport {
    fn print(&self, case: &str) {
        let timings: Vec<String> = [
            self.build.map(|b| format!("build {} ms", b.as_millis())),
            self.boot.map(|b| format!("boot {:.1} s", b.as_secs_f64())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let timings = if timings.is_empty() {
            String::new()
        } else {
            format!(" ({})", timings.join(", "))
        };
        match self.problems.split_first() {
            None => println!("e2e: {case} ... PASS{timings}"),
            Some((first, rest)) => {
                println!("e2e: {case} ... FAIL: {first}{timings}");
                rest.iter().for_each(|p| println!("    also: {p}"));
                self.detail.iter().for_each(|l| println!("    | {l}"));
            }
        }
    }

    /// Records `problems` with `output` (of `step`) as detail; whether there were none.
    fn fail_with(&mut self, problems: Vec<String>, step: &str, output: &Output) -> bool {
        if problems.is_empty() {
            return true;
        }
        self.problems.extend(problems);
        self.detail.extend(output_tail(step, output));
        false
    }
}

/// Runs one variant, recording what went wrong in `report`.
fn run_variant(
    env: &Env,
    fixtures: &mut Fixtures,
    v: &Variant,
    dir: &Path,
    report: &mut CaseReport,
) -> Result<()> {
    let Some(ctx) = prepare(env, fixtures, v, dir, report)? else {
        return Ok(());
    };
    if !v.case.run.program && !ctx.build(report)? {
        return Ok(());
    }
    for step in v.case.steps.iter().filter(|s| s.when == When::AfterBuild) {
        if !ctx.run_step(&step.args, &step.output, report)? {
            return Ok(());
        }
    }
    if !v.case.expect.inspect.is_empty() {
        let args = ["inspect".to_owned(), ctx.image.display().to_string()];
        if !ctx.run_step(&args, &v.case.expect.inspect, report)? {
            return Ok(());
        }
    }
    if !ctx.check_qemu_line(report)? {
        return Ok(());
    }
    for check in &v.case.expect.checks {
        if let Check::GuestFs(disks) = check {
            for disk in ctx.vars.subst_all(disks)? {
                let disk = dir.join(disk);
                fs::copy(&disk, checks::before(&disk))
                    .with_context(|| format!("copying {}", disk.display()))?;
            }
        }
    }
    let boot = ctx.boot_and_exchange(report)?;
    ctx.check_boot(&boot, report)?;
    if report.problems.is_empty() {
        ctx.after_boot(&boot, report)?;
    }
    add_boot_detail(report, &boot);
    Ok(())
}

/// What a variant's commands are made of, once its folder is prepared.
struct Ctx<'a> {
    env: &'a Env,
    v: &'a Variant<'a>,
    dir: PathBuf,
    vars: Vars,
    kernel: PathBuf,
    image: PathBuf,
    target_root: Option<String>,
    from_image: Option<String>,
    config: Option<PathBuf>,
}

/// Writes the case's files and config, makes its fixtures and compiles its program.
/// `None` when that failed (recorded in `report`).
fn prepare<'a>(
    env: &'a Env,
    fixtures: &mut Fixtures,
    v: &'a Variant,
    dir: &Path,
    report: &mut CaseReport,
) -> Result<Option<Ctx<'a>>> {
    let case = v.case;
    let Some(kernel) = recorded(report, kernel(env, v.arch)) else {
        return Ok(None);
    };
    let image = dir.join(format!("{}.{}", v.name, v.format.ext));
    let port = boot::free_port()?;
    fixtures::write_files(dir, &case.files)?;
    let root = case
        .build
        .target_root
        .map(|f| fixtures.target_root(f, &env.work));
    let Some(target_root) = recorded(report, root.transpose()) else {
        return Ok(None);
    };
    let program = case.program.as_ref().map(|p| p.name.clone());
    let vars = Vars(BTreeMap::from([
        ("case", v.name.clone()),
        ("dir", dir.display().to_string()),
        ("image", image.display().to_string()),
        ("format", v.format.name.to_owned()),
        ("program", program.unwrap_or_default()),
        ("port", port.to_string()),
        ("target_root", target_root.clone().unwrap_or_default()),
    ]));
    let config = match &case.config {
        None => None,
        Some(config) => {
            let path = dir.join("config.json");
            fs::write(&path, serde_json::to_vec_pretty(&vars.config(config)?)?)?;
            Some(path)
        }
    };
    let compiled = match &case.program {
        None => None,
        Some(_) if !compile(v, dir, report)? => return Ok(None),
        Some(p) => Some(dir.join(&p.name)),
    };
    let image_of = |spec: &case::Image| fixtures.image(spec, compiled.as_deref(), &env.work);
    let Some(from_image) = recorded(report, case.image.as_ref().map(image_of).transpose()) else {
        return Ok(None);
    };
    let dir = dir.to_path_buf();
    Ok(Some(Ctx {
        env,
        v,
        dir,
        vars,
        kernel,
        image,
        target_root,
        from_image,
        config,
    }))
}

/// The kernel folder an `arch` variant boots, or why it cannot boot.
fn kernel(env: &Env, arch: Arch) -> Result<PathBuf, String> {
    if arch == Arch::X86_64 {
        return Ok(env.x86_kernel.clone());
    }
    let dir = env.arm64_kernel.clone()?;
    match prereq::find_on_path(arch.qemu()) {
        Some(_) => Ok(dir),
        None => Err(format!("`{}` not found on PATH — nanoimg run boots arm64 images with it (Debian/Ubuntu: apt-get install qemu-system-arm)", arch.qemu())),
    }
}

/// The value of `result`, or `None` with its error recorded in `report`.
fn recorded<T>(report: &mut CaseReport, result: Result<T, String>) -> Option<T> {
    result.map_err(|problem| report.problems.push(problem)).ok()
}

/// Compiles the variant's program in `dir`; whether it worked (else recorded).
fn compile(v: &Variant, dir: &Path, report: &mut CaseReport) -> Result<bool> {
    let Some(program) = &v.case.program else {
        return Ok(true);
    };
    samples::write_sources(dir)?;
    let cross =
        prereq::find_on_path(dims::CROSS_GCC).unwrap_or_else(|| PathBuf::from(dims::CROSS_GCC));
    let mut command =
        v.arch
            .compile_command(program.build, &cross, &program.name, &program.source)?;
    command.current_dir(dir);
    let output = fixtures::output(&mut command)?;
    if output.status.success() && dir.join(&program.name).is_file() {
        return Ok(true);
    }
    let problem = format!(
        "cannot compile {}: {command:?} failed with {} ({})",
        program.source,
        output.status,
        v.arch.compile_hint(program.build)
    );
    report.fail_with(vec![problem], "compiler", &output);
    Ok(false)
}

impl Ctx<'_> {
    /// `nanoimg` run in the case folder, with the run's own cache.
    fn nanoimg(&self) -> Command {
        let mut command = Command::new(&self.env.nanoimg);
        command
            .current_dir(&self.dir)
            .env("NANOIMG_CACHE", self.env.work.join("cache"))
            .stdin(Stdio::null());
        command
    }

    /// `nanoimg run --timeout`: the case's, else the runner's.
    fn timeout(&self) -> u64 {
        self.v.case.run.timeout.unwrap_or(self.env.timeout_secs)
    }

    /// The arguments that say what to build: `[PROGRAM] [-c CONFIG] --kernel-dir K -o
    /// IMAGE [--from-image L:T] [--target-root R] [--format F]`, then the case's build
    /// flags.
    fn build_args(&self, config: Option<&Path>, image: &Path) -> Result<Vec<String>> {
        let (case, v) = (self.v.case, self.v);
        let mut args = Vec::new();
        if let (None, Some(program)) = (&case.image, &case.program) {
            args.push(program.name.clone());
        }
        if let Some(config) = config {
            args.extend(["-c".to_owned(), config.display().to_string()]);
        }
        args.extend(["--kernel-dir".to_owned(), self.kernel.display().to_string()]);
        args.extend(["-o".to_owned(), image.display().to_string()]);
        if let Some(image) = &self.from_image {
            args.extend(["--from-image".to_owned(), image.clone()]);
        }
        if let Some(root) = &self.target_root {
            args.extend(["--target-root".to_owned(), root.clone()]);
        }
        if v.format.name != "raw" {
            args.extend(["--format".to_owned(), v.format.name.to_owned()]);
        }
        if let Some(program) = &case.program {
            args.extend(v.arch.dynamic_build(program.build).0);
        }
        args.extend(self.vars.subst_all(&case.build.flags)?);
        Ok(args)
    }

    /// `nanoimg build`; whether it wrote the image and printed what it must (else
    /// recorded).
    fn build(&self, report: &mut CaseReport) -> Result<bool> {
        let mut command = self.nanoimg();
        command
            .arg("build")
            .args(self.build_args(self.config.as_deref(), &self.image)?);
        let started = Instant::now();
        let output = fixtures::output(&mut command)?;
        report.build = Some(started.elapsed());
        println!(
            "e2e: {} ... nanoimg build took {} ms",
            self.v.name,
            started.elapsed().as_millis()
        );
        log_command(&self.dir.join("build.log"), &command, &output)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut problems = Vec::new();
        if !output.status.success() {
            problems.push(format!("nanoimg build exited with {}", output.status));
        } else if !stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_start().starts_with(IMAGE_MARKER))
        {
            problems.push(format!(
                "nanoimg build did not print \"{IMAGE_MARKER}<path>\" as its last stdout line"
            ));
        } else if !self.image.is_file() {
            problems.push(format!(
                "nanoimg build succeeded but wrote no {}",
                self.image.display()
            ));
        }
        if !report.fail_with(problems, "nanoimg build", &output) {
            return Ok(false);
        }
        let problems = self.build_stderr_problems(&String::from_utf8_lossy(&output.stderr))?;
        Ok(report.fail_with(problems, "nanoimg build", &output))
    }

    /// What a successful `nanoimg build`'s `stderr` lacks: the case's lines, a dynamic
    /// arm64 program's packed lines, the `packed-from-image` files.
    fn build_stderr_problems(&self, stderr: &str) -> Result<Vec<String>> {
        let case = self.v.case;
        let mut lines = self.vars.subst_all(&case.expect.build_stderr)?;
        if let Some(program) = &case.program {
            lines.extend(self.v.arch.dynamic_build(program.build).1);
        }
        let mut problems = lines_problems(&self.v.name, "nanoimg build stderr", stderr, &lines);
        for check in &case.expect.checks {
            if let Check::PackedFromImage(names) = check {
                problems.extend(checks::packed_from_image(stderr, names));
            }
        }
        Ok(problems)
    }

    /// A step: `nanoimg ARGS` must succeed and print `output`; whether it did (else
    /// recorded).
    fn run_step(
        &self,
        args: &[String],
        output: &[String],
        report: &mut CaseReport,
    ) -> Result<bool> {
        let args = self.vars.subst_all(args)?;
        let mut command = self.nanoimg();
        command.args(&args);
        let out = fixtures::output(&mut command)?;
        let step = format!(
            "nanoimg {}",
            args.first().map(String::as_str).unwrap_or_default()
        );
        let log = self.dir.join(format!("{}.log", step.replace(' ', "-")));
        log_command(&log, &command, &out)?;
        if !out.status.success() {
            let problem = format!("{step} exited with {}", out.status);
            return Ok(report.fail_with(vec![problem], &step, &out));
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let problems = lines_problems(&self.v.name, &step, &text, &self.vars.subst_all(output)?);
        Ok(report.fail_with(problems, &step, &out))
    }

    /// The `nanoimg run` command for the case's image (or, with `run.program`, for its
    /// program with `config`, writing `image`).
    fn run_command(&self, config: Option<&Path>, image: &Path) -> Result<Command> {
        let run = &self.v.case.run;
        let mut command = self.nanoimg();
        command.arg("run");
        if run.program {
            command.args(self.build_args(config, image)?);
        } else {
            command.arg(image);
        }
        if run.accel == Accel::Tcg || !self.v.arch.tries_kvm() {
            command.args(["--accel", "tcg"]);
        }
        command.arg("--timeout").arg(self.timeout().to_string());
        command.args(self.vars.subst_all(&run.flags)?);
        Ok(command)
    }

    /// `nanoimg run --print-command` against the case's, the architecture's and the
    /// format's QEMU expectations (when there are any); whether it matched (else recorded).
    fn check_qemu_line(&self, report: &mut CaseReport) -> Result<bool> {
        let v = self.v;
        let uefi = v.case.build.flags.iter().any(|f| f == "--uefi");
        let mut want = v.arch.qemu_expect(uefi);
        let case = &v.case.expect.qemu;
        want.args.extend(self.vars.subst_all(&case.args)?);
        want.no_args.extend(self.vars.subst_all(&case.no_args)?);
        want.parts.extend(self.vars.subst_all(&case.parts)?);
        want.parts
            .extend(v.format.qemu_parts.iter().map(|p| p.to_string()));
        if want.is_empty() {
            return Ok(true);
        }
        let mut command = self.run_command(self.config.as_deref(), &self.image)?;
        command.arg("--print-command");
        if v.format.boots_converted {
            // The printed command boots the converted raw image: it is kept there.
            command.arg("-o").arg(self.dir.join("print-command.img"));
        }
        let output = fixtures::output(&mut command)?;
        let printed = String::from_utf8_lossy(&output.stdout);
        let args: Vec<&str> = printed.lines().map(str::trim).collect();
        let mut problems = Vec::new();
        if !output.status.success() {
            problems.push(format!(
                "nanoimg run --print-command exited with {}",
                output.status
            ));
        }
        problems.extend(want.problems(&args));
        Ok(report.fail_with(problems, "nanoimg run --print-command", &output))
    }

    /// Boots the case with its console in `console.log`, talking to it meanwhile when it
    /// has a `port-forward` check.
    fn boot_and_exchange(&self, report: &mut CaseReport) -> Result<Boot> {
        let command = self.run_command(self.config.as_deref(), &self.image)?;
        let mut running = boot::start(command, &self.dir.join("console.log"))?;
        for check in &self.v.case.expect.checks {
            if let Check::PortForward { send, reply } = check {
                self.exchange(&mut running, send, reply, report)?;
            }
        }
        let boot = self.finish(running, "")?;
        report.boot = Some(boot.elapsed);
        Ok(boot)
    }

    /// `port-forward`: sends `send` to the forwarded port while the VM runs; `reply` must
    /// come back.
    fn exchange(
        &self,
        running: &mut boot::Running,
        send: &str,
        reply: &str,
        report: &mut CaseReport,
    ) -> Result<()> {
        let port: u16 = self.vars.0["port"].parse()?;
        let deadline = Instant::now() + Duration::from_secs(self.timeout());
        let (got, attempts) = checks::exchange(port, send, deadline, &mut || {
            running.has_exited().unwrap_or(true)
        });
        match got {
            Ok(got) if got == reply => println!(
                "e2e: {} ... 127.0.0.1:{port} replied {got:?} (connection {attempts})",
                self.v.name
            ),
            Ok(got) => report.problems.push(format!(
                "127.0.0.1:{port} replied {got:?}, expected {reply:?}"
            )),
            Err(e) => report.problems.push(format!(
                "no reply on 127.0.0.1:{port} after {attempts} connection(s) (last: {e})"
            )),
        }
        Ok(())
    }

    /// Waits for a boot (the watchdog a grace after its timeout) and writes
    /// `{prefix}run.log`.
    fn finish(&self, running: boot::Running, prefix: &str) -> Result<Boot> {
        let watchdog = Duration::from_secs(self.timeout()) + boot::WATCHDOG_GRACE;
        let boot = running.finish(watchdog)?;
        fs::write(
            self.dir.join(format!("{prefix}run.log")),
            run_log_text(&boot),
        )?;
        Ok(boot)
    }

    /// The exit status, time, console and stderr lines, and KVM fallback of a boot.
    fn check_boot(&self, boot: &Boot, report: &mut CaseReport) -> Result<()> {
        let (v, expect) = (self.v, &self.v.case.expect);
        let problems = &mut report.problems;
        problems.extend(status_problem(expect.status, self.timeout(), boot));
        if let Some(max) = expect.max_boot_secs {
            if boot.elapsed > Duration::from_secs(max) {
                problems.push(format!(
                    "the boot took {:.1} s (more than {max} s)",
                    boot.elapsed.as_secs_f64()
                ));
            }
        }
        let console = self.vars.subst_all(&expect.console)?;
        for missing in expect::missing_lines(&boot.console, &console) {
            problems.push(format!("missing line \"{missing}\""));
        }
        let stderr = self.vars.subst_all(&expect.stderr)?;
        let what = "nanoimg run stderr";
        problems.extend(lines_problems(&v.name, what, &boot.stderr, &stderr));
        if v.case.run.accel == Accel::Default && v.arch.tries_kvm() {
            match checks::kvm_fallback(&boot.stderr, Path::new("/dev/kvm").exists()) {
                Ok(note) => println!("e2e: {} ... {note}", v.name),
                Err(problem) => problems.push(problem),
            }
        }
        Ok(())
    }

    /// The after-boot steps, the files left and the named checks.
    fn after_boot(&self, boot: &Boot, report: &mut CaseReport) -> Result<()> {
        let case = self.v.case;
        for step in case.steps.iter().filter(|s| s.when == When::AfterBoot) {
            if !self.run_step(&step.args, &step.output, report)? {
                return Ok(());
            }
        }
        for (path, want) in &case.expect.files {
            let (path, want) = (
                self.dir.join(self.vars.subst(path)?),
                self.vars.subst(want)?,
            );
            report.problems.extend(file_problem(&path, &want));
        }
        for check in &case.expect.checks {
            match check {
                Check::GuestFs(disks) => {
                    for disk in self.vars.subst_all(disks)? {
                        let disk = self.dir.join(disk);
                        let problems = checks::guest_fs(&self.env.nanoimg, &disk, &self.dir)?;
                        report.problems.extend(problems);
                    }
                }
                Check::SuggestedConfig {
                    console,
                    still_missing,
                } => self.rerun_suggested(boot, console, still_missing, report)?,
                Check::PortForward { .. } | Check::PackedFromImage(_) => {}
            }
        }
        Ok(())
    }

    /// `suggested-config`: runs the program again with the config lines the first run
    /// suggested.
    fn rerun_suggested(
        &self,
        first: &Boot,
        console: &[String],
        still_missing: &[String],
        report: &mut CaseReport,
    ) -> Result<()> {
        let config = match checks::suggested_config(&first.stderr) {
            Ok(config) => config,
            Err(e) => {
                report.problems.push(format!("{e:#}"));
                return Ok(());
            }
        };
        println!("e2e: {} ... second config {config}", self.v.name);
        let path = self.merged_config(config)?;
        let command = self.run_command(Some(&path), &self.dir.join("second.img"))?;
        let running = boot::start(command, &self.dir.join("second.console.log"))?;
        let boot = self.finish(running, "second.")?;
        let before = report.problems.len();
        let second = |p: String| format!("second run: {p}");
        let problems = &mut report.problems;
        problems.extend(status_problem(0, self.timeout(), &boot).map(second));
        for missing in expect::missing_lines(&boot.console, &self.vars.subst_all(console)?) {
            problems.push(second(format!("missing line \"{missing}\"")));
        }
        let named = checks::named_missing(&boot.stderr);
        if named != self.vars.subst_all(still_missing)? {
            problems.push(format!(
                "second run: nanoimg named as missing {named:?}, expected {still_missing:?}"
            ));
        }
        if report.problems.len() > before {
            add_boot_detail(report, &boot);
        }
        Ok(())
    }

    /// The case's config with the fields of `more` added, written as `second.config.json`.
    fn merged_config(&self, more: Value) -> Result<PathBuf> {
        let mut merged = self
            .config
            .as_ref()
            .map(|p| Ok::<Value, anyhow::Error>(serde_json::from_slice(&fs::read(p)?)?))
            .transpose()?
            .unwrap_or_else(|| Value::Object(Default::default()));
        if let (Value::Object(merged), Value::Object(more)) = (&mut merged, more) {
            merged.extend(more);
        }
        let path = self.dir.join("second.config.json");
        fs::write(&path, serde_json::to_vec_pretty(&merged)?)?;
        Ok(path)
    }
}

/// Problems for the expected `lines` that `text` lacks; prints the ones found.
fn lines_problems(case: &str, what: &str, text: &str, lines: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for found in expect::find_lines(text, lines) {
        match found {
            Ok(line) => println!("e2e: {case} ... {line}"),
            Err(want) => problems.push(format!("{what}: missing line \"{want}\"")),
        }
    }
    problems
}

/// What is wrong with the file the guest left at `path`, which must hold `want` (one
/// trailing newline ignored), if anything.
fn file_problem(path: &Path, want: &str) -> Option<String> {
    match fs::read(path) {
        Err(e) => Some(format!("{} was not left on the host: {e}", path.display())),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            (text.strip_suffix('\n').unwrap_or(&text) != want)
                .then(|| format!("{} holds {text:?}, expected {want:?}", path.display()))
        }
    }
}

/// What is wrong with how `nanoimg run` ended, if anything.
fn status_problem(expected: i32, timeout_secs: u64, boot: &Boot) -> Option<String> {
    let Some(status) = boot.status else {
        return Some(format!(
            "nanoimg run was still running {} s after its --timeout {timeout_secs}; stopped by the runner",
            boot::WATCHDOG_GRACE.as_secs()
        ));
    };
    match status.code() {
        Some(code) if code == expected => None,
        Some(124) => Some(format!(
            "timed out after {timeout_secs} s (nanoimg run --timeout, exit status 124)"
        )),
        Some(code) => Some(format!(
            "nanoimg run exited with {code}, expected {expected}"
        )),
        None => Some(format!("nanoimg run ended by a signal ({status})")),
    }
}

/// Under a failed case: the `nanoimg run` command, the console's last lines and its stderr,
/// then the output of a failed step already in `report`.
fn add_boot_detail(report: &mut CaseReport, boot: &Boot) {
    if report.problems.is_empty() {
        return;
    }
    let steps = std::mem::take(&mut report.detail);
    let detail = &mut report.detail;
    detail.push(format!("$ {}", boot.command_line));
    detail.push(format!("--- last {TAIL_LINES} lines of the console ---"));
    detail.extend(expect::tail(&boot.console, TAIL_LINES));
    detail.push("--- nanoimg run stderr (last lines) ---".to_owned());
    detail.extend(expect::tail(&boot.stderr, TAIL_LINES));
    detail.extend(steps);
}

fn run_log_text(boot: &Boot) -> String {
    let status = boot
        .status
        .map_or("stopped by the runner's watchdog".to_owned(), |s| {
            s.to_string()
        });
    format!(
        "$ {}\nstatus: {status}\nelapsed: {:.1} s\n--- stderr ---\n{}\n",
        boot.command_line,
        boot.elapsed.as_secs_f64(),
        boot.stderr
    )
}

fn log_command(path: &Path, command: &Command, output: &Output) -> Result<()> {
    let text = format!(
        "$ {command:?}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The last lines of a command's stdout and stderr, labelled with `step`.
fn output_tail(step: &str, output: &Output) -> Vec<String> {
    let mut detail = Vec::new();
    for (label, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        detail.push(format!("--- {step} {label} (last lines) ---"));
        detail.extend(expect::tail(&String::from_utf8_lossy(bytes), TAIL_LINES));
    }
    detail
}

/// Copies the regular files of a case folder into `keep`.
fn keep_folder(dir: &Path, keep: &Path) -> Result<()> {
    fs::create_dir_all(keep).with_context(|| format!("creating {}", keep.display()))?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            fs::copy(&path, keep.join(path.file_name().unwrap_or_default()))
                .with_context(|| format!("copying {} into {}", path.display(), keep.display()))?;
        }
    }
    Ok(())
}

/// Builds the nanoimg CLI in release mode and returns the path of the binary, as
/// reported by cargo. `task` prefixes the progress line (`e2e`, `bench`).
pub(crate) fn build_nanoimg(task: &str) -> Result<PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent folder")?;
    println!("{task}: building nanoimg (cargo build --release -p nanoimg)");
    let output = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "nanoimg"])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!(
            "building nanoimg failed ({}); see the cargo output above",
            output.status
        );
    }
    let binary = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "nanoimg")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built nanoimg but reported no nanoimg executable")?;
    if !binary.is_file() {
        bail!("cargo reported {} but it does not exist", binary.display());
    }
    Ok(binary)
}

pub(crate) fn resolve_nanoimg_bin(path: &Path) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("--nanoimg-bin {} is not a file", path.display());
    }
    path.canonicalize()
        .with_context(|| format!("resolving --nanoimg-bin {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_needs_a_pass_and_no_failure() {
        let summary = |passed, failed| Summary { passed, failed }.exit_code();
        assert_eq!(summary(0, 0), ExitCode::from(EXIT_NOT_RUN));
        assert_eq!(summary(2, 1), ExitCode::from(EXIT_FAILED));
        assert_eq!(summary(2, 0), ExitCode::SUCCESS);
    }

    #[test]
    fn status_must_be_the_expected_one() {
        use std::os::unix::process::ExitStatusExt;
        let boot = |code: Option<i32>| Boot {
            status: code.map(|c| std::process::ExitStatus::from_raw(c << 8)),
            console: String::new(),
            stderr: String::new(),
            elapsed: Duration::from_secs(1),
            command_line: String::new(),
        };
        assert_eq!(status_problem(0, 60, &boot(Some(0))), None);
        assert_eq!(
            status_problem(3, 60, &boot(Some(0))).unwrap(),
            "nanoimg run exited with 0, expected 3"
        );
        assert!(status_problem(0, 60, &boot(Some(124)))
            .unwrap()
            .starts_with("timed out after 60 s"));
        assert_eq!(status_problem(124, 5, &boot(Some(124))), None);
        assert!(status_problem(0, 60, &boot(None))
            .unwrap()
            .contains("stopped by the runner"));
    }
}
