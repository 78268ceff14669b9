//! Everything packed has its libraries: shared objects under `MapDirs` (an extension module
//! needing a library elsewhere in the root) get their closure added; the whole root is
//! packed with links kept (`pack_root`); what was packed is summed up by source; run-time
//! load hints need evidence. ELF files are compiled here with the system `cc` into a
//! temporary root holding the host's glibc.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nanoimg_config::Config;
use nanoimg_plan::{plan, Count, Inputs, Packed, Plan, PlanError};
use nanoimg_release::KernelDir;
use nanoimg_tfs::{FileSource, Node};

const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";
const DYNLOAD: &str = "usr/lib/python3.11/lib-dynload";
const EXT: &str = "_hashlib.cpython-311-x86_64-linux-gnu.so";

/// Runs `cc` in `dir` (a missing compiler fails the test).
fn cc(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("cc")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cc is needed to build test objects");
    assert!(
        out.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Setup {
    dir: tempfile::TempDir,
    kernel: KernelDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let rel = dir.path().join("release");
        std::fs::create_dir_all(&rel).unwrap();
        std::fs::write(rel.join("kernel.img"), common::tiny_static_elf()).unwrap();
        std::fs::write(rel.join("boot.img"), b"boot").unwrap();
        std::fs::write(dir.path().join("prog"), common::tiny_static_elf()).unwrap();
        let kernel = KernelDir::open(&rel).unwrap();
        let s = Setup { dir, kernel };
        let root = s.root();
        for d in ["lib64", "lib/x86_64-linux-gnu", LIBDIR, DYNLOAD] {
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
        s
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn work(&self) -> &Path {
        self.dir.path()
    }

    /// A shared object at `root/<path>` built from `source`, linked against `needs`
    /// (sonames in `LIBDIR`), with `soname` when given.
    fn object(&self, path: &str, soname: Option<&str>, source: &str, needs: &[&str]) -> PathBuf {
        let src = self.work().join("obj.c");
        std::fs::write(&src, source).unwrap();
        let out = self.root().join(path);
        let mut args = vec![
            "-shared".to_string(),
            "-fPIC".into(),
            "-Wl,--no-as-needed".into(),
            "-o".into(),
            out.display().to_string(),
            "obj.c".into(),
            format!("-L{}", self.root().join(LIBDIR).display()),
        ];
        if let Some(s) = soname {
            args.push(format!("-Wl,-soname,{s}"));
        }
        args.extend(needs.iter().map(|n| format!("-l:{n}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cc(self.work(), &args);
        out
    }

    /// `libfake.so.3` in `LIBDIR`, as libcrypto.so.3 is for `_hashlib`.
    fn crypto(&self) -> PathBuf {
        self.object(
            &format!("{LIBDIR}/libfake.so.3"),
            Some("libfake.so.3"),
            "int fake_value(void) { return 3; }\n",
            &[],
        )
    }

    fn plan(&self, json: &str, pack_root: bool) -> Result<Plan, PlanError> {
        self.plan_program(&self.work().join("prog"), json, pack_root)
    }

    fn plan_program(&self, program: &Path, json: &str, pack_root: bool) -> Result<Plan, PlanError> {
        let config_path = self.work().join("config.json");
        std::fs::write(&config_path, json).unwrap();
        let config = Config::load(&config_path)?;
        let root = self.root();
        plan(&Inputs {
            program,
            config: &config,
            config_path: Some(&config_path),
            kernel: &self.kernel,
            nanos_version: "0.1.55",
            cwd: self.work(),
            target_root: Some(&root),
            image_root: true,
            ld_library_path: &[],
            keep_mount_ids: false,
            image_name: None,
            arch: None,
            pack_root,
        })
    }
}

fn len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// The host file packed at `path`.
fn host_of(plan: &Plan, path: &str) -> PathBuf {
    match plan.root.get(path.as_bytes()) {
        Some(Node::File(FileSource::Host { path, .. })) => path.clone(),
        other => panic!("{path}: {other:?}"),
    }
}

/// (name, guest path, needed by) of each dependency.
fn deps(plan: &Plan) -> Vec<(String, String, String)> {
    plan.dependencies
        .iter()
        .map(|d| (d.name.clone(), d.guest_path.clone(), d.needed_by.clone()))
        .collect()
}

fn s(v: &str) -> String {
    v.to_string()
}

const EXT_SOURCE: &str = "int fake_value(void);\nint ext_value(void) { return fake_value(); }\n";

#[test]
fn an_extension_module_under_map_dirs_gets_the_library_it_needs_from_the_root() {
    let s_ = Setup::new();
    // The loader also where the default folders find it first (Debian has it there): libc's
    // DT_NEEDED of it is the loader already running, not a second copy to pack.
    std::fs::copy(
        "/lib64/ld-linux-x86-64.so.2",
        s_.root().join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    let crypto = s_.crypto();
    let ext = s_.object(
        &format!("{DYNLOAD}/{EXT}"),
        None,
        EXT_SOURCE,
        &["libfake.so.3"],
    );
    let json = format!(r#"{{"MapDirs": {{"/{DYNLOAD}/*": "/{DYNLOAD}"}}}}"#);
    let plan = s_.plan(&json, false).unwrap();
    let ext_guest = format!("/{DYNLOAD}/{EXT}");
    assert_eq!(host_of(&plan, &ext_guest), ext);
    assert_eq!(
        host_of(&plan, "/usr/lib/x86_64-linux-gnu/libfake.so.3"),
        crypto
    );
    let libc = s_.root().join("lib/x86_64-linux-gnu/libc.so.6");
    let ld = s_.root().join("lib64/ld-linux-x86-64.so.2");
    assert_eq!(host_of(&plan, "/lib/x86_64-linux-gnu/libc.so.6"), libc);
    // The program is static: everything comes from the module's closure, libc's own
    // interpreter included.
    assert_eq!(
        deps(&plan),
        [
            (
                s("libfake.so.3"),
                s("/usr/lib/x86_64-linux-gnu/libfake.so.3"),
                ext_guest.clone()
            ),
            (
                s("libc.so.6"),
                s("/lib/x86_64-linux-gnu/libc.so.6"),
                ext_guest.clone()
            ),
            (
                s("/lib64/ld-linux-x86-64.so.2"),
                s("/lib64/ld-linux-x86-64.so.2"),
                s("/lib/x86_64-linux-gnu/libc.so.6")
            ),
        ]
    );
    assert!(plan.unresolved.is_empty(), "{:?}", plan.unresolved);
    let prog = len(&s_.work().join("prog"));
    assert_eq!(
        plan.packed,
        Packed {
            program: Count {
                files: 1,
                bytes: prog,
                links: 0,
                dirs: 0
            },
            config: Count {
                files: 1,
                bytes: len(&ext),
                links: 0,
                dirs: 4
            },
            needed: Count {
                files: 3,
                bytes: len(&crypto) + len(&libc) + len(&ld),
                links: 0,
                dirs: 0
            },
            root: Count::default(),
            // The module, libfake and libc (the interpreter needs nothing).
            elf_files: 3,
        }
    );
    let line = plan.packed.to_string();
    assert!(
        line.starts_with("packed 5 files (") && line.contains("; config 1 file ("),
        "{line}"
    );
    assert!(
        line.ends_with("; 3 ELF files checked for the libraries they need"),
        "{line}"
    );
}

#[test]
fn a_library_nowhere_is_one_note_naming_the_elf_and_the_soname() {
    let s_ = Setup::new();
    s_.crypto();
    s_.object(
        &format!("{DYNLOAD}/{EXT}"),
        None,
        EXT_SOURCE,
        &["libfake.so.3"],
    );
    // Gone from the root after linking: the module needs what nothing has.
    std::fs::remove_file(s_.root().join(LIBDIR).join("libfake.so.3")).unwrap();
    let json = format!(r#"{{"MapDirs": {{"/{DYNLOAD}/*": "/{DYNLOAD}"}}}}"#);
    let plan = s_.plan(&json, false).unwrap();
    let ext_guest = format!("/{DYNLOAD}/{EXT}");
    let want = format!(
        "{ext_guest} needs libfake.so.3, which neither the image nor {} has; it will not load \
         in the guest",
        s_.root().display()
    );
    let matching: Vec<&String> = plan.notes.iter().filter(|n| n.contains("needs")).collect();
    assert_eq!(matching, [&want]);
    assert_eq!(plan.unresolved.len(), 1);
    assert_eq!(plan.unresolved[0].object, ext_guest);
    assert_eq!(plan.unresolved[0].name, "libfake.so.3");
    // libc.so.6 is still found and packed.
    assert_eq!(
        deps(&plan)[0],
        (
            s("libc.so.6"),
            s("/lib/x86_64-linux-gnu/libc.so.6"),
            ext_guest
        )
    );
}

#[test]
fn runpath_origin_of_a_packed_object_is_its_image_folder() {
    let s_ = Setup::new();
    // The module's own library beside it, found through $ORIGIN/../deps: in the image (from
    // the host project folder, under MapDirs), never added from the root.
    let proj = s_.work().join("app");
    std::fs::create_dir_all(proj.join("mods")).unwrap();
    std::fs::create_dir_all(proj.join("deps")).unwrap();
    let src = s_.work().join("own.c");
    std::fs::write(&src, "int own_value(void) { return 1; }\n").unwrap();
    cc(
        s_.work(),
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libown.so.1",
            "-o",
            "app/deps/libown.so.1",
            "own.c",
        ],
    );
    std::fs::write(
        s_.work().join("mod.c"),
        "int own_value(void);\nint mod_value(void) { return own_value(); }\n",
    )
    .unwrap();
    cc(
        s_.work(),
        &[
            "-shared",
            "-fPIC",
            "-Wl,--no-as-needed",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../deps",
            "-o",
            "app/mods/mod.so",
            "mod.c",
            "-Lapp/deps",
            "-l:libown.so.1",
        ],
    );
    let plan = s_.plan(r#"{"MapDirs": {"app/*": "/srv"}}"#, false).unwrap();
    assert_eq!(
        deps(&plan),
        [
            (
                s("libc.so.6"),
                s("/lib/x86_64-linux-gnu/libc.so.6"),
                s("/srv/mods/mod.so")
            ),
            (
                s("/lib64/ld-linux-x86-64.so.2"),
                s("/lib64/ld-linux-x86-64.so.2"),
                s("/lib/x86_64-linux-gnu/libc.so.6")
            ),
        ]
    );
    assert!(plan.unresolved.is_empty(), "{:?}", plan.unresolved);
}

#[test]
fn pack_root_packs_every_entry_with_links_kept_and_sums_it_up() {
    let s_ = Setup::new();
    let r = s_.root();
    std::fs::create_dir_all(r.join("app")).unwrap();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::create_dir_all(r.join("empty")).unwrap();
    // As in many container images: a link to a file only the running system has.
    symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        r.join("etc/resolv.conf"),
    )
    .unwrap();
    std::fs::write(r.join("app/main.py"), b"print('hi')\n").unwrap();
    std::fs::write(r.join("etc/motd"), b"root motd\n").unwrap();
    std::fs::write(r.join("etc/passwd"), b"app:x:1000:1000::/app:/bin/sh\n").unwrap();
    std::fs::copy(s_.work().join("prog"), r.join("app/prog")).unwrap();
    std::fs::hard_link(r.join("app/main.py"), r.join("app/hard.py")).unwrap();
    symlink("main.py", r.join("app/link.py")).unwrap();
    symlink("/etc/motd", r.join("app/motd")).unwrap();
    symlink("/nowhere", r.join("app/broken")).unwrap();
    symlink("usr/lib", r.join("lib32")).unwrap();
    let fifo = std::ffi::CString::new(r.join("app/fifo").display().to_string()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    // The config adds a file over the root's /etc/motd (from the project folder).
    std::fs::create_dir_all(s_.work().join("conf")).unwrap();
    std::fs::write(s_.work().join("conf/motd"), b"config motd\n").unwrap();

    let program = r.join("app/prog");
    let plan = s_
        .plan_program(
            &program,
            r#"{"Program": "/app/prog", "MapDirs": {"conf/*": "/etc"}}"#,
            true,
        )
        .unwrap();
    let link = |p: &str| match plan.root.get(p.as_bytes()) {
        Some(Node::Symlink(t)) => String::from_utf8(t.clone()).unwrap(),
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(link("/app/link.py"), "main.py");
    assert_eq!(link("/app/motd"), "/etc/motd");
    assert_eq!(link("/app/broken"), "/nowhere");
    assert_eq!(link("/lib32"), "usr/lib");
    assert_eq!(host_of(&plan, "/app/main.py"), r.join("app/main.py"));
    assert_eq!(host_of(&plan, "/app/hard.py"), r.join("app/hard.py"));
    assert_eq!(host_of(&plan, "/app/prog"), program);
    assert_eq!(
        host_of(&plan, "/lib/x86_64-linux-gnu/libc.so.6"),
        r.join("lib/x86_64-linux-gnu/libc.so.6")
    );
    // The config's file wins over the root's at the same path; the root's /etc/passwd over
    // the generated one.
    assert_eq!(host_of(&plan, "/etc/motd"), s_.work().join("conf/motd"));
    assert_eq!(host_of(&plan, "/etc/passwd"), r.join("etc/passwd"));
    // The dangling /etc/resolv.conf gets the generated one.
    assert_eq!(
        plan.root.get(b"/etc/resolv.conf"),
        Some(&Node::File(FileSource::Bytes(
            b"nameserver  8.8.8.8\n".to_vec()
        )))
    );
    assert!(matches!(plan.root.get(b"/empty"), Some(Node::Dir(d)) if d.is_empty()));
    assert!(plan.root.get(b"/app/fifo").is_none());
    let fifo_note = format!(
        "skipped 1 device file, FIFOs and sockets of the root (the first: {})",
        r.join("app/fifo").display()
    );
    assert!(plan.notes.contains(&fifo_note), "{:?}", plan.notes);
    assert!(
        plan.notes.contains(&"2 paths of the root replaced by what the program, the config or nanoimg packs there (the first: /etc/motd)".to_string()),
        "{:?}",
        plan.notes
    );
    assert!(plan.dependencies.is_empty());
    let root_files = ["app/main.py", "app/hard.py", "etc/passwd"]
        .iter()
        .map(|p| len(&r.join(p)))
        .sum::<u64>()
        + len(&r.join("lib64/ld-linux-x86-64.so.2"))
        + len(&r.join("lib/x86_64-linux-gnu/libc.so.6"));
    assert_eq!(
        plan.packed,
        Packed {
            // The program brings /app.
            program: Count {
                files: 1,
                bytes: len(&program),
                links: 0,
                dirs: 1
            },
            config: Count {
                files: 1,
                bytes: len(&s_.work().join("conf/motd")),
                links: 0,
                dirs: 1
            },
            needed: Count::default(),
            // empty lib lib/x86_64-linux-gnu lib64 usr usr/lib usr/lib/x86_64-linux-gnu
            // usr/lib/python3.11 usr/lib/python3.11/lib-dynload (/app and /etc came first).
            root: Count {
                files: 5,
                bytes: root_files,
                links: 4,
                dirs: 9
            },
            elf_files: 2,
        }
    );
}

#[test]
fn pack_root_needs_a_root() {
    let s_ = Setup::new();
    let config = Config::default();
    let e = plan(&Inputs {
        program: &s_.work().join("prog"),
        config: &config,
        config_path: None,
        kernel: &s_.kernel,
        nanos_version: "",
        cwd: s_.work(),
        target_root: None,
        image_root: false,
        ld_library_path: &[],
        keep_mount_ids: false,
        image_name: None,
        arch: None,
        pack_root: true,
    })
    .unwrap_err();
    assert!(matches!(e, PlanError::PackRootWithoutRoot), "{e}");
}

#[test]
fn a_packed_object_calling_dlopen_gets_a_hint_naming_it() {
    let s_ = Setup::new();
    s_.object(
        &format!("{LIBDIR}/libplugin.so.1"),
        Some("libplugin.so.1"),
        "int plugin_value(void) { return 1; }\n",
        &[],
    );
    let loader = "#include <dlfcn.h>\n\
        void *load(void) { return dlopen(\"libplugin.so.1\", RTLD_NOW); }\n";
    s_.object(&format!("{DYNLOAD}/loader.so"), None, loader, &[]);
    // The same string in an object that cannot load anything: no hint from it.
    let named = "const char *name(void) { return \"libother.so.2\"; }\n";
    s_.object(&format!("{DYNLOAD}/named.so"), None, named, &[]);
    s_.object(
        &format!("{LIBDIR}/libother.so.2"),
        Some("libother.so.2"),
        "int other_value(void) { return 1; }\n",
        &[],
    );
    let json = format!(r#"{{"MapDirs": {{"/{DYNLOAD}/*": "/{DYNLOAD}"}}}}"#);
    let plan = s_.plan(&json, false).unwrap();
    let hints: Vec<String> = plan.runtime_loads.iter().map(|h| h.to_string()).collect();
    assert_eq!(
        hints,
        [format!(
            "/{DYNLOAD}/loader.so may load libplugin.so.1 at run time (named in its data); \
             found at /usr/lib/x86_64-linux-gnu/libplugin.so.1; add \"Libraries\": \
             [\"libplugin.so.1\"] to pack it"
        )]
    );
    // Packed whole, the root has it: no hint.
    let plan = s_.plan(&json, true).unwrap();
    assert!(plan.runtime_loads.is_empty(), "{:?}", plan.runtime_loads);
}
