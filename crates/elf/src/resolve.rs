use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use crate::arch::{elf_machine, Arch};
use crate::inspect::{inspect, ElfError, ElfInfo};
use crate::ldcache::{read_cache, read_conf};
use crate::packed::{ImageView, InImage};
use crate::root::{normalize, resolve_in_root};
use crate::runtime::{runtime_refs, LoadReason, RuntimeLoad, NSS_FILES, NSS_HOSTS, UNWIND};

/// Which search rule found a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// `PT_INTERP`, at its literal path.
    Interpreter,
    /// A `DT_NEEDED` name containing `/`, used as a path.
    Path,
    Rpath,
    LdLibraryPath,
    Runpath,
    LdSoCache,
    LdSoConf,
    DefaultDir,
}

/// One file of the closure: where the guest's loader opens it, and where its bytes come
/// from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Dependency {
    /// The `DT_NEEDED` name, or the interpreter path.
    pub name: String,
    /// The path the loader opens inside the guest.
    pub guest_path: String,
    /// The host file with its content (symlinks followed).
    pub host_path: PathBuf,
    /// The guest path of the object that needs it.
    pub needed_by: String,
    pub rule: Rule,
}

/// A program's dynamic closure.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub program: ElfInfo,
    /// The interpreter first, then libraries in breadth-first order of `DT_NEEDED`.
    pub dependencies: Vec<Dependency>,
}

/// Why a closure cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error("program interpreter {interpreter} (PT_INTERP of {needed_by}, an {arch} program) not found in {root}; give --target-root (or TargetRoot) a folder or container image holding the program's {arch} libraries{}", if *arch == Arch::Aarch64 { " (Debian's libc6-arm64-cross has one at /usr/aarch64-linux-gnu)" } else { "" })]
    Interpreter {
        interpreter: String,
        needed_by: String,
        root: PathBuf,
        arch: Arch,
    },
    #[error("library {name} needed by {needed_by} not found; searched {}{}", searched.join(", "), skipped_note(skipped, *arch))]
    Missing {
        name: String,
        needed_by: String,
        searched: Vec<String>,
        /// The program's architecture.
        arch: Arch,
        /// Files of the right name skipped for their architecture, with it.
        skipped: Vec<(PathBuf, Arch)>,
    },
}

fn skipped_note(skipped: &[(PathBuf, Arch)], arch: Arch) -> String {
    skipped
        .iter()
        .map(|(p, a)| format!("; skipped {} ({a}, the program is {arch})", p.display()))
        .collect()
}

/// Where `$ORIGIN` of an object points on the host.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    /// The object was found inside the root: its directory there.
    Rooted,
    /// The object lives outside the root (the program, or a library found next to it).
    Host(PathBuf),
}

/// A directory to search: its guest path, and its host path when it is not inside the root.
pub(crate) struct SearchDir {
    guest: String,
    host: Option<PathBuf>,
}

pub(crate) struct Object {
    pub(crate) guest: String,
    pub(crate) origin: Origin,
    pub(crate) info: ElfInfo,
    /// What the dependencies it brings in are "needed by": its guest path, or
    /// [`LIBRARIES`] for the names asked for by configuration.
    pub(crate) label: String,
}

/// The `needed_by` of a library packed because the config's `Libraries` (or `--library`)
/// names it.
pub const LIBRARIES: &str = "Libraries";

/// Resolves dynamic dependencies inside a root, as the glibc loader will in the guest.
#[derive(Clone, Debug)]
pub struct Resolver {
    root: PathBuf,
    ld_library_path: Vec<String>,
    /// `ld.so.cache` entries: (flags, soname, path).
    cache: Option<Vec<(u32, String, String)>>,
    conf_dirs: Vec<String>,
}

impl Resolver {
    /// A resolver for `root` (`/` for the host), reading its `/etc/ld.so.cache` (or, without
    /// one, `/etc/ld.so.conf`).
    pub fn new(root: &Path) -> Resolver {
        let cache = read_cache(root);
        let conf_dirs = if cache.is_none() {
            read_conf(root)
        } else {
            Vec::new()
        };
        Resolver {
            root: root.to_path_buf(),
            ld_library_path: Vec::new(),
            cache,
            conf_dirs,
        }
    }

