//! The `guest-fs` case: the kernel writes to a root filesystem and a data volume, and
//! nanoimg's readers must show exactly the tree it left.
//!
//! `guestfs.c` makes folders, files, hard and symbolic links, renames (of files, of a folder,
//! over an existing file), unlinks, truncates and fallocates under `/t` on the writable root
//! and under `/data/t` on a data volume labelled [`LABEL`]. The kernel logs these changes its
//! own way (parent links `..` on files and folders, files by reference under two names,
//! uninitialised extents), which is what readers of kernel-written volumes must cope with.
//! After the boot, for the image and for the volume: `nanoimg inspect --files --json` must
//! list exactly [`expected_tree`] under `/t`, `nanoimg extract` must write it file by file,
//! and `nanoimg diff` against the copy taken before the boot must name exactly those entries
//! as added.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::expect;

/// Program name; `Program` in the config, so also `argv[0]`.
pub const PROGRAM: &str = "guestfs";

/// The data volume's label, mounted at `/data`.
pub const LABEL: &str = "guestdata";

/// The folder, on the root and on the volume, that the guest fills.
const TOP: &str = "/t";

/// Host folder (inside the work directory) the volume is made from.
const SOURCE_DIR: &str = "guestfs-voldata";

/// A file that is on the volume before the boot and must stay as it was.
const KEPT_FILE: (&str, &str) = ("hello.txt", "on the volume before the boot\n");

/// The config passed to `nanoimg build -c`.
pub fn config() -> Value {
    json!({
        "Program": PROGRAM,
        "Mounts": { LABEL: "/data" },
    })
}

/// The lines the guest must print on the console.
pub fn expected_lines() -> Vec<String> {
    vec![
        format!("guestfs:{TOP}:ok"),
        format!("guestfs:/data{TOP}:ok"),
        expect::DONE_MARKER.to_owned(),
    ]
}

/// One entry the guest leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    Dir,
    File(Vec<u8>),
    Symlink(&'static str),
}

