//! The two dimensions of a case: its architecture (how the program is compiled, which
//! kernel folder and QEMU boot it, what `--print-command` must show) and the disk format
//! `nanoimg build --format` writes and `nanoimg run` boots.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Result};
use serde::Deserialize;

/// A disk format that `nanoimg run` boots: the `--format` value, the image's file
/// extension, what must be part of an argument of the QEMU command line, and whether
/// `nanoimg run` boots a raw image converted from it (which `--print-command` needs kept:
/// `-o FILE`).
#[derive(Debug)]
pub struct Format {
    pub name: &'static str,
    pub ext: &'static str,
    pub qemu_parts: &'static [&'static str],
    pub boots_converted: bool,
}

impl Format {
    const fn new(
        name: &'static str,
        ext: &'static str,
        qemu_parts: &'static [&'static str],
        boots_converted: bool,
    ) -> Format {
        Format {
            name,
            ext,
            qemu_parts,
            boots_converted,
        }
    }
}

/// Every format a case may list.
pub const FORMATS: &[Format] = &[
    Format::new("raw", "img", &[], false),
    Format::new("qcow2", "qcow2", &[",format=qcow2,"], false),
    Format::new("vhd", "vhd", &[",format=vpc,"], false),
    // A stream-optimized VMDK, which QEMU cannot write in place, behind an overlay.
    Format::new("vmdk", "vmdk", &[",format=vmdk,", "snapshot=on"], false),
    Format::new("vhdx", "vhdx", &[",format=vhdx,"], false),
    // Not a disk QEMU reads: `nanoimg run` converts it to a raw image and boots that.
    Format::new("gce", "tar.gz", &[",format=raw,"], true),
];

pub fn format(name: &str) -> Result<&'static Format> {
    match FORMATS.iter().find(|f| f.name == name) {
        Some(format) => Ok(format),
        None => bail!("unknown format {name:?}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    X86_64,
    Arm64,
}

/// How a program is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Compile {
    #[serde(rename = "c-static")]
    CStatic,
    #[serde(rename = "c")]
    C,
    #[serde(rename = "c++")]
    Cxx,
    #[serde(rename = "rust-static")]
    RustStatic,
    #[serde(rename = "rust")]
    Rust,
}

/// The aarch64 cross compiler (Debian `gcc-aarch64-linux-gnu`).
pub const CROSS_GCC: &str = "aarch64-linux-gnu-gcc";
/// The aarch64 sysroot dynamic arm64 programs take their libraries from
/// (`libc6-arm64-cross`).
pub const ARM64_SYSROOT: &str = "/usr/aarch64-linux-gnu";
const ARM64_RUST_TARGET: &str = "aarch64-unknown-linux-musl";

impl Arch {
    /// The report name's prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Arch::X86_64 => "",
            Arch::Arm64 => "arm64-",
        }
    }

    pub fn qemu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    /// Whether `accel = "default"` leaves the choice of KVM to `nanoimg run`.
    pub fn tries_kvm(self) -> bool {
        self == Arch::X86_64
    }

    /// The compiler command for `source`, writing `output`, run in the case folder (`cc`:
    /// the aarch64 cross compiler, which also links arm64 Rust).
    pub fn compile_command(
        self,
        build: Compile,
        cc: &Path,
        output: &str,
        source: &str,
    ) -> Result<Command> {
        let (program, flags): (&Path, &[&str]) = match (self, build) {
            (Arch::X86_64, Compile::CStatic) => (Path::new("cc"), &["-static", "-O2"]),
            (Arch::X86_64, Compile::C) => (Path::new("cc"), &["-O2"]),
            (Arch::X86_64, Compile::Cxx) => (Path::new("c++"), &["-O2", "-pthread"]),
            (Arch::X86_64, Compile::RustStatic) => (
                Path::new("rustc"),
                &["-O", "-C", "target-feature=+crt-static"],
            ),
            (Arch::X86_64, Compile::Rust) => (Path::new("rustc"), &["-O"]),
            (Arch::Arm64, Compile::CStatic) => (cc, &["-static", "-O2"]),
            (Arch::Arm64, Compile::C) => (cc, &["-O2"]),
            (Arch::Arm64, Compile::RustStatic) => {
                (Path::new("rustc"), &["--target", ARM64_RUST_TARGET, "-C"])
            }
            (Arch::Arm64, build) => bail!("no arm64 build for {build:?}"),
        };
        let mut command = Command::new(program);
        command.args(flags);
        if (self, build) == (Arch::Arm64, Compile::RustStatic) {
            command.arg(format!("linker={}", cc.display())).arg("-O");
        }
        command.args(["-o", output, source]).stdin(Stdio::null());
        Ok(command)
    }

    /// What a failed compile may lack.
    pub fn compile_hint(self, build: Compile) -> String {
        match (self, build) {
            (Arch::X86_64, Compile::CStatic | Compile::RustStatic) => {
                "static linking needs libc.a (Debian/Ubuntu: libc6-dev)".into()
            }
            (Arch::X86_64, Compile::Cxx) => "needs libstdc++ (Debian/Ubuntu: g++)".into(),
            (Arch::X86_64, _) => "needs a C compiler (Debian/Ubuntu: gcc)".into(),
            (Arch::Arm64, Compile::RustStatic) => format!(
                "needs `rustup target add {ARM64_RUST_TARGET}` and {CROSS_GCC} \
                 (Debian/Ubuntu: gcc-aarch64-linux-gnu)"
            ),
            (Arch::Arm64, _) => format!(
                "needs {CROSS_GCC} (Debian/Ubuntu: gcc-aarch64-linux-gnu, \
                 libc6-dev-arm64-cross)"
            ),
        }
    }

    /// More `nanoimg build` flags, and the stderr lines it must then print, for a program
    /// built with `build`: a dynamic arm64 program takes its loader and libc from the
    /// cross sysroot.
    pub fn dynamic_build(self, build: Compile) -> (Vec<String>, Vec<String>) {
        if self != Arch::Arm64 || build != Compile::C {
            return (Vec::new(), Vec::new());
        }
        let packed = ["ld-linux-aarch64.so.1", "libc.so.6"]
            .map(|f| format!("nanoimg: packed /lib/{f} <- {ARM64_SYSROOT}/lib/{f}"));
        (
            vec!["--target-root".into(), ARM64_SYSROOT.into()],
            packed.into(),
        )
    }

    /// What `nanoimg run --print-command` must show for every image of this architecture:
    /// for arm64, QEMU's virt machine with semihosting, and the kernel given with
    /// `-kernel` (ops's shape) or, for a `--uefi` image, firmware with `-bios`.
    pub fn qemu_expect(self, uefi: bool) -> Qemu {
        if self == Arch::X86_64 {
            return Qemu::default();
        }
        let (boot, not) = if uefi {
            ("-bios", "-kernel")
        } else {
            ("-kernel", "-bios")
        };
        Qemu {
            args: ["-machine virt", "-semihosting", boot]
                .map(String::from)
                .into(),
            no_args: vec![not.to_owned()],
            parts: vec![self.qemu().to_owned()],
        }
    }
}