    /// Also searches these directories after `DT_RPATH`, as `LD_LIBRARY_PATH` would.
    pub fn with_ld_library_path(mut self, dirs: Vec<String>) -> Resolver {
        self.ld_library_path = dirs;
        self
    }

    /// Resolves the closure of the program at `program` (host path), which the guest will
    /// run from `guest_path`.
    pub fn resolve(&self, program: &Path, guest_path: &str) -> Result<Resolution, ResolveError> {
        self.resolve_with(program, guest_path, &[])
    }

    /// Resolves the closure as [`Resolver::resolve`], then packs `libraries` (sonames, or
    /// paths when they contain `/`) with their own dependencies, as if the program
    /// `dlopen`ed each after start-up: searched as the program's `DT_NEEDED` would be, their
    /// [`Dependency::needed_by`] is [`LIBRARIES`]. A name already in the closure adds nothing.
    pub fn resolve_with(
        &self,
        program: &Path,
        guest_path: &str,
        libraries: &[String],
    ) -> Result<Resolution, ResolveError> {
        let info = inspect(program)?;
        info.check_program(program)?;
        let mut closure = Closure::default();
        if let Some(interp) = &info.interpreter {
            let dep = self.interpreter(interp, guest_path, info.arch, &mut closure.loaded)?;
            closure.deps.push(dep);
        }
        if info.interpreter.is_none() {
            // Nothing loads libraries for a static program.
            return Ok(Resolution {
                program: info,
                dependencies: closure.deps,
            });
        }

        let program_origin = host_origin(program);
        let exe = Object {
            guest: guest_path.to_string(),
            origin: Origin::Host(program_origin.clone()),
            info: info.clone(),
            label: guest_path.to_string(),
        };
        closure.guest_paths = closure.deps.iter().map(|d| d.guest_path.clone()).collect();
        closure.guest_paths.insert(normalize(guest_path));
        // The program is the first object out of the queue: the one whose DT_RPATH every
        // object without DT_RUNPATH also searches.
        let exe_ref = (exe.guest.clone(), exe.origin.clone(), exe.info.clone());
        closure.queue.push_back(exe);
        let mut extras_queued = libraries.is_empty();
        loop {
            let Some(obj) = closure.queue.pop_front() else {
                if extras_queued {
                    break;
                }
                // Run-time loads come after the whole start-up closure.
                extras_queued = true;
                let mut extra = info.clone();
                extra.needed = libraries.to_vec();
                closure.queue.push_back(Object {
                    guest: guest_path.to_string(),
                    origin: Origin::Host(program_origin.clone()),
                    info: extra,
                    label: LIBRARIES.to_string(),
                });
                continue;
            };
            for name in &obj.info.needed {
                self.load(name, &obj, &exe_ref, &mut closure)?;
            }
        }
        Ok(Resolution {
            program: info,
            dependencies: closure.deps,
        })
    }

    /// The program's interpreter `interp` (its `PT_INTERP`), which must be in the root; its
    /// soname is noted in `loaded`.
    fn interpreter(
        &self,
        interp: &str,
        guest_path: &str,
        arch: Arch,
        loaded: &mut BTreeMap<String, String>,
    ) -> Result<Dependency, ResolveError> {
        let host = resolve_in_root(&self.root, interp)
            .filter(|p| p.is_file())
            .ok_or_else(|| ResolveError::Interpreter {
                interpreter: interp.to_string(),
                needed_by: guest_path.to_string(),
                root: self.root.clone(),
                arch,
            })?;
        // A corrupt interpreter is an error here, not a boot failure later.
        if let Some(soname) = inspect(&host)?.soname {
            loaded.insert(soname, normalize(interp));
        }
        Ok(Dependency {
            name: interp.to_string(),
            guest_path: normalize(interp),
            host_path: host,
            needed_by: guest_path.to_string(),
            rule: Rule::Interpreter,
        })
    }

