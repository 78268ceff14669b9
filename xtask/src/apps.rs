//! The application cases: whole applications taken from container images by their own
//! Entrypoint + Cmd, Env and WorkingDir (`nanoimg build --from-image LAYOUT:TAG` with no
//! PROGRAM), booted and checked for what the application printed.
//!
//! - `app-python`: a real Debian root made by mmdebstrap (the `essential` variant plus
//!   `python3-minimal` and `libpython3.11-stdlib`, from the package mirror apt already
//!   uses) as the first layer and `/app/main.py` as the second, made into an image with
//!   umoci (`raw add-layer`, `config --config.entrypoint /usr/bin/python3 --config.cmd
//!   main.py --config.workingdir /app --config.env GREETING=…`). The image's whole
//!   filesystem is packed; `main.py` imports `hashlib` (its `_hashlib` extension loads
//!   `libcrypto.so.3`) and prints what it computed.
//! - `app-python-prune`: the same image with `--prune` and a config naming only
//!   `/usr/lib/python3.11` and `/app`: `_hashlib`'s `libcrypto.so.3` comes from the
//!   closure of the packed ELF files.
//! - `app-node`: the same with Debian's `nodejs` and `/app/server.js` (which uses `crypto`;
//!   Node loads its own JavaScript from `/usr/share/nodejs` at start).
//! - `app-prover`: a prover-shaped Rust program (`samples/prover_app.rs`, static) at
//!   `/usr/local/bin/prover` in an image whose Entrypoint is the prover and whose Cmd is
//!   `--task witness-42`, built with `--prune` (only the program's closure and what the
//!   config names), reading `params.txt` from its WorkingDir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::boot::{self, RunOptions};
use crate::e2e::{self, CaseReport};
use crate::expect;
use crate::prereq::Tools;
use crate::sysroot::run_tool;

/// Subfolder of the work directory (and of `--keep`) for these cases.
pub const SUBDIR: &str = "apps";

/// The Debian suite the interpreter cases' roots come from.
const DEBIAN_SUITE: &str = "bookworm";

/// `main.py` of the Python case.
const MAIN_PY: &str = r#"import hashlib, os, sys
print("main.py: python %d.%d" % sys.version_info[:2])
print("main.py: cwd " + os.getcwd())
print("main.py: greeting " + os.environ.get("GREETING", "unset"))
print("main.py: sha256 " + hashlib.sha256(b"nanoimg").hexdigest())
print("main.py: md5 " + hashlib.md5(b"nanoimg").hexdigest())
print("HELLO-DONE")
"#;
/// `server.js` of the Node case.
const SERVER_JS: &str = r#"const crypto = require('crypto');
console.log('server.js: node ' + process.versions.node.split('.')[0]);
console.log('server.js: cwd ' + process.cwd());
console.log('server.js: greeting ' + process.env.GREETING);
console.log('server.js: sha256 ' + crypto.createHash('sha256').update('nanoimg').digest('hex'));
console.log('HELLO-DONE');
"#;
/// The images' `GREETING` (the scripts print it).
const GREETING: &str = "hello-from-image";

/// The prover's task (its Cmd), mode (its Env) and parameters (`params.txt` in its
/// WorkingDir).
const PROVER_TASK: &str = "witness-42";
const PROVER_MODE: &str = "fast";
const PROVER_PARAMS: &str = "alpha\n";
const PROVER_DIR: &str = "/srv/prover";

/// One application case: its name, the image (`LAYOUT:TAG`), extra build flags and the
/// console lines it must print.
struct Case {
    name: &'static str,
    image: String,
    build_flags: &'static [&'static str],
    expected: Vec<String>,
}

/// Makes a case's image in its folder: the cases built from it.
type MakeCase = fn(&Tools, &Path) -> Result<Vec<Case>>;

