//! `build --provenance` and `nanoimg verify`: the statement's fields, its bytes across
//! folders, and verify's verdicts (0 rebuilt, 1 changed input named with the diff, 2 input
//! missing), with the fake kernel of `common::fake_release` and a tiny static program.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use serde_json::Value;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A project in `dir`: the program `prover`, `config.json`, a packed `data/params.txt`,
/// and the fake release; built to `app.img` with its provenance `app.prov.json`.
fn project(dir: &Path) {
    common::fake_release(dir);
    std::fs::write(dir.join("prover"), common::tiny_static_elf()).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/params.txt"), b"alpha\n").unwrap();
    std::fs::write(
        dir.join("config.json"),
        br#"{"Env": {"MODE": "fast"}, "Files": ["data/params.txt"]}"#,
    )
    .unwrap();
}

fn build(dir: &Path) -> std::process::Output {
    let args = [
        "build",
        "prover",
        "-c",
        "config.json",
        "--kernel-dir",
        "release",
        "-o",
        "app.img",
        "--provenance",
        "app.prov.json",
        "--json",
    ];
    let args: Vec<&OsStr> = args.iter().map(|a| os(a)).collect();
    let o = common::nanoimg(&args, dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn verify(dir: &Path) -> (i32, String) {
    let o = common::nanoimg(
        &[
            os("verify"),
            os("app.img"),
            os("--provenance"),
            os("app.prov.json"),
        ],
        dir,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn statement_fields_and_bytes_across_folders() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    project(a.path());
    project(b.path());
    let o = build(a.path());
    build(b.path());
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        json["provenance"],
        a.path()
            .canonicalize()
            .unwrap()
            .join("app.prov.json")
            .display()
            .to_string()
    );
    let bytes = std::fs::read(a.path().join("app.prov.json")).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(b.path().join("app.prov.json")).unwrap()
    );
    let s: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(s["predicateType"], "https://slsa.dev/provenance/v1");
    let image = std::fs::read(a.path().join("app.img")).unwrap();
    assert_eq!(s["subject"][0]["name"], "app.img");
    assert_eq!(s["subject"][0]["digest"]["sha256"], sha256(&image));
    assert_eq!(json["sha256"], sha256(&image));
    let def = &s["predicate"]["buildDefinition"];
    assert_eq!(
        def["buildType"],
        "https://github.com/nanoimg/nanoimg/build-types/build/v1"
    );
    let p = &def["externalParameters"];
    assert_eq!(p["program"], "prover");
    assert_eq!(p["config"], "config.json");
    assert_eq!(p["kernelDir"], "release");
    assert_eq!(p["uefi"], false);
    let deps = def["resolvedDependencies"].as_array().unwrap();
    let find = |name: &str, uri: &str| {
        deps.iter()
            .find(|d| d["name"] == name && d["uri"] == uri)
            .unwrap_or_else(|| panic!("no {name} {uri} in {deps:?}"))
    };
    let config = std::fs::read(a.path().join("config.json")).unwrap();
    assert_eq!(
        find("program", "file:prover")["digest"]["sha256"],
        sha256(&common::tiny_static_elf())
    );
    let c = find("config", "file:config.json");
    assert_eq!(c["digest"]["sha256"], sha256(&config));
    assert!(c["content"].as_str().is_some());
    let f = find("file", "file:data/params.txt");
    assert_eq!(f["digest"]["sha256"], sha256(b"alpha\n"));
    assert_eq!(f["annotations"]["imagePath"], "/data/params.txt");
    let kernel = std::fs::read(a.path().join("release/kernel.img")).unwrap();
    assert_eq!(
        find("kernel-dir", "file:release/kernel.img")["digest"]["sha256"],
        sha256(&kernel)
    );
    find("kernel-dir", "file:release/boot.img");
    let builder = &s["predicate"]["runDetails"]["builder"];
    assert_eq!(builder["id"], "https://github.com/nanoimg/nanoimg");
    assert_eq!(builder["version"]["nanoimg"], env!("CARGO_PKG_VERSION"));
    assert!(s["predicate"]["runDetails"].get("metadata").is_none());
}

#[test]
fn verify_rebuilds_and_names_what_changed() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    project(dir);
    build(dir);
    let (code, text) = verify(dir);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("verified: rebuilt app.img byte for byte"),
        "{text}"
    );
    // No temporary is left behind in the project.
    assert!(std::fs::read_dir(dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".nanoimg-")));

    // One byte of the program.
    let mut program = common::tiny_static_elf();
    program[40] ^= 1;
    std::fs::write(dir.join("prover"), &program).unwrap();
    let (code, text) = verify(dir);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("the program prover has sha256"), "{text}");
    assert!(text.contains("the provenance records"), "{text}");
    assert!(text.contains("/prover"), "{text}");
    std::fs::write(dir.join("prover"), common::tiny_static_elf()).unwrap();
    assert_eq!(verify(dir).0, 0);

    // One Env value.
    std::fs::write(
        dir.join("config.json"),
        br#"{"Env": {"MODE": "slow"}, "Files": ["data/params.txt"]}"#,
    )
    .unwrap();
    let (code, text) = verify(dir);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("the config config.json has sha256"), "{text}");
    assert!(text.contains("environment.MODE"), "{text}");
    assert!(text.contains("fast -> slow"), "{text}");

    // The program removed.
    std::fs::remove_file(dir.join("prover")).unwrap();
    let (code, text) = verify(dir);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("the program prover recorded in the provenance is missing"),
        "{text}"
    );
}