    /// Loads the `DT_NEEDED` `name` of `obj` as the loader does: nothing when a loaded
    /// object has that name, else the file found, whose own needs are queued unless its
    /// guest path is already loaded.
    fn load(
        &self,
        name: &str,
        obj: &Object,
        exe: &(String, Origin, ElfInfo),
        closure: &mut Closure,
    ) -> Result<(), ResolveError> {
        if closure.loaded.contains_key(name) {
            return Ok(());
        }
        let (guest, host, rule, origin) = self.find(name, obj, exe, None)?;
        let info = inspect(&host)?;
        closure.loaded.insert(name.to_string(), guest.clone());
        if let Some(soname) = &info.soname {
            closure
                .loaded
                .entry(soname.clone())
                .or_insert_with(|| guest.clone());
        }
        if !closure.guest_paths.insert(guest.clone()) {
            return Ok(());
        }
        closure.deps.push(Dependency {
            name: name.to_string(),
            guest_path: guest.clone(),
            host_path: host,
            needed_by: obj.label.clone(),
            rule,
        });
        closure.queue.push_back(Object {
            label: guest.clone(),
            guest,
            origin,
            info,
        });
        Ok(())
    }

    /// Finds one `DT_NEEDED` name for `obj`, in the loader's order; with `image`, each
    /// candidate path is first looked up in the image being planned (what the guest will
    /// see), and only where the image has nothing there in the root.
    pub(crate) fn find(
        &self,
        name: &str,
        obj: &Object,
        exe: &(String, Origin, ElfInfo),
        image: Option<&dyn ImageView>,
    ) -> Result<Located, ResolveError> {
        // The loader loads only objects of its own machine, and skips others.
        let mut search = Search {
            arch: obj.info.arch,
            image,
            searched: Vec::new(),
            skipped: Vec::new(),
        };
        if name.contains('/') {
            if let Some(found) = self.candidate(&mut search, &expand(name, obj), "", Rule::Path) {
                return Ok(found);
            }
            search.searched = vec![name.to_string()];
            return Err(search.missing(name, obj));
        }
        if let Some(found) = self.in_search_path(&mut search, name, obj, exe) {
            return Ok(found);
        }
        if let Some(found) = self.in_ld_so(&mut search, name) {
            return Ok(found);
        }
        for dir in search.arch.default_dirs() {
            search.searched.push(dir.to_string());
            if let Some(found) = self.candidate(&mut search, &rooted(dir), name, Rule::DefaultDir) {
                return Ok(found);
            }
        }
        Err(search.missing(name, obj))
    }

    /// The directories searched before `ld.so.cache`, in order: `DT_RPATH` of `obj` and of
    /// the program `exe` (unless either has `DT_RUNPATH`), `LD_LIBRARY_PATH`, `DT_RUNPATH`.
    fn search_path(&self, obj: &Object, exe: &(String, Origin, ElfInfo)) -> Vec<(SearchDir, Rule)> {
        let mut dirs: Vec<(SearchDir, Rule)> = Vec::new();
        if obj.info.runpath.is_empty() {
            for d in &obj.info.rpath {
                dirs.push((expand(d, obj), Rule::Rpath));
            }
            let (exe_guest, exe_origin, exe_info) = exe;
            if *exe_guest != obj.guest && exe_info.runpath.is_empty() {
                let e = Object {
                    guest: exe_guest.clone(),
                    origin: exe_origin.clone(),
                    info: exe_info.clone(),
                    label: exe_guest.clone(),
                };
                for d in &exe_info.rpath {
                    dirs.push((expand(d, &e), Rule::Rpath));
                }
            }
        }
        for d in &self.ld_library_path {
            dirs.push((rooted(d), Rule::LdLibraryPath));
        }
        for d in &obj.info.runpath {
            dirs.push((expand(d, obj), Rule::Runpath));
        }
        dirs
    }

    /// Searches `name` in the [`Resolver::search_path`] of `obj`.
    fn in_search_path(
        &self,
        search: &mut Search,
        name: &str,
        obj: &Object,
        exe: &(String, Origin, ElfInfo),
    ) -> Option<Located> {
        for (dir, rule) in self.search_path(obj, exe) {
            if !dir.guest.starts_with('/') {
                continue; // relative to the loader's working directory: never in a unikernel
            }
            search
                .searched
                .push(format!("{} ({})", normalize(&dir.guest), rule_name(rule)));
            if let Some(found) = self.candidate(search, &dir, name, rule) {
                return Some(found);
            }
        }
        None
    }