/// Makes the images, then builds, boots and checks every application case.
pub fn run_cases(
    tools: &Tools,
    nanoimg: &Path,
    work_dir: &Path,
    timeout_secs: u64,
    record: &mut dyn FnMut(&str, CaseReport) -> Result<()>,
) -> Result<()> {
    let dir = work_dir.join(SUBDIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cases: [(&[&str], MakeCase); 3] = [
        (&["app-python", "app-python-prune"], python_case),
        (&["app-node"], node_case),
        (&["app-prover"], prover_case),
    ];
    for (names, make) in cases {
        match make(tools, &dir) {
            Ok(cases) => {
                for case in cases {
                    let report = run_case(&case, tools, nanoimg, &dir, timeout_secs)?;
                    record(case.name, report)?;
                }
            }
            Err(e) => {
                for name in names {
                    let report = CaseReport {
                        problems: vec![format!("making the case's container image: {e:#}")],
                        ..CaseReport::default()
                    };
                    record(name, report)?;
                }
            }
        }
    }
    Ok(())
}

fn run_case(
    case: &Case,
    tools: &Tools,
    nanoimg: &Path,
    dir: &Path,
    timeout_secs: u64,
) -> Result<CaseReport> {
    let mut report = CaseReport::default();
    let image = dir.join(format!("{}.img", case.name));
    let mut command = Command::new(nanoimg);
    command
        .current_dir(dir)
        .env("NANOIMG_CACHE", dir.join("cache"))
        .args(["build", "--from-image", &case.image])
        .args(case.build_flags)
        .arg("--kernel-dir")
        .arg(&tools.kernel_dir)
        .arg("-o")
        .arg(&image)
        .stdin(Stdio::null());
    let Some(output) = e2e::run_build(command, case.name, &image, dir, &mut report)? else {
        return Ok(report);
    };
    // The one-line summary of what was packed (`nanoimg: packed N files (…), …`).
    let stderr = String::from_utf8_lossy(&output.stderr);
    match stderr
        .lines()
        .find(|l| l.starts_with("nanoimg: packed ") && !l.contains(" <- "))
    {
        Some(summary) => println!("e2e: {} ... {summary}", case.name),
        None => report
            .problems
            .push("nanoimg build printed no summary of what it packed".into()),
    }

    let options = RunOptions::new(timeout_secs);
    let command = boot::command(nanoimg, &image, &options);
    let boot = e2e::boot_logged(command, &options, dir, case.name, &mut report)?;
    report
        .problems
        .extend(e2e::status_problem_for(0, &options, &boot));
    for missing in expect::missing_lines(&boot.console, &case.expected) {
        report.problems.push(format!("missing line \"{missing}\""));
    }
    e2e::add_boot_detail(&mut report, &boot);
    Ok(report)
}

/// An interpreter case: a Debian root with `packages` from mmdebstrap and an app layer
/// holding `/app/<script>`, run by `interpreter` with WorkingDir `/app`.
struct DebianApp {
    name: &'static str,
    packages: &'static str,
    interpreter: &'static str,
    script: (&'static str, &'static str),
    expected: &'static [&'static str],
}

const PYTHON: DebianApp = DebianApp {
    name: "app-python",
    packages: "python3-minimal,libpython3.11-stdlib",
    interpreter: "/usr/bin/python3",
    script: ("main.py", MAIN_PY),
    expected: &[
        "main.py: python 3.11",
        "main.py: cwd /app",
        "main.py: greeting hello-from-image",
        // sha256("nanoimg") and md5("nanoimg"): hashlib through _hashlib (OpenSSL).
        "main.py: sha256 54d87eed0370effde73433c031cd006bd56666bacc6086b8fd35321fe4f4902d",
        "main.py: md5 590989a2ab857f06f276ae93d855a0a8",
        expect::DONE_MARKER,
    ],
};

const NODE: DebianApp = DebianApp {
    name: "app-node",
    packages: "nodejs",
    interpreter: "/usr/bin/node",
    script: ("server.js", SERVER_JS),
    expected: &[
        "server.js: node 18",
        "server.js: cwd /app",
        "server.js: greeting hello-from-image",
        "server.js: sha256 54d87eed0370effde73433c031cd006bd56666bacc6086b8fd35321fe4f4902d",
        expect::DONE_MARKER,
    ],
};

/// The Python image, built twice: whole, and with `--prune` and only the standard library
/// and the app named (`_hashlib`'s `libcrypto.so.3` then comes from the closure of packed
/// ELF files, not from the config).
fn python_case(tools: &Tools, dir: &Path) -> Result<Vec<Case>> {
    let whole = debian_case(&PYTHON, tools, dir)?;
    let config = serde_json::json!({ "Dirs": ["/usr/lib/python3.11", "/app"] });
    fs::write(
        dir.join("python-prune.config.json"),
        serde_json::to_vec_pretty(&config)?,
    )?;
    let pruned = Case {
        name: "app-python-prune",
        image: whole.image.clone(),
        build_flags: &["--prune", "-c", "python-prune.config.json"],
        expected: whole.expected.clone(),
    };
    Ok(vec![whole, pruned])
}

fn node_case(tools: &Tools, dir: &Path) -> Result<Vec<Case>> {
    Ok(vec![debian_case(&NODE, tools, dir)?])
}

