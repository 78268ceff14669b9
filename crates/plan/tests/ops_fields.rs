//! For each ops config field, the manifest (or tree) it produces, compared with what ops
//! produces for the same field (ops's `lepton/image.go` `setManifestFromConfig`, `fs/manifest.go`,
//! `provider/onprem/onprem_volume.go`, and the reference images in ../shared/vectors); then
//! the errors: unknown field, wrong type, missing file, escaping path.

mod common;

use std::path::PathBuf;

use nanoimg_config::Config;
use nanoimg_plan::{plan, Inputs, Plan, PlanError, DEFAULT_FREE_SPACE};
use nanoimg_release::KernelDir;
use nanoimg_tfs::Node;
use nanoimg_tuple::print::{nanos_dump, DumpOptions};

/// A project folder: a release with klibs, a program, a config.
struct Project {
    dir: tempfile::TempDir,
    kernel: KernelDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let rel = dir.path().join("release");
        std::fs::create_dir_all(rel.join("klibs")).unwrap();
        // The kernel and klibs only need to be x86_64 ELF files here.
        std::fs::write(rel.join("kernel.img"), common::tiny_static_elf()).unwrap();
        std::fs::write(rel.join("boot.img"), b"boot").unwrap();
        for k in ["tls", "radar", "firewall", "cloud_init", "ntp"] {
            std::fs::write(rel.join("klibs").join(k), common::tiny_static_elf()).unwrap();
        }
        std::fs::write(dir.path().join("prover"), common::tiny_static_elf()).unwrap();
        let kernel = KernelDir::open(&rel).unwrap();
        Project { dir, kernel }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn plan_with(&self, json: &str, keep_mount_ids: bool) -> Result<Plan, PlanError> {
        let config_path = self.path("config.json");
        std::fs::write(&config_path, json).unwrap();
        let config = Config::load(&config_path)?;
        plan(&Inputs {
            program: &self.path("prover"),
            config: &config,
            config_path: Some(&config_path),
            kernel: &self.kernel,
            nanos_version: "0.1.55",
            cwd: self.dir.path(),
            target_root: None,
            image_root: false,
            ld_library_path: &[],
            keep_mount_ids,
            image_name: None,
            arch: None,
            pack_root: false,
        })
    }

    fn plan(&self, json: &str) -> Plan {
        self.plan_with(json, false)
            .unwrap_or_else(|e| panic!("{json}: {e}"))
    }
}

