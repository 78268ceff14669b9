//! `nanoimg run --missing-files`: what the program tried to open and the image did not have,
//! and the config line that would pack each.
//!
//! The kernel's side (Nanos 0.1.55, `src/unix/syscall.c`): with `missing_files` in the
//! manifest (any value; ops's `run --missing-files` adds it to `Debugflags`, so it is the
//! flag `missing_files:t`), every `open`/`openat` that fails records the **base name** of the
//! path it was given (`buffer_basename`: the folders are lost), once; a later successful
//! open of a path with the same base name removes it again (so the loader's search of
//! `libc.so.6` through folders that lack it leaves nothing). Nothing is printed at a miss:
//! at shutdown a handler prints, on the console,
//!
//! ```text
//! missing_files_begin
//! <base name>
//! ...
//! missing_files_end
//! ```
//!
//! in the order the misses happened, leaving out `ld.so.cache`. [`ConsoleScan`] reads that
//! block from the console as it passes through (bounded: the guest is hostile); [`look_up`]
//! finds each name in the target root the build used — a library the loader finds by
//! soname in the root's library folders (or one the program was seen to `dlopen`) gets
//! `"Libraries"`, any other file or folder of that name found by walking the root gets
//! `"Files"`/`"Dirs"` (a container image's root, where absolute entries name the image's
//! paths) or `"MapDirs"` (a folder root or the host's `/`, where absolute `Files` entries
//! would be taken from the working directory, as ops does) — and [`Finding::line`] says so.
//! Every path inside the root is handled through `nanoimg-chroot` or by walking its real
//! folders without following links.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nanoimg_chroot::{Follow, Resolver};
use nanoimg_elf::{Arch, RuntimeLoad};

/// The manifest key that makes the kernel keep the list (ops: `Debugflags` entry).
pub const MANIFEST_KEY: &str = "missing_files";
/// The kernel's line before the names.
pub const BEGIN: &str = "missing_files_begin";
/// The kernel's line after them.
pub const END: &str = "missing_files_end";
/// Longest console line kept (a base name is at most 255 bytes on Linux; longer lines are
/// cut and their name marked as cut).
pub const MAX_LINE_BYTES: usize = 4096;
/// Most names kept from one list.
pub const MAX_NAMES: usize = 10_000;
/// Most folder entries [`look_up`] reads while searching the root for names.
pub const MAX_WALK_ENTRIES: usize = 2_000_000;
/// Other places of the same name listed beside the first.
pub const MAX_OTHERS: usize = 3;
/// The top folders of the host's `/` searched for names (the rest is home folders, this
/// machine's state and pseudo filesystems, not what an image packs).
pub const HOST_TOP_FOLDERS: [&str; 9] = [
    "bin", "etc", "lib", "lib64", "opt", "sbin", "srv", "usr", "var",
];

/// The kernel's list, as read from the console.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelList {
    /// The names, deduplicated and sorted (bytewise).
    pub names: Vec<String>,
    /// `missing_files_end` was seen (else the VM stopped while the kernel was printing).
    pub complete: bool,
    /// Names were left out: more than [`MAX_NAMES`], or lines longer than
    /// [`MAX_LINE_BYTES`] (kept cut, ending with `…`).
    pub cut: bool,
}

/// Reads the kernel's `missing_files` block out of console output fed to it piece by
/// piece; keeps the last block (a program could print its own before the kernel's).
/// Memory is bounded by [`MAX_LINE_BYTES`] and [`MAX_NAMES`].
#[derive(Debug, Default)]
pub struct ConsoleScan {
    line: Vec<u8>,
    line_cut: bool,
    /// Names of the block being read, if one is open.
    open: Option<(BTreeSet<String>, bool)>,
    last: Option<KernelList>,
}

impl ConsoleScan {
    pub fn new() -> ConsoleScan {
        ConsoleScan::default()
    }