/// The image of `app`: a Debian root from mmdebstrap and the app layer, Entrypoint the
/// interpreter, Cmd the script, WorkingDir `/app`, Env `GREETING`.
fn debian_case(app: &DebianApp, tools: &Tools, dir: &Path) -> Result<Case> {
    let work = dir.join(app.name);
    fs::create_dir_all(work.join("app/app"))
        .with_context(|| format!("creating {}", work.display()))?;
    let root_tar = work.join("debian.tar");
    run_tool(
        Path::new("mmdebstrap"),
        &work,
        &[
            "--quiet",
            "--variant=essential",
            &format!("--include={}", app.packages),
            DEBIAN_SUITE,
            &root_tar.to_string_lossy(),
        ],
    )
    .context("mmdebstrap (Debian/Ubuntu: apt-get install mmdebstrap)")?;
    let (script, text) = app.script;
    fs::write(work.join("app/app").join(script), text)
        .with_context(|| format!("writing {script}"))?;
    let app_tar = work.join("app.tar");
    run_tool(
        Path::new("tar"),
        &work.join("app"),
        &["-cf", &app_tar.to_string_lossy(), "app"],
    )?;
    let image = layout_image(tools, &work, "app", &[&root_tar, &app_tar])?;
    run_tool(
        &tools.umoci,
        &work,
        &[
            "config",
            "--image",
            &image,
            "--config.entrypoint",
            app.interpreter,
            "--config.cmd",
            script,
            "--config.workingdir",
            "/app",
            "--config.env",
            &format!("GREETING={GREETING}"),
        ],
    )?;
    Ok(Case {
        name: app.name,
        image,
        build_flags: &[],
        expected: app.expected.iter().map(|l| l.to_string()).collect(),
    })
}

/// The prover case's image: the static prover, its parameters, Entrypoint + Cmd, Env and
/// WorkingDir.
fn prover_case(tools: &Tools, dir: &Path) -> Result<Vec<Case>> {
    let work = dir.join("prover");
    let layer = work.join("layer");
    let bin = layer.join("usr/local/bin");
    let params = layer.join(PROVER_DIR.trim_start_matches('/'));
    for d in [&bin, &params] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let source = work.join("prover_app.rs");
    fs::write(&source, include_str!("../samples/prover_app.rs"))?;
    run_tool(
        &tools.rustc,
        &work,
        &[
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
            &bin.join("prover").to_string_lossy(),
            &source.to_string_lossy(),
        ],
    )?;
    fs::write(params.join("params.txt"), PROVER_PARAMS)?;
    let layer_tar = work.join("prover.tar");
    run_tool(
        Path::new("tar"),
        &layer,
        &["-cf", &layer_tar.to_string_lossy(), "usr", "srv"],
    )?;
    let image = layout_image(tools, &work, "prover", &[&layer_tar])?;
    run_tool(
        &tools.umoci,
        &work,
        &[
            "config",
            "--image",
            &image,
            "--config.entrypoint",
            "/usr/local/bin/prover",
            "--config.cmd",
            "--task",
            "--config.cmd",
            PROVER_TASK,
            "--config.workingdir",
            PROVER_DIR,
            "--config.env",
            &format!("PROVER_MODE={PROVER_MODE}"),
        ],
    )?;
    // --prune packs the program's closure and what the config names: the parameters.
    let config = serde_json::json!({ "Files": [format!("{PROVER_DIR}/params.txt")] });
    fs::write(
        dir.join("prover.config.json"),
        serde_json::to_vec_pretty(&config)?,
    )?;
    let proof = fnv1a(format!("{PROVER_TASK}{PROVER_PARAMS}").as_bytes());
    Ok(vec![Case {
        name: "app-prover",
        image,
        build_flags: &["--prune", "-c", "prover.config.json"],
        expected: vec![
            format!("prover: argv=/usr/local/bin/prover --task {PROVER_TASK}"),
            format!("prover: cwd={PROVER_DIR}"),
            format!("prover: mode={PROVER_MODE}"),
            format!("prover: proof={proof:016x}"),
            expect::DONE_MARKER.into(),
        ],
    }])
}

/// An OCI layout `work/layout` holding image `tag` made of `layers` (tars, lowest first):
/// `LAYOUT:TAG`.
fn layout_image(tools: &Tools, work: &Path, tag: &str, layers: &[&PathBuf]) -> Result<String> {
    let layout = work.join("layout");
    let image = format!("{}:{tag}", layout.display());
    run_tool(
        &tools.umoci,
        work,
        &["init", "--layout", &layout.to_string_lossy()],
    )?;
    run_tool(&tools.umoci, work, &["new", "--image", &image])?;
    for layer in layers {
        run_tool(
            &tools.umoci,
            work,
            &[
                "raw",
                "add-layer",
                "--image",
                &image,
                &layer.to_string_lossy(),
            ],
        )?;
    }
    Ok(image)
}

/// FNV-1a, as `prover_app.rs` computes its proof.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_standard_one() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }
}
