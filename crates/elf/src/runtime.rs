//! What an object may load at run time without naming it in `DT_NEEDED`: sonames written in
//! its read-only data (the argument of a `dlopen`), and the libraries glibc itself opens for
//! the functions it imports (NSS modules, `libgcc_s` for thread unwinding).
//!
//! Reading is bounded: the section headers, the `.dynsym` table (at most [`MAX_TABLE`]
//! bytes) and the data sections read in chunks; a corrupt or hostile file gives an error or
//! nothing, never a panic.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, SectionTable, Sym};
use object::read::StringTable;
use object::{Endianness, ReadCache, ReadRef};

use crate::inspect::{check_ident, ElfError};

/// The largest `.dynsym` read.
pub const MAX_TABLE: u64 = 64 << 20;
/// Distinct sonames kept from one object's data (each becomes a lookup; a hostile file
/// full of names gets no more).
pub const MAX_SONAMES: usize = 256;
/// The longest string considered a soname.
const MAX_NAME: usize = 255;
/// Sections whose strings are looked at.
pub const DATA_SECTIONS: [&str; 2] = [".rodata", ".data.rel.ro"];

/// Functions whose glibc implementation loads NSS modules for host lookups (files and dns).
pub const NSS_HOSTS: [&str; 12] = [
    "getaddrinfo",
    "getnameinfo",
    "gethostbyname",
    "gethostbyname_r",
    "gethostbyname2",
    "gethostbyname2_r",
    "gethostbyaddr",
    "gethostbyaddr_r",
    "gethostent",
    "gethostent_r",
    "getnetbyname",
    "getnetbyaddr",
];
/// Functions whose glibc implementation loads the files NSS module (users, groups, services,
/// protocols).
pub const NSS_FILES: [&str; 24] = [
    "getpwnam",
    "getpwnam_r",
    "getpwuid",
    "getpwuid_r",
    "getpwent",
    "getpwent_r",
    "getgrnam",
    "getgrnam_r",
    "getgrgid",
    "getgrgid_r",
    "getgrent",
    "getgrent_r",
    "getgrouplist",
    "initgroups",
    "getspnam",
    "getspnam_r",
    "getservbyname",
    "getservbyname_r",
    "getservbyport",
    "getservbyport_r",
    "getprotobyname",
    "getprotobyname_r",
    "getprotobynumber",
    "getprotobynumber_r",
];
/// Functions for which glibc `dlopen`s `libgcc_s.so.1` (to unwind a cancelled or exiting
/// thread).
pub const UNWIND: [&str; 2] = ["pthread_cancel", "pthread_exit"];
/// Functions that load a library by name at run time: `dlopen` itself and the loader
/// wrappers programs call instead (libltdl, GModule, SDL, libuv, which Node addons use).
/// An object importing one of them (or needing `libdl`) may load the sonames in its data.
pub const DLOPEN: [&str; 8] = [
    "dlopen",
    "dlmopen",
    "lt_dlopen",
    "lt_dlopenext",
    "g_module_open",
    "g_module_open_full",
    "SDL_LoadObject",
    "uv_dlopen",
];
/// Symbols of glibc's library loader linked into a static program (`dlopen` works in a
/// static glibc program; every static glibc program since 2.34 has it).
pub const STATIC_LOADER: [&str; 4] = ["_dl_open", "__libc_dlopen_mode", "dlopen", "dlmopen"];
/// musl's static `dlopen`, which only fails: a static musl program loads nothing.
const MUSL_STUB: &str = "stub_dlopen";
/// The magic of glibc's `ld.so.cache` format, in the data of every object carrying glibc's
/// loader: the evidence left in a stripped static glibc program.
const GLIBC_CACHE_MAGIC: &str = "glibc-ld.so.cache1.1";

/// Why an object may load a library at run time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LoadReason {
    /// The soname is written in the object's read-only data (`section`).
    Data { section: String },
    /// The object imports `symbol`, for which glibc loads NSS modules.
    Nss { symbol: String },
    /// The object imports `symbol`, for which glibc loads `libgcc_s.so.1` to unwind.
    Unwind { symbol: String },
}

