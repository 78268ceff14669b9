//! Inspection and resolution on real binaries compiled here with the system C/C++ compilers.
//! Each test asserts the resolved list or the exact error.

use std::path::{Path, PathBuf};
use std::process::Command;

use nanoimg_elf::{inspect, ElfKind, ResolveError, Resolver, Rule};

/// Runs a compiler; a missing compiler fails the test (it never skips).
fn compile(cmd: &str, args: &[&str], cwd: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (needed to build test binaries): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const HELLO: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// (guest path, rule) of each dependency, for compact assertions.
fn summary(r: &nanoimg_elf::Resolution) -> Vec<(String, Rule)> {
    r.dependencies
        .iter()
        .map(|d| (d.guest_path.clone(), d.rule))
        .collect()
}

fn host() -> Resolver {
    Resolver::new(Path::new("/"))
}

#[test]
fn static_program() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "s.c", HELLO);
    compile("cc", &["-static", "-O2", "-o", "s", "s.c"], d.path());
    let r = host().resolve(&d.path().join("s"), "/s").unwrap();
    assert_eq!(r.program.kind, ElfKind::Static);
    assert!(r.dependencies.is_empty());
}

#[test]
fn static_pie_program() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "s.c", HELLO);
    compile(
        "cc",
        &["-static-pie", "-fPIE", "-O2", "-o", "s", "s.c"],
        d.path(),
    );
    let r = host().resolve(&d.path().join("s"), "/s").unwrap();
    assert_eq!(r.program.kind, ElfKind::StaticPie);
    assert!(r.dependencies.is_empty());
}

#[test]
fn dynamic_c_program() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "p.c", HELLO);
    compile("cc", &["-O2", "-o", "p", "p.c"], d.path());
    let r = host().resolve(&d.path().join("p"), "/p").unwrap();
    assert_eq!(r.program.kind, ElfKind::Dynamic);
    let interp = r.program.interpreter.clone().unwrap();
    assert_eq!(interp, "/lib64/ld-linux-x86-64.so.2");
    let deps = summary(&r);
    assert_eq!(deps[0], (interp, Rule::Interpreter));
    assert_eq!(deps.len(), 2, "interpreter and libc only: {deps:?}");
    assert!(deps[1].0.ends_with("/libc.so.6"), "{deps:?}");
    // Content comes from the real file behind any symlinks.
    for dep in &r.dependencies {
        assert!(!std::fs::symlink_metadata(&dep.host_path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(inspect(&dep.host_path).is_ok(), "{dep:?}");
    }
}

#[test]
fn cpp_program_with_libstdcxx_and_threads() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "t.cpp",
        "#include <iostream>\n#include <thread>\nint main() { std::thread t([] { std::cout << \"hi\\n\"; }); t.join(); }\n",
    );
    compile("c++", &["-O2", "-pthread", "-o", "t", "t.cpp"], d.path());
    let r = host().resolve(&d.path().join("t"), "/t").unwrap();
    let names: Vec<&str> = r.dependencies.iter().map(|d| d.name.as_str()).collect();
    for want in ["libstdc++.so.6", "libgcc_s.so.1", "libc.so.6", "libm.so.6"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // libc's own DT_NEEDED on the loader is the interpreter, already loaded: not packed twice.
    assert_eq!(
        r.dependencies
            .iter()
            .filter(|d| d.name.contains("ld-linux"))
            .count(),
        1,
        "{names:?}"
    );
    let libm = r
        .dependencies
        .iter()
        .find(|d| d.name == "libm.so.6")
        .unwrap();
    assert!(
        libm.needed_by.ends_with("libstdc++.so.6"),
        "transitive: {libm:?}"
    );
}

