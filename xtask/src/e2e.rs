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
use crate::fixtures::Fixtures;
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
    fixtures: Fixtures,
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
    let mut variants = case::expand(&cases)?;
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
    let arm64_kernel = match args.arm64_kernel_dir.clone().or_else(|| prereq::non_empty_env(ARM64_KERNEL_DIR_ENV).map(PathBuf::from)) {
        None => Err("no arm64 kernel folder: give --arm64-kernel-dir DIR (an unpacked nanos-release-linux-<v>-virt tarball) or --skip-arm64".to_owned()),
        Some(dir) => dims::check_arm64_kernel_dir(&dir),
    };
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
    let mut env = Env {
        nanoimg,
        work: work.path().to_path_buf(),
        timeout_secs: args.timeout_secs,
        x86_kernel,
        arm64_kernel,
        fixtures: Fixtures::default(),
    };
    let summary = run_all(&mut env, &variants, args.keep.as_deref())?;
    print_summary(&summary, args.keep.as_deref());
    Ok(summary)
}

fn run_all(env: &mut Env, variants: &[Variant], keep: Option<&Path>) -> Result<Summary> {
    let mut summary = Summary::default();
    for variant in variants {
        let dir = env.work.join(&variant.name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut report = CaseReport::default();
        run_variant(env, variant, &dir, &mut report)?;
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

/// What a variant's commands are made of, once its folder is prepared.
struct Ctx<'a> {
    v: &'a Variant<'a>,
    dir: PathBuf,
    vars: Vars,
    kernel: PathBuf,
    /// The compiled program's file name.
    program: Option<String>,
    image: PathBuf,
    target_root: Option<String>,
    from_image: Option<String>,
    config: Option<PathBuf>,
}

/// Runs one variant, recording what went wrong in `report`.
fn run_variant(env: &mut Env, v: &Variant, dir: &Path, report: &mut CaseReport) -> Result<()> {
    let Some(ctx) = prepare(env, v, dir, report)? else {
        return Ok(());
    };
    if !v.case.run.program && !build(env, &ctx, report)? {
        return Ok(());
    }
    for step in v.case.steps.iter().filter(|s| s.when == When::AfterBuild) {
        if !run_step(env, &ctx, &step.args, &step.output, report)? {
            return Ok(());
        }
    }
    if !v.case.expect.inspect.is_empty() {
        let args = ["inspect".to_owned(), ctx.image.display().to_string()];
        if !run_step(env, &ctx, &args, &v.case.expect.inspect, report)? {
            return Ok(());
        }
    }
    if !check_qemu_line(env, &ctx, report)? {
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
    let boot = boot_and_exchange(env, &ctx, report)?;
    check_boot(env, &ctx, &boot, report)?;
    if report.problems.is_empty() {
        after_boot(env, &ctx, &boot, report)?;
    }
    add_boot_detail(report, &boot);
    Ok(())
}

/// Writes the case's files and config, makes its fixtures and compiles its program.
/// `None` when that failed (recorded in `report`).
fn prepare<'a>(
    env: &mut Env,
    v: &'a Variant,
    dir: &Path,
    report: &mut CaseReport,
) -> Result<Option<Ctx<'a>>> {
    let case = v.case;
    let kernel = match v.arch {
        Arch::X86_64 => env.x86_kernel.clone(),
        Arch::Arm64 => match (&env.arm64_kernel, prereq::find_on_path(v.arch.qemu())) {
            (Err(e), _) => return fail(report, e.clone()),
            (Ok(_), None) => return fail(report, format!("`{}` not found on PATH — nanoimg run boots arm64 images with it (Debian/Ubuntu: apt-get install qemu-system-arm)", v.arch.qemu())),
            (Ok(dir), Some(_)) => dir.clone(),
        },
    };
    let program = case.program.as_ref().map(|p| p.name.clone());
    let image = dir.join(format!("{}.{}", v.name, v.format.ext));
    let mut vars = Vars::default();
    vars.0.insert("case", v.name.clone());
    vars.0.insert("dir", dir.display().to_string());
    vars.0.insert("image", image.display().to_string());
    vars.0.insert("format", v.format.name.to_owned());
    vars.0
        .insert("program", program.clone().unwrap_or_default());
    vars.0.insert("port", boot::free_port()?.to_string());
    for (path, text) in &case.files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap_or(dir))?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let target_root = match case.build.target_root {
        None => None,
        Some(fixture) => match env.fixtures.target_root(fixture, &env.work) {
            Ok(root) => Some(root),
            Err(e) => return fail(report, e),
        },
    };
    vars.0
        .insert("target_root", target_root.clone().unwrap_or_default());
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
    let from_image = match &case.image {
        None => None,
        Some(spec) => match env.fixtures.image(spec, compiled.as_deref(), &env.work) {
            Ok(image) => Some(image),
            Err(e) => return fail(report, e),
        },
    };
    Ok(Some(Ctx {
        v,
        dir: dir.to_path_buf(),
        vars,
        kernel,
        program,
        image,
        target_root,
        from_image,
        config,
    }))
}