    /// Feeds console bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                let cut = std::mem::replace(&mut self.line_cut, false);
                self.end_line(&line, cut);
            } else if self.line.len() < MAX_LINE_BYTES {
                self.line.push(b);
            } else {
                self.line_cut = true;
            }
        }
    }

    fn end_line(&mut self, line: &[u8], cut: bool) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // The kernel's lines start a line of their own, but the program's last output may
        // not have ended its line: `BEGIN` ends the line it is on.
        if !cut && line.ends_with(BEGIN.as_bytes()) {
            self.open = Some((BTreeSet::new(), false));
            return;
        }
        if self.open.is_none() {
            return;
        }
        if line == END.as_bytes() {
            if let Some((names, cut)) = self.open.take() {
                self.last = Some(KernelList {
                    names: names.into_iter().collect(),
                    complete: true,
                    cut,
                });
            }
            return;
        }
        let Some((names, names_cut)) = &mut self.open else {
            return;
        };
        if line.is_empty() {
            return;
        }
        let mut name = String::from_utf8_lossy(line).into_owned();
        if cut {
            name.push('…');
            *names_cut = true;
        }
        if names.len() < MAX_NAMES || names.contains(&name) {
            names.insert(name);
        } else {
            *names_cut = true;
        }
    }

    /// The last complete block, or the one still open (the VM stopped while it was printed:
    /// `complete` is false; a line not ended yet is taken as a name); `None` when the
    /// console showed none.
    pub fn finish(mut self) -> Option<KernelList> {
        if self.open.is_some() && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let cut = self.line_cut;
            self.end_line(&line, cut);
        }
        match self.open.take() {
            Some((names, cut)) => Some(KernelList {
                names: names.into_iter().collect(),
                complete: false,
                cut,
            }),
            None => self.last,
        }
    }
}

/// [`ConsoleScan`] over a whole console output.
pub fn parse(console: &[u8]) -> Option<KernelList> {
    let mut scan = ConsoleScan::new();
    scan.feed(console);
    scan.finish()
}

/// The root a build resolved its paths in, and what it knows of the program there.
#[derive(Clone, Copy, Debug)]
pub struct TargetRoot<'a> {
    /// The host folder: `/`, a `--target-root`/`TargetRoot` folder, or a container image
    /// unpacked in the cache.
    pub dir: &'a Path,
    /// It is a container image's root (absolute `Files`/`Dirs` entries name its paths).
    pub image: bool,
    /// The program's architecture (its library folders).
    pub arch: Arch,
    /// The build's run-time load hints (sonames the program or its libraries may
    /// `dlopen`, and where the root has them).
    pub runtime_loads: &'a [RuntimeLoad],
}

/// Where a missing name is in the target root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// A library the loader finds by this soname: at this path of the root.
    Library { at: String },
    /// A file (or a link to one) at `at`, and possibly elsewhere too.
    File { at: String, others: Vec<String> },
    /// A folder at `at`, and possibly elsewhere too.
    Dir { at: String, others: Vec<String> },
    /// Nowhere in the root (as far as it was searched).
    Absent,
}

/// One missing name and where the root has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub name: String,
    pub found: Found,
}

/// What [`look_up`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// Libraries first, then files, folders, and names not found; by name within each.
    pub findings: Vec<Finding>,
    /// The root the names were looked up in.
    pub root: PathBuf,
    /// It is a container image's root.
    pub image: bool,
    /// The search of the root stopped at [`MAX_WALK_ENTRIES`] entries.
    pub walk_cut: bool,
}