/// An application tree: bin/app with DT_RUNPATH=$ORIGIN/../lib, and lib/libfoo.so.
fn app_with_own_library(d: &Path, dtags: &str) -> PathBuf {
    std::fs::create_dir_all(d.join("app/bin")).unwrap();
    std::fs::create_dir_all(d.join("app/lib")).unwrap();
    write(d, "foo.c", "int foo(void) { return 42; }\n");
    compile(
        "cc",
        &["-shared", "-fPIC", "-o", "app/lib/libfoo.so", "foo.c"],
        d,
    );
    compile_app(d, &[dtags, "-Wl,-rpath,$ORIGIN/../lib"])
}

/// Compiles app/bin/app, which calls `foo` from app/lib/libfoo.so, with `link_flags`.
fn compile_app(d: &Path, link_flags: &[&str]) -> PathBuf {
    write(
        d,
        "app.c",
        "int foo(void);\nint main(void) { return foo() != 42; }\n",
    );
    let mut args = vec!["-o", "app/bin/app", "app.c", "-Lapp/lib", "-lfoo"];
    args.extend_from_slice(link_flags);
    compile("cc", &args, d);
    d.join("app/bin/app")
}

#[test]
fn runpath_origin_finds_the_programs_own_library() {
    let d = tempfile::tempdir().unwrap();
    let app = app_with_own_library(d.path(), "-Wl,--enable-new-dtags");
    let info = inspect(&app).unwrap();
    assert_eq!(info.runpath, ["$ORIGIN/../lib"]);
    let r = host().resolve(&app, "/opt/app/bin/app").unwrap();
    let foo = r
        .dependencies
        .iter()
        .find(|d| d.name == "libfoo.so")
        .unwrap();
    assert_eq!(foo.guest_path, "/opt/app/lib/libfoo.so");
    assert_eq!(foo.rule, Rule::Runpath);
    assert_eq!(
        foo.host_path,
        d.path().join("app/lib/libfoo.so").canonicalize().unwrap()
    );
    assert_eq!(foo.needed_by, "/opt/app/bin/app");
}

#[test]
fn rpath_is_used_when_there_is_no_runpath() {
    let d = tempfile::tempdir().unwrap();
    let app = app_with_own_library(d.path(), "-Wl,--disable-new-dtags");
    assert_eq!(inspect(&app).unwrap().rpath, ["$ORIGIN/../lib"]);
    let r = host().resolve(&app, "/app").unwrap();
    let foo = r
        .dependencies
        .iter()
        .find(|d| d.name == "libfoo.so")
        .unwrap();
    // The program sits at /, so $ORIGIN/../lib is /lib in the guest.
    assert_eq!(
        (foo.guest_path.as_str(), foo.rule),
        ("/lib/libfoo.so", Rule::Rpath)
    );
}

