//! `cargo xtask` — project automation for nanoimg, written in Rust.
//!
//! This crate follows the [cargo-xtask] pattern: instead of shell scripts or a
//! Makefile, developer tasks live in an ordinary binary crate of the
//! workspace, run through the cargo alias in `.cargo/config.toml`
//! (`xtask = "run --quiet --package xtask --"`). It needs nothing but a Rust
//! toolchain to build and is never published.
//!
//! Subcommands:
//!
//! * `cargo xtask e2e --kernel-dir DIR (--arm64-kernel-dir DIR | --skip-arm64)
//!   [--case NAME]... [--keep DIR] [--timeout-secs N]` — end-to-end test: runs the cases
//!   in `xtask/cases/` (one TOML file each, format in `case.rs` and docs/ARCHITECTURE.md):
//!   compiles each case's sample program, packs it with the real `nanoimg build`, boots
//!   it with the real `nanoimg run` (QEMU, TCG) and checks what the case file says must be
//!   seen. Not part of CI (no Nanos kernel, no QEMU there); it never pretends to pass:
//!   with a prerequisite missing it says so on stderr and exits 2.
//!
//!   Host prerequisites: a Nanos release folder, `qemu-system-x86_64`, `cc` with static
//!   glibc, `c++`, `rustc`, `umoci`, OVMF (Debian `ovmf`), `mmdebstrap` for the app
//!   cases; for arm64: `qemu-system-aarch64` (`qemu-system-arm`), `aarch64-linux-gnu-gcc`
//!   (`gcc-aarch64-linux-gnu`, `libc6-arm64-cross`), AAVMF (`qemu-efi-aarch64`) and
//!   `rustup target add aarch64-unknown-linux-musl`. Exit status: 0 = every case passed
//!   (and at least one ran), 1 = a case failed or the runner hit an error, 2 =
//!   prerequisites missing or nothing passed.
//!
//! * `cargo xtask bench [--runs N] [--keep DIR] [--small-files N]` — times
//!   `nanoimg build` of a 512 MiB + N × 4 KiB payload (with a fake kernel, so
//!   it runs anywhere with `cc` and static glibc) against a plain sequential
//!   copy of the same bytes, and reports the ratio of the medians and
//!   nanoimg's peak memory. A measurement, not a test: exit 0 however slow
//!   the machine (1 on an error, 2 without `cc`). See `bench.rs` for what is
//!   and is not measured.
//!
//! * `cargo xtask test [CARGO TEST ARGS...]` — the README's test command: installs the
//!   tools the tests need when missing (Debian packages, as root or with sudo; else it
//!   names them and stops), then runs `cargo test --workspace --no-fail-fast`. See
//!   `test.rs`.
//!
//! [cargo-xtask]: https://github.com/matklad/cargo-xtask

mod bench;
mod boot;
mod case;
mod checks;
mod dims;
mod e2e;
mod expect;
mod fixtures;
mod hostile;
mod prereq;
mod samples;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Project automation for nanoimg (run it as `cargo xtask ...`).
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cases of xtask/cases: build sample programs into images with `nanoimg
    /// build` and boot them under QEMU (not run in CI: needs a Nanos kernel and QEMU).
    E2e(e2e::E2eArgs),
    /// Time `nanoimg build` of a large payload against a plain copy of the
    /// same bytes (fake kernel; needs only `cc` with static glibc).
    Bench(bench::BenchArgs),
    /// Time nanoimg-oci on hostile container images (opaque markers, link chains, deep
    /// nesting, repeated indexes, header bombs) against baselines.
    BenchHostile(hostile::HostileArgs),
    /// Run the whole test suite as a newcomer would: install the tools the tests need
    /// (Debian, as root or with sudo) when missing, then `cargo test --workspace`.
    Test(test::TestArgs),
}

fn main() -> ExitCode {
    let (task, result) = match Cli::parse().command {
        Command::E2e(args) => ("e2e", e2e::run(&args).map(|s| s.exit_code())),
        Command::Bench(args) => ("bench", bench::run(&args).map(|()| ExitCode::SUCCESS)),
        Command::Test(args) => return test::run(&args),
        Command::BenchHostile(args) => {
            let result = hostile::run(&args).map(|()| ExitCode::SUCCESS);
            ("bench-hostile", result)
        }
    };
    result.unwrap_or_else(|err| report_error(task, &err))
}

/// Prints a runner error on stderr and picks the exit status: missing
/// prerequisites are 2 (nothing was tested), anything else is 1.
/// `task` prefixes the messages (`e2e`, `bench`).
fn report_error(task: &str, err: &anyhow::Error) -> ExitCode {
    if let Some(missing) = err.downcast_ref::<prereq::MissingPrerequisites>() {
        for problem in &missing.problems {
            eprintln!("{task}: {problem}");
        }
        eprintln!(
            "{task}: SKIPPED IS NOT PASSED — prerequisites missing, nothing was tested (exit {})",
            e2e::EXIT_NOT_RUN
        );
        ExitCode::from(e2e::EXIT_NOT_RUN)
    } else {
        eprintln!("{task}: ERROR: {err:#}");
        ExitCode::from(e2e::EXIT_FAILED)
    }
}
