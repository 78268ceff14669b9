//! The sample programs the e2e runner packs and boots.
//!
//! Sources live in `xtask/samples/` and are embedded with `include_str!`, so
//! the runner works from any directory; they are written into the temporary
//! work directory and compiled there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::boot::Accel;
use crate::prereq::{MissingPrerequisites, Tools};
use crate::{endings, expect, gevulot, guestfs, portfwd, sysroot, volume};

/// A sample source file, embedded into the xtask binary.
struct Source {
    file_name: &'static str,
    text: &'static str,
}

/// An embedded sample source: `source!("name")` is `xtask/samples/name`.
macro_rules! source {
    ($name:literal) => {
        Source {
            file_name: $name,
            text: include_str!(concat!("../samples/", $name)),
        }
    };
}

/// All sample sources. `hello_dynamic.c` `#include`s `hello_static.c`, and the C samples
/// include `sample.h`, so every source is written out.
const SOURCES: &[Source] = &[
    source!("sample.h"),
    source!("hello_static.c"),
    source!("hello_dynamic.c"),
    source!("hello_cpp.cpp"),
    source!("hello_rust.rs"),
    source!("prover.c"),
    source!("volume.c"),
    source!("guestfs.c"),
    source!("exit_code.c"),
    source!("portfwd.c"),
    source!("looper.c"),
    source!("dlopen.c"),
    source!("hello_plugin.c"),
];

/// How a sample is turned into an x86-64 Linux ELF executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `cc -static -O2`
    StaticC,
    /// `cc -O2` (dynamically linked against the host glibc)
    DynamicC,
    /// `c++ -O2 -pthread` (dynamically linked against libstdc++ and glibc)
    DynamicCpp,
    /// `rustc -O -C target-feature=+crt-static` (static glibc)
    StaticRust,
    /// `rustc -O` (dynamically linked against glibc and libgcc_s)
    DynamicRust,
}

/// What a case packs, how it boots and what it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Prints its arguments and environment: an ops config with
    /// [`expect::ARGS`], `GREETING` and `E2E_CASE`, booted with `nanoimg run`'s
    /// default (ops) command line.
    Hello,
    /// A Gevulot (v1) prover with a 9p workspace, a read-only disk and no
    /// network (see [`crate::gevulot`]).
    GevulotProver,
    /// Reads and writes a data volume made with `nanoimg volume create` and
    /// attached as a second disk (see [`crate::volume`]).
    DataVolume,
    /// Changes the writable root and a data volume in every way the kernel logs, then the
    /// readers must show exactly that tree (see [`crate::guestfs`]).
    GuestFs,
    /// Exits with a status that `nanoimg run` must pass on (`debug_exit`, see
    /// [`crate::endings`]).
    ExitCode,
    /// A TCP server reached through `nanoimg run -p` (see [`crate::portfwd`]).
    PortForward,
    /// Never ends; `nanoimg run --timeout` must stop it (see [`crate::endings`]).
    Timeout,
    /// The [`Scenario::Hello`] program built with `--target-root` naming the
    /// run's umoci image (see [`crate::sysroot`]): the interpreter and
    /// libraries must be packed from the image's unpacked root.
    Sysroot,
    /// `dlopen()`s `libhello_plugin.so`, which only the image has; the
    /// config's `Libraries` packs it, and `nanoimg deps` without that field
    /// must hint at it (see [`crate::sysroot`]).
    Dlopen,
}

/// Which image a case builds and which firmware boots it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageBoot {
    /// A plain image (MBR and boot.img), booted by QEMU's default SeaBIOS.
    Bios,
    /// A BIOS+UEFI hybrid image (`nanoimg build --uefi`: an EFI System
    /// Partition with bootx64.efi first), booted by `firmware`.
    Hybrid(Firmware),
}

/// The firmware a hybrid image boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default BIOS (`nanoimg run --boot bios`).
    SeaBios,
    /// OVMF (`nanoimg run`'s default for an image with an EFI System
    /// Partition).
    Ovmf,
}