#[test]
fn a_library_reached_only_through_a_symlink_chain() {
    let d = tempfile::tempdir().unwrap();
    let lib = d.path().join("app/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(d.path().join("app/bin")).unwrap();
    std::fs::create_dir_all(d.path().join("real")).unwrap();
    write(d.path(), "foo.c", "int foo(void) { return 42; }\n");
    compile(
        "cc",
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libfoo.so.1",
            "-o",
            "real/libfoo.so.1.2.3",
            "foo.c",
        ],
        d.path(),
    );
    // libfoo.so.1 -> libfoo.so.1.2 -> ../../real/libfoo.so.1.2.3
    std::os::unix::fs::symlink("../../real/libfoo.so.1.2.3", lib.join("libfoo.so.1.2")).unwrap();
    std::os::unix::fs::symlink("libfoo.so.1.2", lib.join("libfoo.so.1")).unwrap();
    std::os::unix::fs::symlink("libfoo.so.1", lib.join("libfoo.so")).unwrap();
    compile_app(d.path(), &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib"]);
    assert!(inspect(&d.path().join("app/bin/app"))
        .unwrap()
        .needed
        .contains(&"libfoo.so.1".to_string()));
    let r = host()
        .resolve(&d.path().join("app/bin/app"), "/bin/app")
        .unwrap();
    let foo = r
        .dependencies
        .iter()
        .find(|d| d.name == "libfoo.so.1")
        .unwrap();
    assert_eq!(
        foo.guest_path, "/lib/libfoo.so.1",
        "the path the loader opens"
    );
    assert_eq!(
        foo.host_path,
        d.path()
            .join("real/libfoo.so.1.2.3")
            .canonicalize()
            .unwrap(),
        "the content behind the chain"
    );
}

#[test]
fn a_missing_library_names_it_its_user_and_every_directory_searched() {
    let d = tempfile::tempdir().unwrap();
    let app = app_with_own_library(d.path(), "-Wl,--enable-new-dtags");
    std::fs::remove_file(d.path().join("app/lib/libfoo.so")).unwrap();
    let e = host().resolve(&app, "/app/bin/app").unwrap_err();
    let ResolveError::Missing {
        name,
        needed_by,
        searched,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(
        (name.as_str(), needed_by.as_str()),
        ("libfoo.so", "/app/bin/app")
    );
    assert_eq!(searched[0], "/app/lib (DT_RUNPATH)");
    assert_eq!(searched[1], "/etc/ld.so.cache");
    assert_eq!(
        searched[2..],
        nanoimg_elf::Arch::X86_64
            .default_dirs()
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        e.to_string(),
        "library libfoo.so needed by /app/bin/app not found; searched /app/lib (DT_RUNPATH), /etc/ld.so.cache, /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib64, /usr/lib64, /lib, /usr/lib"
    );
}

#[test]
fn ld_library_path_is_searched_only_when_asked() {
    let d = tempfile::tempdir().unwrap();
    let app = app_with_own_library(d.path(), "-Wl,--enable-new-dtags");
    // Move the library away from $ORIGIN/../lib into a directory only LD_LIBRARY_PATH names.
    let other = d.path().join("elsewhere");
    std::fs::create_dir(&other).unwrap();
    std::fs::rename(d.path().join("app/lib/libfoo.so"), other.join("libfoo.so")).unwrap();
    assert!(matches!(
        host().resolve(&app, "/app"),
        Err(ResolveError::Missing { .. })
    ));
    let dir = other.to_str().unwrap().to_string();
    let r = host()
        .with_ld_library_path(vec![dir.clone()])
        .resolve(&app, "/app")
        .unwrap();
    let foo = r
        .dependencies
        .iter()
        .find(|d| d.name == "libfoo.so")
        .unwrap();
    assert_eq!(
        (foo.guest_path.clone(), foo.rule),
        (format!("{dir}/libfoo.so"), Rule::LdLibraryPath)
    );
}

/// An ELF header with the given class and machine (enough for identification checks).
fn header(class: u8, machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = class;
    h[5] = 1;
    h[6] = 1;
    h[16] = 3;
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h
}

#[test]
fn a_foreign_or_32_bit_library_on_the_path_is_skipped_like_the_loader_does() {
    let d = tempfile::tempdir().unwrap();
    let app = app_with_own_library(d.path(), "-Wl,--disable-new-dtags");
    // An aarch64 libfoo.so earlier in the search order (LD_LIBRARY_PATH comes after RPATH,
    // so put the decoys in RPATH's place and the real one in LD_LIBRARY_PATH).
    let real = d.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::rename(d.path().join("app/lib/libfoo.so"), real.join("libfoo.so")).unwrap();
    std::fs::write(d.path().join("app/lib/libfoo.so"), header(2, 183)).unwrap();
    let decoy32 = d.path().join("decoy32");
    std::fs::create_dir(&decoy32).unwrap();
    std::fs::write(decoy32.join("libfoo.so"), header(1, 3)).unwrap();
    let r = host()
        .with_ld_library_path(vec![
            decoy32.to_str().unwrap().into(),
            real.to_str().unwrap().into(),
        ])
        .resolve(&app, "/app/bin/app")
        .unwrap();
    let foo = r
        .dependencies
        .iter()
        .find(|d| d.name == "libfoo.so")
        .unwrap();
    assert_eq!(foo.rule, Rule::LdLibraryPath);
    assert_eq!(
        foo.host_path,
        real.join("libfoo.so").canonicalize().unwrap()
    );
}

#[test]
fn programs_that_cannot_run_are_refused_with_what_was_found() {
    let d = tempfile::tempdir().unwrap();
    let check = |name: &str, bytes: &[u8], want: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = host().resolve(&p, "/x").unwrap_err().to_string();
        assert_eq!(e, format!("{} {want}", p.display()));
    };
    // aarch64 is a program nanoimg packages: this header (no entry point) is refused for
    // what it is, not for its machine.
    check(
        "arm",
        &header(2, 183),
        "is an ELF shared library (no interpreter, not PIE), not an executable program",
    );
    check(
        "i386",
        &header(1, 3),
        "is an i386 ELF; Nanos runs x86_64 and aarch64 programs",
    );
    check(
        "riscv",
        &header(2, 243),
        "is an riscv ELF; Nanos runs x86_64 and aarch64 programs",
    );
    check(
        "elf32",
        &header(1, 62),
        "is a 32-bit ELF; Nanos runs 64-bit programs (x86_64 or aarch64)",
    );
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    check("random", &noise, "is not an ELF file");
    check("empty", b"", "is not an ELF file");

    // A truncated real program.
    write(d.path(), "p.c", HELLO);
    compile("cc", &["-O2", "-o", "p", "p.c"], d.path());
    let full = std::fs::read(d.path().join("p")).unwrap();
    let p = d.path().join("truncated");
    std::fs::write(&p, &full[..100]).unwrap();
    let e = host().resolve(&p, "/x").unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{} is a truncated or corrupt ELF file: ",
            p.display()
        )),
        "{e}"
    );

    // A shared library given as the program.
    write(d.path(), "foo.c", "int foo(void) { return 1; }\n");
    compile(
        "cc",
        &["-shared", "-fPIC", "-o", "libfoo.so", "foo.c"],
        d.path(),
    );
    let e = host()
        .resolve(&d.path().join("libfoo.so"), "/x")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{} is an ELF shared library (no interpreter, not PIE), not an executable program",
            d.path().join("libfoo.so").display()
        )
    );
}

