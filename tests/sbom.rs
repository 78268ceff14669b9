//! `nanoimg build --sbom` and `nanoimg sbom IMAGE`: SPDX 2.3 and CycloneDX 1.5 documents,
//! checked by the SPDX project's validator (`pyspdxtools`, PyPI `spdx-tools`) and
//! cyclonedx-python-lib's JSON validator, from the venv `cargo xtask test` makes
//! (`NANOIMG_SBOM_VENV`); byte-identical across build folders; the Debian package owning
//! libc in an image root, with the layer digest: in a hand-made root and in a real Debian
//! root made by mmdebstrap from apt's mirror; the host's package for a host build.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn tool(cmd: &str, args: &[&OsStr], dir: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (install umoci: `cargo xtask test` does)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The venv holding the validators: `NANOIMG_SBOM_VENV` (set by `cargo xtask test`).
fn venv() -> PathBuf {
    let v = std::env::var_os("NANOIMG_SBOM_VENV").map(PathBuf::from);
    match v {
        Some(v) if v.join("bin/pyspdxtools").is_file() => v,
        _ => panic!(
            "NANOIMG_SBOM_VENV must name a Python venv with spdx-tools and cyclonedx-python-lib[json-validation]: \
             run the tests with `cargo xtask test` (it makes target/sbom-venv), or \
             `python3 -m venv V && V/bin/pip install spdx-tools 'cyclonedx-python-lib[json-validation]'` \
             and NANOIMG_SBOM_VENV=V"
        ),
    }
}

