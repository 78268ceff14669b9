//! The arm64 e2e cases: samples cross-compiled for aarch64, packed with the real arm64
//! ("virt") Nanos release and booted with `nanoimg run IMAGE --accel tcg --timeout N`
//! (qemu-system-aarch64 in ops's shape, or AAVMF for the `--uefi` image).
//!
//! - `arm64-static-c`: `hello_static.c` built with `aarch64-linux-gnu-gcc -static -O2`;
//! - `arm64-static-rust`: `hello_rust.rs` built with `rustc --target
//!   aarch64-unknown-linux-musl -C linker=aarch64-linux-gnu-gcc -O`;
//! - `arm64-dynamic-c`: `hello_dynamic.c` built with `aarch64-linux-gnu-gcc -O2`, its loader
//!   and libc packed from the cross sysroot (`--target-root /usr/aarch64-linux-gnu`);
//! - `arm64-gevulot-style`: the Gevulot prover manifest (`readonly_rootfs`, `%1` renumbered
//!   to `%0` at `/workspace`) booted with `--share WORKSPACE` (the Gevulot node itself is
//!   x86_64-only, and nanoimg refuses `--gevulot` for an aarch64 image);
//! - `arm64-exit-code`: `debug_exit` (semihosting on aarch64): `nanoimg run` exits 3;
//! - `arm64-uefi`: the static C hello built with `--uefi`, booted through AAVMF.
//!
//! Each case first asks `nanoimg run --print-command` for the QEMU command line and checks
//! its shape (qemu-system-aarch64, `-kernel` or AAVMF's `-bios`, the 9p share). Without an
//! arm64 kernel folder (`--arm64-kernel-dir`, `NANOIMG_E2E_ARM64_KERNEL_DIR`) every case
//! fails, unless `--skip-arm64` says to skip them; a missing tool fails the cases that need
//! it, naming the Debian package.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::boot::{self, RunOptions};
use crate::e2e::{self, CaseReport};
use crate::prereq::{self, Tools};
use crate::{endings, expect, gevulot, samples};

/// Environment variable that supplies a default for `--arm64-kernel-dir`.
pub const KERNEL_DIR_ENV: &str = "NANOIMG_E2E_ARM64_KERNEL_DIR";

/// Why every arm64 case fails when no kernel folder is given.
pub const NO_KERNEL_DIR: &str = "no arm64 kernel folder: give --arm64-kernel-dir DIR (an unpacked nanos-release-linux-<v>-virt tarball) or --skip-arm64";

/// The aarch64 cross compiler (Debian `gcc-aarch64-linux-gnu`).
pub const CROSS_GCC: &str = "aarch64-linux-gnu-gcc";

/// The aarch64 sysroot the dynamic case resolves its libraries in (Debian
/// `libc6-arm64-cross`).
pub const SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// What the dynamic case must get packed from [`SYSROOT`]: (guest path, path in the
/// sysroot).
const SYSROOT_LIBRARIES: [(&str, &str); 2] = [
    ("/lib/ld-linux-aarch64.so.1", "lib/ld-linux-aarch64.so.1"),
    ("/lib/libc.so.6", "lib/libc.so.6"),
];

/// The Rust target of the static Rust case.
pub const RUST_TARGET: &str = "aarch64-unknown-linux-musl";

/// The QEMU `nanoimg run` boots arm64 images with (Debian `qemu-system-arm`).
pub const QEMU: &str = "qemu-system-aarch64";

/// Subfolder of the work directory (and of `--keep`) for the arm64 cases: their programs
/// and images have the x86 cases' names.
pub const SUBDIR: &str = "arm64";

/// How a case's program is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `aarch64-linux-gnu-gcc -static -O2`
    StaticC,
    /// `aarch64-linux-gnu-gcc -O2`, resolved in [`SYSROOT`]
    DynamicC,
    /// `rustc --target aarch64-unknown-linux-musl -C linker=aarch64-linux-gnu-gcc -O`
    StaticRust,
}

/// What a case packs and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Prints its arguments and environment ([`e2e::hello_config`]).
    Hello,
    /// The Gevulot prover manifest with a 9p workspace ([`crate::gevulot`]).
    Gevulot,
    /// Exits 3 under `debug_exit` ([`crate::endings`]).
    ExitCode,
}

/// One arm64 case.
#[derive(Debug)]
pub struct Case {
    pub case: &'static str,
    /// File name of the program, so also `argv[0]` in the guest.
    pub program: &'static str,
    source_file: &'static str,
    build: Build,
    scenario: Scenario,
    /// Built with `--uefi`, so `nanoimg run` boots it through AAVMF.
    uefi: bool,
}