    /// Searches `name` in the `ld.so.cache` entries of the architecture or, without a
    /// cache, in the `ld.so.conf` directories.
    fn in_ld_so(&self, search: &mut Search, name: &str) -> Option<Located> {
        match &self.cache {
            Some(cache) => {
                search.searched.push("/etc/ld.so.cache".into());
                for (flags, soname, path) in cache {
                    if soname == name && *flags == search.arch.ld_cache_flags() {
                        if let Some(found) =
                            self.candidate(search, &rooted(path), "", Rule::LdSoCache)
                        {
                            return Some(found);
                        }
                    }
                }
            }
            None => {
                for dir in &self.conf_dirs {
                    search.searched.push(format!("{dir} (ld.so.conf)"));
                    if let Some(found) = self.candidate(search, &rooted(dir), name, Rule::LdSoConf)
                    {
                        return Some(found);
                    }
                }
            }
        }
        None
    }

    /// The file `name` in `dir` (or the path `dir` itself when `name` is empty), if it
    /// exists and is an ELF64 of the search's architecture; the loader skips other files and
    /// keeps searching.
    fn candidate(
        &self,
        search: &mut Search,
        dir: &SearchDir,
        name: &str,
        rule: Rule,
    ) -> Option<Located> {
        let join = |d: &str| {
            if name.is_empty() {
                d.to_string()
            } else {
                format!("{d}/{name}")
            }
        };
        let guest = normalize(&join(&dir.guest));
        let in_image = match search.image {
            Some(view) => view.file(&guest),
            None => InImage::Absent,
        };
        let (host, origin) = match (&dir.host, in_image) {
            // The guest sees the image's file there, or something that is not a library.
            (_, InImage::File(host)) => (host, Origin::Rooted),
            (_, InImage::Other) => return None,
            (None, InImage::Absent) => (resolve_in_root(&self.root, &guest)?, Origin::Rooted),
            (Some(h), InImage::Absent) => {
                let path = PathBuf::from(join(&h.to_string_lossy()));
                let origin = Origin::Host(path.parent()?.to_path_buf());
                (std::fs::canonicalize(&path).ok()?, origin)
            }
        };
        if !host.is_file() {
            return None;
        }
        match elf_machine(&host)
            .ok()
            .flatten()
            .and_then(Arch::from_machine)
        {
            Some(a) if a == search.arch => {}
            Some(a) => {
                if !search.skipped.iter().any(|(p, _)| *p == host) {
                    search.skipped.push((host, a));
                }
                return None;
            }
            None => return None,
        }
        Some((guest, host, rule, origin))
    }
}

/// A file found for a name: (guest path, host path, the rule that found it, its origin).
pub(crate) type Located = (String, PathBuf, Rule, Origin);

/// The state of [`Resolver::resolve_with`]'s breadth-first walk.
#[derive(Default)]
struct Closure {
    deps: Vec<Dependency>,
    /// Names already loaded (DT_NEEDED names and sonames) → guest path. The loader matches
    /// a DT_NEEDED against these before searching, the interpreter's soname included.
    loaded: BTreeMap<String, String>,
    /// Guest paths of the program and the objects in `deps`.
    guest_paths: BTreeSet<String>,
    /// Objects whose needs are still to load.
    queue: VecDeque<Object>,
}

/// One search for a name: for the object's architecture, in the image first when given.
struct Search<'a> {
    arch: Arch,
    image: Option<&'a dyn ImageView>,
    /// What was searched, in words, for the error.
    searched: Vec<String>,
    /// Files of the right name skipped for their architecture, with it.
    skipped: Vec<(PathBuf, Arch)>,
}

impl Search<'_> {
    /// The error for `name`, needed by `obj`, found nowhere searched.
    fn missing(self, name: &str, obj: &Object) -> ResolveError {
        ResolveError::Missing {
            name: name.to_string(),
            needed_by: obj.label.clone(),
            searched: self.searched,
            arch: self.arch,
            skipped: self.skipped,
        }
    }
}