fn validate_spdx(doc: &Path) {
    let out = Command::new(venv().join("bin/pyspdxtools"))
        .args([os("-i"), doc.as_os_str()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pyspdxtools: {text}");
    assert!(!text.contains("ERROR"), "pyspdxtools: {text}");
}

fn validate_cyclonedx(doc: &Path) {
    let script = "import sys\n\
from cyclonedx.schema import SchemaVersion\n\
from cyclonedx.validation.json import JsonStrictValidator\n\
e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
if e is not None:\n    print(e); sys.exit(1)\n";
    let out = Command::new(venv().join("bin/python"))
        .args([os("-c"), os(script), doc.as_os_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cyclonedx validation: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nanoimg build PROGRAM` in `cwd` with the fake release `release`, extra arguments,
/// `--json`: the parsed output.
fn build(cwd: &Path, release: &Path, args: &[&OsStr]) -> serde_json::Value {
    let mut all = vec![os("build")];
    all.extend_from_slice(args);
    all.extend([os("--kernel-dir"), release.as_os_str(), os("--json")]);
    let o = Command::new(env!("CARGO_BIN_EXE_nanoimg"))
        .args(&all)
        .current_dir(cwd)
        .env("NANOIMG_CACHE", cwd.join("cache"))
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "build: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `dir/hello`: a dynamic C program compiled with the host's cc (source `dir/hello.c`).
fn dynamic_hello(dir: &Path) -> PathBuf {
    let src = dir.join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n",
    )
    .unwrap();
    let program = dir.join("hello");
    tool(
        "cc",
        &[os("-O2"), os("-o"), program.as_os_str(), src.as_os_str()],
        dir,
    );
    program
}

#[test]
fn spdx_and_cyclonedx_validate_and_do_not_depend_on_the_build_folder() {
    let t = tempfile::tempdir().unwrap();
    let mut docs = Vec::new();
    for folder in ["a", "elsewhere/b"] {
        let dir = t.path().join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        let release = common::fake_release(&dir);
        std::fs::write(dir.join("prover"), common::tiny_static_elf()).unwrap();
        std::fs::write(dir.join("params.txt"), b"alpha\n").unwrap();
        std::fs::write(dir.join("config.json"), r#"{"Files": ["params.txt"]}"#).unwrap();
        let mut out = Vec::new();
        for format in ["spdx", "cyclonedx"] {
            let sbom = dir.join(format!("sbom.{format}.json"));
            let v = build(
                &dir,
                &release,
                &[
                    os("prover"),
                    os("-c"),
                    os("config.json"),
                    os("-o"),
                    os("prover.img"),
                    os("--sbom"),
                    sbom.as_os_str(),
                    os("--sbom-format"),
                    os(format),
                ],
            );
            assert_eq!(v["sbom"].as_str(), Some(sbom.to_str().unwrap()));
            out.push(std::fs::read(&sbom).unwrap());
            match format {
                "spdx" => validate_spdx(&sbom),
                _ => validate_cyclonedx(&sbom),
            }
            let doc: serde_json::Value = serde_json::from_slice(&out[out.len() - 1]).unwrap();
            let sha = v["sha256"].as_str().unwrap();
            if format == "spdx" {
                assert_eq!(
                    doc["documentNamespace"],
                    format!("https://nanoimg.dev/spdx/{sha}")
                );
                assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
                let files = doc["files"].as_array().unwrap();
                let params = files
                    .iter()
                    .find(|f| f["fileName"] == "./params.txt")
                    .expect("params.txt listed");
                assert!(params["comment"]
                    .as_str()
                    .unwrap()
                    .contains("from the host file params.txt"));
                assert!(files.iter().any(|f| f["fileName"] == "./(boot)/kernel"));
                assert!(files.iter().any(|f| f["fileName"] == "./etc/passwd"));
            } else {
                assert_eq!(doc["metadata"]["component"]["hashes"][0]["content"], sha);
            }
        }
        docs.push(out);
    }
    assert!(docs[0] == docs[1], "the SBOMs differ between build folders");
}

/// An OCI layout `dir/debianish` whose root has the loader, libc and a dpkg database naming
/// `/lib/x86_64-linux-gnu/libc.so.6` as libc6's (bookworm's spelling, before the usr-merge).
fn debian_like_image(dir: &Path) -> PathBuf {
    let name = "debianish";
    tool("umoci", &[os("init"), os("--layout"), os(name)], dir);
    let tagged = format!("{name}:t");
    tool("umoci", &[os("new"), os("--image"), os(&tagged)], dir);
    let bundle = format!("{name}-bundle");
    tool(
        "umoci",
        &[
            os("unpack"),
            os("--rootless"),
            os("--image"),
            os(&tagged),
            os(&bundle),
        ],
        dir,
    );
    let root = dir.join(&bundle).join("rootfs");
    let put = |p: &str, bytes: &[u8]| {
        let to = root.join(p);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    };
    let host = |n: &str| {
        ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]
            .iter()
            .map(|d| Path::new(d).join(n))
            .find(|p| p.exists())
            .map(|p| std::fs::read(std::fs::canonicalize(p).unwrap()).unwrap())
            .unwrap_or_else(|| panic!("no {n} on this host"))
    };
    put(
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        &host("ld-linux-x86-64.so.2"),
    );
    std::fs::create_dir_all(root.join("lib64")).unwrap();
    std::os::unix::fs::symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        root.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    put("lib/x86_64-linux-gnu/libc.so.6", &host("libc.so.6"));
    put(
        "etc/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\n",
    );
    put(
        "var/lib/dpkg/status",
        b"Package: libc6\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nMulti-Arch: same\nVersion: 2.36-9+deb12u7\nDescription: GNU C Library: Shared libraries\n Contains the standard libraries.\n",
    );
    put(
        "var/lib/dpkg/info/libc6:amd64.list",
        b"/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n/lib/x86_64-linux-gnu/libc.so.6\n",
    );
    put(
        "usr/share/doc/libc6/copyright",
        b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: 1991-2023 Free Software Foundation, Inc.\nLicense: LGPL-2.1+\n",
    );
    tool(
        "umoci",
        &[os("repack"), os("--image"), os(&tagged), os(&bundle)],
        dir,
    );
    dir.join(name)
}

#[test]
fn a_debian_image_root_names_libc6_with_its_version_and_layer() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let release = common::fake_release(dir);
    let program = dynamic_hello(dir);
    let layout = debian_like_image(dir);
    let spec = format!("{}:t", layout.display());
    for format in ["spdx", "cyclonedx"] {
        let sbom = dir.join(format!("hello.{format}.json"));
        build(
            dir,
            &release,
            &[
                program.as_os_str(),
                os("--target-root"),
                os(&spec),
                os("-o"),
                os("hello.img"),
                os("--sbom"),
                sbom.as_os_str(),
                os("--sbom-format"),
                os(format),
            ],
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
        let text = std::fs::read_to_string(&sbom).unwrap();
        let purl = "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64";
        // The layer that wrote libc: the layout's one layer.
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let hex = manifest_digest.strip_prefix("sha256:").unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
                .unwrap();
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        if format == "spdx" {
            validate_spdx(&sbom);
            let pkgs = doc["packages"].as_array().unwrap();
            let libc6 = pkgs
                .iter()
                .find(|p| p["name"] == "libc6")
                .expect("libc6 listed");
            assert_eq!(libc6["versionInfo"], "2.36-9+deb12u7");
            assert_eq!(libc6["licenseDeclared"], "LGPL-2.1-or-later");
            assert_eq!(libc6["externalRefs"][0]["referenceLocator"], purl);
            let libc = spdx_file(&doc, "./lib/x86_64-linux-gnu/libc.so.6");
            let comment = libc["comment"].as_str().unwrap();
            assert!(comment.contains(layer), "{comment}");
            assert!(comment.contains(&manifest_digest), "{comment}");
            let (libc_id, pkg_id) = (libc["SPDXID"].clone(), libc6["SPDXID"].clone());
            assert!(doc["relationships"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["spdxElementId"] == pkg_id
                    && r["relationshipType"] == "CONTAINS"
                    && r["relatedSpdxElement"] == libc_id));
            assert!(pkgs
                .iter()
                .any(|p| p["primaryPackagePurpose"] == "CONTAINER"
                    && p["versionInfo"] == manifest_digest.as_str()));
        } else {
            validate_cyclonedx(&sbom);
            let libc6 = doc["components"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["purl"] == purl)
                .expect("libc6 component");
            assert_eq!(libc6["version"], "2.36-9+deb12u7");
            let files = libc6["components"].as_array().unwrap();
            assert!(files
                .iter()
                .any(|f| f["name"] == "/lib/x86_64-linux-gnu/libc.so.6"));
            assert!(text.contains(layer));
        }
    }
}

/// The package owning `/lib/x86_64-linux-gnu/libc.so.6` in the host's dpkg database, if
/// the host has one: its name, version.
fn host_libc_package() -> Option<(String, String)> {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").ok()?;
    let list = std::fs::read_to_string("/var/lib/dpkg/info/libc6:amd64.list").ok()?;
    if !list
        .lines()
        .any(|l| l.ends_with("/x86_64-linux-gnu/libc.so.6"))
    {
        return None;
    }
    status.split("\n\n").find_map(|p| {
        let field = |k: &str| {
            p.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        (field("Package:")? == "libc6" && field("Architecture:")? == "amd64")
            .then(|| ("libc6".to_string(), field("Version:").unwrap_or_default()))
    })
}

#[test]
fn the_host_root_names_the_hosts_package() {
    // The suite runs on Debian (`cargo xtask test` installs its tools with apt): a host
    // without the database is a broken premise, not a pass.
    let Some((name, version)) = host_libc_package() else {
        panic!(
            "this host has no dpkg database naming libc6:amd64's libc.so.6 \
             (/var/lib/dpkg/status, /var/lib/dpkg/info/libc6:amd64.list): run the tests on Debian"
        );
    };
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let release = common::fake_release(dir);
    let program = dynamic_hello(dir);
    let sbom = dir.join("hello.spdx.json");
    build(
        dir,
        &release,
        &[
            program.as_os_str(),
            os("-o"),
            os("hello.img"),
            os("--sbom"),
            sbom.as_os_str(),
        ],
    );
    validate_spdx(&sbom);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    let libc6 = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name.as_str())
        .expect("the host's libc6 listed");
    assert_eq!(libc6["versionInfo"], version.as_str());
    let libc = spdx_file(&doc, "./lib/x86_64-linux-gnu/libc.so.6");
    assert!(libc["comment"]
        .as_str()
        .unwrap()
        .contains("from the host file /"));
}

/// A real Debian root (`mmdebstrap --variant=essential bookworm`, from the mirror apt
/// uses) as the one layer of an OCI layout `dir/debian`, tag `t`, Entrypoint
/// `/usr/bin/true`; and libc6's version in its dpkg database.
fn real_debian_image(dir: &Path) -> (PathBuf, String) {
    let tar = dir.join("debian.tar");
    tool(
        "mmdebstrap",
        &[
            os("--quiet"),
            os("--variant=essential"),
            os("bookworm"),
            tar.as_os_str(),
        ],
        dir,
    );
    tool("umoci", &[os("init"), os("--layout"), os("debian")], dir);
    tool("umoci", &[os("new"), os("--image"), os("debian:t")], dir);
    tool(
        "umoci",
        &[
            os("raw"),
            os("add-layer"),
            os("--image"),
            os("debian:t"),
            tar.as_os_str(),
        ],
        dir,
    );
    tool(
        "umoci",
        &[
            os("config"),
            os("--image"),
            os("debian:t"),
            os("--config.entrypoint"),
            os("/usr/bin/true"),
        ],
        dir,
    );
    let status = Command::new("tar")
        .args([os("-xOf"), tar.as_os_str(), os("./var/lib/dpkg/status")])
        .output()
        .unwrap();
    assert!(status.status.success(), "tar: no dpkg status in the root");
    let status = String::from_utf8(status.stdout).unwrap();
    let version = status
        .split("\n\n")
        .find(|p| p.lines().any(|l| l == "Package: libc6"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("Version: ")))
        .expect("libc6 in the root's dpkg status")
        .to_string();
    (dir.join("debian"), version)
}

/// The layer digest of the one-layer layout `layout` (its only manifest).
fn only_layer(layout: &Path) -> (String, String) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    let digest = manifests.last().unwrap()["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    (
        digest.to_string(),
        layers[0]["digest"].as_str().unwrap().to_string(),
    )
}

/// The SPDX document's files as (fileName, checksums).
fn spdx_files(doc: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["fileName"].as_str().unwrap().to_string(),
                f["checksums"].clone(),
            )
        })
        .collect()
}

/// The SPDX document's distribution packages (`pkg:deb/…`) as (name, version).
fn spdx_debs(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with("pkg:deb/"))
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The SPDX document's file entry named `name` (`./lib/…`); panics if it has none.
fn spdx_file<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the SBOM"))
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_real_debian_root_names_libc6_and_sbom_of_the_image_agrees() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let release = common::fake_release(dir);
    let (layout, libc6_version) = real_debian_image(dir);
    let (manifest_digest, layer) = only_layer(&layout);
    dynamic_hello(dir);

    // A dynamic program with the Debian image as its root: libc is libc6's, at the
    // image's version, from the image's layer.
    build(
        dir,
        &release,
        &[
            os("hello"),
            os("--target-root"),
            os("debian:t"),
            os("-o"),
            os("hello.img"),
            os("--sbom"),
            os("hello.spdx.json"),
        ],
    );
    validate_spdx(&dir.join("hello.spdx.json"));
    let doc = read_json(&dir.join("hello.spdx.json"));
    assert!(
        spdx_debs(&doc).contains(&("libc6".to_string(), libc6_version.clone())),
        "libc6 {libc6_version} in {:?}",
        spdx_debs(&doc)
    );
    let libc = spdx_file(&doc, "./lib/x86_64-linux-gnu/libc.so.6");
    let comment = libc["comment"].as_str().unwrap();
    assert!(comment.contains(&layer), "{comment}");
    assert!(comment.contains(&manifest_digest), "{comment}");

    // The image's own application (its whole root), then `nanoimg sbom IMAGE` of the
    // result: the same files with the same digests, the same Debian packages, from what
    // the image holds (its own dpkg database).
    build(
        dir,
        &release,
        &[
            os("--from-image"),
            os("debian:t"),
            os("-o"),
            os("app.img"),
            os("--sbom"),
            os("built.spdx.json"),
        ],
    );
    let sbom = |image: &Path, out: &str, format: &str| {
        let o = common::nanoimg(
            &[
                os("sbom"),
                image.as_os_str(),
                os("-o"),
                os(out),
                os("--format"),
                os(format),
            ],
            dir,
        );
        assert!(
            o.status.success(),
            "sbom: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stdout.is_empty(), "with -o nothing goes to stdout");
        std::fs::read(dir.join(out)).unwrap()
    };
    let of_image = sbom(Path::new("app.img"), "image.spdx.json", "spdx");
    validate_spdx(&dir.join("image.spdx.json"));
    let (built, read) = (
        read_json(&dir.join("built.spdx.json")),
        read_json(&dir.join("image.spdx.json")),
    );
    let (built_files, read_files) = (spdx_files(&built), spdx_files(&read));
    assert!(built_files.len() > 1000, "{} files", built_files.len());
    assert_eq!(built_files, read_files);
    assert_eq!(spdx_debs(&built), spdx_debs(&read));
    assert!(spdx_debs(&read).contains(&("libc6".to_string(), libc6_version)));
    assert_eq!(
        built["documentNamespace"], read["documentNamespace"],
        "both name the same image file"
    );
    let libc = spdx_file(&read, "./usr/lib/x86_64-linux-gnu/libc.so.6");
    assert!(libc["comment"]
        .as_str()
        .unwrap()
        .contains("does not record its source"));
    // CycloneDX too; the same bytes again, and for a copy of the image elsewhere.
    sbom(Path::new("app.img"), "image.cdx.json", "cyclonedx");
    validate_cyclonedx(&dir.join("image.cdx.json"));
    assert_eq!(
        sbom(Path::new("app.img"), "again.spdx.json", "spdx"),
        of_image
    );
    std::fs::create_dir(dir.join("copy")).unwrap();
    std::fs::copy(dir.join("app.img"), dir.join("copy/app.img")).unwrap();
    assert_eq!(
        sbom(&dir.join("copy/app.img"), "copy.spdx.json", "spdx"),
        of_image
    );
    // To stdout without -o; a file that is not an image is one line and exit 1.
    let o = common::nanoimg(&[os("sbom"), os("app.img")], dir);
    assert!(o.status.success());
    assert_eq!(o.stdout, of_image);
    let o = common::nanoimg(&[os("sbom"), os("hello.c"), os("-o"), os("x.json")], dir);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("hello.c"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!dir.join("x.json").exists());
}

#[test]
fn a_document_path_that_cannot_be_written_is_refused_before_building() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let release = common::fake_release(dir);
    std::fs::write(dir.join("prover"), common::tiny_static_elf()).unwrap();
    for (flag, path) in [
        ("--sbom", "no/such/folder/x.spdx.json"),
        ("--provenance", "no/such/folder/x.intoto.json"),
        ("--sbom", "."),
    ] {
        let o = common::nanoimg(
            &[
                os("build"),
                os("prover"),
                os("--kernel-dir"),
                release.as_os_str(),
                os("-o"),
                os("prover.img"),
                os(flag),
                os(path),
            ],
            dir,
        );
        assert_eq!(o.status.code(), Some(1), "{flag} {path}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("error: cannot write the ") && err.contains("nothing was built"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!dir.join("prover.img").exists(), "{flag} {path}");
    }
    for flag in ["--sbom", "--provenance"] {
        let o = common::nanoimg_env(
            &[
                os("build"),
                os("prover"),
                os("--kernel-dir"),
                release.as_os_str(),
                os("-o"),
                os("prover.img"),
                os(flag),
                os("doc.json"),
            ],
            dir,
            &[("SOURCE_DATE_EPOCH", "99999999999999")],
        );
        assert_eq!(o.status.code(), Some(1), "{flag}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("SOURCE_DATE_EPOCH \"99999999999999\""),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!dir.join("prover.img").exists());
    }
}