#[test]
fn everything_resolves_inside_a_target_root() {
    // A sysroot with a merged-/usr layout built from the host's own loader and libc.
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("sysroot");
    let multiarch = root.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&multiarch).unwrap();
    std::fs::create_dir_all(root.join("usr/lib64")).unwrap();
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", root.join("lib64")).unwrap();
    let host_res = host()
        .resolve(
            &{
                write(d.path(), "p.c", HELLO);
                compile("cc", &["-O2", "-o", "p", "p.c"], d.path());
                d.path().join("p")
            },
            "/p",
        )
        .unwrap();
    for dep in &host_res.dependencies {
        let name = Path::new(&dep.guest_path).file_name().unwrap();
        std::fs::copy(&dep.host_path, multiarch.join(name)).unwrap();
    }
    std::os::unix::fs::symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        root.join("usr/lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    let r = Resolver::new(&root)
        .resolve(&d.path().join("p"), "/p")
        .unwrap();
    assert_eq!(
        summary(&r),
        [
            ("/lib64/ld-linux-x86-64.so.2".to_string(), Rule::Interpreter),
            (
                "/lib/x86_64-linux-gnu/libc.so.6".to_string(),
                Rule::DefaultDir
            ),
        ]
    );
    for dep in &r.dependencies {
        assert!(dep.host_path.starts_with(&root), "{dep:?} escaped the root");
    }
    // An empty root has no interpreter.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = Resolver::new(&empty)
        .resolve(&d.path().join("p"), "/p")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "program interpreter /lib64/ld-linux-x86-64.so.2 (PT_INTERP of /p, an x86_64 program) not found in {}; give --target-root (or TargetRoot) a folder or container image holding the program's x86_64 libraries",
            empty.display()
        )
    );
}