/// The host directory of the program at `program` (its `$ORIGIN`), empty when unknown.
fn host_origin(program: &Path) -> PathBuf {
    std::path::absolute(program)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// Expands `$ORIGIN`, `$LIB` and `$PLATFORM` (also in `${...}` form) in a search path
/// entry of `obj`. Gives the guest form and, when `$ORIGIN` refers to an object outside the
/// root, the host form of the same directory.
pub(crate) fn expand_guest(s: &str, obj: &Object) -> String {
    expand(s, obj).guest
}

fn expand(s: &str, obj: &Object) -> SearchDir {
    let guest_origin = normalize(obj.guest.rsplit_once('/').map_or("/", |(d, _)| d));
    let fixed = |s: &str| {
        s.replace("${LIB}", "lib64")
            .replace("$LIB", "lib64")
            .replace("${PLATFORM}", obj.info.arch.name())
            .replace("$PLATFORM", obj.info.arch.name())
    };
    let with_origin =
        |s: &str, origin: &str| fixed(&s.replace("${ORIGIN}", origin).replace("$ORIGIN", origin));
    let uses_origin = s.contains("$ORIGIN") || s.contains("${ORIGIN}");
    SearchDir {
        guest: with_origin(s, &guest_origin),
        host: match &obj.origin {
            Origin::Host(h) if uses_origin => {
                Some(PathBuf::from(with_origin(s, &h.to_string_lossy())))
            }
            _ => None,
        },
    }
}

fn rooted(guest: &str) -> SearchDir {
    SearchDir {
        guest: guest.to_string(),
        host: None,
    }
}

fn rule_name(r: Rule) -> &'static str {
    match r {
        Rule::Interpreter => "PT_INTERP",
        Rule::Path => "path",
        Rule::Rpath => "DT_RPATH",
        Rule::LdLibraryPath => "LD_LIBRARY_PATH",
        Rule::Runpath => "DT_RUNPATH",
        Rule::LdSoCache => "ld.so.cache",
        Rule::LdSoConf => "ld.so.conf",
        Rule::DefaultDir => "default",
    }
}

/// Sonames of glibc's own objects: the libraries they load at run time are reported from
/// what the program imports (NSS modules, `libgcc_s`), not from the names in their data.
pub(crate) fn is_glibc(name: &str) -> bool {
    const GLIBC: [&str; 15] = [
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "libc.so.6",
        "libm.so.6",
        "libmvec.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libresolv.so.2",
        "libanl.so.1",
        "libutil.so.1",
        "libnsl.so.1",
        "libBrokenLocale.so.1",
        "libthread_db.so.1",
        "libc_malloc_debug.so.0",
    ];
    GLIBC.contains(&name) || name.starts_with("libnss_")
}

/// Names glibc's own code carries in its data, which a static glibc program therefore
/// holds whatever it does: glibc's sonames, the `libc.so` its loader checks names against,
/// and `libidn2.so.0`, which `getaddrinfo` loads only for `AI_IDN`.
fn is_glibc_string(name: &str) -> bool {
    is_glibc(name) || matches!(name, "libc.so" | "libidn2.so.0")
}

impl Resolver {
    /// The root libraries are resolved in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the program at `program` (running as `guest_path`) would find `name` when it
    /// `dlopen`s it: (guest path, host path), searched as its own `DT_NEEDED`.
    pub fn find_for_program(
        &self,
        program: &Path,
        guest_path: &str,
        info: &ElfInfo,
        name: &str,
    ) -> Option<(String, PathBuf)> {
        let origin = host_origin(program);
        let exe = Object {
            guest: guest_path.to_string(),
            origin: Origin::Host(origin.clone()),
            info: info.clone(),
            label: guest_path.to_string(),
        };
        let exe_ref = (guest_path.to_string(), Origin::Host(origin), info.clone());
        self.find(name, &exe, &exe_ref, None)
            .ok()
            .map(|(guest, host, _, _)| (guest, host))
    }

    /// The libraries the program (at `program`, running as `guest_path`) and the objects of
    /// its `resolution` may load at run time and that the closure lacks; see
    /// [`Resolver::runtime_loads_of`].
    pub fn runtime_loads(
        &self,
        resolution: &Resolution,
        program: &Path,
        guest_path: &str,
    ) -> Vec<RuntimeLoad> {
        self.runtime_loads_of(resolution, program, guest_path, &[], None)
    }