fn fail<T>(report: &mut CaseReport, problem: String) -> Result<Option<T>> {
    report.problems.push(problem);
    Ok(None)
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
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
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

/// `nanoimg` run in the case folder, with the run's own cache.
fn nanoimg(env: &Env, ctx: &Ctx) -> Command {
    let mut command = Command::new(&env.nanoimg);
    command
        .current_dir(&ctx.dir)
        .env("NANOIMG_CACHE", env.work.join("cache"))
        .stdin(Stdio::null());
    command
}

/// The arguments that say what to build: `[PROGRAM] [-c CONFIG] --kernel-dir K -o IMAGE
/// [--from-image L:T] [--target-root R] [--format F]`, then the case's build flags.
fn build_args(ctx: &Ctx, config: Option<&Path>, image: &Path) -> Result<Vec<String>> {
    let case = ctx.v.case;
    let mut args = Vec::new();
    if case.image.is_none() {
        args.extend(ctx.program.clone());
    }
    if let Some(config) = config {
        args.extend(["-c".to_owned(), config.display().to_string()]);
    }
    args.extend(["--kernel-dir".to_owned(), ctx.kernel.display().to_string()]);
    args.extend(["-o".to_owned(), image.display().to_string()]);
    if let Some(image) = &ctx.from_image {
        args.extend(["--from-image".to_owned(), image.clone()]);
    }
    if let Some(root) = &ctx.target_root {
        args.extend(["--target-root".to_owned(), root.clone()]);
    }
    if ctx.v.format.name != "raw" {
        args.extend(["--format".to_owned(), ctx.v.format.name.to_owned()]);
    }
    if let Some(program) = &case.program {
        args.extend(ctx.v.arch.dynamic_build(program.build).0);
    }
    args.extend(ctx.vars.subst_all(&case.build.flags)?);
    Ok(args)
}

/// `nanoimg build`; whether it wrote the image and printed what it must (else recorded).
fn build(env: &Env, ctx: &Ctx, report: &mut CaseReport) -> Result<bool> {
    let mut command = nanoimg(env, ctx);
    command
        .arg("build")
        .args(build_args(ctx, ctx.config.as_deref(), &ctx.image)?);
    let started = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    report.build = Some(started.elapsed());
    println!(
        "e2e: {} ... nanoimg build took {} ms",
        ctx.v.name,
        started.elapsed().as_millis()
    );
    log_command(&ctx.dir.join("build.log"), &command, &output)?;
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
    } else if !ctx.image.is_file() {
        problems.push(format!(
            "nanoimg build succeeded but wrote no {}",
            ctx.image.display()
        ));
    }
    if !report.fail_with(problems, "nanoimg build", &output) {
        return Ok(false);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut lines = ctx.vars.subst_all(&ctx.v.case.expect.build_stderr)?;
    if let Some(program) = &ctx.v.case.program {
        lines.extend(ctx.v.arch.dynamic_build(program.build).1);
    }
    let mut problems = lines_problems(&ctx.v.name, "nanoimg build stderr", &stderr, &lines);
    for check in &ctx.v.case.expect.checks {
        if let Check::PackedFromImage(names) = check {
            problems.extend(checks::packed_from_image(&stderr, names));
        }
    }
    Ok(report.fail_with(problems, "nanoimg build", &output))
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

/// A step: `nanoimg ARGS` must succeed and print `output`; whether it did (else recorded).
fn run_step(
    env: &Env,
    ctx: &Ctx,
    args: &[String],
    output: &[String],
    report: &mut CaseReport,
) -> Result<bool> {
    let args = ctx.vars.subst_all(args)?;
    let mut command = nanoimg(env, ctx);
    command.args(&args);
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let step = format!(
        "nanoimg {}",
        args.first().map(String::as_str).unwrap_or_default()
    );
    log_command(
        &ctx.dir.join(format!("{}.log", step.replace(' ', "-"))),
        &command,
        &out,
    )?;
    if !out.status.success() {
        return Ok(report.fail_with(
            vec![format!("{step} exited with {}", out.status)],
            &step,
            &out,
        ));
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems = lines_problems(&ctx.v.name, &step, &text, &ctx.vars.subst_all(output)?);
    Ok(report.fail_with(problems, &step, &out))
}

/// The `nanoimg run` command for the case's image (or, with `run.program`, for its program
/// with `config`, writing `image`).
fn run_command(env: &Env, ctx: &Ctx, config: Option<&Path>, image: &Path) -> Result<Command> {
    let case = ctx.v.case;
    let mut command = nanoimg(env, ctx);
    command.arg("run");
    if case.run.program {
        command.args(build_args(ctx, config, image)?);
    } else {
        command.arg(image);
    }
    if case.run.accel == Accel::Tcg || !ctx.v.arch.tries_kvm() {
        command.args(["--accel", "tcg"]);
    }
    let timeout = case.run.timeout.unwrap_or(env.timeout_secs);
    command.arg("--timeout").arg(timeout.to_string());
    command.args(ctx.vars.subst_all(&case.run.flags)?);
    Ok(command)
}

/// `nanoimg run --print-command` against the case's, the architecture's and the format's
/// QEMU expectations (when there are any); whether it matched (else recorded).
fn check_qemu_line(env: &Env, ctx: &Ctx, report: &mut CaseReport) -> Result<bool> {
    let v = ctx.v;
    let uefi = v.case.build.flags.iter().any(|f| f == "--uefi");
    let mut want = v.arch.qemu_expect(uefi);
    let case = &v.case.expect.qemu;
    want.args.extend(ctx.vars.subst_all(&case.args)?);
    want.no_args.extend(ctx.vars.subst_all(&case.no_args)?);
    want.parts.extend(ctx.vars.subst_all(&case.parts)?);
    want.parts
        .extend(v.format.qemu_parts.iter().map(|p| p.to_string()));
    if want.is_empty() {
        return Ok(true);
    }
    let mut command = run_command(env, ctx, ctx.config.as_deref(), &ctx.image)?;
    command.arg("--print-command");
    if v.format.boots_converted {
        // The printed command boots the converted raw image: it is kept there.
        command.arg("-o").arg(ctx.dir.join("print-command.img"));
    }
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let printed = String::from_utf8_lossy(&output.stdout);
    let args: Vec<&str> = printed.lines().map(str::trim).collect();
    let has = |seq: &str| {
        let seq: Vec<&str> = seq.split(' ').collect();
        args.windows(seq.len()).any(|w| w == seq.as_slice())
    };
    let mut problems = Vec::new();
    if !output.status.success() {
        problems.push(format!(
            "nanoimg run --print-command exited with {}",
            output.status
        ));
    }
    problems.extend(
        want.args
            .iter()
            .filter(|a| !has(a))
            .map(|a| format!("the QEMU command line lacks {a}")),
    );
    problems.extend(
        want.no_args
            .iter()
            .filter(|a| has(a))
            .map(|a| format!("the QEMU command line has {a}")),
    );
    problems.extend(
        want.parts
            .iter()
            .filter(|p| !args.iter().any(|a| a.contains(p.as_str())))
            .map(|p| format!("no QEMU argument contains {p:?}")),
    );
    Ok(report.fail_with(problems, "nanoimg run --print-command", &output))
}

/// Boots the case with its console in `console.log`, talking to it meanwhile when it has
/// a `port-forward` check.
fn boot_and_exchange(env: &Env, ctx: &Ctx, report: &mut CaseReport) -> Result<Boot> {
    let command = run_command(env, ctx, ctx.config.as_deref(), &ctx.image)?;
    let timeout = Duration::from_secs(ctx.v.case.run.timeout.unwrap_or(env.timeout_secs));
    let mut running = boot::start(command, &ctx.dir.join("console.log"))?;
    for check in &ctx.v.case.expect.checks {
        if let Check::PortForward { send, reply } = check {
            let port: u16 = ctx.vars.0["port"].parse()?;
            let deadline = Instant::now() + timeout;
            let (got, attempts) = checks::exchange(port, send, deadline, &mut || {
                running.has_exited().unwrap_or(true)
            });
            match got {
                Ok(got) if got == *reply => println!(
                    "e2e: {} ... 127.0.0.1:{port} replied {got:?} (connection {attempts})",
                    ctx.v.name
                ),
                Ok(got) => report.problems.push(format!(
                    "127.0.0.1:{port} replied {got:?}, expected {reply:?}"
                )),
                Err(e) => report.problems.push(format!(
                    "no reply on 127.0.0.1:{port} after {attempts} connection(s) (last: {e})"
                )),
            }
        }
    }
    let boot = running.finish(timeout + boot::WATCHDOG_GRACE)?;
    report.boot = Some(boot.elapsed);
    fs::write(ctx.dir.join("run.log"), run_log_text(&boot))?;
    Ok(boot)
}

/// The exit status, time, console and stderr lines, and KVM fallback of a boot.
fn check_boot(env: &Env, ctx: &Ctx, boot: &Boot, report: &mut CaseReport) -> Result<()> {
    let expect = &ctx.v.case.expect;
    let timeout = ctx.v.case.run.timeout.unwrap_or(env.timeout_secs);
    report
        .problems
        .extend(status_problem(expect.status, timeout, boot));
    if let Some(max) = expect.max_boot_secs {
        if boot.elapsed > Duration::from_secs(max) {
            report.problems.push(format!(
                "the boot took {:.1} s (more than {max} s)",
                boot.elapsed.as_secs_f64()
            ));
        }
    }
    for missing in expect::missing_lines(&boot.console, &ctx.vars.subst_all(&expect.console)?) {
        report.problems.push(format!("missing line \"{missing}\""));
    }
    let stderr = ctx.vars.subst_all(&expect.stderr)?;
    report.problems.extend(lines_problems(
        &ctx.v.name,
        "nanoimg run stderr",
        &boot.stderr,
        &stderr,
    ));
    if ctx.v.case.run.accel == Accel::Default && ctx.v.arch.tries_kvm() {
        match checks::kvm_fallback(&boot.stderr, Path::new("/dev/kvm").exists()) {
            Ok(note) => println!("e2e: {} ... {note}", ctx.v.name),
            Err(problem) => report.problems.push(problem),
        }
    }
    Ok(())
}

/// The after-boot steps, the files left and the named checks.
fn after_boot(env: &Env, ctx: &Ctx, boot: &Boot, report: &mut CaseReport) -> Result<()> {
    for step in ctx
        .v
        .case
        .steps
        .iter()
        .filter(|s| s.when == When::AfterBoot)
    {
        if !run_step(env, ctx, &step.args, &step.output, report)? {
            return Ok(());
        }
    }
    for (path, want) in &ctx.v.case.expect.files {
        let path = ctx.dir.join(ctx.vars.subst(path)?);
        let want = ctx.vars.subst(want)?;
        match fs::read(&path) {
            Err(e) => report
                .problems
                .push(format!("{} was not left on the host: {e}", path.display())),
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                if text.strip_suffix('\n').unwrap_or(&text) != want {
                    report.problems.push(format!(
                        "{} holds {text:?}, expected {want:?}",
                        path.display()
                    ));
                }
            }
        }
    }
    for check in &ctx.v.case.expect.checks {
        match check {
            Check::GuestFs(disks) => {
                for disk in ctx.vars.subst_all(disks)? {
                    report.problems.extend(checks::guest_fs(
                        &env.nanoimg,
                        &ctx.dir.join(disk),
                        &ctx.dir,
                    )?);
                }
            }
            Check::SuggestedConfig {
                console,
                still_missing,
            } => {
                rerun_suggested(env, ctx, boot, console, still_missing, report)?;
            }
            Check::PortForward { .. } | Check::PackedFromImage(_) => {}
        }
    }
    Ok(())
}

/// `suggested-config`: runs the program again with the config lines the first run
/// suggested.
fn rerun_suggested(
    env: &Env,
    ctx: &Ctx,
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
    println!("e2e: {} ... second config {config}", ctx.v.name);
    let mut merged = ctx
        .config
        .as_ref()
        .map(|p| Ok::<Value, anyhow::Error>(serde_json::from_slice(&fs::read(p)?)?))
        .transpose()?
        .unwrap_or_else(|| Value::Object(Default::default()));
    if let (Value::Object(merged), Value::Object(more)) = (&mut merged, config) {
        merged.extend(more);
    }
    let path = ctx.dir.join("second.config.json");
    fs::write(&path, serde_json::to_vec_pretty(&merged)?)?;
    let command = run_command(env, ctx, Some(&path), &ctx.dir.join("second.img"))?;
    let timeout = Duration::from_secs(ctx.v.case.run.timeout.unwrap_or(env.timeout_secs));
    let boot = boot::start(command, &ctx.dir.join("second.console.log"))?
        .finish(timeout + boot::WATCHDOG_GRACE)?;
    fs::write(ctx.dir.join("second.run.log"), run_log_text(&boot))?;
    let before = report.problems.len();
    report
        .problems
        .extend(status_problem(0, timeout.as_secs(), &boot).map(|p| format!("second run: {p}")));
    for missing in expect::missing_lines(&boot.console, &ctx.vars.subst_all(console)?) {
        report
            .problems
            .push(format!("second run: missing line \"{missing}\""));
    }
    let named = checks::named_missing(&boot.stderr);
    if named != ctx.vars.subst_all(still_missing)? {
        report.problems.push(format!(
            "second run: nanoimg named as missing {named:?}, expected {still_missing:?}"
        ));
    }
    if report.problems.len() > before {
        add_boot_detail(report, &boot);
    }
    Ok(())
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
    report.detail.push(format!("$ {}", boot.command_line));
    report
        .detail
        .push(format!("--- last {TAIL_LINES} lines of the console ---"));
    report
        .detail
        .extend(expect::tail(&boot.console, TAIL_LINES));
    report
        .detail
        .push("--- nanoimg run stderr (last lines) ---".to_owned());
    report.detail.extend(expect::tail(&boot.stderr, TAIL_LINES));
    report.detail.extend(steps);
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
        .args([
            "build",
            "--release",
            "-p",
            "nanoimg",
            "--message-format=json-render-diagnostics",
        ])
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
