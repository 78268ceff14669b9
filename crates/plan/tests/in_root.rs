//! Paths inside a target root are resolved inside it, never on the build host: `MapDirs`
//! keys through absolute links, absolute `Files` and `Dirs` entries when the root is a
//! container image's, and links met while walking. Each case plants a host folder at the
//! absolute path the root's links name, with different content, and checks (by path and by
//! content) that the root's file is packed, not the host's.

mod common;

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use nanoimg_config::Config;
use nanoimg_plan::{plan, Inputs, Plan, PlanError};
use nanoimg_release::KernelDir;
use nanoimg_tfs::{FileSource, Node};

/// A project, a root, and a planted host folder whose absolute path the root's links name.
struct Setup {
    dir: tempfile::TempDir,
    /// Planted on the host at an absolute path; the root holds the same path with other
    /// content.
    planted: tempfile::TempDir,
    kernel: KernelDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let rel = dir.path().join("release");
        std::fs::create_dir_all(&rel).unwrap();
        std::fs::write(rel.join("kernel.img"), common::tiny_static_elf()).unwrap();
        std::fs::write(rel.join("boot.img"), b"boot").unwrap();
        std::fs::write(dir.path().join("prover"), common::tiny_static_elf()).unwrap();
        let kernel = KernelDir::open(&rel).unwrap();
        let planted = tempfile::tempdir().unwrap();
        std::fs::write(planted.path().join("secret"), b"HOST FILE").unwrap();
        std::fs::create_dir(planted.path().join("sub")).unwrap();
        std::fs::write(planted.path().join("sub/secret"), b"HOST FILE").unwrap();
        let s = Setup {
            dir,
            planted,
            kernel,
        };
        // The root: the planted path exists there too, with the image's content; links to
        // it are absolute, as Debian's `/var/run -> /run` or alternatives are.
        let inside = s.root().join(s.planted_rel());
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::write(inside.join("secret"), b"image file").unwrap();
        std::fs::write(inside.join("sub/secret"), b"image file").unwrap();
        std::fs::create_dir_all(s.root().join("var")).unwrap();
        symlink(s.planted.path(), s.root().join("var/run")).unwrap();
        std::fs::create_dir_all(s.root().join("usr/bin")).unwrap();
        symlink(
            s.planted.path().join("secret"),
            s.root().join("usr/bin/alternative"),
        )
        .unwrap();
        s
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn planted_rel(&self) -> PathBuf {
        self.planted.path().strip_prefix("/").unwrap().to_path_buf()
    }

    fn plan(&self, json: &str, image_root: bool) -> Result<Plan, PlanError> {
        let config_path = self.dir.path().join("config.json");
        std::fs::write(&config_path, json).unwrap();
        let config = Config::load(&config_path)?;
        let root = self.root();
        plan(&Inputs {
            program: &self.dir.path().join("prover"),
            config: &config,
            config_path: Some(&config_path),
            kernel: &self.kernel,
            nanos_version: "0.1.55",
            cwd: self.dir.path(),
            target_root: Some(&root),
            image_root,
            ld_library_path: &[],
            keep_mount_ids: false,
            image_name: None,
            arch: None,
            pack_root: false,
        })
    }
}

/// The host file packed at `path`, and its content.
fn packed(plan: &Plan, path: &str) -> (PathBuf, Vec<u8>) {
    match plan.root.get(path.as_bytes()) {
        Some(Node::File(FileSource::Host { path, .. })) => {
            (path.clone(), std::fs::read(path).unwrap())
        }
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn map_dirs_through_an_absolute_link_read_the_root() {
    let s = Setup::new();
    let plan = s
        .plan(r#"{"MapDirs": {"/var/run/*": "/run"}}"#, false)
        .unwrap();
    let (host, bytes) = packed(&plan, "/run/secret");
    assert_eq!(bytes, b"image file", "packed {}", host.display());
    assert!(host.starts_with(s.root()), "{}", host.display());
    let (_, bytes) = packed(&plan, "/run/sub/secret");
    assert_eq!(bytes, b"image file");
}

#[test]
fn absolute_files_and_dirs_read_an_image_root() {
    let s = Setup::new();
    let planted = s.planted.path().display();
    let json = format!(r#"{{"Files": ["/usr/bin/alternative"], "Dirs": ["{planted}"]}}"#);
    let plan = s.plan(&json, true).unwrap();
    let (host, bytes) = packed(&plan, "/usr/bin/alternative");
    assert_eq!(bytes, b"image file", "packed {}", host.display());
    let (host, bytes) = packed(&plan, &format!("{planted}/sub/secret"));
    assert_eq!(bytes, b"image file", "packed {}", host.display());
    // A Dirs entry that is itself an absolute link in the root: followed inside the root.
    let plan = s.plan(r#"{"Dirs": ["/var/run"]}"#, true).unwrap();
    let (host, bytes) = packed(&plan, "/var/run/secret");
    assert_eq!(bytes, b"image file", "packed {}", host.display());
}

#[test]
fn without_an_image_root_absolute_dirs_are_under_the_working_directory_as_in_ops() {
    let s = Setup::new();
    let planted = s.planted.path().display();
    let e = s
        .plan(&format!(r#"{{"Dirs": ["{planted}"]}}"#), false)
        .unwrap_err()
        .to_string();
    let expected = s.dir.path().join(s.planted_rel());
    assert!(e.contains(&expected.display().to_string()), "{e}");
}

#[test]
fn links_met_while_walking_are_judged_inside_the_root() {
    let s = Setup::new();
    let d = s.root().join("data");
    std::fs::create_dir_all(&d).unwrap();
    // Resolves on the host, not in the root: broken, skipped.
    symlink("/etc/passwd", d.join("passwd")).unwrap();
    // Resolves in the root only: kept as a link.
    symlink(s.planted.path().join("secret"), d.join("secret")).unwrap();
    let plan = s.plan(r#"{"Dirs": ["/data"]}"#, true).unwrap();
    assert!(plan.root.get(b"/data/passwd").is_none());
    assert!(plan
        .notes
        .iter()
        .any(|n| n.starts_with("skipping broken symlink") && n.ends_with("data/passwd")));
    assert!(matches!(
        plan.root.get(b"/data/secret"),
        Some(Node::Symlink(_))
    ));
}

#[test]
fn a_missing_path_or_a_loop_in_the_root_is_an_error_naming_the_entry() {
    let s = Setup::new();
    symlink("/loop", s.root().join("loop")).unwrap();
    let e = s
        .plan(r#"{"Dirs": ["/loop"]}"#, true)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("Dirs entry \"/loop\""), "{e}");
    assert!(e.contains("more than 40 symbolic links"), "{e}");
    let e = s
        .plan(r#"{"MapDirs": {"/nowhere/*": "/x"}}"#, false)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("MapDirs entry \"/nowhere/*\""), "{e}");
    assert!(e.contains("/nowhere does not exist in"), "{e}");
}

#[test]
fn a_fifo_is_never_opened() {
    let s = Setup::new();
    let fifo = s.dir.path().join("pipe");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = s
        .plan(r#"{"Files": ["pipe"]}"#, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");
}