    /// The libraries the program, the objects of its `resolution` and the other `packed`
    /// ELF files ((guest path, host path), e.g. [`crate::NeededClosure::examined`]) may load at run
    /// time and that the image lacks, one hint per soname, program first. Each hint needs
    /// evidence that the object loads it:
    ///
    /// - a soname in its read-only data, when the object can load libraries by name: it
    ///   imports `dlopen` or a loader wrapper ([`crate::DLOPEN`]) or needs `libdl`, or, for
    ///   a static program, it contains glibc's loader (its symbol table, or the
    ///   `ld.so.cache` magic when stripped) and the name is not one of glibc's own
    ///   (`libc.so.6`, `libc.so`, ...: every static glibc program carries those); names in
    ///   the data of glibc's own objects are never hints;
    /// - glibc's NSS modules when it uses a lookup function (`NSS_HOSTS`,
    ///   `NSS_FILES`) and the root ships the modules separately (`libnss_files.so.2` is
    ///   found);
    /// - `libgcc_s.so.1` when it uses `pthread_cancel` or `pthread_exit`.
    ///
    /// A soname is searched as the object's own `DT_NEEDED` would be (the program's search
    /// path for the program and its closure), in the `image` first when given: what the
    /// image already holds is no hint, and for the `packed` objects neither is what the
    /// root does not have (only the program's closure is told about missing names). Objects that cannot be read are skipped: hints are
    /// advice.
    pub fn runtime_loads_of(
        &self,
        resolution: &Resolution,
        program: &Path,
        guest_path: &str,
        packed: &[(String, PathBuf)],
        image: Option<&dyn ImageView>,
    ) -> Vec<RuntimeLoad> {
        let (have, objects) = hinted_objects(resolution, program, guest_path, packed);
        let exe_ref = (
            normalize(guest_path),
            Origin::Host(host_origin(program)),
            resolution.program.clone(),
        );
        let mut hints = Hints {
            resolver: self,
            image,
            exe_ref,
            have,
            out: Vec::new(),
        };
        let nss = hints.find(None, "libnss_files.so.2").is_some();
        for (guest, host, closure) in &objects {
            hints.object(guest, host, *closure, nss);
        }
        hints.out
    }
}

/// The names the closure of `resolution` already has (`DT_NEEDED` names, file names,
/// sonames), and the objects whose run-time loads are looked at: (guest, host, whether it
/// is searched as the program's closure), the program first, then its libraries, then the
/// other `packed` ELF files not among them.
fn hinted_objects(
    resolution: &Resolution,
    program: &Path,
    guest_path: &str,
    packed: &[(String, PathBuf)],
) -> (BTreeSet<String>, Vec<(String, PathBuf, bool)>) {
    let mut have: BTreeSet<String> = BTreeSet::new();
    // (guest, host, whether it is searched as the program's closure)
    let mut objects: Vec<(String, PathBuf, bool)> =
        vec![(normalize(guest_path), program.to_path_buf(), true)];
    for d in &resolution.dependencies {
        have.insert(d.name.clone());
        have.insert(base(&d.guest_path));
        if let Ok(info) = inspect(&d.host_path) {
            if let Some(s) = info.soname {
                have.insert(s);
            }
        }
        if d.rule != Rule::Interpreter {
            objects.push((d.guest_path.clone(), d.host_path.clone(), true));
        }
    }
    let mut listed: BTreeSet<String> = objects.iter().map(|o| o.0.clone()).collect();
    for (guest, host) in packed {
        if listed.insert(normalize(guest)) {
            objects.push((normalize(guest), host.clone(), false));
        }
    }
    if let Some(s) = &resolution.program.soname {
        have.insert(s.clone());
    }
    (have, objects)
}

/// The last component of the guest path `p`.
fn base(p: &str) -> String {
    p.rsplit('/').next().unwrap_or(p).to_string()
}

/// The state of [`Resolver::runtime_loads_of`]: what the closure has, and the hints so far.
struct Hints<'a> {
    resolver: &'a Resolver,
    image: Option<&'a dyn ImageView>,
    /// The program, whose search path its closure's names are searched with.
    exe_ref: (String, Origin, ElfInfo),
    /// Names the closure already has.
    have: BTreeSet<String>,
    out: Vec<RuntimeLoad>,
}