/// One e2e case.
#[derive(Debug)]
pub struct Sample {
    /// Case name shown in the report, e.g. `static-c`.
    pub case: &'static str,
    /// File name of the compiled program; passed to `nanoimg build` as the
    /// program, so it is also what the guest sees as `argv[0]`.
    pub program: &'static str,
    source_file: &'static str,
    build: Build,
    pub scenario: Scenario,
    pub image_boot: ImageBoot,
    /// `--accel tcg`, or `nanoimg run`'s default (KVM, else TCG).
    pub accel: Accel,
}

/// Every case the runner knows about, in report order. The dynamic cases
/// rely on nanoimg packing the program's interpreter and shared libraries;
/// `gevulot-prover` on `Mounts` and `ManifestPassthrough`; the `uefi-*`
/// cases boot one `--uefi` hybrid image through OVMF and through SeaBIOS;
/// `data-volume` on `nanoimg volume create`, a label in `Mounts` and
/// `nanoimg extract` of a raw volume; `exit-code`, `port-forward` and
/// `timeout` on `nanoimg run`'s `debug_exit` status, `-p` and `--timeout`.
/// `sysroot-c`, `sysroot-rust` and `dlopen-libraries` take their libraries
/// from a container image made with umoci (`--target-root LAYOUT:TAG`).
/// `static-c` runs without `--accel`, so it goes through `nanoimg run`'s
/// choice of KVM and its fallback to TCG.
pub const SAMPLES: &[Sample] = &[
    Sample {
        case: "static-c",
        program: "hello_static",
        source_file: "hello_static.c",
        build: Build::StaticC,
        scenario: Scenario::Hello,
        image_boot: ImageBoot::Bios,
        // Without --accel: nanoimg run tries KVM and falls back to TCG.
        accel: Accel::Default,
    },
    Sample {
        case: "static-rust",
        program: "hello_rust",
        source_file: "hello_rust.rs",
        build: Build::StaticRust,
        scenario: Scenario::Hello,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "dynamic-c",
        program: "hello_dynamic",
        source_file: "hello_dynamic.c",
        build: Build::DynamicC,
        scenario: Scenario::Hello,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "dynamic-cpp",
        program: "hello_cpp",
        source_file: "hello_cpp.cpp",
        build: Build::DynamicCpp,
        scenario: Scenario::Hello,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "dynamic-rust",
        program: "hello_rust_dynamic",
        source_file: "hello_rust.rs",
        build: Build::DynamicRust,
        scenario: Scenario::Hello,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "gevulot-prover",
        program: gevulot::PROGRAM,
        source_file: "prover.c",
        build: Build::StaticC,
        scenario: Scenario::GevulotProver,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "uefi-ovmf",
        program: "hello_uefi_ovmf",
        source_file: "hello_static.c",
        build: Build::StaticC,
        scenario: Scenario::Hello,
        image_boot: ImageBoot::Hybrid(Firmware::Ovmf),
        accel: Accel::Tcg,
    },
    Sample {
        case: "uefi-seabios",
        program: "hello_uefi_seabios",
        source_file: "hello_static.c",
        build: Build::StaticC,
        scenario: Scenario::Hello,
        image_boot: ImageBoot::Hybrid(Firmware::SeaBios),
        accel: Accel::Tcg,
    },
    Sample {
        case: "data-volume",
        program: volume::PROGRAM,
        source_file: "volume.c",
        build: Build::StaticC,
        scenario: Scenario::DataVolume,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "guest-fs",
        program: guestfs::PROGRAM,
        source_file: "guestfs.c",
        build: Build::StaticC,
        scenario: Scenario::GuestFs,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "exit-code",
        program: endings::EXIT_CODE_PROGRAM,
        source_file: "exit_code.c",
        build: Build::StaticC,
        scenario: Scenario::ExitCode,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "port-forward",
        program: portfwd::PROGRAM,
        source_file: "portfwd.c",
        build: Build::StaticC,
        scenario: Scenario::PortForward,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "timeout",
        program: endings::TIMEOUT_PROGRAM,
        source_file: "looper.c",
        build: Build::StaticC,
        scenario: Scenario::Timeout,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "sysroot-c",
        program: "hello_sysroot_c",
        source_file: "hello_dynamic.c",
        build: Build::DynamicC,
        scenario: Scenario::Sysroot,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "sysroot-rust",
        program: "hello_sysroot_rust",
        source_file: "hello_rust.rs",
        build: Build::DynamicRust,
        scenario: Scenario::Sysroot,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
    Sample {
        case: "dlopen-libraries",
        program: "dlopen_plugin",
        source_file: "dlopen.c",
        build: Build::DynamicC,
        scenario: Scenario::Dlopen,
        image_boot: ImageBoot::Bios,
        accel: Accel::Tcg,
    },
];

/// Writes every embedded sample source into `dir`.
pub fn write_sources(dir: &Path) -> Result<()> {
    for source in SOURCES {
        let path = dir.join(source.file_name);
        fs::write(&path, source.text)
            .with_context(|| format!("writing sample source {}", path.display()))?;
    }
    Ok(())
}

impl Sample {
    /// The lines the guest must print on the console for this case.
    pub fn expected_lines(&self) -> Vec<String> {
        match self.scenario {
            Scenario::Hello => expect::expected_lines(self.program, self.case),
            Scenario::GevulotProver => gevulot::expected_lines(),
            Scenario::DataVolume => volume::expected_lines(),
            Scenario::GuestFs => guestfs::expected_lines(),
            Scenario::ExitCode => endings::exit_code_lines(),
            Scenario::PortForward => portfwd::expected_lines(),
            Scenario::Timeout => endings::timeout_lines(),
            Scenario::Sysroot => expect::expected_lines(self.program, self.case),
            Scenario::Dlopen => vec![
                format!("argv[0]={}", self.program),
                "plugin:plugin-says-hi".to_owned(),
                expect::DONE_MARKER.to_owned(),
            ],
        }
    }

    /// Whether the case builds against the run's sysroot image.
    pub fn uses_image(&self) -> bool {
        matches!(self.scenario, Scenario::Sysroot | Scenario::Dlopen)
    }

    /// Files a build against the image must report as packed from the
    /// image's root (empty for the cases that do not use it).
    pub fn image_libraries(&self) -> Vec<&'static str> {
        if !self.uses_image() {
            return Vec::new();
        }
        let mut names = vec!["ld-linux-x86-64.so.2", "libc.so.6"];
        if self.build == Build::DynamicRust {
            names.push("libgcc_s.so.1");
        }
        if self.scenario == Scenario::Dlopen {
            names.push(sysroot::PLUGIN_LIBRARY);
        }
        names
    }

    /// The exit status `nanoimg run` must end with.
    pub fn expected_status(&self) -> i32 {
        match self.scenario {
            Scenario::ExitCode => endings::EXIT_CODE,
            Scenario::Timeout => endings::TIMEOUT_STATUS,
            _ => 0,
        }
    }

    /// `nanoimg run --timeout` for this case, given the runner's timeout.
    pub fn run_timeout_secs(&self, case_timeout_secs: u64) -> u64 {
        match self.scenario {
            Scenario::Timeout => endings::TIMEOUT_SECS,
            _ => case_timeout_secs,
        }
    }

    /// Whether the image is built with `nanoimg build --uefi`.
    pub fn uefi_image(&self) -> bool {
        matches!(self.image_boot, ImageBoot::Hybrid(_))
    }

    /// Whether `nanoimg run` needs `--boot bios`: a hybrid image through
    /// SeaBIOS (its default for an image with an ESP is UEFI).
    pub fn needs_boot_bios(&self) -> bool {
        self.image_boot == ImageBoot::Hybrid(Firmware::SeaBios)
    }

    /// The compiler invocation for this sample, to be run inside the folder
    /// holding the sources.
    fn compile_command(&self, tools: &Tools) -> Command {
        let (compiler, flags): (&Path, &[&str]) = match self.build {
            Build::StaticC => (&tools.cc, &["-static", "-O2"]),
            Build::DynamicC => (&tools.cc, &["-O2"]),
            Build::DynamicCpp => (&tools.cxx, &["-O2", "-pthread"]),
            Build::StaticRust => (&tools.rustc, &["-O", "-C", "target-feature=+crt-static"]),
            Build::DynamicRust => (&tools.rustc, &["-O"]),
        };
        let mut command = Command::new(compiler);
        command
            .args(flags)
            .args(["-o", self.program, self.source_file]);
        command
    }

    /// Compiles the sample inside `dir` (where [`write_sources`] put the
    /// sources) and returns the path of the executable.
    ///
    /// A compiler failure means the host toolchain is incomplete (e.g. no
    /// static glibc), so it is reported as a missing prerequisite.
    pub fn compile(&self, tools: &Tools, dir: &Path) -> Result<PathBuf> {
        let output_path = dir.join(self.program);
        let mut command = self.compile_command(tools);
        command.current_dir(dir);
        let output = command
            .output()
            .with_context(|| format!("running {command:?}"))?;
        if !output.status.success() {
            let hint = match self.build {
                Build::StaticC => " (static linking needs libc.a — Debian/Ubuntu: libc6-dev)",
                Build::DynamicC | Build::DynamicRust => "",
                Build::DynamicCpp => " (needs libstdc++ — Debian/Ubuntu: g++)",
                Build::StaticRust => " (+crt-static needs static glibc — Debian/Ubuntu: libc6-dev)",
            };
            return Err(MissingPrerequisites::single(format!(
                "cannot compile sample {} for case {}: {command:?} failed with {}{hint}\n{}",
                self.source_file,
                self.case,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            ))
            .into());
        }
        if !output_path.is_file() {
            anyhow::bail!(
                "{command:?} succeeded but produced no {}",
                output_path.display()
            );
        }
        Ok(output_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_has_an_embedded_source() {
        for sample in SAMPLES {
            assert!(
                SOURCES.iter().any(|s| s.file_name == sample.source_file),
                "no embedded source for {}",
                sample.case
            );
        }
    }

    #[test]
    fn case_and_program_names_are_unique() {
        for (i, a) in SAMPLES.iter().enumerate() {
            for b in &SAMPLES[i + 1..] {
                assert_ne!(a.case, b.case);
                assert_ne!(a.program, b.program);
            }
        }
    }

    fn sample(case: &str) -> &'static Sample {
        SAMPLES
            .iter()
            .find(|sample| sample.case == case)
            .unwrap_or_else(|| panic!("no case {case}"))
    }

    fn fake_tools() -> Tools {
        Tools {
            kernel_dir: PathBuf::from("kernel"),
            cc: PathBuf::from("cc"),
            cxx: PathBuf::from("c++"),
            rustc: PathBuf::from("rustc"),
            umoci: PathBuf::from("umoci"),
        }
    }

    fn command_line(case: &str) -> Vec<String> {
        let command = sample(case).compile_command(&fake_tools());
        std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn static_and_dynamic_builds_use_the_right_flags() {
        assert_eq!(
            command_line("static-c"),
            [
                "cc",
                "-static",
                "-O2",
                "-o",
                "hello_static",
                "hello_static.c"
            ]
        );
        assert_eq!(
            command_line("dynamic-c"),
            ["cc", "-O2", "-o", "hello_dynamic", "hello_dynamic.c"]
        );
        assert_eq!(
            command_line("dynamic-cpp"),
            ["c++", "-O2", "-pthread", "-o", "hello_cpp", "hello_cpp.cpp"]
        );
        assert_eq!(
            command_line("static-rust"),
            [
                "rustc",
                "-O",
                "-C",
                "target-feature=+crt-static",
                "-o",
                "hello_rust",
                "hello_rust.rs"
            ]
        );
        assert_eq!(
            command_line("dynamic-rust"),
            ["rustc", "-O", "-o", "hello_rust_dynamic", "hello_rust.rs"]
        );
    }

    #[test]
    fn gevulot_prover_is_a_static_c_program_named_prover() {
        assert_eq!(
            command_line("gevulot-prover"),
            ["cc", "-static", "-O2", "-o", "prover", "prover.c"]
        );
        let expected = sample("gevulot-prover").expected_lines();
        for line in [
            "argv[0]=prover",
            "input:witness-42",
            "output-written",
            "rootfs-write:refused",
        ] {
            assert!(expected.iter().any(|l| l == line), "{line} not expected");
        }
        assert_eq!(expected.last().map(String::as_str), Some("HELLO-DONE"));
    }

    #[test]
    fn uefi_cases_build_the_static_hello_sample_as_hybrid_images() {
        assert_eq!(
            command_line("uefi-ovmf"),
            [
                "cc",
                "-static",
                "-O2",
                "-o",
                "hello_uefi_ovmf",
                "hello_static.c"
            ]
        );
        assert_eq!(
            command_line("uefi-seabios"),
            [
                "cc",
                "-static",
                "-O2",
                "-o",
                "hello_uefi_seabios",
                "hello_static.c"
            ]
        );
        let ovmf = sample("uefi-ovmf");
        assert!(ovmf.uefi_image() && !ovmf.needs_boot_bios());
        let seabios = sample("uefi-seabios");
        assert!(seabios.uefi_image() && seabios.needs_boot_bios());
        for case in ["uefi-ovmf", "uefi-seabios"] {
            let expected = sample(case).expected_lines();
            assert!(expected
                .iter()
                .any(|l| *l == format!("env:E2E_CASE={case}")));
            assert_eq!(expected.last().map(String::as_str), Some("HELLO-DONE"));
        }
    }

    #[test]
    fn only_the_uefi_cases_build_hybrid_images() {
        for sample in SAMPLES {
            assert_eq!(
                sample.uefi_image(),
                sample.case.starts_with("uefi-"),
                "{}",
                sample.case
            );
        }
    }

    #[test]
    fn data_volume_is_a_static_c_program_named_volume() {
        assert_eq!(
            command_line("data-volume"),
            ["cc", "-static", "-O2", "-o", "volume", "volume.c"]
        );
        let sample = sample("data-volume");
        assert!(!sample.uefi_image());
        assert_eq!(
            sample.expected_lines(),
            [
                "volume-read:hello from the volume",
                "volume-written",
                "argv[0]=volume",
                "HELLO-DONE",
            ]
        );
    }

    #[test]
    fn nanoimg_run_cases_are_static_c_programs() {
        for (case, program, source) in [
            ("exit-code", "exit_code", "exit_code.c"),
            ("port-forward", "portfwd", "portfwd.c"),
            ("timeout", "looper", "looper.c"),
        ] {
            assert_eq!(
                command_line(case),
                ["cc", "-static", "-O2", "-o", program, source]
            );
            assert!(!sample(case).uefi_image());
        }
        assert_eq!(sample("timeout").run_timeout_secs(60), 5);
        assert_eq!(sample("port-forward").run_timeout_secs(60), 60);
        for sample in SAMPLES {
            let default = sample.case == "static-c";
            assert_eq!(sample.accel == Accel::Default, default, "{}", sample.case);
        }
    }

    #[test]
    fn image_cases_are_dynamic_builds_of_the_samples() {
        assert_eq!(
            command_line("sysroot-c"),
            ["cc", "-O2", "-o", "hello_sysroot_c", "hello_dynamic.c"]
        );
        assert_eq!(
            command_line("sysroot-rust"),
            ["rustc", "-O", "-o", "hello_sysroot_rust", "hello_rust.rs"]
        );
        assert_eq!(
            command_line("dlopen-libraries"),
            ["cc", "-O2", "-o", "dlopen_plugin", "dlopen.c"]
        );
        for sample in SAMPLES {
            let image = ["sysroot-c", "sysroot-rust", "dlopen-libraries"].contains(&sample.case);
            assert_eq!(sample.uses_image(), image, "{}", sample.case);
            assert_eq!(
                !sample.image_libraries().is_empty(),
                image,
                "{}",
                sample.case
            );
        }
        assert!(sample("sysroot-rust")
            .image_libraries()
            .contains(&"libgcc_s.so.1"));
        assert!(sample("dlopen-libraries")
            .image_libraries()
            .contains(&"libhello_plugin.so"));
        assert_eq!(
            sample("dlopen-libraries").expected_lines(),
            [
                "argv[0]=dlopen_plugin",
                "plugin:plugin-says-hi",
                "HELLO-DONE"
            ]
        );
    }

    #[test]
    fn expected_lines_use_the_case_program_name() {
        let expected = sample("dynamic-cpp").expected_lines();
        assert_eq!(
            expected.first().map(String::as_str),
            Some("argv[0]=hello_cpp")
        );
        assert!(expected
            .iter()
            .any(|line| line == "env:E2E_CASE=dynamic-cpp"));
        assert_eq!(expected.last().map(String::as_str), Some("HELLO-DONE"));
    }
}