/// Finds each of `names` (base names, as the kernel gives them) in `root`.
pub fn look_up(names: &[String], root: &TargetRoot) -> Lookup {
    let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut resolver = Resolver::new(root.dir);
    let mut findings = Vec::new();
    let mut rest = BTreeSet::new();
    for name in names {
        match library(&mut resolver, root, name) {
            Some(at) => findings.push(Finding {
                name: name.to_string(),
                found: Found::Library { at },
            }),
            None => {
                rest.insert(name);
            }
        }
    }
    let (places, walk_cut) = if rest.is_empty() {
        (BTreeMap::new(), false)
    } else {
        walk(root.dir, &rest)
    };
    for name in rest {
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for guest in places.get(name).into_iter().flatten() {
            // A link found by the walk is judged by what it names inside the root (a
            // broken one, or one that climbs out to nothing, is no match).
            let Ok(host) = resolver.resolve(Path::new(guest), Follow::Last) else {
                continue;
            };
            match host.symlink_metadata() {
                Ok(m) if m.is_dir() => dirs.push(guest.clone()),
                Ok(m) if m.is_file() => files.push(guest.clone()),
                _ => {}
            }
        }
        let found = match (first_and_others(files), first_and_others(dirs)) {
            (Some((at, others)), _) => Found::File { at, others },
            (None, Some((at, others))) => Found::Dir { at, others },
            (None, None) => Found::Absent,
        };
        findings.push(Finding {
            name: name.to_string(),
            found,
        });
    }
    findings.sort_by(|a, b| (rank(&a.found), &a.name).cmp(&(rank(&b.found), &b.name)));
    Lookup {
        findings,
        root: root.dir.to_path_buf(),
        image: root.image,
        walk_cut,
    }
}

fn rank(f: &Found) -> u8 {
    match f {
        Found::Library { .. } => 0,
        Found::File { .. } => 1,
        Found::Dir { .. } => 2,
        Found::Absent => 3,
    }
}

/// The preferred place (under `/etc` first, then the shallowest, then bytewise) and up to
/// [`MAX_OTHERS`] others.
fn first_and_others(mut places: Vec<String>) -> Option<(String, Vec<String>)> {
    places.sort_by(|a, b| {
        let key = |p: &String| (!p.starts_with("/etc/"), p.matches('/').count(), p.clone());
        key(a).cmp(&key(b))
    });
    places.dedup();
    let mut it = places.into_iter();
    let first = it.next()?;
    Some((first, it.take(MAX_OTHERS).collect()))
}

/// Where the loader would find `name` as a soname: a regular file (links followed inside
/// the root) in one of the architecture's library folders, or the build's run-time load
/// hint for it when the root has it (the hint's resolution also reads `ld.so.cache`).
fn library(resolver: &mut Resolver, root: &TargetRoot, name: &str) -> Option<String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    if let Some(at) = root
        .runtime_loads
        .iter()
        .find(|l| l.soname == name)
        .and_then(|l| l.found.clone())
    {
        return Some(at);
    }
    root.arch.default_dirs().iter().find_map(|dir| {
        let guest = format!("{dir}/{name}");
        let host = resolver.resolve(Path::new(&guest), Follow::Last).ok()?;
        host.symlink_metadata()
            .is_ok_and(|m| m.is_file())
            .then_some(guest)
    })
}