/// A library that may be loaded at run time and is not in the closure: a hint, not an error.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeLoad {
    pub soname: String,
    /// The guest path of the object that may load it.
    pub object: String,
    pub reason: LoadReason,
    /// Its guest path, when the resolver finds it in the root.
    pub found: Option<String>,
    /// The host file found there.
    pub host_path: Option<PathBuf>,
    /// The config line that packs it.
    pub config_line: String,
    /// The root searched.
    #[serde(skip)]
    pub root: PathBuf,
}

impl std::fmt::Display for RuntimeLoad {
    /// One line: `/prog may load libfoo.so.1 at run time (named in its data); found at
    /// /usr/lib/libfoo.so.1; add "Libraries": ["libfoo.so.1"] to pack it`. Only glibc's
    /// own modules (NSS, `libgcc_s`) missing from the root are advised to be put there; a
    /// name from data that the root lacks is only said to be missing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match &self.reason {
            LoadReason::Data { section } if section == ".rodata" => "named in its data".to_string(),
            LoadReason::Data { section } => format!("named in its data, {section}"),
            LoadReason::Nss { symbol } => format!("glibc NSS module for {symbol}"),
            LoadReason::Unwind { symbol } => {
                format!("glibc loads it to unwind threads for {symbol}")
            }
        };
        write!(
            f,
            "{} may load {} at run time ({why}); ",
            self.object, self.soname
        )?;
        match (&self.found, &self.reason) {
            (Some(path), _) => write!(f, "found at {path}; add {} to pack it", self.config_line),
            // A name in data may be anything (a message, a linker script's name): only say
            // the root lacks it.
            (None, LoadReason::Data { .. }) => write!(
                f,
                "no loadable library of that name in {}, so nothing is packed for it",
                self.root.display()
            ),
            // glibc's own modules: real libraries the root should ship.
            (None, _) => write!(
                f,
                "not found in {}; put it there and add {} to pack it",
                self.root.display(),
                self.config_line
            ),
        }
    }
}

/// What one object refers to that may be loaded at run time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeRefs {
    /// (section, soname) for each distinct soname found in [`DATA_SECTIONS`], in file order,
    /// at most [`MAX_SONAMES`].
    pub sonames: Vec<(String, String)>,
    /// Functions among [`NSS_HOSTS`], [`NSS_FILES`] and [`UNWIND`] the object uses, sorted:
    /// its undefined dynamic symbols, or for a static program the functions its symbol
    /// table defines (static linking keeps only what is called).
    pub imports: Vec<String>,
    /// The evidence that the object can load libraries by name at run time, in words
    /// (`imports dlopen`, `contains glibc's loader (_dl_open)`); `None` without any, and
    /// then the sonames in its data are not loads.
    pub loader: Option<String>,
    /// The object is a static program (no `.interp` section, no undefined dynamic symbol):
    /// glibc's own code is inside it, with glibc's own strings.
    pub is_static: bool,
}

/// Reads the sonames in the read-only data, the interesting imports and the evidence of a
/// run-time loader of the ELF file at `path` (see [`RuntimeRefs`]).
pub fn runtime_refs(path: &Path) -> Result<RuntimeRefs, ElfError> {
    let file = nanoimg_chroot::open_regular(path).map_err(read_error(path))?;
    let mut raw = file.try_clone().map_err(read_error(path))?;
    let cache = ReadCache::new(file);
    let elf = Sections::parse(path, &cache)?;

    let mut refs = RuntimeRefs::default();
    let has_interp = elf.has_section(b".interp");
    let dynamic = elf.dynamic_imports(&mut refs.imports)?;
    refs.is_static = !has_interp && dynamic.undefined == 0;
    let mut stripped = false;
    refs.loader = dynamic.dlopen_import;
    if refs.is_static {
        let contents = elf.static_contents(&mut refs.imports)?;
        refs.loader = contents.loader;
        stripped = contents.stripped;
    }
    refs.imports.sort();
    // The data is read only where its names can be loads: an object with a loader, or a
    // stripped static program whose data is the only evidence left.
    if refs.loader.is_none() && !stripped {
        return Ok(refs);
    }
    let cache_magic = elf.scan_data(&mut raw, &mut refs.sonames)?;

    if stripped && refs.loader.is_none() {
        if cache_magic {
            refs.loader = Some(format!("contains glibc's loader ({GLIBC_CACHE_MAGIC})"));
        } else {
            refs.sonames.clear();
        }
    }
    Ok(refs)
}

