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
//!   [--keep DIR] [--timeout-secs N]` —
//!   end-to-end test: compiles small sample programs, packs each into a disk
//!   image with the real `nanoimg build` CLI and boots the image with the
//!   real `nanoimg run` (under QEMU, TCG), then checks its exit status and
//!   the program's output on the serial console.
//!
//! The e2e runner is **not part of CI**: CI has no Nanos kernel (and no QEMU),
//! so it is run locally against a Nanos release folder. It never pretends to
//! pass: when a prerequisite is missing it says so loudly on stderr and exits
//! with status 2.
//!
//! Cases: `static-c`, `static-rust` (statically linked), `dynamic-c`,
//! `dynamic-cpp`, `dynamic-rust` (dynamically linked; they need nanoimg to
//! pack the program interpreter and the shared libraries), and
//! `gevulot-prover` (Gevulot's documented prover manifest with `Mounts` and
//! `ManifestPassthrough`, booted as the Gevulot node does: read-only disk, a
//! 9p workspace folder, no network; the proof file must reach the host),
//! `uefi-ovmf` and `uefi-seabios` (one `--uefi` BIOS+UEFI hybrid image,
//! booted through OVMF firmware and through plain SeaBIOS), and
//! `data-volume` (a volume made with `nanoimg volume create`, mounted by its
//! label and attached as a second disk; the guest reads a file from it and
//! writes one that `nanoimg extract` must find on the host), `guest-fs`
//! (the kernel changes its root and a volume; nanoimg's readers must show
//! exactly that), `exit-code` (`debug_exit`: `nanoimg run` exits with the
//! program's status 3), `port-forward` (`nanoimg run -p`: the host talks to
//! a TCP server in the guest) and `timeout` (`nanoimg run --timeout 5` stops
//! a program that never ends, exit 124), `missing-files` (`nanoimg run
//! PROGRAM --missing-files`: the kernel names the library and file the
//! program failed to open, nanoimg the config lines that pack them, and the
//! program rebuilt with those lines loads them). `static-c` runs without `--accel`,
//! so it goes through `nanoimg run`'s KVM attempt and fallback to TCG.
//!
//! The arm64 cases (see `arm64.rs`) build cross-compiled samples with the
//! arm64 ("virt") release given by `--arm64-kernel-dir` and boot them with
//! qemu-system-aarch64: `arm64-static-c`, `arm64-static-rust` (musl),
//! `arm64-dynamic-c` (libraries from `/usr/aarch64-linux-gnu`),
//! `arm64-gevulot-style` (the prover manifest, workspace over `--share`),
//! `arm64-exit-code` (semihosting exit status 3) and `arm64-uefi` (AAVMF).
//! Without `--arm64-kernel-dir` they FAIL unless `--skip-arm64` is given;
//! a missing cross tool fails the cases that need it.
//!
//! Host prerequisites: a Nanos release folder, `qemu-system-x86_64`, `cc`
//! with static glibc, `c++`, `rustc`, and OVMF firmware (`OVMF.fd` in
//! `/usr/share/ovmf`, `/usr/share/OVMF` or `/usr/share/qemu`; Debian/Ubuntu
//! package `ovmf`). For the arm64 cases: `qemu-system-aarch64`
//! (`qemu-system-arm`), `aarch64-linux-gnu-gcc` (`gcc-aarch64-linux-gnu`),
//! the sysroot (`libc6-arm64-cross`), AAVMF (`qemu-efi-aarch64`) and
//! `rustup target add aarch64-unknown-linux-musl`.
//!
//! Exit status: 0 = every case passed (and at least one ran),
//! 1 = a case failed or the runner hit an error, 2 = prerequisites missing or
//! nothing passed.
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

mod apps;
mod arm64;
mod bench;
mod boot;
mod e2e;
mod endings;
mod expect;
mod formats;
mod gevulot;
mod guestfs;
mod hostile;
mod missing_files;
mod portfwd;
mod prereq;
mod samples;
mod sysroot;
mod test;
mod volume;

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
    /// Build sample programs into images with `nanoimg build` and boot them
    /// under QEMU (not run in CI: needs a Nanos kernel and QEMU).
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
    let cli = Cli::parse();
    match cli.command {
        Command::E2e(args) => match e2e::run(&args) {
            Ok(summary) => summary.exit_code(),
            Err(err) => report_error("e2e", &err),
        },
        Command::Bench(args) => match bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => report_error("bench", &err),
        },
        Command::Test(args) => test::run(&args),
        Command::BenchHostile(args) => match hostile::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => report_error("bench-hostile", &err),
        },
    }
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