#[test]
fn verify_refuses_an_image_that_is_not_the_subject() {
    let d = tempfile::tempdir().unwrap();
    project(d.path());
    build(d.path());
    std::fs::write(d.path().join("app.img"), b"other").unwrap();
    let (code, text) = verify(d.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("not verified: the image app.img has sha256"),
        "{text}"
    );
    assert!(text.contains("records the subject app.img"), "{text}");
}

#[path = "../crates/oci/tests/common/mod.rs"]
mod images;

/// An OCI layout `dir/L`: a static prover at `/usr/local/bin/prover` as its Entrypoint,
/// and `/srv/params.txt` holding `params`.
fn image(dir: &Path, params: &[u8]) {
    use images::E;
    let prover = common::tiny_static_elf();
    let layer = images::tar_of(&[
        E::Dir("usr/local/bin"),
        E::Exec("usr/local/bin/prover", &prover),
        E::Dir("srv"),
        E::File("srv/params.txt", params),
    ]);
    let layout = dir.join("L");
    let _ = std::fs::remove_dir_all(&layout);
    images::init_layout(&layout);
    let desc = images::put_image_with(
        &layout,
        &[layer],
        true,
        serde_json::json!({"Entrypoint": ["/usr/local/bin/prover"]}),
    );
    images::write_index(&layout, vec![desc]);
}

#[test]
fn verify_names_a_changed_container_image_and_the_file_that_differs() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    image(dir, b"alpha\n");
    let args = [
        "build",
        "--from-image",
        "L",
        "--kernel-dir",
        "release",
        "-o",
        "app.img",
        "--provenance",
        "app.prov.json",
    ];
    let args: Vec<&OsStr> = args.iter().map(|a| os(a)).collect();
    let o = common::nanoimg_env(&args, dir, &[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value =
        serde_json::from_slice(&std::fs::read(dir.join("app.prov.json")).unwrap()).unwrap();
    assert_eq!(
        s["predicate"]["runDetails"]["metadata"]["startedOn"],
        "2023-11-14T22:13:20Z"
    );
    let deps = s["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let img = deps
        .iter()
        .find(|d| d["name"] == "from-image" && d["uri"] == "L")
        .unwrap_or_else(|| panic!("{deps:?}"));
    assert_eq!(img["digest"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(img["annotations"]["platform"], "linux/amd64");
    // Files from the image are covered by its digest.
    assert!(deps.iter().all(|d| d["name"] != "file"), "{deps:?}");
    let (code, text) = verify(dir);
    assert_eq!(code, 0, "{text}");

    image(dir, b"beta\n");
    let (code, text) = verify(dir);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("the --from-image image L has manifest sha256"),
        "{text}"
    );
    assert!(text.contains("/srv/params.txt"), "{text}");

    std::fs::remove_dir_all(dir.join("L")).unwrap();
    let (code, text) = verify(dir);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("the --from-image image L recorded in the provenance is missing"),
        "{text}"
    );
}