/// The manifest key as Nanos's dump prints it.
fn shown(plan: &Plan, key: &str) -> String {
    match plan.manifest.get(key.as_bytes()) {
        None => "<absent>".into(),
        Some(v) => nanos_dump(v, DumpOptions::default())
            .replace('\n', " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn file_bytes(plan: &Plan, path: &str) -> Vec<u8> {
    match plan.root.get(path.as_bytes()) {
        Some(Node::File(nanoimg_tfs::FileSource::Bytes(b))) => b.clone(),
        Some(Node::File(nanoimg_tfs::FileSource::Host { path, .. })) => {
            std::fs::read(path).unwrap()
        }
        other => panic!("{path}: {other:?}"),
    }
}

/// (config, manifest key, what ops writes there).
const MANIFEST_CASES: &[(&str, &str, &str)] = &[
    // Program → program (leading ./ dropped, made absolute); argv[0] is Program as written.
    (
        r#"{"Program": "./target/release/prover"}"#,
        "program",
        "/target/release/prover",
    ),
    (
        r#"{"Program": "prover", "Args": ["--fast", "two words"]}"#,
        "arguments",
        "[prover --fast two words]",
    ),
    (r#"{}"#, "arguments", "[prover]"),
    // Env after ops's defaults (USER, PWD, NANOS_VERSION, NANOS_ARCH), overriding them.
    (
        r#"{"Env": {"RUST_LOG": "debug", "USER": "prover"}}"#,
        "environment",
        "(NANOS_ARCH:amd64 NANOS_VERSION:0.1.55 PWD:/ RUST_LOG:debug USER:prover)",
    ),
    (
        r#"{"RunConfig": {"Ports": ["80", "443"]}}"#,
        "environment",
        "(NANOS_ARCH:amd64 NANOS_VERSION:0.1.55 OPS_PORT:80,443 PWD:/ USER:root)",
    ),
    // Mounts: onprem renumbering, %1 → %0 (the Gevulot manifest; ops-program-image vector).
    (
        r#"{"Mounts": {"%1": "/workspace"}}"#,
        "mounts",
        "(%0:/workspace)",
    ),
    (
        r#"{"Mounts": {"%3": "/b", "%1": "/a:ro", "mylabel": "/data"}}"#,
        "mounts",
        "(%0:/a:ro %1:/b mylabel:/data)",
    ),
    // ManifestPassthrough, last, any key; non-strings as text (ops aborts on them).
    (
        r#"{"ManifestPassthrough": {"readonly_rootfs": "true"}}"#,
        "readonly_rootfs",
        "true",
    ),
    (
        r#"{"ManifestPassthrough": {"expected_exit_code": 3, "exec_protection": true}}"#,
        "expected_exit_code",
        "3",
    ),
    (
        r#"{"ManifestPassthrough": {"exec_protection": true}}"#,
        "exec_protection",
        "true",
    ),
    (
        r#"{"ManifestPassthrough": {"missing_files": null}}"#,
        "missing_files",
        "<null>",
    ),
    (
        r#"{"ManifestPassthrough": {"en2": {"ipaddr": "10.0.1.2"}}}"#,
        "en2",
        "(ipaddr:10.0.1.2)",
    ),
    (
        r#"{"ManifestPassthrough": {"program": "/other"}}"#,
        "program",
        "/other",
    ),
    // Flags are written as "t".
    (r#"{"RebootOnExit": true}"#, "reboot_on_exit", "t"),
    (
        r#"{"Debugflags": ["trace", "debugsyscalls"]}"#,
        "trace",
        "t",
    ),
    (
        r#"{"NoTrace": ["futex", "read"]}"#,
        "notrace",
        "[futex read]",
    ),
    // Klibs → klibs:bootfs.
    (r#"{"Klibs": ["ntp"]}"#, "klibs", "bootfs"),
    (r#"{}"#, "klibs", "<absent>"),
    // Static network: all four keys once an address is set; the CLI's default netmask.
    (
        r#"{"RunConfig": {"IPAddress": "10.0.0.2", "Gateway": "10.0.0.1"}}"#,
        "netmask",
        "255.255.255.0",
    ),
    (r#"{"RunConfig": {"IPAddress": "10.0.0.2"}}"#, "ip6addr", ""),
    (
        r#"{"RunConfig": {"Nics": [{"IPAddress": "10.0.0.5", "NetMask": "255.0.0.0", "Gateway": "10.0.0.1"}, {"IPAddress": "10.1.0.5"}]}}"#,
        "en2",
        "(gateway: ipaddr:10.1.0.5 netmask:)",
    ),
    (
        r#"{"RunConfig": {"Nics": [{"IPAddress": "10.0.0.5"}]}}"#,
        "ipaddr",
        "10.0.0.5",
    ),
    // Fields that do not change the image.
    (
        r#"{"RunConfig": {"Memory": "2G", "CPUs": 2}, "CloudConfig": {"Zone": "z"}, "Version": "1"}"#,
        "environment",
        "(NANOS_ARCH:amd64 NANOS_VERSION:0.1.55 PWD:/ USER:root)",
    ),
];

#[test]
fn each_field_produces_the_manifest_ops_produces() {
    let p = Project::new();
    for (json, key, want) in MANIFEST_CASES {
        let plan = p.plan(json);
        assert_eq!(shown(&plan, key), *want, "config {json}, key {key}");
    }
}

#[test]
fn files_ops_generates() {
    let p = Project::new();
    let plan = p.plan("{}");
    assert_eq!(
        file_bytes(&plan, "/etc/passwd"),
        b"root:x:0:0:root:/root:/bin/nobash"
    );
    assert_eq!(
        file_bytes(&plan, "/etc/resolv.conf"),
        b"nameserver  8.8.8.8\n"
    );
    assert_eq!(file_bytes(&plan, "/proc/sys/kernel/hostname"), b"uniboot");
    let plan = p.plan(r#"{"NameServers": ["1.1.1.1", "9.9.9.9"]}"#);
    assert_eq!(
        file_bytes(&plan, "/etc/resolv.conf"),
        b"nameserver  1.1.1.1\nnameserver  9.9.9.9\n"
    );
    assert_eq!(plan.root_free_space, DEFAULT_FREE_SPACE);
    assert_eq!(
        p.plan(r#"{"ManifestPassthrough": {"readonly_rootfs": "true"}}"#)
            .root_free_space,
        0
    );
    assert_eq!(
        p.plan(r#"{"BaseVolumeSz": "64m"}"#).min_image_size,
        64 << 20
    );
}

#[test]
fn files_dirs_and_mapdirs_land_where_ops_puts_them() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("assets/sub")).unwrap();
    std::fs::write(p.path("assets/a.srs"), b"srs").unwrap();
    std::fs::write(p.path("assets/sub/b.txt"), b"b").unwrap();
    std::os::unix::fs::symlink("a.srs", p.path("assets/link")).unwrap();
    std::os::unix::fs::symlink("nowhere", p.path("assets/broken")).unwrap();
    std::fs::create_dir_all(p.path("etc")).unwrap();
    std::fs::write(p.path("etc/passwd"), b"mine").unwrap();
    std::fs::create_dir_all(p.path("maps/x")).unwrap();
    std::fs::write(p.path("maps/one.so"), b"1").unwrap();
    std::fs::write(p.path("maps/x/two.so"), b"2").unwrap();
    std::fs::write(p.path("maps/x/skip.txt"), b"no").unwrap();

    let plan = p.plan(
        r#"{"Files": ["etc/passwd", "assets/a.srs"], "Dirs": ["assets"], "MapDirs": {"maps/*.so": "/usr/lib"}, "Mounts": {"%1": "/workspace"}}"#,
    );
    assert_eq!(file_bytes(&plan, "/assets/a.srs"), b"srs");
    assert_eq!(file_bytes(&plan, "/assets/sub/b.txt"), b"b");
    assert_eq!(
        plan.root.get(b"/assets/link"),
        Some(&Node::Symlink(b"a.srs".to_vec()))
    );
    assert_eq!(
        plan.root.get(b"/assets/broken"),
        None,
        "broken symlinks are skipped"
    );
    assert!(plan
        .notes
        .iter()
        .any(|n| n.contains("skipping broken symlink")));
    assert_eq!(
        file_bytes(&plan, "/etc/passwd"),
        b"mine",
        "a user /etc/passwd wins"
    );
    assert_eq!(file_bytes(&plan, "/usr/lib/one.so"), b"1");
    assert_eq!(file_bytes(&plan, "/usr/lib/x/two.so"), b"2");
    assert_eq!(plan.root.get(b"/usr/lib/x/skip.txt"), None);
    assert!(matches!(plan.root.get(b"/workspace"), Some(Node::Dir(d)) if d.is_empty()));
    assert_eq!(
        plan.notes
            .iter()
            .filter(|n| n.as_str() == "mount %1 -> %0 (/workspace)")
            .count(),
        1
    );
    assert!(matches!(plan.boot.get(b"/kernel"), Some(Node::File(_))));
}

#[test]
fn klibs_go_to_the_boot_filesystem_with_those_ops_adds() {
    let p = Project::new();
    let plan = p.plan(r#"{"Klibs": ["cloud_init"], "Env": {"RADAR_KEY": "k"}, "ManifestPassthrough": {"firewall": {}}}"#);
    for k in ["cloud_init", "tls", "radar", "firewall"] {
        assert!(
            plan.boot.get(format!("/klib/{k}").as_bytes()).is_some(),
            "{k}"
        );
    }
    assert!(shown(&plan, "environment").contains("RADAR_IMAGE_NAME:prover"));
    let e = p
        .plan_with(r#"{"Klibs": ["gpu_nvidia"]}"#, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("klib \"gpu_nvidia\" is not in ") && e.ends_with("release/klibs"),
        "{e}"
    );
}

#[test]
fn keep_mount_ids_keeps_the_literal_key() {
    let p = Project::new();
    let plan = p
        .plan_with(r#"{"Mounts": {"%1": "/workspace"}}"#, true)
        .unwrap();
    assert_eq!(shown(&plan, "mounts"), "(%1:/workspace)");
}

#[test]
fn errors_name_the_field_and_the_path() {
    let p = Project::new();
    let err = |json: &str| p.plan_with(json, false).unwrap_err().to_string();
    let config = p.path("config.json").display().to_string();
    assert_eq!(
        err("{\n  \"Program\": \"p\",\n  \"Mount\": {}\n}"),
        format!("config {config}: unknown field `Mount` at line 3")
    );
    assert!(err(r#"{"Files": "a"}"#).starts_with(&format!(
        "config {config}: Files (line 1): invalid type: string \"a\", expected a sequence"
    )));
    let e = err(r#"{"Files": ["no/such/file"]}"#);
    assert!(
        e.starts_with("Files entry \"no/such/file\": ") && e.contains("no/such/file: No such file"),
        "{e}"
    );
    assert_eq!(
        err(r#"{"Files": ["../../etc/shadow"]}"#),
        "Files entry \"../../etc/shadow\" escapes the image root"
    );
    assert_eq!(
        err(r#"{"Dirs": ["../outside"]}"#),
        "Dirs entry \"../outside\" escapes the image root"
    );
    assert!(err(r#"{"Dirs": ["nodir"]}"#).starts_with("Dirs entry \"nodir\": "));
    assert!(err(r#"{"MapDirs": {"nodir/*": "/x"}}"#).starts_with("MapDirs entry \"nodir/*\": "));
    assert_eq!(
        err(r#"{"Mounts": {"%1": "workspace"}}"#),
        "Mounts \"%1\": mount point \"workspace\" must be an absolute path other than /"
    );
    assert!(
        err(r#"{"Uefi": true}"#).starts_with("a UEFI image needs the release's bootx64.efi, and ")
    );
    assert_eq!(
        err(r#"{"ManifestPassthrough": {"children": {}}}"#),
        "ManifestPassthrough \"children\": the filesystem tree cannot be replaced"
    );
}