/// The data an ELF file is read through.
type Data<'a> = &'a ReadCache<File>;

/// Maps an I/O error on `path` to [`ElfError::Read`].
fn read_error(path: &Path) -> impl Fn(std::io::Error) -> ElfError + '_ {
    move |source| ElfError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// The section headers of an ELF file, with what reading them needs.
struct Sections<'a> {
    path: &'a Path,
    data: Data<'a>,
    /// The file's length.
    len: u64,
    endian: Endianness,
    table: SectionTable<'a, elf::FileHeader64<Endianness>, Data<'a>>,
}

/// What the dynamic symbol table says.
struct DynamicImports {
    /// Undefined dynamic symbols, named or not.
    undefined: usize,
    /// `imports <name>` for the first of [`DLOPEN`] imported.
    dlopen_import: Option<String>,
}

/// What a static program's symbol table says.
struct StaticContents {
    /// `contains glibc's loader (<symbol>)`, unless it has musl's stub or no symbol table.
    loader: Option<String>,
    /// It has no symbol table.
    stripped: bool,
}

impl<'a> Sections<'a> {
    /// Checks the identification bytes, then reads the ELF header and the section headers.
    fn parse(path: &'a Path, data: Data<'a>) -> Result<Sections<'a>, ElfError> {
        let corrupt = |reason: String| corrupt(path, reason);
        let len = data
            .len()
            .map_err(|_| corrupt("cannot read its length".into()))?;
        let head = data
            .read_bytes_at(0, len.min(64))
            .map_err(|_| corrupt("cannot read its header".into()))?;
        check_ident(path, head)?;
        let header =
            elf::FileHeader64::<Endianness>::parse(data).map_err(|e| corrupt(e.to_string()))?;
        let endian = header.endian().map_err(|e| corrupt(e.to_string()))?;
        let table = header
            .sections(endian, data)
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(Sections {
            path,
            data,
            len,
            endian,
            table,
        })
    }

    /// An [`ElfError::Corrupt`] of this file.
    fn corrupt(&self, reason: String) -> ElfError {
        corrupt(self.path, reason)
    }

    /// Whether section `s` has its bytes in the file, at most `cap` of them.
    fn in_file(&self, s: &elf::SectionHeader64<Endianness>, cap: u64) -> bool {
        let endian = self.endian;
        let (off, size) = (s.sh_offset(endian), s.sh_size(endian));
        s.sh_type(endian) != elf::SHT_NOBITS
            && size <= cap
            && off.checked_add(size).is_some_and(|end| end <= self.len)
    }

    /// Whether a section is named `name`.
    fn has_section(&self, name: &[u8]) -> bool {
        self.table.iter().any(|s| {
            self.table
                .section_name(self.endian, s)
                .is_ok_and(|n| n == name)
        })
    }

    /// The first section of type `sh_type`.
    fn first_of_type(&self, sh_type: u32) -> Option<&'a elf::SectionHeader64<Endianness>> {
        self.table
            .iter()
            .find(|s| s.sh_type(self.endian) == sh_type)
    }

    /// Reads the undefined symbols of `.dynsym` (at most [`MAX_TABLE`] bytes), adding the
    /// interesting ones to `imports`.
    fn dynamic_imports(&self, imports: &mut Vec<String>) -> Result<DynamicImports, ElfError> {
        let endian = self.endian;
        let mut found = DynamicImports {
            undefined: 0,
            dlopen_import: None,
        };
        let Some(s) = self.first_of_type(elf::SHT_DYNSYM) else {
            return Ok(found);
        };
        if !self.in_file(s, MAX_TABLE) {
            return Err(self.corrupt("its .dynsym is too large or runs past the end".into()));
        }
        let symbols = self
            .table
            .symbols(endian, self.data, elf::SHT_DYNSYM)
            .map_err(|e| self.corrupt(e.to_string()))?;
        let strings = symbols.strings();
        for sym in symbols.iter().skip(1) {
            if !sym.is_undefined(endian) {
                continue;
            }
            found.undefined += 1;
            let Some(name) = symbol_name(sym, endian, strings) else {
                continue;
            };
            if DLOPEN.contains(&name) && found.dlopen_import.is_none() {
                found.dlopen_import = Some(format!("imports {name}"));
            }
            note_use(imports, name);
        }
        Ok(found)
    }

    /// A static program: its symbol table (when not stripped) says what it contains. Adds
    /// the interesting functions it defines to `imports`.
    fn static_contents(&self, imports: &mut Vec<String>) -> Result<StaticContents, ElfError> {
        let endian = self.endian;
        let symtab = self
            .first_of_type(elf::SHT_SYMTAB)
            .filter(|s| self.in_file(s, MAX_TABLE));
        let mut machinery = None;
        let mut stub = false;
        if symtab.is_some() {
            let symbols = self
                .table
                .symbols(endian, self.data, elf::SHT_SYMTAB)
                .map_err(|e| self.corrupt(e.to_string()))?;
            let strings = symbols.strings();
            for sym in symbols.iter().skip(1) {
                if sym.is_undefined(endian) {
                    continue;
                }
                let Some(name) = symbol_name(sym, endian, strings) else {
                    continue;
                };
                if name == MUSL_STUB {
                    stub = true;
                } else if let Some(i) = STATIC_LOADER.iter().position(|n| *n == name) {
                    // The first of the list found names the evidence, whatever the order.
                    machinery = Some(machinery.map_or(i, |m: usize| m.min(i)));
                }
                note_use(imports, name);
            }
        }
        Ok(StaticContents {
            loader: machinery
                .filter(|_| !stub)
                .map(|i| format!("contains glibc's loader ({})", STATIC_LOADER[i])),
            stripped: symtab.is_none(),
        })
    }

    /// Scans [`DATA_SECTIONS`] through `raw`, adding the distinct sonames found (at most
    /// [`MAX_SONAMES`]) to `sonames`; whether glibc's `ld.so.cache` magic was among them.
    fn scan_data(
        &self,
        raw: &mut File,
        sonames: &mut Vec<(String, String)>,
    ) -> Result<bool, ElfError> {
        let endian = self.endian;
        let mut cache_magic = false;
        for s in self.table.iter() {
            let Ok(name) = self.table.section_name(endian, s) else {
                continue;
            };
            let Some(section) = DATA_SECTIONS.iter().find(|n| n.as_bytes() == name) else {
                continue;
            };
            if !self.in_file(s, u64::MAX) {
                return Err(
                    self.corrupt(format!("section {section} runs past the end of the file"))
                );
            }
            scan(raw, s.sh_offset(endian), s.sh_size(endian), &mut |token| {
                if token == GLIBC_CACHE_MAGIC {
                    cache_magic = true;
                } else if is_soname(token)
                    && sonames.len() < MAX_SONAMES
                    && !sonames.iter().any(|(_, n)| n == token)
                {
                    sonames.push((section.to_string(), token.to_string()));
                }
            })
            .map_err(read_error(self.path))?;
        }
        Ok(cache_magic)
    }
}

