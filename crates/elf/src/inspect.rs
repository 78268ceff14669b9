use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, ReadCache, ReadRef};

use crate::arch::Arch;

/// What kind of ELF file a program is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElfKind {
    /// `ET_EXEC` without an interpreter.
    Static,
    /// `ET_DYN` marked PIE, without an interpreter.
    StaticPie,
    /// `ET_EXEC` or PIE `ET_DYN` with an interpreter.
    Dynamic,
    /// `ET_DYN` without an interpreter and not marked PIE: a library, not a program.
    SharedLibrary,
}

/// The headers of an ELF file that matter for packaging it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    /// `e_machine`.
    pub arch: Arch,
    pub kind: ElfKind,
    /// `e_entry`.
    pub entry: u64,
    /// `PT_INTERP`, without its NUL.
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    /// `DT_RPATH` entries (split on `:`).
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` entries (split on `:`).
    pub runpath: Vec<String>,
    pub soname: Option<String>,
}

/// A file that is not an ELF program nanoimg can package.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file")]
    NotElf { path: PathBuf },
    #[error("{path} is a 32-bit ELF; Nanos runs 64-bit programs (x86_64 or aarch64)")]
    Class32 { path: PathBuf },
    #[error("{path} is a big-endian ELF; Nanos runs little-endian programs (x86_64 or aarch64)")]
    BigEndian { path: PathBuf },
    #[error("{path} is an {machine} ELF; Nanos runs x86_64 and aarch64 programs")]
    Machine { path: PathBuf, machine: String },
    #[error("{path} is a truncated or corrupt ELF file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} is an ELF {what}, not an executable program")]
    NotExecutable { path: PathBuf, what: &'static str },
}

/// Offsets in `e_ident`.
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;

fn machine_name(m: u16) -> String {
    match m {
        elf::EM_AARCH64 => "aarch64".into(),
        elf::EM_386 => "i386".into(),
        elf::EM_ARM => "arm".into(),
        elf::EM_RISCV => "riscv".into(),
        elf::EM_PPC64 => "ppc64".into(),
        elf::EM_S390 => "s390".into(),
        elf::EM_MIPS => "mips".into(),
        other => format!("unknown-machine ({other})"),
    }
}

/// Checks the identification bytes: an x86_64 or aarch64 little-endian ELF64 (its
/// architecture), or a precise error.
pub(crate) fn check_ident(path: &Path, head: &[u8]) -> Result<Arch, ElfError> {
    let p = || path.to_path_buf();
    if head.len() < 4 || head[..4] != elf::ELFMAG {
        return Err(ElfError::NotElf { path: p() });
    }
    if head.len() < 20 {
        return Err(ElfError::Corrupt {
            path: p(),
            reason: format!("only {} bytes", head.len()),
        });
    }
    let data = head[EI_DATA];
    let machine = if data == elf::ELFDATA2MSB {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    let arch = Arch::from_machine(machine).ok_or_else(|| ElfError::Machine {
        path: p(),
        machine: machine_name(machine),
    })?;
    match head[EI_CLASS] {
        elf::ELFCLASS64 => {}
        elf::ELFCLASS32 => return Err(ElfError::Class32 { path: p() }),
        c => {
            return Err(ElfError::Corrupt {
                path: p(),
                reason: format!("unknown ELF class {c}"),
            })
        }
    }
    match data {
        elf::ELFDATA2LSB => Ok(arch),
        elf::ELFDATA2MSB => Err(ElfError::BigEndian { path: p() }),
        d => Err(ElfError::Corrupt {
            path: p(),
            reason: format!("unknown byte order {d}"),
        }),
    }
}

/// Reads the headers of the ELF file at `path`. Only the ELF header, program headers and
/// dynamic section are read, through a cache, never the whole file.
pub fn inspect(path: &Path) -> Result<ElfInfo, ElfError> {
    let read = |source| ElfError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = nanoimg_chroot::open_regular(path).map_err(read)?;
    let cache = ReadCache::new(file);
    let data = &cache;
    let len = data.len().map_err(|_| ElfError::Corrupt {
        path: path.to_path_buf(),
        reason: "cannot read its length".into(),
    })?;
    let head = data
        .read_bytes_at(0, len.min(64))
        .map_err(|_| ElfError::Corrupt {
            path: path.to_path_buf(),
            reason: "cannot read its header".into(),
        })?;
    let arch = check_ident(path, head)?;
    parse(path, data, arch)
}

fn parse<'a, R: ReadRef<'a>>(path: &Path, data: R, arch: Arch) -> Result<ElfInfo, ElfError> {
    let corrupt = |reason: &str| ElfError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let header =
        elf::FileHeader64::<Endianness>::parse(data).map_err(|e| corrupt(&e.to_string()))?;
    let endian = header.endian().map_err(|e| corrupt(&e.to_string()))?;
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| corrupt(&e.to_string()))?;

    let mut interpreter = None;
    let mut dynamic = None;
    for ph in phdrs {
        match ph.p_type(endian) {
            elf::PT_INTERP => {
                let bytes = ph
                    .interpreter(endian, data)
                    .map_err(|e| corrupt(&e.to_string()))?
                    .ok_or_else(|| corrupt("empty PT_INTERP"))?;
                interpreter = Some(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| corrupt("PT_INTERP is not UTF-8"))?,
                );
            }
            elf::PT_DYNAMIC => {
                dynamic = ph
                    .dynamic(endian, data)
                    .map_err(|e| corrupt(&e.to_string()))?;
            }
            _ => {}
        }
    }

    let mut needed_offsets = Vec::new();
    let (mut rpath, mut runpath, mut soname) = (None, None, None);
    let (mut strtab, mut strsz) = (None, None);
    let mut flags_1 = 0u64;
    for d in dynamic.unwrap_or(&[]) {
        let tag = d.d_tag(endian) as u32;
        let val = d.d_val(endian);
        match tag {
            elf::DT_NULL => break,
            elf::DT_NEEDED => needed_offsets.push(val),
            elf::DT_RPATH => rpath = Some(val),
            elf::DT_RUNPATH => runpath = Some(val),
            elf::DT_SONAME => soname = Some(val),
            elf::DT_STRTAB => strtab = Some(val),
            elf::DT_STRSZ => strsz = Some(val),
            elf::DT_FLAGS_1 => flags_1 = val,
            _ => {}
        }
    }

    let mut strings: Option<&[u8]> = None;
    if needed_offsets.is_empty() && rpath.is_none() && runpath.is_none() && soname.is_none() {
        // nothing to look up
    } else {
        let (addr, size) = strtab
            .zip(strsz)
            .ok_or_else(|| corrupt("dynamic section without DT_STRTAB/DT_STRSZ"))?;
        // The loader maps DT_STRTAB through the PT_LOAD segments; so do we.
        let offset = phdrs
            .iter()
            .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
            .find_map(|ph| {
                let (va, fs, off) = (ph.p_vaddr(endian), ph.p_filesz(endian), ph.p_offset(endian));
                (addr >= va && addr.checked_add(size)? <= va.checked_add(fs)?)
                    .then(|| off + (addr - va))
            })
            .ok_or_else(|| corrupt("DT_STRTAB is outside every loaded segment"))?;
        strings = Some(
            data.read_bytes_at(offset, size)
                .map_err(|_| corrupt("DT_STRTAB runs past the end of the file"))?,
        );
    }
    let string = |off: u64| -> Result<String, ElfError> {
        let s = strings.ok_or_else(|| corrupt("no string table"))?;
        let rest = usize::try_from(off)
            .ok()
            .and_then(|o| s.get(o..))
            .ok_or_else(|| corrupt("dynamic string offset out of range"))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| corrupt("unterminated dynamic string"))?;
        String::from_utf8(rest[..end].to_vec()).map_err(|_| corrupt("dynamic string is not UTF-8"))
    };
    let split = |v: Option<u64>| -> Result<Vec<String>, ElfError> {
        Ok(match v {
            None => Vec::new(),
            Some(o) => string(o)?
                .split(':')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        })
    };

    let e_type = header.e_type(endian);
    let is_pie = flags_1 & u64::from(elf::DF_1_PIE) != 0;
    let entry = header.e_entry(endian);
    let not_exec = |what| ElfError::NotExecutable {
        path: path.to_path_buf(),
        what,
    };
    let kind = match (e_type, interpreter.is_some()) {
        (elf::ET_EXEC, false) => ElfKind::Static,
        (elf::ET_EXEC, true) | (elf::ET_DYN, true) => ElfKind::Dynamic,
        (elf::ET_DYN, false) if is_pie => ElfKind::StaticPie,
        (elf::ET_DYN, false) => ElfKind::SharedLibrary,
        (elf::ET_REL, _) => return Err(not_exec("relocatable object (.o)")),
        (elf::ET_CORE, _) => return Err(not_exec("core dump")),
        _ => return Err(corrupt(&format!("unknown ELF type {e_type}"))),
    };
    Ok(ElfInfo {
        arch,
        kind,
        entry,
        interpreter,
        needed: needed_offsets
            .into_iter()
            .map(string)
            .collect::<Result<_, _>>()?,
        rpath: split(rpath)?,
        runpath: split(runpath)?,
        soname: soname.map(string).transpose()?,
    })
}

impl ElfInfo {
    /// Refuses what cannot be a program: a shared library (an `ET_DYN` without interpreter
    /// that is not PIE) or a file without an entry point.
    pub fn check_program(&self, path: &Path) -> Result<(), ElfError> {
        if self.kind == ElfKind::SharedLibrary || self.entry == 0 {
            return Err(ElfError::NotExecutable {
                path: path.to_path_buf(),
                what: "shared library (no interpreter, not PIE)",
            });
        }
        Ok(())
    }
}
