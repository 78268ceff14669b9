//! Libraries a program loads at run time (not in `DT_NEEDED`): `nanoimg deps` and `build`
//! hint at them, and the config's `Libraries` (or `--library`) packs them with their own
//! dependencies. Programs and libraries are compiled here with the system `cc` into fake
//! roots that hold the host's glibc.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use nanoimg::disk::DiskImage;
use nanoimg::tfs::Entry;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";

/// Runs `cc` in `dir` (a missing compiler fails the test).
fn cc(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("cc")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cc is needed to build test programs");
    assert!(
        out.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles `source` into `dir/prog`.
fn program(dir: &Path, source: &str) -> PathBuf {
    std::fs::write(dir.join("prog.c"), source).unwrap();
    cc(dir, &["-O2", "-o", "prog", "prog.c"]);
    dir.join("prog")
}

/// A root holding the host's interpreter and libc, where the guest's loader finds them.
fn glibc_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in ["lib64", "lib/x86_64-linux-gnu", LIBDIR] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (host, guest) in [
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
    ] {
        std::fs::copy(host, root.join(guest)).unwrap();
    }
    root
}

/// A shared library `root/<dir>/<soname>` with that soname, linked against `needs` (sonames
/// in the same folder).
fn library(work: &Path, root: &Path, dir: &str, soname: &str, needs: &[&str]) {
    let stem = soname.split('.').next().unwrap();
    let src = format!("{stem}.c");
    // Each library calls a function of the ones it needs, so the link keeps DT_NEEDED.
    let mut text = String::new();
    let mut body = "42".to_string();
    for n in needs {
        let s = n.split('.').next().unwrap();
        text.push_str(&format!("int {s}_value(void);\n"));
        body.push_str(&format!(" + {s}_value()"));
    }
    text.push_str(&format!("int {stem}_value(void) {{ return {body}; }}\n"));
    std::fs::write(work.join(&src), text).unwrap();
    let out = root.join(dir).join(soname);
    let soname_flag = format!("-Wl,-soname,{soname}");
    let libdir = format!("-L{}", root.join(dir).display());
    let mut args = vec![
        "-shared".to_string(),
        "-fPIC".into(),
        "-Wl,--no-as-needed".into(),
        soname_flag,
        "-o".into(),
        out.display().to_string(),
        src,
        libdir,
    ];
    args.extend(needs.iter().map(|n| format!("-l:{n}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cc(work, &args);
}

const DLOPEN: &str = "#include <dlfcn.h>\n\
    int main(void) { void *h = dlopen(\"libfoo.so.1\", RTLD_NOW); return h == 0; }\n";

/// A program that dlopens libfoo.so.1, and a root where libfoo.so.1 needs libbar.so.1.
fn dlopen_setup(dir: &Path) -> (PathBuf, PathBuf) {
    let root = glibc_root(dir);
    library(dir, &root, LIBDIR, "libbar.so.1", &[]);
    library(dir, &root, LIBDIR, "libfoo.so.1", &["libbar.so.1"]);
    (program(dir, DLOPEN), root)
}

fn run(args: &[&OsStr], cwd: &Path) -> Output {
    let o = common::nanoimg(args, cwd);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn deps_json(prog: &Path, root: &Path, extra: &[&OsStr]) -> serde_json::Value {
    let dir = prog.parent().unwrap();
    let mut args = vec![
        os("deps"),
        prog.as_os_str(),
        os("--target-root"),
        root.as_os_str(),
        os("--json"),
    ];
    args.extend_from_slice(extra);
    serde_json::from_slice(&run(&args, dir).stdout).unwrap()
}

fn deps_text(prog: &Path, root: &Path) -> String {
    let dir = prog.parent().unwrap();
    let args = [
        os("deps"),
        prog.as_os_str(),
        os("--target-root"),
        root.as_os_str(),
    ];
    String::from_utf8(run(&args, dir).stdout).unwrap()
}

/// Builds `prog` with `root` and an optional config; gives the image and stderr.
fn build(prog: &Path, root: &Path, config: Option<&str>) -> (PathBuf, String) {
    let dir = prog.parent().unwrap();
    let release = common::fake_release(dir);
    let image = dir.join("prog.img");
    let config_path = dir.join("config.json");
    let mut args = vec![
        os("build"),
        prog.as_os_str(),
        os("--target-root"),
        root.as_os_str(),
        os("--kernel-dir"),
        release.as_os_str(),
        os("-o"),
        image.as_os_str(),
    ];
    if let Some(c) = config {
        std::fs::write(&config_path, c).unwrap();
        args.extend([os("-c"), config_path.as_os_str()]);
    }
    let o = run(&args, dir);
    (image, String::from_utf8(o.stderr).unwrap())
}

fn hints(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("nanoimg: hint: "))
        .collect()
}

const FOO_HINT: &str = "/prog may load libfoo.so.1 at run time (named in its data); found at \
    /usr/lib/x86_64-linux-gnu/libfoo.so.1; add \"Libraries\": [\"libfoo.so.1\"] to pack it";

#[test]
fn a_dlopened_soname_is_hinted_with_the_config_line() {
    let d = tempfile::tempdir().unwrap();
    let (prog, root) = dlopen_setup(d.path());

    let text = deps_text(&prog, &root);
    assert!(text.lines().any(|l| l == format!("  {FOO_HINT}")), "{text}");
    let j = deps_json(&prog, &root, &[]);
    let loads = j["runtime_loads"].as_array().unwrap();
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert_eq!(loads[0]["soname"], "libfoo.so.1");
    assert_eq!(loads[0]["object"], "/prog");
    assert_eq!(loads[0]["reason"]["kind"], "data");
    assert_eq!(loads[0]["reason"]["section"], ".rodata");
    assert_eq!(loads[0]["found"], "/usr/lib/x86_64-linux-gnu/libfoo.so.1");
    assert_eq!(loads[0]["config_line"], "\"Libraries\": [\"libfoo.so.1\"]");

    let (image, stderr) = build(&prog, &root, None);
    assert_eq!(hints(&stderr), [format!("nanoimg: hint: {FOO_HINT}")]);
    assert!(find(&image, "/usr/lib/x86_64-linux-gnu/libfoo.so.1").is_none());
}

/// The entry at `path` in the image's root filesystem.
fn find(image: &Path, path: &str) -> Option<Entry> {
    let img = DiskImage::open(image).unwrap();
    let fs = img.root_fs().unwrap();
    let mut entry = Entry::Dir(fs.tree().unwrap());
    for c in path.split('/').filter(|c| !c.is_empty()) {
        let Entry::Dir(d) = entry else { return None };
        entry = d.get(c.as_bytes())?.clone();
    }
    Some(entry)
}

#[test]
fn libraries_packs_the_soname_and_its_dependencies() {
    let d = tempfile::tempdir().unwrap();
    let (prog, root) = dlopen_setup(d.path());
    let (image, stderr) = build(&prog, &root, Some(r#"{"Libraries": ["libfoo.so.1"]}"#));
    assert!(hints(&stderr).is_empty(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "nanoimg: packed /usr/lib/x86_64-linux-gnu/libfoo.so.1 <- {}",
            root.join(LIBDIR).join("libfoo.so.1").display()
        )),
        "{stderr}"
    );
    for lib in ["libfoo.so.1", "libbar.so.1"] {
        let Some(Entry::File(f)) = find(&image, &format!("/{LIBDIR}/{lib}")) else {
            panic!("{lib} is not in the image");
        };
        let len = std::fs::metadata(root.join(LIBDIR).join(lib))
            .unwrap()
            .len();
        assert_eq!(f.len, len, "{lib}");
    }
    let o = run(&[os("inspect"), image.as_os_str(), os("--files")], d.path());
    let text = String::from_utf8(o.stdout).unwrap();
    for lib in ["libfoo.so.1", "libbar.so.1"] {
        assert!(text.contains(&format!("/{LIBDIR}/{lib}")), "{text}");
    }

    // --library does the same for deps (and build); libbar comes in as libfoo's DT_NEEDED.
    let j = deps_json(&prog, &root, &[os("--library"), os("libfoo.so.1")]);
    assert_eq!(j["runtime_loads"], serde_json::json!([]));
    let deps = j["dependencies"].as_array().unwrap();
    let by = |name: &str| {
        deps.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {deps:?}"))["needed_by"]
            .clone()
    };
    assert_eq!(by("libfoo.so.1"), "Libraries");
    assert_eq!(by("libbar.so.1"), "/usr/lib/x86_64-linux-gnu/libfoo.so.1");
}

#[test]
fn a_library_not_in_the_root_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let (prog, root) = dlopen_setup(d.path());
    std::fs::write(
        d.path().join("config.json"),
        r#"{"Libraries": ["libnope.so.1"]}"#,
    )
    .unwrap();
    let o = common::nanoimg(
        &[
            os("deps"),
            prog.as_os_str(),
            os("-c"),
            os("config.json"),
            os("--target-root"),
            root.as_os_str(),
        ],
        d.path(),
    );
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(!o.status.success());
    assert!(
        stderr.starts_with("error: library libnope.so.1 needed by Libraries not found; searched "),
        "{stderr}"
    );
}

const RESOLVE: &str = "#include <netdb.h>\n#include <stddef.h>\n\
    int main(void) { struct addrinfo *r; return getaddrinfo(\"example.com\", NULL, NULL, &r); }\n";

#[test]
fn getaddrinfo_hints_the_nss_modules_the_root_ships_separately() {
    let d = tempfile::tempdir().unwrap();
    let root = glibc_root(d.path());
    let prog = program(d.path(), RESOLVE);
    // No libnss_files.so.2 in the root: its glibc has NSS built in, nothing to say.
    assert_eq!(
        deps_json(&prog, &root, &[])["runtime_loads"],
        serde_json::json!([])
    );

    library(
        d.path(),
        &root,
        "lib/x86_64-linux-gnu",
        "libnss_files.so.2",
        &[],
    );
    let j = deps_json(&prog, &root, &[]);
    let loads = j["runtime_loads"].as_array().unwrap();
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert_eq!(loads[0]["soname"], "libnss_files.so.2");
    assert_eq!(loads[0]["reason"]["kind"], "nss");
    assert_eq!(loads[0]["reason"]["symbol"], "getaddrinfo");
    let line = "/prog may load libnss_files.so.2 at run time (glibc NSS module for getaddrinfo); \
        found at /lib/x86_64-linux-gnu/libnss_files.so.2; add \"Libraries\": \
        [\"libnss_files.so.2\"] to pack it";
    let (_, stderr) = build(&prog, &root, None);
    assert_eq!(hints(&stderr), [format!("nanoimg: hint: {line}")]);

    // With libnss_dns.so.2 there too, both are hinted; packed, neither is.
    library(
        d.path(),
        &root,
        "lib/x86_64-linux-gnu",
        "libnss_dns.so.2",
        &[],
    );
    let j = deps_json(&prog, &root, &[]);
    let names: Vec<&str> = j["runtime_loads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["soname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["libnss_files.so.2", "libnss_dns.so.2"]);
    let (_, stderr) = build(
        &prog,
        &root,
        Some(r#"{"Libraries": ["libnss_files.so.2", "libnss_dns.so.2"]}"#),
    );
    assert!(hints(&stderr).is_empty(), "{stderr}");
}

const THREAD_EXIT: &str = "#include <pthread.h>\n\
    int main(void) { pthread_exit(0); }\n";

#[test]
fn pthread_exit_hints_libgcc_s() {
    let d = tempfile::tempdir().unwrap();
    let root = glibc_root(d.path());
    let prog = program(d.path(), THREAD_EXIT);
    let (_, stderr) = build(&prog, &root, None);
    assert_eq!(
        hints(&stderr),
        [format!(
            "nanoimg: hint: /prog may load libgcc_s.so.1 at run time (glibc loads it to unwind \
             threads for pthread_exit); not found in {}; put it there and add \"Libraries\": \
             [\"libgcc_s.so.1\"] to pack it",
            root.display()
        )]
    );
    library(d.path(), &root, LIBDIR, "libgcc_s.so.1", &[]);
    let j = deps_json(&prog, &root, &[]);
    assert_eq!(
        j["runtime_loads"][0]["found"],
        "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1"
    );
    assert_eq!(j["runtime_loads"][0]["reason"]["kind"], "unwind");
    let (_, stderr) = build(&prog, &root, Some(r#"{"Libraries": ["libgcc_s.so.1"]}"#));
    assert!(hints(&stderr).is_empty(), "{stderr}");
}