/// An [`ElfError::Corrupt`] of `path`.
fn corrupt(path: &Path, reason: String) -> ElfError {
    ElfError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// The name of `sym`, when it can be read and is UTF-8.
fn symbol_name<'a>(
    sym: &elf::Sym64<Endianness>,
    endian: Endianness,
    strings: StringTable<'a, Data<'a>>,
) -> Option<&'a str> {
    std::str::from_utf8(sym.name(endian, strings).ok()?).ok()
}

/// Adds `name` to `imports` when using it makes glibc load a library and it is not there.
fn note_use(imports: &mut Vec<String>, name: &str) {
    if is_use(name) && !imports.iter().any(|n| n == name) {
        imports.push(name.to_string());
    }
}

/// Calls `found` for every token of name bytes (`[A-Za-z0-9_+.-]`, at most 255) in `size`
/// bytes at `offset`, read in chunks.
fn scan(
    file: &mut File,
    offset: u64,
    size: u64,
    found: &mut dyn FnMut(&str),
) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    file.seek(SeekFrom::Start(offset))?;
    let mut rest = file.take(size);
    let mut buf = vec![0u8; CHUNK];
    let mut token: Vec<u8> = Vec::new();
    let mut too_long = false;
    loop {
        let n = rest.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if is_name_byte(b) {
                if token.len() < MAX_NAME {
                    token.push(b);
                } else {
                    too_long = true;
                }
            } else {
                if !too_long {
                    emit(&token, found);
                }
                token.clear();
                too_long = false;
            }
        }
    }
    if !too_long {
        emit(&token, found);
    }
    Ok(())
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'.' | b'-')
}

