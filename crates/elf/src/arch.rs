//! The machines nanoimg builds images for, and what differs between them.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use object::elf;

/// A machine architecture Nanos runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Arch {
    /// x86_64: the `pc` platform (BIOS `boot.img`, `bootx64.efi`).
    #[default]
    X86_64,
    /// aarch64: the `virt` platform (no `boot.img`, `bootaa64.efi`).
    Aarch64,
}

impl Arch {
    /// Both, x86_64 first.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture of ELF machine `e_machine`, if Nanos runs on it.
    pub fn from_machine(machine: u16) -> Option<Arch> {
        match machine {
            elf::EM_X86_64 => Some(Arch::X86_64),
            elf::EM_AARCH64 => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The ELF `e_machine` value.
    pub fn machine(self) -> u16 {
        match self {
            Arch::X86_64 => elf::EM_X86_64,
            Arch::Aarch64 => elf::EM_AARCH64,
        }
    }

    /// The name in ELF and toolchain terms (`x86_64`, `aarch64`), used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The name ops and OCI use (`amd64`, `arm64`): `--arch`, `NANOS_ARCH`, the
    /// architecture of a container image's platform.
    pub fn ops_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The glibc program interpreter.
    pub fn interpreter(self) -> &'static str {
        match self {
            Arch::X86_64 => "/lib64/ld-linux-x86-64.so.2",
            Arch::Aarch64 => "/lib/ld-linux-aarch64.so.1",
        }
    }

    /// The directories the glibc loader searches last (multiarch first, as Debian and
    /// Ubuntu build it, then the lib64 layout of other distributions, then `/lib`,
    /// `/usr/lib`).
    pub fn default_dirs(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib64",
                "/usr/lib64",
                "/lib",
                "/usr/lib",
            ],
            Arch::Aarch64 => &[
                "/lib/aarch64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu",
                "/lib64",
                "/usr/lib64",
                "/lib",
                "/usr/lib",
            ],
        }
    }

    /// The flags of this architecture's 64-bit libc6 entries in `ld.so.cache`
    /// (`FLAG_ELF_LIBC6` with `FLAG_X8664_LIB64` or `FLAG_AARCH64_LIB64`, glibc's
    /// `elf/cache.c`).
    pub fn ld_cache_flags(self) -> u32 {
        match self {
            Arch::X86_64 => 0x0303,
            Arch::Aarch64 => 0x0a03,
        }
    }

    /// The Nanos release's UEFI loader file (`bootx64.efi`, `bootaa64.efi`).
    pub fn uefi_loader(self) -> &'static str {
        match self {
            Arch::X86_64 => "bootx64.efi",
            Arch::Aarch64 => "bootaa64.efi",
        }
    }

    /// Whether a release for this architecture has a BIOS `boot.img`.
    pub fn has_bios_boot(self) -> bool {
        self == Arch::X86_64
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An architecture name nanoimg does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown architecture {0:?}; expected amd64 (x86_64) or arm64 (aarch64)")]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;
    /// ops's names (`amd64`, `arm64`) and the ELF ones (`x86_64`, `aarch64`).
    fn from_str(s: &str) -> Result<Arch, UnknownArch> {
        match s {
            "amd64" | "x86_64" | "x86-64" => Ok(Arch::X86_64),
            "arm64" | "aarch64" => Ok(Arch::Aarch64),
            _ => Err(UnknownArch(s.to_owned())),
        }
    }
}

/// The ELF machine of the file at `path` (its `e_machine`, read from the first 20 bytes),
/// or `None` if it is not a little-endian ELF64 file.
pub fn elf_machine(path: &Path) -> std::io::Result<Option<u16>> {
    let mut head = [0u8; 20];
    let mut f = nanoimg_chroot::open_regular(path)?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => return Ok(None),
            k => n += k,
        }
    }
    Ok(machine_of_header(&head))
}

/// `e_machine` of a little-endian ELF64 header.
pub fn machine_of_header(head: &[u8]) -> Option<u16> {
    let ok = head.len() >= 20
        && head[..4] == elf::ELFMAG
        && head[4] == elf::ELFCLASS64
        && head[5] == elf::ELFDATA2LSB;
    ok.then(|| u16::from_le_bytes([head[18], head[19]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_machines_map() {
        for a in Arch::ALL {
            assert_eq!(a.ops_name().parse::<Arch>().unwrap(), a);
            assert_eq!(a.name().parse::<Arch>().unwrap(), a);
            assert_eq!(Arch::from_machine(a.machine()), Some(a));
        }
        assert_eq!(Arch::from_machine(elf::EM_386), None);
        let e = "riscv64".parse::<Arch>().unwrap_err().to_string();
        assert!(e.contains("amd64") && e.contains("arm64"), "{e}");
    }
}
