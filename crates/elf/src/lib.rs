//! The program's ELF file and its shared libraries, found without running anything.
//!
//! ops finds a dynamic program's libraries by executing it with `LD_TRACE_LOADED_OBJECTS`
//! (or `ldd`): that runs an untrusted binary on the build host and ties the result to the
//! host. nanoimg reads ELF headers instead:
//!
//! - [`inspect`] reads class, byte order, machine, type, `PT_INTERP`, `DT_NEEDED`, `DT_RPATH`,
//!   `DT_RUNPATH` and `DT_SONAME`, touching only the headers (a multi-GiB program is not read
//!   into memory), and refuses with a precise message anything that is not an x86_64 or aarch64 ELF64
//!   executable, and gives its architecture ([`Arch`]: x86_64 or aarch64);
//! - [`Resolver`] computes the dynamic closure the way the glibc loader does it inside the
//!   guest, within a root directory (the host's `/` or a sysroot): each library is stored at
//!   the path the loader will open, with the content of the file found there (symlinks
//!   followed inside the root); [`Resolver::resolve_with`] also packs libraries asked for by
//!   name (the config's `Libraries`);
//! - [`Resolver::runtime_loads`] lists what the program and its libraries may load at run
//!   time, which `DT_NEEDED` does not say: sonames in their read-only data, glibc's NSS
//!   modules and `libgcc_s.so.1` ([`runtime_refs`] reads them, bounded).

mod arch;
mod inspect;
mod ldcache;
mod packed;
mod resolve;
mod root;
mod runtime;

pub use arch::{elf_machine, machine_of_header, Arch, UnknownArch};
pub use inspect::{inspect, ElfError, ElfInfo, ElfKind};
pub use packed::{is_elf, ImageView, InImage, NeededClosure, Unresolved, MAX_PACKED_ELFS};
pub use resolve::{Dependency, Resolution, ResolveError, Resolver, Rule, LIBRARIES};
pub use root::resolve_in_root;
pub use runtime::{
    is_soname, runtime_refs, LoadReason, RuntimeLoad, RuntimeRefs, DLOPEN, STATIC_LOADER,
};