/// Gives `found` a token of name bytes, trailing dots dropped (a sentence's full stop).
fn emit(token: &[u8], found: &mut dyn FnMut(&str)) {
    if let Ok(s) = std::str::from_utf8(token) {
        let s = s.trim_end_matches('.');
        if !s.is_empty() {
            found(s);
        }
    }
}

/// Whether the object using `name` makes glibc load a library (NSS, unwinding).
fn is_use(name: &str) -> bool {
    NSS_HOSTS.contains(&name) || NSS_FILES.contains(&name) || UNWIND.contains(&name)
}

/// Whether `s` matches `lib[A-Za-z0-9_+.-]+\.so(\.[0-9]+)*` in full.
pub fn is_soname(s: &str) -> bool {
    if s.len() > MAX_NAME || !s.starts_with("lib") || !s.bytes().all(is_name_byte) {
        return false;
    }
    let mut base = s;
    while let Some((head, tail)) = base.rsplit_once('.') {
        if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            base = head;
        } else {
            break;
        }
    }
    base.strip_suffix(".so")
        .and_then(|b| b.strip_prefix("lib"))
        .is_some_and(|stem| !stem.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sonames() {
        for yes in [
            "libcuda.so.1",
            "libfoo.so",
            "libstdc++.so.6",
            "libnss_files.so.2",
            "libx-1.2.so.0.10",
        ] {
            assert!(is_soname(yes), "{yes}");
        }
        for no in [
            "lib.so",
            "libfoo.so.",
            "libfoo.so.x",
            "libfoo",
            "foo.so.1",
            "libfoo.sox",
            "lib%s.so",
            "",
        ] {
            assert!(!is_soname(no), "{no}");
        }
    }

    fn scan_bytes(bytes: &[u8]) -> Vec<String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, bytes).unwrap();
        let mut f = File::open(&p).unwrap();
        let mut out = Vec::new();
        scan(&mut f, 0, bytes.len() as u64, &mut |s| {
            if is_soname(s) {
                out.push(s.to_string())
            }
        })
        .unwrap();
        out
    }

    #[test]
    fn scans_tokens_like_strings_would() {
        let mut data =
            b"\0\x01libcuda.so.1\0cannot load libfoo.so.2.\0lib%s.so\0/opt/libbar.so\0".to_vec();
        data.extend(vec![b'a'; 300]);
        // A token longer than a soname can be is dropped whole.
        data.extend(b"libx.so\0libend.so.3");
        assert_eq!(
            scan_bytes(&data),
            ["libcuda.so.1", "libfoo.so.2", "libbar.so", "libend.so.3"]
        );
    }

    fn elf_header() -> Vec<u8> {
        // A minimal ELF64 little-endian x86_64 header: e_type DYN.
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[6] = 1;
        h[16] = 3;
        h[18] = 62;
        h[20] = 1;
        h[52] = 64; // e_ehsize
        h[54] = 56; // e_phentsize
        h[58] = 64; // e_shentsize
        h
    }

    /// An ELF64 little-endian section header: `sh_name`, `sh_type`, `sh_offset`, `sh_size`,
    /// `sh_link` and `sh_entsize`, the rest zero.
    fn section(name: u32, ty: u32, off: u64, size: u64, link: u32, entsize: u64) -> Vec<u8> {
        let mut s = vec![0u8; 64];
        s[0..4].copy_from_slice(&name.to_le_bytes());
        s[4..8].copy_from_slice(&ty.to_le_bytes());
        s[24..32].copy_from_slice(&off.to_le_bytes());
        s[32..40].copy_from_slice(&size.to_le_bytes());
        s[40..44].copy_from_slice(&link.to_le_bytes());
        s[56..64].copy_from_slice(&entsize.to_le_bytes());
        s
    }

    fn refs_of(bytes: &[u8]) -> Result<RuntimeRefs, ElfError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, bytes).unwrap();
        runtime_refs(&p)
    }

    #[test]
    fn hostile_input_is_an_error_or_nothing_never_a_panic() {
        assert!(matches!(refs_of(b""), Err(ElfError::NotElf { .. })));
        assert!(matches!(
            refs_of(b"\x7fELF\x02\x01"),
            Err(ElfError::Corrupt { .. })
        ));
        // No section headers: nothing found (and nothing undefined: it reads as static).
        assert_eq!(
            refs_of(&elf_header()).unwrap(),
            RuntimeRefs {
                is_static: true,
                ..RuntimeRefs::default()
            }
        );
        // Section headers past the end, huge counts, bogus string table index.
        let mut h = elf_header();
        h[40..48].copy_from_slice(&u64::MAX.to_le_bytes()); // e_shoff
        h[60..62].copy_from_slice(&0xffffu16.to_le_bytes()); // e_shnum
        h[62..64].copy_from_slice(&0xfffeu16.to_le_bytes()); // e_shstrndx
        assert!(refs_of(&h).is_err());
        // One section header table of 3 entries: null, a .dynsym claiming a huge size, and a
        // .shstrtab; then the same with a .rodata past the end.
        for (ty, name, size) in [
            (elf::SHT_DYNSYM, ".dynsym", u64::MAX / 2),
            (elf::SHT_DYNSYM, ".dynsym", 24 * 1000),
            (elf::SHT_PROGBITS, ".rodata", 1 << 40),
        ] {
            let mut f = elf_header();
            let strtab = format!("\0{name}\0.shstrtab\0");
            let str_off = 64u64;
            let sh_off = (64 + strtab.len() as u64 + 7) & !7;
            f.extend(strtab.as_bytes());
            f.resize(sh_off as usize, 0);
            f[40..48].copy_from_slice(&sh_off.to_le_bytes());
            f[60..62].copy_from_slice(&3u16.to_le_bytes());
            f[62..64].copy_from_slice(&2u16.to_le_bytes());
            f.extend(vec![0u8; 64]);
            f.extend(section(1, ty, 0, size, 7, 24));
            f.extend(section(
                name.len() as u32 + 2,
                elf::SHT_STRTAB,
                str_off,
                strtab.len() as u64,
                0,
                0,
            ));
            assert!(refs_of(&f).is_err(), "{name} {size}");
        }
        // Random bytes after a valid identification never panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let mut f = elf_header();
            for _ in 0..512 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                f.push(seed as u8);
            }
            f[40..48].copy_from_slice(&64u64.to_le_bytes());
            f[60..62].copy_from_slice(&((seed >> 8) as u16 % 9).to_le_bytes());
            f[62..64].copy_from_slice(&((seed >> 24) as u16 % 9).to_le_bytes());
            let _ = refs_of(&f);
        }
    }

    #[test]
    fn a_file_full_of_names_gives_at_most_max_sonames() {
        // A stripped static-looking ELF whose .rodata holds 1000 sonames and the loader magic.
        let mut data = GLIBC_CACHE_MAGIC.as_bytes().to_vec();
        for i in 0..1000 {
            data.extend(format!("\0libx{i}.so.1").as_bytes());
        }
        let mut f = elf_header();
        let strtab = "\0.rodata\0.shstrtab\0";
        f.extend(strtab.as_bytes());
        let data_off = f.len() as u64;
        f.extend(&data);
        let sh_off = (f.len() as u64 + 7) & !7;
        f.resize(sh_off as usize, 0);
        f[40..48].copy_from_slice(&sh_off.to_le_bytes());
        f[60..62].copy_from_slice(&3u16.to_le_bytes());
        f[62..64].copy_from_slice(&2u16.to_le_bytes());
        f.extend(vec![0u8; 64]);
        f.extend(section(
            1,
            elf::SHT_PROGBITS,
            data_off,
            data.len() as u64,
            0,
            0,
        ));
        f.extend(section(9, elf::SHT_STRTAB, 64, strtab.len() as u64, 0, 0));
        let refs = refs_of(&f).unwrap();
        assert!(refs.is_static);
        assert_eq!(
            refs.loader.as_deref(),
            Some("contains glibc's loader (glibc-ld.so.cache1.1)")
        );
        assert_eq!(refs.sonames.len(), MAX_SONAMES);
        assert_eq!(refs.sonames[0].1, "libx0.so.1");
    }

    #[test]
    fn reads_this_hosts_libc_without_error() {
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        if libc.exists() {
            let r = runtime_refs(libc).unwrap();
            assert!(r.imports.is_empty(), "{:?}", r.imports);
        }
    }
}