/// The arm64 cases, in report order.
pub const CASES: &[Case] = &[
    Case {
        case: "arm64-static-c",
        program: "hello_static",
        source_file: "hello_static.c",
        build: Build::StaticC,
        scenario: Scenario::Hello,
        uefi: false,
    },
    Case {
        case: "arm64-static-rust",
        program: "hello_rust",
        source_file: "hello_rust.rs",
        build: Build::StaticRust,
        scenario: Scenario::Hello,
        uefi: false,
    },
    Case {
        case: "arm64-dynamic-c",
        program: "hello_dynamic",
        source_file: "hello_dynamic.c",
        build: Build::DynamicC,
        scenario: Scenario::Hello,
        uefi: false,
    },
    Case {
        case: "arm64-gevulot-style",
        program: gevulot::PROGRAM,
        source_file: "prover.c",
        build: Build::StaticC,
        scenario: Scenario::Gevulot,
        uefi: false,
    },
    Case {
        case: "arm64-exit-code",
        program: endings::EXIT_CODE_PROGRAM,
        source_file: "exit_code.c",
        build: Build::StaticC,
        scenario: Scenario::ExitCode,
        uefi: false,
    },
    Case {
        case: "arm64-uefi",
        program: "hello_uefi",
        source_file: "hello_static.c",
        build: Build::StaticC,
        scenario: Scenario::Hello,
        uefi: true,
    },
];

/// Whether and with which kernel folder the arm64 cases run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup {
    /// `--skip-arm64`.
    Skip,
    /// The checked kernel folder (absolute), or why it cannot be used.
    Folder(Result<PathBuf, String>),
}

impl Setup {
    /// From `--skip-arm64` and `--arm64-kernel-dir` (else [`KERNEL_DIR_ENV`]).
    pub fn new(skip: bool, kernel_dir: Option<&Path>) -> Setup {
        if skip {
            return Setup::Skip;
        }
        let dir = kernel_dir
            .map(Path::to_path_buf)
            .or_else(|| prereq::non_empty_env(KERNEL_DIR_ENV).map(PathBuf::from));
        Setup::Folder(match dir {
            None => Err(NO_KERNEL_DIR.to_owned()),
            Some(dir) => check_kernel_dir(&dir),
        })
    }

    /// Says up front what will happen to the arm64 cases (loudly when they cannot pass).
    pub fn announce(&self) {
        match self {
            Setup::Skip => {}
            Setup::Folder(Ok(dir)) => println!("e2e: arm64 kernel folder {}", dir.display()),
            Setup::Folder(Err(problem)) => {
                eprintln!("e2e: THE ARM64 CASES WILL FAIL: {problem}");
            }
        }
    }
}

/// Checks an arm64 release folder: `kernel.img` must be an aarch64 ELF. Returns it
/// absolute.
fn check_kernel_dir(dir: &Path) -> Result<PathBuf, String> {
    if !dir.is_dir() {
        return Err(format!(
            "arm64 kernel folder {} does not exist or is not a directory",
            dir.display()
        ));
    }
    let kernel = dir.join("kernel.img");
    let head = match fs::read(&kernel) {
        Ok(bytes) => bytes.into_iter().take(20).collect::<Vec<u8>>(),
        Err(err) => {
            return Err(format!(
                "arm64 kernel folder {} has no readable kernel.img ({err}); expected an unpacked nanos-release-linux-<v>-virt tarball",
                dir.display()
            ))
        }
    };
    let machine = (head.len() == 20 && head[..4] == *b"\x7fELF")
        .then(|| u16::from_le_bytes([head[18], head[19]]));
    match machine {
        Some(183) => {}
        Some(62) => {
            return Err(format!(
                "{} is an x86_64 kernel; --arm64-kernel-dir needs an unpacked nanos-release-linux-<v>-virt tarball (give the x86_64 release with --kernel-dir)",
                kernel.display()
            ))
        }
        _ => {
            return Err(format!(
                "{} is not an aarch64 ELF kernel; expected an unpacked nanos-release-linux-<v>-virt tarball",
                kernel.display()
            ))
        }
    }
    dir.canonicalize()
        .map_err(|err| format!("cannot resolve {}: {err}", dir.display()))
}

/// What the host has for the arm64 cases.
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub qemu: Option<PathBuf>,
    pub gcc: Option<PathBuf>,
    /// Files of [`SYSROOT`] the dynamic case needs that are missing.
    pub sysroot_missing: Vec<PathBuf>,
    /// Whether `rustup target add aarch64-unknown-linux-musl` was done.
    pub rust_target: bool,
    /// The AAVMF firmware `nanoimg run` will use for the UEFI case.
    pub aavmf: Option<PathBuf>,
}

impl Host {
    /// Looks for the tools, the sysroot, the Rust target and the firmware.
    pub fn probe(rustc: &Path) -> Host {
        Host {
            qemu: prereq::find_on_path(QEMU),
            gcc: prereq::find_on_path(CROSS_GCC),
            sysroot_missing: SYSROOT_LIBRARIES
                .iter()
                .map(|(_, file)| Path::new(SYSROOT).join(file))
                .filter(|path| !path.is_file())
                .collect(),
            rust_target: rust_target_installed(rustc),
            aavmf: nanoimg_run::find_ovmf(
                None,
                &nanoimg_run::AAVMF_CANDIDATES,
                nanoimg_run::Arch::Aarch64,
            )
            .ok(),
        }
    }
}

