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

/// Reads the ELF header, program headers and dynamic section of a file whose
/// identification [`check_ident`] accepted.
fn parse<'a, R: ReadRef<'a>>(path: &Path, data: R, arch: Arch) -> Result<ElfInfo, ElfError> {
    let corrupt = |reason: &str| corrupt(path, reason);
    let header =
        elf::FileHeader64::<Endianness>::parse(data).map_err(|e| corrupt(&e.to_string()))?;
    let endian = header.endian().map_err(|e| corrupt(&e.to_string()))?;
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| corrupt(&e.to_string()))?;
    let segments = Segments::read(path, data, endian, phdrs)?;
    let tags = DynamicTags::read(endian, segments.dynamic.unwrap_or(&[]));
    let strings = DynStrings {
        path,
        bytes: tags.string_table(path, data, endian, phdrs)?,
    };

    let e_type = header.e_type(endian);
    let is_pie = tags.flags_1 & u64::from(elf::DF_1_PIE) != 0;
    let entry = header.e_entry(endian);
    let kind = kind_of(path, e_type, segments.interpreter.is_some(), is_pie)?;
    Ok(ElfInfo {
        arch,
        kind,
        entry,
        interpreter: segments.interpreter,
        needed: tags
            .needed_offsets
            .into_iter()
            .map(|o| strings.string(o))
            .collect::<Result<_, _>>()?,
        rpath: strings.split(tags.rpath)?,
        runpath: strings.split(tags.runpath)?,
        soname: tags.soname.map(|o| strings.string(o)).transpose()?,
    })
}

/// An [`ElfError::Corrupt`] of `path`.
fn corrupt(path: &Path, reason: &str) -> ElfError {
    ElfError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// What the program headers point at.
struct Segments<'a> {
    /// `PT_INTERP`, without its NUL.
    interpreter: Option<String>,
    /// The entries of `PT_DYNAMIC`.
    dynamic: Option<&'a [elf::Dyn64<Endianness>]>,
}

impl<'a> Segments<'a> {
    /// Reads `PT_INTERP` and `PT_DYNAMIC` (the last of each) in the order of `phdrs`.
    fn read<R: ReadRef<'a>>(
        path: &Path,
        data: R,
        endian: Endianness,
        phdrs: &'a [elf::ProgramHeader64<Endianness>],
    ) -> Result<Self, ElfError> {
        let corrupt = |reason: &str| corrupt(path, reason);
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
        Ok(Segments {
            interpreter,
            dynamic,
        })
    }
}

/// The dynamic section's entries that matter, up to its `DT_NULL`.
#[derive(Default)]
struct DynamicTags {
    needed_offsets: Vec<u64>,
    rpath: Option<u64>,
    runpath: Option<u64>,
    soname: Option<u64>,
    strtab: Option<u64>,
    strsz: Option<u64>,
    flags_1: u64,
}

impl DynamicTags {
    /// Reads the entries of `dynamic` up to the first `DT_NULL`.
    fn read(endian: Endianness, dynamic: &[elf::Dyn64<Endianness>]) -> DynamicTags {
        let mut tags = DynamicTags::default();
        for d in dynamic {
            let tag = d.d_tag(endian) as u32;
            let val = d.d_val(endian);
            match tag {
                elf::DT_NULL => break,
                elf::DT_NEEDED => tags.needed_offsets.push(val),
                elf::DT_RPATH => tags.rpath = Some(val),
                elf::DT_RUNPATH => tags.runpath = Some(val),
                elf::DT_SONAME => tags.soname = Some(val),
                elf::DT_STRTAB => tags.strtab = Some(val),
                elf::DT_STRSZ => tags.strsz = Some(val),
                elf::DT_FLAGS_1 => tags.flags_1 = val,
                _ => {}
            }
        }
        tags
    }

    /// The bytes of `DT_STRTAB`, when an entry names a string (`None` when none does).
    fn string_table<'a, R: ReadRef<'a>>(
        &self,
        path: &Path,
        data: R,
        endian: Endianness,
        phdrs: &[elf::ProgramHeader64<Endianness>],
    ) -> Result<Option<&'a [u8]>, ElfError> {
        let corrupt = |reason: &str| corrupt(path, reason);
        if self.needed_offsets.is_empty()
            && self.rpath.is_none()
            && self.runpath.is_none()
            && self.soname.is_none()
        {
            // nothing to look up
            return Ok(None);
        }
        let (addr, size) = self
            .strtab
            .zip(self.strsz)
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
        Ok(Some(data.read_bytes_at(offset, size).map_err(|_| {
            corrupt("DT_STRTAB runs past the end of the file")
        })?))
    }
}

/// The dynamic string table of `path`, if it has one.
struct DynStrings<'a> {
    path: &'a Path,
    bytes: Option<&'a [u8]>,
}

impl DynStrings<'_> {
    /// The NUL-terminated UTF-8 string at `off`.
    fn string(&self, off: u64) -> Result<String, ElfError> {
        let corrupt = |reason: &str| corrupt(self.path, reason);
        let s = self.bytes.ok_or_else(|| corrupt("no string table"))?;
        let rest = usize::try_from(off)
            .ok()
            .and_then(|o| s.get(o..))
            .ok_or_else(|| corrupt("dynamic string offset out of range"))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| corrupt("unterminated dynamic string"))?;
        String::from_utf8(rest[..end].to_vec()).map_err(|_| corrupt("dynamic string is not UTF-8"))
    }

    /// The non-empty `:`-separated entries of the string at `v`; none without it.
    fn split(&self, v: Option<u64>) -> Result<Vec<String>, ElfError> {
        Ok(match v {
            None => Vec::new(),
            Some(o) => self
                .string(o)?
                .split(':')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

/// The kind of a file of type `e_type`, or why it is not a program.
fn kind_of(
    path: &Path,
    e_type: u16,
    has_interpreter: bool,
    is_pie: bool,
) -> Result<ElfKind, ElfError> {
    let not_exec = |what| ElfError::NotExecutable {
        path: path.to_path_buf(),
        what,
    };
    Ok(match (e_type, has_interpreter) {
        (elf::ET_EXEC, false) => ElfKind::Static,
        (elf::ET_EXEC, true) | (elf::ET_DYN, true) => ElfKind::Dynamic,
        (elf::ET_DYN, false) if is_pie => ElfKind::StaticPie,
        (elf::ET_DYN, false) => ElfKind::SharedLibrary,
        (elf::ET_REL, _) => return Err(not_exec("relocatable object (.o)")),
        (elf::ET_CORE, _) => return Err(not_exec("core dump")),
        _ => return Err(corrupt(path, &format!("unknown ELF type {e_type}"))),
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
