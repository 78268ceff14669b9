//! The `gevulot-prover` case: a prover image run exactly as Gevulot (v1)
//! runs one.
//!
//! The image is built from Gevulot's documented prover manifest (plus
//! `Args`): `readonly_rootfs` passed through to the Nanos manifest and the
//! 9p share `%1` mounted at `/workspace` (nanoimg, like ops's onprem build,
//! renumbers it to `%0`). The Gevulot node then boots it with the disk
//! read-only, no network, and a host workspace folder shared over 9p with
//! mount tag `0`. The prover reads `/workspace/input` and writes
//! `/workspace/output`, which must show up in the host folder; writing to
//! the root filesystem must be refused.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::expect;

/// Program name; `Program` in the manifest, so also `argv[0]`.
pub const PROGRAM: &str = "prover";

/// Gevulot's documented prover manifest, verbatim (`Args` is added by
/// [`config`]).
pub const MANIFEST: &str = r#"{"ManifestPassthrough": {"readonly_rootfs": "true"}, "Env": {"RUST_BACKTRACE": "1", "RUST_LOG": "debug"}, "Program": "prover", "Mounts": {"%1": "/workspace"}}"#;

/// Host folder (inside the work directory) shared with the guest.
pub const WORKSPACE_DIR: &str = "workspace";

/// Input file the prover reads, relative to the workspace.
const INPUT_FILE: &str = "input";

/// Output file the prover writes, relative to the workspace.
const OUTPUT_FILE: &str = "output";

/// Contents of the input file.
pub const INPUT: &str = "witness-42\n";

/// What the prover must write to the output file (one trailing newline
/// allowed).
pub const EXPECTED_OUTPUT: &str = "proof-of:witness-42";

/// The config passed to `nanoimg build -c`: [`MANIFEST`] plus `Args`.
pub fn config() -> Value {
    let mut config: Value =
        serde_json::from_str(MANIFEST).expect("the Gevulot manifest constant is valid JSON");
    config["Args"] = json!(expect::ARGS);
    config
}

/// The lines the prover must print on the console.
pub fn expected_lines() -> Vec<String> {
    let mut lines = vec![
        format!("input:{}", INPUT.strip_suffix('\n').unwrap_or(INPUT)),
        "output-written".to_owned(),
        "rootfs-write:refused".to_owned(),
        format!("argv[0]={PROGRAM}"),
    ];
    lines.extend(
        expect::ARGS
            .iter()
            .enumerate()
            .map(|(i, arg)| format!("argv[{}]={arg}", i + 1)),
    );
    lines.push("env:RUST_BACKTRACE=1".to_owned());
    lines.push("env:RUST_LOG=debug".to_owned());
    lines.push(expect::DONE_MARKER.to_owned());
    lines
}

/// The workspace folder for a run in `work_dir`.
pub fn workspace(work_dir: &Path) -> PathBuf {
    work_dir.join(WORKSPACE_DIR)
}

/// Creates the workspace folder with a fresh input file and no output file.
pub fn prepare_workspace(work_dir: &Path) -> Result<PathBuf> {
    let workspace = workspace(work_dir);
    fs::create_dir_all(&workspace)
        .with_context(|| format!("creating workspace folder {}", workspace.display()))?;
    let input = workspace.join(INPUT_FILE);
    fs::write(&input, INPUT).with_context(|| format!("writing {}", input.display()))?;
    let output = workspace.join(OUTPUT_FILE);
    match fs::remove_file(&output) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("removing stale {}", output.display()))
        }
    }
    Ok(workspace)
}

/// Checks the output file the prover left in the host workspace; returns
/// the problem, if any.
pub fn check_output(workspace: &Path) -> Option<String> {
    let output = workspace.join(OUTPUT_FILE);
    let missing = format!(
        "host file {} was not written (the 9p workspace share did not reach the host)",
        output.display()
    );
    expect::check_file(&output, "host file ", missing, EXPECTED_OUTPUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_the_documented_manifest_plus_args() {
        let config = config();
        assert_eq!(
            config,
            json!({
                "ManifestPassthrough": {"readonly_rootfs": "true"},
                "Env": {"RUST_BACKTRACE": "1", "RUST_LOG": "debug"},
                "Program": "prover",
                "Mounts": {"%1": "/workspace"},
                "Args": ["one", "two words"],
            })
        );
        assert_eq!(config["Program"], PROGRAM);
    }

    #[test]
    fn expected_lines_cover_workspace_rootfs_args_and_env() {
        assert_eq!(
            expected_lines(),
            [
                "input:witness-42",
                "output-written",
                "rootfs-write:refused",
                "argv[0]=prover",
                "argv[1]=one",
                "argv[2]=two words",
                "env:RUST_BACKTRACE=1",
                "env:RUST_LOG=debug",
                "HELLO-DONE",
            ]
        );
    }

    #[test]
    fn workspace_is_prepared_and_output_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = prepare_workspace(dir.path()).expect("prepare");
        assert_eq!(
            fs::read_to_string(workspace.join("input")).expect("input"),
            "witness-42\n"
        );

        let missing = check_output(&workspace).expect("missing output accepted");
        assert!(missing.contains("was not written"), "{missing}");

        fs::write(workspace.join("output"), "proof-of:wrong\n").expect("write");
        let wrong = check_output(&workspace).expect("wrong output accepted");
        assert!(wrong.contains("proof-of:wrong"), "{wrong}");

        fs::write(workspace.join("output"), "proof-of:witness-42\n").expect("write");
        assert_eq!(check_output(&workspace), None);
        fs::write(workspace.join("output"), "proof-of:witness-42").expect("write");
        assert_eq!(check_output(&workspace), None);

        // A second preparation starts from a clean slate.
        prepare_workspace(dir.path()).expect("prepare again");
        assert!(!workspace.join("output").exists());
    }
}