/// Whether the standard library of [`RUST_TARGET`] is installed for `rustc`.
fn rust_target_installed(rustc: &Path) -> bool {
    let Ok(output) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", RUST_TARGET])
        .stdin(Stdio::null())
        .output()
    else {
        return false;
    };
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    output.status.success()
        && fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
}

impl Case {
    /// Why this case cannot run here: the kernel folder and the host tools it needs, each
    /// naming what to install.
    pub fn problems(&self, kernel_dir: Result<&Path, &str>, host: &Host) -> Vec<String> {
        let mut problems = Vec::new();
        match kernel_dir {
            Err(problem) => problems.push(problem.to_owned()),
            Ok(dir) if self.uefi && !dir.join("bootaa64.efi").is_file() => problems.push(format!(
                "arm64 kernel folder {} has no bootaa64.efi, which a --uefi image needs",
                dir.display()
            )),
            Ok(_) => {}
        }
        if host.qemu.is_none() {
            problems.push(format!(
                "`{QEMU}` not found on PATH — `nanoimg run` boots arm64 images with it; \
                 install it (Debian/Ubuntu: apt-get install qemu-system-arm)"
            ));
        }
        if host.gcc.is_none() {
            problems.push(format!(
                "`{CROSS_GCC}` not found on PATH — it {} the sample; install it \
                 (Debian/Ubuntu: apt-get install gcc-aarch64-linux-gnu)",
                if self.build == Build::StaticRust {
                    "links"
                } else {
                    "compiles"
                }
            ));
        }
        if self.build == Build::DynamicC && !host.sysroot_missing.is_empty() {
            problems.push(format!(
                "the aarch64 sysroot {SYSROOT} lacks {} — the program's libraries are packed \
                 from it; install it (Debian/Ubuntu: apt-get install libc6-arm64-cross)",
                host.sysroot_missing
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        if self.build == Build::StaticRust && !host.rust_target {
            problems.push(format!(
                "the Rust target {RUST_TARGET} is not installed — run `rustup target add {RUST_TARGET}`"
            ));
        }
        if self.uefi && host.aavmf.is_none() {
            problems.push(format!(
                "no AAVMF firmware found (looked for {}) — the arm64-uefi case boots through \
                 UEFI; install it (Debian/Ubuntu: apt-get install qemu-efi-aarch64)",
                nanoimg_run::AAVMF_CANDIDATES.join(", ")
            ));
        }
        problems
    }

    /// The compiler invocation, run in the folder holding the sources.
    fn compile_command(&self, gcc: &Path, rustc: &Path) -> Command {
        let mut command = match self.build {
            Build::StaticC => {
                let mut c = Command::new(gcc);
                c.args(["-static", "-O2"]);
                c
            }
            Build::DynamicC => {
                let mut c = Command::new(gcc);
                c.arg("-O2");
                c
            }
            Build::StaticRust => {
                let mut c = Command::new(rustc);
                c.args(["--target", RUST_TARGET, "-C"])
                    .arg(format!("linker={}", gcc.display()))
                    .arg("-O");
                c
            }
        };
        command
            .args(["-o", self.program, self.source_file])
            .stdin(Stdio::null());
        command
    }

    /// The ops config.
    fn config(&self) -> Value {
        match self.scenario {
            Scenario::Hello => e2e::hello_config(self.program, self.case),
            Scenario::Gevulot => gevulot::config(),
            Scenario::ExitCode => endings::exit_code_config(),
        }
    }

    /// `nanoimg build` (as for the x86 cases, with the arm64 kernel folder), plus
    /// `--target-root` for the dynamic case.
    fn build_command(
        &self,
        nanoimg: &Path,
        config: &Path,
        kernel_dir: &Path,
        dir: &Path,
    ) -> Command {
        let mut command = e2e::nanoimg_build_command(
            nanoimg,
            &dir.join(self.program),
            config,
            kernel_dir,
            &self.image(dir),
            dir,
            self.uefi,
        );
        if self.build == Build::DynamicC {
            command.arg("--target-root").arg(SYSROOT);
        }
        command
    }

    fn image(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.img", self.program))
    }

    /// `nanoimg run IMAGE --accel tcg --timeout N [--share WORKSPACE]`.
    fn run_command(
        &self,
        nanoimg: &Path,
        dir: &Path,
        options: &RunOptions,
        share: Option<&Path>,
    ) -> Command {
        let mut command = boot::command(nanoimg, &self.image(dir), options);
        if let Some(share) = share {
            command.arg("--share").arg(share);
        }
        command
    }

    pub fn expected_lines(&self) -> Vec<String> {
        match self.scenario {
            Scenario::Hello => expect::expected_lines(self.program, self.case),
            Scenario::Gevulot => gevulot::expected_lines(),
            Scenario::ExitCode => endings::exit_code_lines(),
        }
    }

    pub fn expected_status(&self) -> i32 {
        match self.scenario {
            Scenario::ExitCode => endings::EXIT_CODE,
            _ => 0,
        }
    }
}

/// Problems with the QEMU command line `nanoimg run --print-command` printed (one argument
/// a line) for `case`: qemu-system-aarch64 on the virt machine with semihosting; the kernel
/// from the image (`-kernel`), or AAVMF (`-bios`) for the UEFI image; the workspace as 9p
/// share 0 for the Gevulot-style case.
fn qemu_line_problems(
    case: &Case,
    printed: &str,
    aavmf: Option<&Path>,
    share: Option<&Path>,
) -> Vec<String> {
    let args: Vec<&str> = printed.lines().map(str::trim).collect();
    let mut problems = Vec::new();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1).copied())
    };
    if !args.first().is_some_and(|a| a.ends_with(QEMU)) {
        problems.push(format!(
            "nanoimg run --print-command does not run {QEMU}: {:?}",
            args.first()
        ));
    }
    for (flag, value) in [("-machine", "virt"), ("-semihosting", "")] {
        let found = if value.is_empty() {
            args.contains(&flag)
        } else {
            args.windows(2).any(|w| w[0] == flag && w[1] == value)
        };
        if !found {
            problems.push(
                format!("the QEMU command line lacks {flag} {value}")
                    .trim_end()
                    .to_owned(),
            );
        }
    }
    if case.uefi {
        let want = aavmf.map(|p| p.display().to_string());
        if value_of("-bios").map(str::to_owned) != want {
            problems.push(format!(
                "the UEFI image is not booted through AAVMF: -bios {:?}, expected {want:?}",
                value_of("-bios")
            ));
        }
        if args.contains(&"-kernel") {
            problems.push("the UEFI image is booted with -kernel, not through AAVMF".to_owned());
        }
    } else if value_of("-kernel").is_none() || args.contains(&"-bios") {
        problems.push("the image is not booted with -kernel (ops's arm64 shape)".to_owned());
    }
    if let Some(share) = share {
        let path = format!("path={}", share.display());
        let shared = value_of("-virtfs")
            .is_some_and(|v| v.split(',').any(|p| p == path) && v.contains("mount_tag=0"));
        if !shared {
            problems.push(format!(
                "the QEMU command line does not share {} as 9p mount tag 0",
                share.display()
            ));
        }
    }
    problems
}

