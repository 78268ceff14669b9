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
//! - [`Resolver::needed_closure`] does the same for every other ELF file an image holds
//!   (shared objects under `Dirs`/`MapDirs`, Python extension modules, Node addons): each
//!   searched with its own `DT_RUNPATH`/`DT_RPATH`, `$ORIGIN` its image folder, in the
//!   image first ([`ImageView`]) and then in the root; ELF files are recognised by their
//!   magic, each examined once, lookups memoised by (name, search path), at most
//!   [`MAX_PACKED_ELFS`] per build;
//! - [`Resolver::runtime_loads_of`] lists what the program, its libraries and the other
//!   packed ELF files may load at run time, which `DT_NEEDED` does not say, each only with
//!   evidence: sonames in the read-only data of an object that can load by name (it
//!   imports `dlopen` or a wrapper, [`DLOPEN`], or needs `libdl`; a static program that
//!   contains glibc's loader, [`STATIC_LOADER`], minus the names glibc itself carries),
//!   glibc's NSS modules for the lookups it uses, and `libgcc_s.so.1` for thread
//!   cancellation ([`runtime_refs`] reads the evidence, bounded). A static glibc program
//!   always links glibc's loader (`rtld_static_init` pulls in `dlopen`), so the loader alone
//!   is not evidence that it loads anything: a static hello gets no hint.

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