/// What `nanoimg run --print-command` must show (a case's `expect.qemu`): arguments
/// (consecutive ones space-separated), arguments it must not have, parts of arguments.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Qemu {
    pub args: Vec<String>,
    pub no_args: Vec<String>,
    pub parts: Vec<String>,
}

impl Qemu {
    pub fn is_empty(&self) -> bool {
        self.args.is_empty() && self.no_args.is_empty() && self.parts.is_empty()
    }

    /// What the printed QEMU command line `args` (one argument each) lacks or has wrong.
    pub fn problems(&self, args: &[&str]) -> Vec<String> {
        let has = |seq: &str| {
            let seq: Vec<&str> = seq.split(' ').collect();
            args.windows(seq.len()).any(|w| w == seq.as_slice())
        };
        let lacks = self.args.iter().filter(|a| !has(a));
        let mut problems: Vec<String> = lacks
            .map(|a| format!("the QEMU command line lacks {a}"))
            .collect();
        let wrong = self.no_args.iter().filter(|a| has(a));
        problems.extend(wrong.map(|a| format!("the QEMU command line has {a}")));
        problems.extend(
            self.parts
                .iter()
                .filter(|p| !args.iter().any(|a| a.contains(p.as_str())))
                .map(|p| format!("no QEMU argument contains {p:?}")),
        );
        problems
    }
}

/// Checks an arm64 release folder: `kernel.img` must be an aarch64 ELF. Returns it
/// absolute.
pub fn check_arm64_kernel_dir(dir: &Path) -> Result<std::path::PathBuf, String> {
    let kernel = dir.join("kernel.img");
    let head = fs::read(&kernel).map_err(|err| {
        format!(
            "arm64 kernel folder {} has no readable kernel.img ({err}); expected an unpacked \
             nanos-release-linux-<v>-virt tarball",
            dir.display()
        )
    })?;
    let machine = (head.len() >= 20 && head[..4] == *b"\x7fELF")
        .then(|| u16::from_le_bytes([head[18], head[19]]));
    if machine != Some(183) {
        return Err(format!(
            "{} is not an aarch64 ELF kernel; --arm64-kernel-dir needs an unpacked \
             nanos-release-linux-<v>-virt tarball",
            kernel.display()
        ));
    }
    dir.canonicalize()
        .map_err(|err| format!("cannot resolve {}: {err}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_kernel_folder_must_hold_an_aarch64_kernel() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_arm64_kernel_dir(dir.path())
            .unwrap_err()
            .contains("no readable"));
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[18] = 62;
        fs::write(dir.path().join("kernel.img"), &elf).unwrap();
        assert!(check_arm64_kernel_dir(dir.path())
            .unwrap_err()
            .contains("not an aarch64"));
        elf[18] = 183;
        fs::write(dir.path().join("kernel.img"), &elf).unwrap();
        assert!(check_arm64_kernel_dir(dir.path()).is_ok());
    }

    #[test]
    fn arm64_rust_links_with_the_cross_gcc() {
        let gcc = Path::new("/usr/bin/aarch64-linux-gnu-gcc");
        let command = Arch::Arm64
            .compile_command(Compile::RustStatic, gcc, "p", "p.rs")
            .unwrap();
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args.join(" "),
            "--target aarch64-unknown-linux-musl -C linker=/usr/bin/aarch64-linux-gnu-gcc -O -o p p.rs"
        );
        assert!(Arch::Arm64
            .compile_command(Compile::Cxx, gcc, "p", "p.cpp")
            .is_err());
    }
}