/// Problems with what the dynamic case's build packed: the loader and libc from
/// [`SYSROOT`], at their guest paths (`nanoimg: packed GUEST <- HOST` lines on stderr).
fn sysroot_packed_problems(stderr: &str) -> Vec<String> {
    SYSROOT_LIBRARIES
        .iter()
        .filter_map(|(guest, file)| {
            let line = format!(
                "nanoimg: packed {guest} <- {}",
                Path::new(SYSROOT).join(file).display()
            );
            (!stderr.lines().any(|l| l.trim() == line))
                .then(|| format!("nanoimg build printed no \"{line}\" line"))
        })
        .collect()
}

/// Runs every arm64 case (or says in one line that they are skipped), handing each report
/// to `record`.
pub fn run_cases(
    setup: &Setup,
    tools: &Tools,
    nanoimg: &Path,
    work_dir: &Path,
    timeout_secs: u64,
    record: &mut dyn FnMut(&str, CaseReport) -> Result<()>,
) -> Result<()> {
    let kernel_dir = match setup {
        Setup::Skip => {
            println!("e2e: {}", skipped_line());
            return Ok(());
        }
        Setup::Folder(dir) => dir,
    };
    let dir = work_dir.join(SUBDIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    samples::write_sources(&dir)?;
    let host = Host::probe(&tools.rustc);
    for case in CASES {
        let problems = case.problems(kernel_dir.as_deref().map_err(String::as_str), &host);
        let report = match (problems.is_empty(), kernel_dir) {
            (true, Ok(kernel_dir)) => {
                run_case(case, kernel_dir, &host, tools, nanoimg, &dir, timeout_secs)?
            }
            _ => CaseReport {
                problems,
                ..CaseReport::default()
            },
        };
        record(case.case, report)?;
    }
    Ok(())
}

/// The line `--skip-arm64` prints.
fn skipped_line() -> String {
    format!(
        "arm64 cases skipped (--skip-arm64): {}",
        CASES.iter().map(|c| c.case).collect::<Vec<_>>().join(", ")
    )
}

/// Compiles, builds, boots and checks one case whose prerequisites are there.
fn run_case(
    case: &Case,
    kernel_dir: &Path,
    host: &Host,
    tools: &Tools,
    nanoimg: &Path,
    dir: &Path,
    timeout_secs: u64,
) -> Result<CaseReport> {
    let mut report = CaseReport::default();
    let gcc = host.gcc.as_deref().unwrap_or(Path::new(CROSS_GCC));

    let mut compile = case.compile_command(gcc, &tools.rustc);
    compile.current_dir(dir);
    let output = compile
        .output()
        .with_context(|| format!("running {compile:?}"))?;
    if !output.status.success() || !dir.join(case.program).is_file() {
        let hint = match case.build {
            Build::StaticC => {
                " (static linking needs libc.a — Debian/Ubuntu: libc6-dev-arm64-cross)"
            }
            _ => "",
        };
        report.problems.push(format!(
            "cannot compile {}: {compile:?} failed with {}{hint}",
            case.source_file, output.status
        ));
        report.detail = e2e::output_tail("compiler", &output);
        return Ok(report);
    }

    let config = dir.join(format!("{}.config.json", case.program));
    fs::write(
        &config,
        serde_json::to_vec_pretty(&case.config()).context("serializing the case config")?,
    )
    .with_context(|| format!("writing {}", config.display()))?;
    report.artifacts.push(config.clone());

    let command = case.build_command(nanoimg, &config, kernel_dir, dir);
    let image = case.image(dir);
    let Some(output) = e2e::run_build(command, case.case, &image, dir, &mut report)? else {
        return Ok(report);
    };
    if case.build == Build::DynamicC {
        let problems = sysroot_packed_problems(&String::from_utf8_lossy(&output.stderr));
        if !problems.is_empty() {
            report.problems.extend(problems);
            report.detail = e2e::output_tail("nanoimg build", &output);
            return Ok(report);
        }
        println!(
            "e2e: {} ... packed {} from {SYSROOT}",
            case.case,
            SYSROOT_LIBRARIES.map(|(guest, _)| guest).join(", ")
        );
    }

    let options = RunOptions::new(timeout_secs);
    let workspace = match case.scenario {
        Scenario::Gevulot => Some(gevulot::prepare_workspace(dir)?),
        _ => None,
    };
    let print = case.run_command(nanoimg, dir, &options, workspace.as_deref());
    let right = e2e::check_print_command(print, &mut report, |printed| {
        qemu_line_problems(case, printed, host.aavmf.as_deref(), workspace.as_deref())
    })?;
    if !right {
        return Ok(report);
    }

    let command = case.run_command(nanoimg, dir, &options, workspace.as_deref());
    let boot = e2e::boot_logged(command, &options, dir, case.program, &mut report)?;

    report.problems.extend(e2e::status_problem_for(
        case.expected_status(),
        &options,
        &boot,
    ));
    let expected = case.expected_lines();
    for missing in expect::missing_lines(&boot.console, &expected) {
        report.problems.push(format!("missing line \"{missing}\""));
    }
    if let Some(workspace) = &workspace {
        report.problems.extend(gevulot::check_output(workspace));
    }
    e2e::add_boot_detail(&mut report, &boot);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    fn case(name: &str) -> &'static Case {
        CASES
            .iter()
            .find(|c| c.case == name)
            .unwrap_or_else(|| panic!("no case {name}"))
    }

    fn line(command: &Command) -> Vec<String> {
        std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_six_cases_in_order_with_unique_programs() {
        let names: Vec<_> = CASES.iter().map(|c| c.case).collect();
        assert_eq!(
            names,
            [
                "arm64-static-c",
                "arm64-static-rust",
                "arm64-dynamic-c",
                "arm64-gevulot-style",
                "arm64-exit-code",
                "arm64-uefi"
            ]
        );
        for (i, a) in CASES.iter().enumerate() {
            for b in &CASES[i + 1..] {
                assert_ne!(a.program, b.program);
            }
            // Not an x86 case name: the report lines stay apart.
            assert!(!samples::SAMPLES.iter().any(|s| s.case == a.case));
        }
        assert_eq!(
            CASES
                .iter()
                .filter(|c| c.uefi)
                .map(|c| c.case)
                .collect::<Vec<_>>(),
            ["arm64-uefi"]
        );
    }

    #[test]
    fn compile_command_lines() {
        let (gcc, rustc) = (
            Path::new("/usr/bin/aarch64-linux-gnu-gcc"),
            Path::new("rustc"),
        );
        let compile = |name: &str| line(&case(name).compile_command(gcc, rustc));
        assert_eq!(
            compile("arm64-static-c"),
            [
                "/usr/bin/aarch64-linux-gnu-gcc",
                "-static",
                "-O2",
                "-o",
                "hello_static",
                "hello_static.c"
            ]
        );
        assert_eq!(
            compile("arm64-dynamic-c"),
            [
                "/usr/bin/aarch64-linux-gnu-gcc",
                "-O2",
                "-o",
                "hello_dynamic",
                "hello_dynamic.c"
            ]
        );
        assert_eq!(
            compile("arm64-static-rust"),
            [
                "rustc",
                "--target",
                "aarch64-unknown-linux-musl",
                "-C",
                "linker=/usr/bin/aarch64-linux-gnu-gcc",
                "-O",
                "-o",
                "hello_rust",
                "hello_rust.rs"
            ]
        );
        assert_eq!(
            compile("arm64-gevulot-style"),
            [
                "/usr/bin/aarch64-linux-gnu-gcc",
                "-static",
                "-O2",
                "-o",
                "prover",
                "prover.c"
            ]
        );
        assert_eq!(
            compile("arm64-exit-code"),
            [
                "/usr/bin/aarch64-linux-gnu-gcc",
                "-static",
                "-O2",
                "-o",
                "exit_code",
                "exit_code.c"
            ]
        );
        assert_eq!(
            compile("arm64-uefi"),
            [
                "/usr/bin/aarch64-linux-gnu-gcc",
                "-static",
                "-O2",
                "-o",
                "hello_uefi",
                "hello_static.c"
            ]
        );
    }

    #[test]
    fn build_command_lines() {
        let w = Path::new("/w/arm64");
        let build = |name: &str| {
            let c = case(name);
            let command = c.build_command(
                Path::new("/bin/nanoimg"),
                &w.join(format!("{}.config.json", c.program)),
                Path::new("/k/virt"),
                w,
            );
            assert_eq!(command.get_current_dir(), Some(w));
            line(&command)
        };
        let base = |program: &str| {
            vec![
                "/bin/nanoimg".to_owned(),
                "build".to_owned(),
                program.to_owned(),
                "-c".to_owned(),
                format!("/w/arm64/{program}.config.json"),
                "--kernel-dir".to_owned(),
                "/k/virt".to_owned(),
                "-o".to_owned(),
                format!("/w/arm64/{program}.img"),
            ]
        };
        for (name, program) in [
            ("arm64-static-c", "hello_static"),
            ("arm64-static-rust", "hello_rust"),
            ("arm64-gevulot-style", "prover"),
            ("arm64-exit-code", "exit_code"),
        ] {
            assert_eq!(build(name), base(program), "{name}");
        }
        let mut dynamic = base("hello_dynamic");
        dynamic.extend([
            "--target-root".to_owned(),
            "/usr/aarch64-linux-gnu".to_owned(),
        ]);
        assert_eq!(build("arm64-dynamic-c"), dynamic);
        let mut uefi = base("hello_uefi");
        uefi.push("--uefi".to_owned());
        assert_eq!(build("arm64-uefi"), uefi);
    }

    #[test]
    fn run_command_lines() {
        let w = Path::new("/w/arm64");
        let options = RunOptions::new(60);
        let run = |name: &str, share: Option<&Path>| {
            line(&case(name).run_command(Path::new("/bin/nanoimg"), w, &options, share))
        };
        assert_eq!(
            run("arm64-static-c", None),
            [
                "/bin/nanoimg",
                "run",
                "/w/arm64/hello_static.img",
                "--accel",
                "tcg",
                "--timeout",
                "60"
            ]
        );
        assert_eq!(
            run("arm64-uefi", None),
            [
                "/bin/nanoimg",
                "run",
                "/w/arm64/hello_uefi.img",
                "--accel",
                "tcg",
                "--timeout",
                "60"
            ]
        );
        // A plain 9p share, not --gevulot (x86_64-only, refused for aarch64 images).
        let gevulot = run("arm64-gevulot-style", Some(Path::new("/w/arm64/workspace")));
        assert_eq!(
            gevulot,
            [
                "/bin/nanoimg",
                "run",
                "/w/arm64/prover.img",
                "--accel",
                "tcg",
                "--timeout",
                "60",
                "--share",
                "/w/arm64/workspace"
            ]
        );
        assert!(!gevulot.iter().any(|a| a == "--gevulot"));
    }

    #[test]
    fn configs_lines_and_statuses() {
        assert_eq!(
            case("arm64-static-c").config(),
            json!({
                "Args": ["one", "two words"],
                "Env": {"GREETING": "hello nanos", "E2E_CASE": "arm64-static-c"},
                "Program": "hello_static",
            })
        );
        assert_eq!(case("arm64-gevulot-style").config(), gevulot::config());
        assert_eq!(
            case("arm64-gevulot-style").config()["Mounts"],
            json!({"%1": "/workspace"})
        );
        assert_eq!(
            case("arm64-exit-code").config(),
            json!({"Program": "exit_code", "ManifestPassthrough": {"debug_exit": "t"}})
        );
        assert_eq!(
            case("arm64-uefi").expected_lines(),
            expect::expected_lines("hello_uefi", "arm64-uefi")
        );
        assert_eq!(
            case("arm64-gevulot-style").expected_lines(),
            gevulot::expected_lines()
        );
        assert_eq!(
            case("arm64-exit-code").expected_lines(),
            ["exit-code:exiting with 3"]
        );
        for c in CASES {
            let want = if c.case == "arm64-exit-code" { 3 } else { 0 };
            assert_eq!(c.expected_status(), want, "{}", c.case);
        }
    }

    fn full_host() -> Host {
        Host {
            qemu: Some(PathBuf::from("/usr/bin/qemu-system-aarch64")),
            gcc: Some(PathBuf::from("/usr/bin/aarch64-linux-gnu-gcc")),
            sysroot_missing: Vec::new(),
            rust_target: true,
            aavmf: Some(PathBuf::from("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")),
        }
    }

    /// An arm64 release folder: an aarch64 kernel.img header and bootaa64.efi.
    fn virt_folder(dir: &Path) -> PathBuf {
        let mut kernel = vec![0u8; 64];
        kernel[..4].copy_from_slice(b"\x7fELF");
        kernel[4] = 2;
        kernel[5] = 1;
        kernel[18] = 183;
        fs::write(dir.join("kernel.img"), kernel).expect("write kernel");
        fs::write(dir.join("bootaa64.efi"), b"efi").expect("write loader");
        dir.canonicalize().expect("canonicalize")
    }

    #[test]
    fn without_a_kernel_folder_every_case_fails_and_skip_skips() {
        let setup = Setup::new(false, None);
        // Unless the environment names one (then it is checked instead).
        if prereq::non_empty_env(KERNEL_DIR_ENV).is_none() {
            assert_eq!(setup, Setup::Folder(Err(NO_KERNEL_DIR.to_owned())));
        }
        assert_eq!(
            NO_KERNEL_DIR,
            "no arm64 kernel folder: give --arm64-kernel-dir DIR (an unpacked nanos-release-linux-<v>-virt tarball) or --skip-arm64"
        );
        for c in CASES {
            assert_eq!(
                c.problems(Err(NO_KERNEL_DIR), &full_host()),
                [NO_KERNEL_DIR]
            );
        }
        assert_eq!(Setup::new(true, Some(Path::new("/k"))), Setup::Skip);
        assert_eq!(
            skipped_line(),
            "arm64 cases skipped (--skip-arm64): arm64-static-c, arm64-static-rust, arm64-dynamic-c, arm64-gevulot-style, arm64-exit-code, arm64-uefi"
        );
    }

    #[test]
    fn skipped_runs_no_case() {
        let tools = Tools {
            kernel_dir: PathBuf::from("/k"),
            cc: PathBuf::from("cc"),
            cxx: PathBuf::from("c++"),
            rustc: PathBuf::from("rustc"),
            umoci: PathBuf::from("umoci"),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seen = Vec::new();
        run_cases(
            &Setup::Skip,
            &tools,
            Path::new("/nonexistent/nanoimg"),
            dir.path(),
            60,
            &mut |case, _| {
                seen.push(case.to_owned());
                Ok(())
            },
        )
        .expect("run_cases");
        assert!(seen.is_empty());
        // Without a folder every case is reported, failed, and nothing is built.
        run_cases(
            &Setup::Folder(Err(NO_KERNEL_DIR.to_owned())),
            &tools,
            Path::new("/nonexistent/nanoimg"),
            dir.path(),
            60,
            &mut |case, report| {
                assert!(!report.passed());
                assert_eq!(report.problems[0], NO_KERNEL_DIR);
                assert!(report.build.is_none());
                seen.push(case.to_owned());
                Ok(())
            },
        )
        .expect("run_cases");
        assert_eq!(seen, CASES.iter().map(|c| c.case).collect::<Vec<_>>());
    }

    #[test]
    fn the_kernel_folder_must_hold_an_aarch64_kernel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("nope");
        assert!(check_kernel_dir(&gone)
            .expect_err("missing folder")
            .contains("does not exist"));
        assert!(check_kernel_dir(dir.path())
            .expect_err("empty folder")
            .contains("no readable kernel.img"));
        let virt = virt_folder(dir.path());
        assert_eq!(check_kernel_dir(dir.path()), Ok(virt.clone()));
        assert_eq!(
            Setup::new(false, Some(dir.path())),
            Setup::Folder(Ok(virt.clone()))
        );
        for c in CASES {
            assert!(c.problems(Ok(&virt), &full_host()).is_empty(), "{}", c.case);
        }
        // An x86_64 release given by mistake.
        let mut x86 = fs::read(virt.join("kernel.img")).expect("read");
        x86[18] = 62;
        fs::write(virt.join("kernel.img"), x86).expect("write");
        let e = check_kernel_dir(&virt).expect_err("x86_64 kernel accepted");
        assert!(e.contains("is an x86_64 kernel"), "{e}");
        // Without bootaa64.efi only the UEFI case cannot run.
        let mut k = fs::read(virt.join("kernel.img")).expect("read");
        k[18] = 183;
        fs::write(virt.join("kernel.img"), k).expect("write");
        fs::remove_file(virt.join("bootaa64.efi")).expect("rm");
        for c in CASES {
            let problems = c.problems(Ok(&virt), &full_host());
            assert_eq!(problems.is_empty(), !c.uefi, "{}: {problems:?}", c.case);
        }
    }

    #[test]
    fn missing_tools_fail_the_cases_that_need_them_naming_the_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let virt = virt_folder(dir.path());
        let problems = |name: &str, host: &Host| case(name).problems(Ok(&virt), host);

        let no_qemu = Host {
            qemu: None,
            ..full_host()
        };
        for c in CASES {
            let p = c.problems(Ok(&virt), &no_qemu);
            assert_eq!(p.len(), 1, "{}", c.case);
            assert!(p[0].contains("apt-get install qemu-system-arm"), "{p:?}");
        }
        let no_gcc = Host {
            gcc: None,
            ..full_host()
        };
        for c in CASES {
            let p = c.problems(Ok(&virt), &no_gcc);
            assert!(
                p.len() == 1 && p[0].contains("apt-get install gcc-aarch64-linux-gnu"),
                "{}: {p:?}",
                c.case
            );
        }
        let no_sysroot = Host {
            sysroot_missing: vec![PathBuf::from("/usr/aarch64-linux-gnu/lib/libc.so.6")],
            ..full_host()
        };
        for c in CASES {
            let p = c.problems(Ok(&virt), &no_sysroot);
            assert_eq!(p.is_empty(), c.case != "arm64-dynamic-c", "{p:?}");
        }
        let p = problems("arm64-dynamic-c", &no_sysroot);
        assert!(p[0].contains("apt-get install libc6-arm64-cross"), "{p:?}");
        let no_target = Host {
            rust_target: false,
            ..full_host()
        };
        for c in CASES {
            let p = c.problems(Ok(&virt), &no_target);
            assert_eq!(p.is_empty(), c.case != "arm64-static-rust", "{p:?}");
        }
        let p = problems("arm64-static-rust", &no_target);
        assert_eq!(
            p,
            ["the Rust target aarch64-unknown-linux-musl is not installed — run `rustup target add aarch64-unknown-linux-musl`"]
        );
        let no_aavmf = Host {
            aavmf: None,
            ..full_host()
        };
        for c in CASES {
            let p = c.problems(Ok(&virt), &no_aavmf);
            assert_eq!(p.is_empty(), !c.uefi, "{p:?}");
        }
        let p = problems("arm64-uefi", &no_aavmf);
        assert!(p[0].contains("apt-get install qemu-efi-aarch64"), "{p:?}");
    }

    #[test]
    fn the_qemu_line_must_have_the_arm64_shape() {
        let aavmf = Path::new("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd");
        let ws = Path::new("/w/arm64/workspace");
        let kernel_line = "/usr/bin/qemu-system-aarch64\n-machine\nvirt\n-machine\ngic-version=2\n-kernel\n/c/kernel.img\n-semihosting\n";
        assert!(
            qemu_line_problems(case("arm64-static-c"), kernel_line, Some(aavmf), None).is_empty()
        );
        let shared = format!(
            "{kernel_line}-virtfs\nlocal,path=/w/arm64/workspace,mount_tag=0,security_model=none\n"
        );
        assert!(
            qemu_line_problems(case("arm64-gevulot-style"), &shared, Some(aavmf), Some(ws))
                .is_empty()
        );
        assert_eq!(
            qemu_line_problems(
                case("arm64-gevulot-style"),
                kernel_line,
                Some(aavmf),
                Some(ws)
            )
            .len(),
            1
        );
        let uefi_line = format!(
            "/usr/bin/qemu-system-aarch64\n-machine\nvirt\n-bios\n{}\n-semihosting\n",
            aavmf.display()
        );
        assert!(qemu_line_problems(case("arm64-uefi"), &uefi_line, Some(aavmf), None).is_empty());
        // The UEFI image booted with -kernel, or a plain image through firmware: wrong.
        assert!(!qemu_line_problems(case("arm64-uefi"), kernel_line, Some(aavmf), None).is_empty());
        assert!(
            !qemu_line_problems(case("arm64-static-c"), &uefi_line, Some(aavmf), None).is_empty()
        );
        let x86 = "/usr/bin/qemu-system-x86_64\n-machine\nq35\n-kernel\nk\n";
        let p = qemu_line_problems(case("arm64-static-c"), x86, None, None);
        assert_eq!(p.len(), 3, "{p:?}");
    }

    #[test]
    fn the_dynamic_case_packs_from_the_cross_sysroot() {
        let good = "nanoimg: packed /lib/ld-linux-aarch64.so.1 <- /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1\n\
                    nanoimg: packed /lib/libc.so.6 <- /usr/aarch64-linux-gnu/lib/libc.so.6\n";
        assert!(sysroot_packed_problems(good).is_empty());
        let host = "nanoimg: packed /lib/libc.so.6 <- /lib/x86_64-linux-gnu/libc.so.6\n";
        assert_eq!(sysroot_packed_problems(host).len(), 2);
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        e2e: e2e::E2eArgs,
    }

    #[test]
    fn the_arm64_flags() {
        let cli = Cli::try_parse_from(["e2e", "--kernel-dir", "/k", "--arm64-kernel-dir", "/v"])
            .expect("parse");
        assert_eq!(cli.e2e.arm64_kernel_dir, Some(PathBuf::from("/v")));
        assert!(!cli.e2e.skip_arm64);
        let cli = Cli::try_parse_from(["e2e", "--skip-arm64"]).expect("parse");
        assert!(cli.e2e.skip_arm64 && cli.e2e.arm64_kernel_dir.is_none());
        // Both at once make no sense.
        assert!(Cli::try_parse_from(["e2e", "--skip-arm64", "--arm64-kernel-dir", "/v"]).is_err());
    }
}
