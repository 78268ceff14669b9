//! Run-time load hints need evidence that the object loads libraries by name: programs
//! compiled here with the system `cc`, against the host's glibc, resolved in `/` or in a
//! temporary root.

use std::path::{Path, PathBuf};
use std::process::Command;

use nanoimg_elf::{runtime_refs, LoadReason, Resolver, RuntimeLoad};

fn cc(dir: &Path, args: &[&str]) {
    let out = Command::new("cc")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cc (needed to build test binaries): {e}"));
    assert!(
        out.status.success(),
        "cc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles `source` with `flags` into `dir/prog`.
fn program(dir: &Path, source: &str, flags: &[&str]) -> PathBuf {
    std::fs::write(dir.join("prog.c"), source).unwrap();
    let mut args = vec!["-O2", "-o", "prog", "prog.c"];
    args.extend_from_slice(flags);
    cc(dir, &args);
    dir.join("prog")
}

fn hints(root: &Path, prog: &Path) -> Vec<RuntimeLoad> {
    let resolver = Resolver::new(root);
    let resolution = resolver.resolve(prog, "/prog").unwrap();
    resolver.runtime_loads(&resolution, prog, "/prog")
}

const HELLO: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";
const DLOPEN: &str = "#include <dlfcn.h>\n\
    int main(void) { void *h = dlopen(\"libfoo.so.1\", RTLD_NOW); return h == 0; }\n";
/// The soname in its data, but nothing that loads it.
const NAMED: &str = "#include <stdio.h>\n\
    int main(void) { puts(\"libfoo.so.1\"); return 0; }\n";

#[test]
fn a_static_hello_gets_no_hint_though_glibc_carries_its_loader_and_names() {
    let d = tempfile::tempdir().unwrap();
    let prog = program(d.path(), HELLO, &["-static"]);
    // Static glibc always links its loader, and its data names libc.so.6 and libc.so.
    let refs = runtime_refs(&prog).unwrap();
    assert!(refs.is_static);
    assert_eq!(
        refs.loader.as_deref(),
        Some("contains glibc's loader (_dl_open)")
    );
    let names: Vec<&str> = refs.sonames.iter().map(|(_, n)| n.as_str()).collect();
    assert!(names.contains(&"libc.so.6"), "{names:?}");
    assert_eq!(hints(Path::new("/"), &prog), []);
    // Stripped: the ld.so.cache magic is the evidence left, and still no hint.
    let stripped = program(d.path(), HELLO, &["-static", "-s"]);
    let refs = runtime_refs(&stripped).unwrap();
    assert_eq!(
        refs.loader.as_deref(),
        Some("contains glibc's loader (glibc-ld.so.cache1.1)")
    );
    assert_eq!(hints(Path::new("/"), &stripped), []);
}

#[test]
fn a_static_program_that_dlopens_a_name_gets_a_hint() {
    let d = tempfile::tempdir().unwrap();
    let prog = program(d.path(), DLOPEN, &["-static"]);
    let h = hints(d.path(), &prog);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].soname, "libfoo.so.1");
    assert_eq!(
        h[0].reason,
        LoadReason::Data {
            section: ".rodata".into()
        }
    );
    // Not in the root: said so, and no advice to put a file there.
    assert_eq!(
        h[0].to_string(),
        format!(
            "/prog may load libfoo.so.1 at run time (named in its data); no loadable library \
             of that name in {}, so nothing is packed for it",
            d.path().display()
        )
    );
}

#[test]
fn a_dynamic_program_calling_dlopen_gets_a_hint_and_one_only_naming_it_gets_none() {
    let d = tempfile::tempdir().unwrap();
    let prog = program(d.path(), DLOPEN, &[]);
    let refs = runtime_refs(&prog).unwrap();
    assert_eq!(refs.loader.as_deref(), Some("imports dlopen"));
    assert!(!refs.is_static);
    let h = hints(Path::new("/"), &prog);
    let names: Vec<&str> = h.iter().map(|h| h.soname.as_str()).collect();
    assert_eq!(names, ["libfoo.so.1"]);
    assert_eq!(h[0].object, "/prog");
    assert_eq!(h[0].found, None);

    let named = program(d.path(), NAMED, &[]);
    let refs = runtime_refs(&named).unwrap();
    assert_eq!(refs.loader, None);
    // Without a loader the data is not even read.
    assert!(refs.sonames.is_empty(), "{:?}", refs.sonames);
    assert_eq!(hints(Path::new("/"), &named), []);
}

/// An image that holds nothing: every library comes from the root.
struct EmptyImage;

impl nanoimg_elf::ImageView for EmptyImage {
    fn file(&self, _guest: &str) -> nanoimg_elf::InImage {
        nanoimg_elf::InImage::Absent
    }
}

#[test]
fn the_closure_of_packed_objects_is_capped() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
    std::fs::copy(
        "/lib/x86_64-linux-gnu/libc.so.6",
        root.join("lib/x86_64-linux-gnu/libc.so.6"),
    )
    .unwrap();
    std::fs::write(d.path().join("m.c"), "int m(void) { return 1; }\n").unwrap();
    let mut files = Vec::new();
    for name in ["a.so", "b.so", "c.so"] {
        cc(
            d.path(),
            &["-shared", "-fPIC", "-Wl,--no-as-needed", "-o", name, "m.c"],
        );
        files.push((format!("/mods/{name}"), d.path().join(name)));
    }
    // Not an ELF: skipped by its magic, never examined.
    std::fs::write(d.path().join("README"), "text").unwrap();
    files.push(("/mods/README".to_string(), d.path().join("README")));
    let resolver = Resolver::new(&root);
    let arch = nanoimg_elf::Arch::X86_64;
    let all = resolver.needed_closure(arch, &files, &EmptyImage, true, 100);
    let added: Vec<(&str, &str, &str)> = all
        .added
        .iter()
        .map(|d| (d.name.as_str(), d.guest_path.as_str(), d.needed_by.as_str()))
        .collect();
    assert_eq!(
        added,
        [("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", "/mods/a.so"),]
    );
    // libc's own interpreter (PT_INTERP, and its DT_NEEDED), which this root lacks.
    assert_eq!(
        all.unresolved,
        [
            nanoimg_elf::Unresolved {
                object: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                name: "/lib64/ld-linux-x86-64.so.2".into(),
            },
            nanoimg_elf::Unresolved {
                object: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                name: "ld-linux-x86-64.so.2".into(),
            }
        ]
    );
    let examined: Vec<&str> = all.examined.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        examined,
        [
            "/mods/a.so",
            "/mods/b.so",
            "/mods/c.so",
            "/lib/x86_64-linux-gnu/libc.so.6"
        ]
    );
    assert_eq!(all.not_examined, 0);
    // Two at most: c.so and the libc a.so brought are left, counted.
    let capped = resolver.needed_closure(arch, &files, &EmptyImage, true, 2);
    assert_eq!(capped.examined.len(), 2);
    assert_eq!(capped.not_examined, 2);
    // Without adding (the whole root is in the image), needs are only checked.
    let checked = resolver.needed_closure(arch, &files, &EmptyImage, false, 100);
    assert!(checked.added.is_empty());
    assert_eq!(checked.examined.len(), 3);
}
