//! The `missing-files` case: `nanoimg run PROGRAM --missing-files` on the real kernel.
//!
//! The program (`samples/missing_files.c`, dynamic) opens `/etc/nanoimg-missing.conf` and
//! `/etc/nanoimg-nowhere.conf` and `dlopen()`s `libnanoimg_missing.so.1`
//! (`samples/missing_files_lib.c`). The target root is a folder made here: this machine's
//! loader and `libc.so.6`, the library in `/usr/lib/x86_64-linux-gnu` and the config file in
//! `/etc` (not the other one). Nothing packs the library or the file, so the first run must
//! show the program failing to load it, and nanoimg must print, after the run, the
//! `"Libraries"` line for the library, the `"MapDirs"` line for the config file and that the
//! root has no `nanoimg-nowhere.conf`. The second run builds with a config made of exactly
//! the lines the first printed: the program must then open the file and load the library.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use crate::boot::RunOptions;
use crate::e2e::{self, CaseReport};
use crate::expect;
use crate::prereq::Tools;

/// The case's name, and its subfolder of the work directory (and of `--keep`).
pub const CASE: &str = "missing-files";

const PROGRAM: &str = "missing_files";
const SOURCE: &str = include_str!("../samples/missing_files.c");
const LIBRARY_SOURCE: &str = include_str!("../samples/missing_files_lib.c");
const SONAME: &str = "libnanoimg_missing.so.1";
const LIBRARY_DIR: &str = "usr/lib/x86_64-linux-gnu";
const CONF: &str = "etc/nanoimg-missing.conf";

/// The glibc files of this machine the root needs: (guest path, host path).
const GLIBC: [(&str, &str); 2] = [
    ("lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"),
    (
        "lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libc.so.6",
    ),
];

/// Prepares the case, runs it twice and records it.
pub fn run_case(
    tools: &Tools,
    nanoimg: &Path,
    work_dir: &Path,
    timeout_secs: u64,
    record: &mut dyn FnMut(&str, CaseReport) -> Result<()>,
) -> Result<()> {
    let dir = work_dir.join(CASE);
    let report = match prepare(tools, &dir) {
        Ok(root) => check(tools, nanoimg, &dir, &root, timeout_secs)?,
        Err(e) => CaseReport {
            problems: vec![format!("preparing the case: {e:#}")],
            ..CaseReport::default()
        },
    };
    record(CASE, report)
}

/// Compiles the program and the library and makes the target root; returns the root.
fn prepare(tools: &Tools, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("root");
    fs::create_dir_all(root.join(LIBRARY_DIR)).context("creating the case's root")?;
    fs::create_dir_all(root.join("etc")).context("creating the case's root")?;
    fs::write(dir.join("missing_files.c"), SOURCE).context("writing the sample")?;
    fs::write(dir.join("missing_files_lib.c"), LIBRARY_SOURCE).context("writing the sample")?;
    let library = root.join(LIBRARY_DIR).join(SONAME);
    compile(
        tools,
        dir,
        &[
            "-shared",
            "-fPIC",
            "-O2",
            &format!("-Wl,-soname,{SONAME}"),
            "-o",
            &library.to_string_lossy(),
            "missing_files_lib.c",
        ],
    )?;
    compile(tools, dir, &["-O2", "-o", PROGRAM, "missing_files.c"])?;
    for (guest, host) in GLIBC {
        let real = fs::canonicalize(host)
            .with_context(|| format!("{host} (this machine's glibc, copied into the root)"))?;
        let to = root.join(guest);
        fs::create_dir_all(to.parent().unwrap_or(&root))?;
        fs::copy(&real, &to)
            .with_context(|| format!("copying {} to {}", real.display(), to.display()))?;
    }
    fs::write(root.join(CONF), "answer=42\n").context("writing the config file")?;
    Ok(root)
}

fn compile(tools: &Tools, dir: &Path, args: &[&str]) -> Result<()> {
    crate::sysroot::run_tool(&tools.cc, dir, args)
}

/// `nanoimg run PROGRAM -c CONFIG --target-root ROOT --missing-files`, kept as `<name>.img`.
fn run_command(
    tools: &Tools,
    nanoimg: &Path,
    dir: &Path,
    root: &Path,
    name: &str,
    timeout_secs: u64,
) -> Command {
    let mut command = Command::new(nanoimg);
    command
        .current_dir(dir)
        .env("NANOIMG_CACHE", dir.join("cache"))
        .arg("run")
        .arg(PROGRAM)
        .arg("-c")
        .arg(format!("{name}.config.json"))
        .arg("--kernel-dir")
        .arg(&tools.kernel_dir)
        .arg("--target-root")
        .arg(root)
        .arg("-o")
        .arg(format!("{name}.img"))
        .args(["--missing-files", "--accel", "tcg", "--timeout"])
        .arg(timeout_secs.to_string())
        .stdin(Stdio::null());
    command
}

