//! `nanoimg build --from-image IMAGE` with no PROGRAM: the image's own application (its
//! config's Entrypoint + Cmd, Env and WorkingDir) under what the config and flags say,
//! checked in the written manifest with `inspect --json`. Layouts are made by hand.

mod common;
#[path = "../crates/oci/tests/common/mod.rs"]
mod images;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use images::{tar_of, E};
use serde_json::{json, Value};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// An OCI layout `dir/NAME` holding one image: a static "prover" at
/// `/usr/local/bin/prover` (and a link `/usr/bin/prover` to it), its parameters in
/// `/srv/params.txt`, and `application` as its config's `config`.
fn image(dir: &Path, name: &str, application: Value) -> PathBuf {
    let prover = common::tiny_static_elf();
    let layer = tar_of(&[
        E::Dir("usr/local/bin"),
        E::Exec("usr/local/bin/prover", &prover),
        E::Dir("usr/bin"),
        E::Symlink("usr/bin/prover", "/usr/local/bin/prover"),
        E::Dir("srv"),
        E::File("srv/params.txt", b"alpha\n"),
    ]);
    let layout = dir.join(name);
    images::init_layout(&layout);
    let desc = images::put_image_with(&layout, &[layer], true, application);
    images::write_index(&layout, vec![desc]);
    layout
}

/// Builds with `args` and returns the root manifest `inspect --json` reads back.
fn build(dir: &Path, args: &[&OsStr]) -> Result<Value, String> {
    let release = common::fake_release(dir);
    let out = dir.join("app.img");
    let mut all = vec![os("build")];
    all.extend_from_slice(args);
    all.extend([
        os("--kernel-dir"),
        release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ]);
    let o = common::nanoimg(&all, dir);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let o = common::nanoimg(&[os("inspect"), os("--json"), out.as_os_str()], dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    Ok(v["root"]["manifest"].clone())
}

#[test]
fn the_images_entrypoint_cmd_env_and_working_dir() {
    let d = tempfile::tempdir().unwrap();
    let layout = image(
        d.path(),
        "L",
        json!({
            "Entrypoint": ["prover", "--json"],
            "Cmd": ["--task", "witness-42"],
            "Env": ["PATH=/usr/bin:/bin", "PROVER_MODE=fast", "RUST_LOG=info"],
            "WorkingDir": "/srv",
        }),
    );
    let m = build(d.path(), &[os("--from-image"), layout.as_os_str()]).unwrap();
    // `prover` is found in the image's PATH (/usr/bin, a link to the real file).
    assert_eq!(m["program"], "/usr/bin/prover", "{m}");
    assert_eq!(
        m["arguments"], "[/usr/bin/prover --json --task witness-42]",
        "{m}"
    );
    assert_eq!(m["cwd"], "/srv", "{m}");
    let env = m["environment"].as_str().unwrap();
    assert!(env.contains("PROVER_MODE:fast"), "{env}");
    assert!(env.contains("RUST_LOG:info"), "{env}");

    // -a replaces Cmd (Entrypoint's --json stays); -e wins over the image's Env.
    let m = build(
        d.path(),
        &[
            os("--from-image"),
            layout.as_os_str(),
            os("-a"),
            os("--once"),
            os("-e"),
            os("RUST_LOG=debug"),
        ],
    )
    .unwrap();
    assert_eq!(m["arguments"], "[/usr/bin/prover --json --once]", "{m}");
    let env = m["environment"].as_str().unwrap();
    assert!(env.contains("RUST_LOG:debug"), "{env}");
    assert!(!env.contains("RUST_LOG:info"), "{env}");

    // The config's Program replaces Entrypoint + Cmd; a cwd in ManifestPassthrough wins.
    let config = d.path().join("gevulot.json");
    std::fs::write(
        &config,
        r#"{"Program": "prover", "Args": ["--gevulot"], "ManifestPassthrough": {"cwd": "/"}}"#,
    )
    .unwrap();
    let m = build(
        d.path(),
        &[
            os("--from-image"),
            layout.as_os_str(),
            os("-c"),
            config.as_os_str(),
        ],
    )
    .unwrap();
    assert_eq!(m["program"], "/usr/bin/prover", "{m}");
    assert_eq!(m["arguments"], "[/usr/bin/prover --gevulot]", "{m}");
    assert_eq!(m["cwd"], "/", "{m}");
}

#[test]
fn an_image_without_a_program_and_a_program_not_in_path() {
    let d = tempfile::tempdir().unwrap();
    let none = image(d.path(), "none", json!({"Env": ["PATH=/bin"]}));
    let e = build(d.path(), &[os("--from-image"), none.as_os_str()]).unwrap_err();
    assert_eq!(
        e.trim_end(),
        format!(
            "error: the container image {} names no program (its config has no Entrypoint or Cmd): give PROGRAM, its path inside the image",
            none.display()
        )
    );
    let elsewhere = image(
        d.path(),
        "elsewhere",
        json!({"Entrypoint": ["prover"], "Env": ["PATH=/bin:/sbin"]}),
    );
    let e = build(d.path(), &[os("--from-image"), elsewhere.as_os_str()]).unwrap_err();
    assert_eq!(
        e.trim_end(),
        format!(
            "error: the program \"prover\" is not an executable file in any folder of the PATH of the container image {} (/bin:/sbin); give PROGRAM, its path inside the image",
            elsewhere.display()
        )
    );
    // A file that is not executable is not found either.
    let data = image(
        d.path(),
        "data",
        json!({"Entrypoint": ["params.txt"], "Env": ["PATH=/srv"]}),
    );
    assert!(build(d.path(), &[os("--from-image"), data.as_os_str()])
        .unwrap_err()
        .contains("\"params.txt\" is not an executable file"));

    // No PROGRAM and no --from-image: clap says PROGRAM is required.
    let release = common::fake_release(d.path());
    let o = common::nanoimg(
        &[os("build"), os("--kernel-dir"), release.as_os_str()],
        d.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("<PROGRAM>"));
}