/// Walks the real folders of `root` (links are not followed; the host's `/` only under
/// [`HOST_TOP_FOLDERS`]) in bytewise order, collecting the guest paths whose last name is
/// one of `names`. Stops after [`MAX_WALK_ENTRIES`] entries (the `bool`). Folders that
/// cannot be read are skipped.
fn walk(root: &Path, names: &BTreeSet<&str>) -> (BTreeMap<String, Vec<String>>, bool) {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let host_root = root == Path::new("/");
    let mut seen = 0usize;
    // (host folder, guest path of it); popped from the end, so pushed in reverse order.
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, guest)) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<(std::ffi::OsString, bool)> = Vec::new();
        for e in read.flatten() {
            seen += 1;
            if seen > MAX_WALK_ENTRIES {
                return (found, true);
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            entries.push((e.file_name(), is_dir));
        }
        entries.sort();
        let mut subdirs = Vec::new();
        for (name, is_dir) in entries {
            let Some(text) = name.to_str() else {
                continue;
            };
            let path = format!("{guest}/{text}");
            if names.contains(text) {
                found
                    .entry(text.to_string())
                    .or_default()
                    .push(path.clone());
            }
            let top_skipped = guest.is_empty()
                && if host_root {
                    !HOST_TOP_FOLDERS.contains(&text)
                } else {
                    ["proc", "sys", "dev"].contains(&text)
                };
            if is_dir && !top_skipped {
                subdirs.push((dir.join(OsStr::from_bytes(name.as_bytes())), path));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    (found, false)
}

/// `s` as a JSON string (quotes and escapes: the name may hold anything).
fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

impl Finding {
    /// The config line that packs it, if the root has it.
    pub fn config_line(&self, image_root: bool) -> Option<String> {
        let parent = |p: &str| match p.rsplit_once('/') {
            Some(("", _)) | None => "/".to_string(),
            Some((d, _)) => d.to_string(),
        };
        Some(match &self.found {
            Found::Library { .. } => format!("\"Libraries\": [{}]", json(&self.name)),
            Found::File { at, .. } if image_root => format!("\"Files\": [{}]", json(at)),
            Found::File { at, .. } => {
                format!("\"MapDirs\": {{{}: {}}}", json(at), json(&parent(at)))
            }
            Found::Dir { at, .. } if image_root => format!("\"Dirs\": [{}]", json(at)),
            Found::Dir { at, .. } => {
                format!(
                    "\"MapDirs\": {{{}: {}}}",
                    json(&format!("{at}/*")),
                    json(at)
                )
            }
            Found::Absent => return None,
        })
    }

    /// One line: the name, where the root has it and the config line that packs it, or
    /// that the root does not have it. Not escaped for a terminal (the caller does that).
    pub fn line(&self, lookup: &Lookup) -> String {
        let others = |o: &[String]| {
            if o.is_empty() {
                String::new()
            } else {
                format!(" (also at {})", o.join(", "))
            }
        };
        let pack = self.config_line(lookup.image).unwrap_or_default();
        match &self.found {
            Found::Library { at } => {
                format!(
                    "{}: a library in the target root ({at}); to pack it: {pack}",
                    self.name
                )
            }
            Found::File { at, others: o } => format!(
                "{}: {at} in the target root{}; to pack it: {pack}",
                self.name,
                others(o)
            ),
            Found::Dir { at, others: o } => format!(
                "{}: the folder {at} in the target root{}; to pack it: {pack}",
                self.name,
                others(o)
            ),
            Found::Absent => format!(
                "{}: not in the target root {} either{}",
                self.name,
                lookup.root.display(),
                if lookup.walk_cut {
                    " (as far as it was searched)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The lines `nanoimg run --missing-files` prints after the run (each one line, to be made
/// printable): a heading, then one line per name ([`Finding::line`]).
pub fn report_lines(list: &KernelList, lookup: Option<&Lookup>) -> Vec<String> {
    if list.names.is_empty() {
        return vec![if list.complete {
            "the kernel reports no missing files: every file the program opened was in the image"
                .to_string()
        } else {
            "the kernel's list of missing files was cut off (the VM stopped while it was printed); it named none".to_string()
        }];
    }
    let mut out = vec![format!(
        "missing files: the program tried to open {} name{} the image does not have (the kernel gives base names only){}{}:",
        list.names.len(),
        if list.names.len() == 1 { "" } else { "s" },
        if list.complete { "" } else { "; the list was cut off when the VM stopped" },
        if list.cut { "; some names were left out (too many or too long)" } else { "" },
    )];
    match lookup {
        Some(lookup) => out.extend(lookup.findings.iter().map(|f| f.line(lookup))),
        None => out.extend(list.names.iter().map(|n| {
            format!("{n}: not looked up (nanoimg does not know which root this image was built from; run the program, `nanoimg run PROGRAM --missing-files`, to have it matched)")
        })),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block exactly as `print_missing_files_cfn` prints it (`rprintf("missing_files_begin\n")`,
    /// `rprintf("%v\n", b)` per name, `rprintf("missing_files_end\n")`), after the program's
    /// own output and the kernel's exit line.
    const CONSOLE: &[u8] = b"en1: assigned 10.0.2.15\n\
hello from the program\n\
missing_files_begin\n\
libnanoimg_missing.so.1\n\
nanoimg-missing.conf\n\
libnanoimg_missing.so.1\n\
missing_files_end\n\
exit status 0\n";

    #[test]
    fn reads_the_kernels_block() {
        let list = parse(CONSOLE).unwrap();
        assert_eq!(
            list,
            KernelList {
                names: vec![
                    "libnanoimg_missing.so.1".into(),
                    "nanoimg-missing.conf".into()
                ],
                complete: true,
                cut: false,
            }
        );
    }

    #[test]
    fn reads_it_in_any_pieces_with_crlf_and_after_an_unended_line() {
        let console = b"partial output without newlinemissing_files_begin\r\nfoo.conf\r\nmissing_files_end\r\n";
        for size in [1, 2, 3, 7, 100] {
            let mut scan = ConsoleScan::new();
            for piece in console.chunks(size) {
                scan.feed(piece);
            }
            let list = scan.finish().unwrap();
            assert_eq!(list.names, ["foo.conf"]);
            assert!(list.complete);
        }
    }

    #[test]
    fn no_block_is_none_and_an_empty_block_is_empty() {
        assert_eq!(parse(b"hello\nmissing_files_end\n"), None);
        let list = parse(b"missing_files_begin\nmissing_files_end\n").unwrap();
        assert!(list.names.is_empty() && list.complete);
        assert_eq!(
            report_lines(&list, None),
            ["the kernel reports no missing files: every file the program opened was in the image"]
        );
    }

    #[test]
    fn the_last_block_wins_and_an_unfinished_one_is_marked() {
        let list = parse(b"missing_files_begin\nforged\nmissing_files_end\nmissing_files_begin\nreal\nmissing_files_end\n").unwrap();
        assert_eq!(list.names, ["real"]);
        let list = parse(b"missing_files_begin\na\nb").unwrap();
        assert_eq!(list.names, ["a", "b"]);
        assert!(!list.complete);
    }

    #[test]
    fn hostile_lists_stay_bounded() {
        let mut console = b"missing_files_begin\n".to_vec();
        console.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE_BYTES));
        console.extend(b"\n\xff\x1b[31m\n");
        for i in 0..MAX_NAMES + 10 {
            console.extend(format!("n{i}\n").bytes());
        }
        console.extend(b"missing_files_end\n");
        let list = parse(&console).unwrap();
        assert!(list.cut && list.complete);
        assert_eq!(list.names.len(), MAX_NAMES);
        let long = list.names.iter().find(|n| n.starts_with('x')).unwrap();
        assert_eq!(long.len(), MAX_LINE_BYTES + '…'.len_utf8());
        // Not UTF-8: decoded lossily (escaping for the terminal is the printer's job).
        assert!(list.names.contains(&"\u{fffd}\x1b[31m".to_string()));
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// A root with a library folder (a library, a link to it under its soname), /etc files,
    /// a folder, the same name twice, and a link that climbs out of the root.
    fn root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            &r.join("usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"),
            b"\x7fELF",
        );
        std::os::unix::fs::symlink(
            "libfoo.so.1.2.3",
            r.join("usr/lib/x86_64-linux-gnu/libfoo.so.1"),
        )
        .unwrap();
        write(&r.join("etc/foo.conf"), b"x=1\n");
        write(&r.join("etc/app/app.ini"), b"");
        write(&r.join("opt/app/app.ini"), b"");
        write(&r.join("usr/share/zoneinfo/UTC"), b"TZif");
        // A link out of the root: resolved inside it, where /etc/passwd does not exist.
        std::os::unix::fs::symlink("/etc/passwd", r.join("etc/passwd-link")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/passwd", r.join("etc/passwd")).unwrap();
        t
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn suggests_the_line_that_packs_each_name() {
        let t = root();
        let root = TargetRoot {
            dir: t.path(),
            image: false,
            arch: Arch::X86_64,
            runtime_loads: &[],
        };
        let lookup = look_up(
            &names(&[
                "zoneinfo",
                "foo.conf",
                "libfoo.so.1",
                "nowhere.conf",
                "app.ini",
                "passwd",
                "foo.conf",
            ]),
            &root,
        );
        let lines: Vec<String> = lookup.findings.iter().map(|f| f.line(&lookup)).collect();
        let r = t.path().display();
        assert_eq!(
            lines,
            [
                "libfoo.so.1: a library in the target root (/usr/lib/x86_64-linux-gnu/libfoo.so.1); to pack it: \"Libraries\": [\"libfoo.so.1\"]".to_string(),
                "app.ini: /etc/app/app.ini in the target root (also at /opt/app/app.ini); to pack it: \"MapDirs\": {\"/etc/app/app.ini\": \"/etc/app\"}".to_string(),
                "foo.conf: /etc/foo.conf in the target root; to pack it: \"MapDirs\": {\"/etc/foo.conf\": \"/etc\"}".to_string(),
                "zoneinfo: the folder /usr/share/zoneinfo in the target root; to pack it: \"MapDirs\": {\"/usr/share/zoneinfo/*\": \"/usr/share/zoneinfo\"}".to_string(),
                format!("nowhere.conf: not in the target root {r} either"),
                format!("passwd: not in the target root {r} either"),
            ]
        );
        assert!(!lookup.walk_cut);
    }

    #[test]
    fn an_image_root_gets_files_and_dirs() {
        let t = root();
        let root = TargetRoot {
            dir: t.path(),
            image: true,
            arch: Arch::X86_64,
            runtime_loads: &[],
        };
        let lookup = look_up(&names(&["foo.conf", "zoneinfo", "libfoo.so.1"]), &root);
        let lines: Vec<Option<String>> = lookup
            .findings
            .iter()
            .map(|f| f.config_line(true))
            .collect();
        assert_eq!(
            lines,
            [
                Some("\"Libraries\": [\"libfoo.so.1\"]".to_string()),
                Some("\"Files\": [\"/etc/foo.conf\"]".to_string()),
                Some("\"Dirs\": [\"/usr/share/zoneinfo\"]".to_string()),
            ]
        );
    }

    #[test]
    fn a_dlopened_soname_found_elsewhere_is_a_library_and_values_are_escaped() {
        let t = root();
        let hint = RuntimeLoad {
            soname: "libbar.so.2".into(),
            object: "/prog".into(),
            reason: nanoimg_elf::LoadReason::Data {
                section: ".rodata".into(),
            },
            found: Some("/opt/lib/libbar.so.2".into()),
            host_path: None,
            config_line: String::new(),
            root: t.path().to_path_buf(),
        };
        let root = TargetRoot {
            dir: t.path(),
            image: false,
            arch: Arch::X86_64,
            runtime_loads: std::slice::from_ref(&hint),
        };
        let lookup = look_up(&names(&["libbar.so.2", "a\"b\\c"]), &root);
        assert_eq!(
            lookup.findings[0].config_line(false).unwrap(),
            "\"Libraries\": [\"libbar.so.2\"]"
        );
        write(&t.path().join("etc/a\"b\\c"), b"");
        let lookup = look_up(&names(&["a\"b\\c"]), &root);
        assert_eq!(
            lookup.findings[0].config_line(true).unwrap(),
            r#""Files": ["/etc/a\"b\\c"]"#
        );
    }

    #[test]
    fn report_heading_and_unknown_root() {
        let list = parse(CONSOLE).unwrap();
        let lines = report_lines(&list, None);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("missing files: the program tried to open 2 names"));
        assert!(lines[1].starts_with("libnanoimg_missing.so.1: not looked up"));
    }
}