/// The config lines nanoimg suggested (`... to pack it: "Field": VALUE`), merged into one
/// config object.
fn suggested_config(stderr: &str) -> Result<Map<String, Value>> {
    let mut config = Map::new();
    for line in stderr.lines() {
        let Some((_, field)) = line.split_once("; to pack it: ") else {
            continue;
        };
        let parsed: Map<String, Value> = serde_json::from_str(&format!("{{{field}}}"))
            .with_context(|| format!("the suggested line {field:?} is not a config field"))?;
        for (k, v) in parsed {
            match (config.get_mut(&k), v) {
                (Some(Value::Array(have)), Value::Array(more)) => have.extend(more),
                (Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
                (_, v) => {
                    config.insert(k, v);
                }
            }
        }
    }
    Ok(config)
}

fn check(
    tools: &Tools,
    nanoimg: &Path,
    dir: &Path,
    root: &Path,
    timeout_secs: u64,
) -> Result<CaseReport> {
    let mut report = CaseReport::default();
    let options = RunOptions::new(timeout_secs);
    let r = root.display();

    // 1. Nothing packs the library or the file.
    fs::write(dir.join("first.config.json"), "{}\n").context("writing the config")?;
    let command = run_command(tools, nanoimg, dir, root, "first", timeout_secs);
    let boot = e2e::boot_logged(command, &options, dir, "first", &mut report)?;
    report
        .problems
        .extend(e2e::status_problem_for(0, &options, &boot));
    let console = [
        "missing-files: conf absent",
        "missing-files: nowhere absent",
        "missing-files: dlopen failed",
    ]
    .map(String::from);
    for missing in expect::missing_lines(&boot.console, &console) {
        report
            .problems
            .push(format!("first run: missing console line \"{missing}\""));
    }
    let notes = [
        format!("nanoimg: {SONAME}: a library in the target root (/{LIBRARY_DIR}/{SONAME}); to pack it: \"Libraries\": [\"{SONAME}\"]"),
        format!("nanoimg: nanoimg-missing.conf: /{CONF} in the target root; to pack it: \"MapDirs\": {{\"/{CONF}\": \"/etc\"}}"),
        format!("nanoimg: nanoimg-nowhere.conf: not in the target root {r} either"),
    ];
    for note in &notes {
        if !boot.stderr.lines().any(|l| l == note) {
            report
                .problems
                .push(format!("first run: missing stderr line {note:?}"));
        } else {
            println!("e2e: {CASE} ... {note}");
        }
    }
    e2e::add_boot_detail(&mut report, &boot);
    if !report.passed() {
        return Ok(report);
    }

    // 2. The lines it printed, as the config.
    let config = match suggested_config(&boot.stderr) {
        Ok(c) => Value::Object(c),
        Err(e) => {
            report.problems.push(format!("{e:#}"));
            return Ok(report);
        }
    };
    println!("e2e: {CASE} ... second config {config}");
    fs::write(
        dir.join("second.config.json"),
        serde_json::to_vec_pretty(&config).context("serializing the config")?,
    )
    .context("writing the config")?;
    let command = run_command(tools, nanoimg, dir, root, "second", timeout_secs);
    let boot = e2e::boot_logged(command, &options, dir, "second", &mut report)?;
    report
        .problems
        .extend(e2e::status_problem_for(0, &options, &boot));
    let console = [
        "missing-files: conf opened",
        "missing-files: dlopen ok, answer 42",
    ]
    .map(String::from);
    for missing in expect::missing_lines(&boot.console, &console) {
        report
            .problems
            .push(format!("second run: missing console line \"{missing}\""));
    }
    for line in boot.console.lines().filter(|l| l.contains("dlopen ok")) {
        println!("e2e: {CASE} ... console: {}", line.trim_end());
    }
    let left = format!("nanoimg: nanoimg-nowhere.conf: not in the target root {r} either");
    let named: Vec<&str> = boot
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("nanoimg: missing files:"))
        .skip(1)
        .take_while(|l| l.starts_with("nanoimg: ") && !l.starts_with("nanoimg: the VM"))
        .collect();
    if named != [left.as_str()] {
        report.problems.push(format!(
            "second run: nanoimg should name only nanoimg-nowhere.conf as missing, named {named:?}"
        ));
    }
    e2e::add_boot_detail(&mut report, &boot);
    report.artifacts.extend(
        [
            "first.img",
            "second.img",
            "first.config.json",
            "second.config.json",
        ]
        .map(|f| dir.join(f)),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggested_lines_make_one_config() {
        let stderr = "nanoimg: missing files: ...\n\
nanoimg: libnanoimg_missing.so.1: a library in the target root (/usr/lib/x86_64-linux-gnu/libnanoimg_missing.so.1); to pack it: \"Libraries\": [\"libnanoimg_missing.so.1\"]\n\
nanoimg: nanoimg-missing.conf: /etc/nanoimg-missing.conf in the target root; to pack it: \"MapDirs\": {\"/etc/nanoimg-missing.conf\": \"/etc\"}\n\
nanoimg: a.conf: /etc/a.conf in the target root; to pack it: \"MapDirs\": {\"/etc/a.conf\": \"/etc\"}\n\
nanoimg: x: not in the target root / either\n";
        assert_eq!(
            Value::Object(suggested_config(stderr).unwrap()),
            serde_json::json!({
                "Libraries": ["libnanoimg_missing.so.1"],
                "MapDirs": {"/etc/nanoimg-missing.conf": "/etc", "/etc/a.conf": "/etc"},
            })
        );
    }
}