/// What `guestfs.c` leaves under its base folder, by path relative to it.
pub fn expected_tree() -> BTreeMap<&'static str, Expected> {
    let pattern: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut alloc = b"head".to_vec();
    alloc.resize(65_536, 0);
    let file = |s: &str| Expected::File(s.as_bytes().to_vec());
    BTreeMap::from([
        ("a", Expected::Dir),
        ("a/b", Expected::Dir),
        // Written as a/one.txt, linked here, appended to, then a/one.txt unlinked.
        ("a/b/one-link.txt", file("one\nmore\n")),
        ("a/two-renamed.txt", file("two\n")),
        ("alloc.bin", Expected::File(alloc)),
        ("big.bin", Expected::File(pattern)),
        // a/b/c, renamed with its file.
        ("c-moved", Expected::Dir),
        ("c-moved/three.txt", file("three\n")),
        ("dangling", Expected::Symlink("/nowhere")),
        ("empty-kept", Expected::Dir),
        ("replace-dst", file("new\n")),
        ("sym", Expected::Symlink("a/b/one-link.txt")),
        ("three-link.txt", file("three\n")),
    ])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The expected tree as `nanoimg inspect --files` lists it (the lines under `files:` for
/// paths below `/t`), e.g. for a reader test vector.
pub fn expected_listing() -> String {
    let mut out = format!("  {TOP}/\n");
    for (path, entry) in expected_tree() {
        let line = match entry {
            Expected::Dir => format!("  {TOP}/{path}/"),
            Expected::File(data) => format!(
                "  {TOP}/{path}  {}  sha256 {}",
                data.len(),
                hex(&Sha256::digest(&data))
            ),
            Expected::Symlink(target) => format!("  {TOP}/{path} -> {target}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The volume file of a run in `work_dir`, and its copy from before the boot.
pub fn volume_path(work_dir: &Path) -> PathBuf {
    work_dir.join("guestfs-data.vol")
}

fn before(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".before");
    PathBuf::from(name)
}

/// Writes the volume's source folder.
pub fn prepare_source(work_dir: &Path) -> Result<PathBuf> {
    let source = work_dir.join(SOURCE_DIR);
    fs::create_dir_all(&source).with_context(|| format!("creating {}", source.display()))?;
    let file = source.join(KEPT_FILE.0);
    fs::write(&file, KEPT_FILE.1).with_context(|| format!("writing {}", file.display()))?;
    let _ = fs::remove_file(volume_path(work_dir));
    Ok(source)
}

/// `nanoimg volume create <source> -o <volume> --label guestdata`.
pub fn create_command(nanoimg: &Path, work_dir: &Path) -> Command {
    crate::volume::volume_create(
        nanoimg,
        work_dir,
        &work_dir.join(SOURCE_DIR),
        &volume_path(work_dir),
        LABEL,
    )
}

/// Writes [`expected_listing`] beside the disks (kept with `--keep`; the reader test vector
/// `tests/data/kernel-written.vol.gz` is checked against it).
pub fn write_expected_listing(work_dir: &Path) -> Result<PathBuf> {
    let path = work_dir.join("guestfs.expected-files.txt");
    fs::write(&path, expected_listing()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Keeps a copy of `path` as it is before the boot, for `diff`.
pub fn keep_before(path: &Path) -> Result<()> {
    fs::copy(path, before(path))
        .map(drop)
        .with_context(|| format!("copying {} before the boot", path.display()))
}

/// Reads the image or volume at `disk` after the boot with `inspect`, `extract` and `diff`
/// and returns every way it differs from [`expected_tree`] under `/t`.
pub fn check(nanoimg: &Path, disk: &Path, work_dir: &Path) -> Result<Vec<String>> {
    let name = disk.file_name().unwrap_or_default().to_string_lossy();
    let mut problems = Vec::new();
    let expected = expected_tree();

    // inspect --files --json
    let out = run(
        nanoimg,
        &[
            "inspect".as_ref(),
            "--files".as_ref(),
            "--json".as_ref(),
            disk.as_os_str(),
        ],
    )?;
    match out {
        Err(e) => problems.push(format!("{name}: nanoimg inspect: {e}")),
        Ok(stdout) => {
            let report: Value = serde_json::from_str(&stdout)
                .with_context(|| format!("nanoimg inspect --json of {name}"))?;
            let files = report["root"]["files"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut listed = BTreeMap::new();
            for (path, info) in &files {
                if let Some(rel) = path.strip_prefix(&format!("{TOP}/")) {
                    listed.insert(rel.to_string(), info.clone());
                }
            }
            if !files.contains_key(TOP) {
                problems.push(format!("{name}: inspect lists no {TOP}"));
            }
            for (rel, want) in &expected {
                let got = listed.remove(*rel);
                let ok = match (want, &got) {
                    (Expected::Dir, Some(v)) => v["kind"] == "dir",
                    (Expected::Symlink(t), Some(v)) => v["kind"] == "symlink" && v["target"] == *t,
                    (Expected::File(data), Some(v)) => {
                        v["kind"] == "file"
                            && v["size"] == data.len()
                            && v["sha256"] == hex(&Sha256::digest(data))
                    }
                    (_, None) => false,
                };
                if !ok {
                    problems.push(format!(
                        "{name}: inspect shows {TOP}/{rel} as {got:?}, expected {want:?}"
                    ));
                }
            }
            for rel in listed.keys() {
                problems.push(format!(
                    "{name}: inspect lists {TOP}/{rel}, which the guest did not leave"
                ));
            }
        }
    }

    // inspect --files, as a user reads it
    match run(
        nanoimg,
        &["inspect".as_ref(), "--files".as_ref(), disk.as_os_str()],
    )? {
        Err(e) => problems.push(format!("{name}: nanoimg inspect: {e}")),
        Ok(stdout) => {
            let shown: String = stdout
                .lines()
                .filter(|l| l.starts_with(&format!("  {TOP}/")))
                .map(|l| format!("{l}\n"))
                .collect();
            let want = expected_listing();
            if shown != want {
                problems.push(format!(
                    "{name}: inspect --files shows\n{shown}instead of\n{want}"
                ));
            }
        }
    }

    // extract, then compare file by file
    let dest = work_dir.join(format!("{name}.extracted"));
    let _ = fs::remove_dir_all(&dest);
    match run(
        nanoimg,
        &["extract".as_ref(), disk.as_os_str(), dest.as_os_str()],
    )? {
        Err(e) => problems.push(format!("{name}: nanoimg extract: {e}")),
        Ok(_) => problems.extend(compare_extracted(&name, &dest.join("t"), &expected)),
    }

    // diff against the copy from before the boot
    let old = before(disk);
    let output = Command::new(nanoimg)
        .args(["diff", "--json"])
        .arg(&old)
        .arg(disk)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running nanoimg diff on {name}"))?;
    if output.status.code() != Some(1) {
        problems.push(format!(
            "{name}: nanoimg diff exited with {} (expected 1, different): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    } else {
        let diff: Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("nanoimg diff --json of {name}"))?;
        let mut added = BTreeMap::new();
        for c in diff["changes"].as_array().cloned().unwrap_or_default() {
            let path = c["name"].as_str().unwrap_or_default().to_string();
            if c["area"] != "file" {
                continue;
            }
            // The kernel makes /proc/self/exe on a writable root; it is not the guest's.
            if path == "/proc/self" || path == "/proc/self/exe" {
                continue;
            }
            if !c["a"].is_null() {
                problems.push(format!(
                    "{name}: diff says {path} changed or was removed: {c}"
                ));
                continue;
            }
            added.insert(path, c["b"].as_str().unwrap_or_default().to_string());
        }
        // As diff describes an entry: "directory", "symlink -> T", "N bytes, sha256 H".
        let mut want = BTreeMap::from([(TOP.to_string(), "directory".to_string())]);
        for (rel, entry) in &expected {
            let described = match entry {
                Expected::Dir => "directory".to_string(),
                Expected::Symlink(t) => format!("symlink -> {t}"),
                Expected::File(data) => {
                    format!(
                        "{} bytes, sha256 {}",
                        data.len(),
                        hex(&Sha256::digest(data))
                    )
                }
            };
            want.insert(format!("{TOP}/{rel}"), described);
        }
        if added != want {
            problems.push(format!("{name}: diff adds {added:?}, expected {want:?}"));
        }
    }
    Ok(problems)
}

/// Runs a nanoimg command: its stdout, or its stderr as the error.
fn run(nanoimg: &Path, args: &[&std::ffi::OsStr]) -> Result<Result<String, String>> {
    let output = Command::new(nanoimg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running nanoimg {args:?}"))?;
    Ok(if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "exit {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    })
}

/// Every way the extracted folder `dir` differs from `expected`.
fn compare_extracted(name: &str, dir: &Path, expected: &BTreeMap<&str, Expected>) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, want) in expected {
        let path = dir.join(rel);
        let meta = fs::symlink_metadata(&path);
        let ok = match (want, &meta) {
            (Expected::Dir, Ok(m)) => m.is_dir(),
            (Expected::Symlink(t), Ok(m)) => {
                m.file_type().is_symlink() && fs::read_link(&path).ok() == Some(PathBuf::from(t))
            }
            (Expected::File(data), Ok(m)) => {
                m.is_file() && fs::read(&path).ok().as_deref() == Some(&data[..])
            }
            (_, Err(_)) => false,
        };
        if !ok {
            problems.push(format!(
                "{name}: extracted {} is not {want:?}",
                path.display()
            ));
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    for rel in found {
        if !expected.contains_key(rel.as_str()) {
            problems.push(format!(
                "{name}: extract wrote {rel}, which the guest did not leave"
            ));
        }
    }
    problems
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(root, &path, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_tree_is_what_guestfs_c_leaves() {
        let tree = expected_tree();
        assert_eq!(tree.len(), 13);
        assert_eq!(
            tree["a/b/one-link.txt"],
            Expected::File(b"one\nmore\n".to_vec())
        );
        let Expected::File(alloc) = &tree["alloc.bin"] else {
            panic!("alloc.bin is a file")
        };
        assert_eq!((alloc.len(), &alloc[..5]), (65_536, &b"head\0"[..]));
        let listing = expected_listing();
        assert!(
            listing.starts_with("  /t/\n  /t/a/\n  /t/a/b/\n"),
            "{listing}"
        );
        assert!(
            listing.contains("  /t/sym -> a/b/one-link.txt\n"),
            "{listing}"
        );
    }

    #[test]
    fn extracted_trees_are_compared_file_by_file() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let expected = BTreeMap::from([
            ("a", Expected::Dir),
            ("a/f", Expected::File(b"x".to_vec())),
            ("l", Expected::Symlink("a/f")),
        ]);
        fs::create_dir(root.join("a")).unwrap();
        fs::write(root.join("a/f"), b"x").unwrap();
        std::os::unix::fs::symlink("a/f", root.join("l")).unwrap();
        assert!(compare_extracted("v", root, &expected).is_empty());
        fs::write(root.join("a/f"), b"y").unwrap();
        fs::write(root.join("extra"), b"").unwrap();
        let problems = compare_extracted("v", root, &expected);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].contains("extract wrote extra"), "{problems:?}");
    }
}