impl Hints<'_> {
    /// Where `obj` (None: the program's closure) finds `soname`, and whether the image
    /// already has it there.
    fn find(&self, obj: Option<&Object>, soname: &str) -> Option<(String, PathBuf, bool)> {
        let exe_ref = &self.exe_ref;
        let exe = Object {
            guest: exe_ref.0.clone(),
            origin: exe_ref.1.clone(),
            info: exe_ref.2.clone(),
            label: exe_ref.0.clone(),
        };
        let (obj, exe_ref) = match obj {
            Some(o) => (o, (o.guest.clone(), o.origin.clone(), o.info.clone())),
            None => (&exe, exe_ref.clone()),
        };
        let image = self.image;
        let (guest, host, _, _) = self.resolver.find(soname, obj, &exe_ref, image).ok()?;
        let packed = image.is_some_and(|v| matches!(v.file(&guest), InImage::File(_)));
        Some((guest, host, packed))
    }

    /// Adds the hints of the object at `guest` (host file `host`; `closure`: searched as
    /// the program's closure); `nss`: the root ships glibc's NSS modules separately.
    fn object(&mut self, guest: &str, host: &Path, closure: bool, nss: bool) {
        let Ok(refs) = runtime_refs(host) else {
            return;
        };
        let Ok(info) = inspect(host) else {
            return;
        };
        let needs_libdl = info.needed.iter().any(|n| n.starts_with("libdl.so"));
        let own = (!closure).then(|| Object {
            guest: guest.to_string(),
            origin: Origin::Rooted,
            info,
            label: guest.to_string(),
        });
        let own = own.as_ref();
        let can_load = refs.loader.is_some() || (needs_libdl && !refs.is_static);
        if can_load && !is_glibc(&base(guest)) {
            for (section, soname) in &refs.sonames {
                let glibc_own = refs.is_static && is_glibc_string(soname);
                if *soname != base(guest) && !glibc_own {
                    let reason = LoadReason::Data {
                        section: section.clone(),
                    };
                    self.add(guest, own, soname, reason, false);
                }
            }
        }
        for symbol in &refs.imports {
            self.imported(guest, own, symbol, nss);
        }
    }

    /// Adds the hints for the object at `guest` importing `symbol`: glibc's NSS modules
    /// (when `nss`) for a lookup function, `libgcc_s.so.1` for thread unwinding.
    fn imported(&mut self, guest: &str, own: Option<&Object>, symbol: &str, nss: bool) {
        let modules: &[&str] = if NSS_HOSTS.contains(&symbol) {
            &["libnss_files.so.2", "libnss_dns.so.2"]
        } else if NSS_FILES.contains(&symbol) {
            &["libnss_files.so.2"]
        } else {
            &[]
        };
        if nss {
            for m in modules {
                let reason = LoadReason::Nss {
                    symbol: symbol.to_string(),
                };
                self.add(guest, own, m, reason, true);
            }
        }
        if UNWIND.contains(&symbol) {
            let reason = LoadReason::Unwind {
                symbol: symbol.to_string(),
            };
            self.add(guest, own, "libgcc_s.so.1", reason, false);
        }
    }

    /// Adds the hint that the object at `guest` (`own`: a packed object, searched with its
    /// own search path) may load `soname`, unless the closure or an earlier hint has it,
    /// the image has it, or it must be found (`need_found`) and is not.
    fn add(
        &mut self,
        guest: &str,
        own: Option<&Object>,
        soname: &str,
        reason: LoadReason,
        need_found: bool,
    ) {
        if self.have.contains(soname) || self.out.iter().any(|h| h.soname == soname) {
            return;
        }
        let found = self.find(own, soname);
        // A packed ELF's hint only says what the root has and the image lacks: its
        // optional names the root does not have are no news (a whole root packed
        // holds hundreds).
        let need_found = need_found || own.is_some();
        if found.as_ref().is_some_and(|f| f.2) || (need_found && found.is_none()) {
            return;
        }
        self.out.push(RuntimeLoad {
            soname: soname.to_string(),
            object: guest.to_string(),
            reason,
            config_line: format!("\"Libraries\": [\"{soname}\"]"),
            found: found.as_ref().map(|f| f.0.clone()),
            host_path: found.map(|f| f.1),
            root: self.resolver.root.clone(),
        });
    }
}
