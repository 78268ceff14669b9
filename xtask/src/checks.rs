//! The checks a case file names that need code (`expect.checks`, see case.rs), and the
//! KVM fallback check of `accel = "default"`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `port-forward`: connects to 127.0.0.1:`port` until a line sent gets a line back
/// (QEMU accepts at once, but the guest needs seconds to boot and get its address), or
/// `deadline` passes, or `gave_up` says the VM is gone. Returns the reply, or why none.
pub fn exchange(
    port: u16,
    send: &str,
    deadline: Instant,
    gave_up: &mut dyn FnMut() -> bool,
) -> (Result<String, String>, usize) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut last = "none".to_owned();
    let mut attempts = 0;
    while Instant::now() < deadline {
        attempts += 1;
        match attempt(&addr, send, deadline) {
            Ok(Some(reply)) => return (Ok(reply), attempts),
            Ok(None) => last = "closed without a reply".to_owned(),
            Err(err) => last = err.to_string(),
        }
        if gave_up() {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    (Err(last), attempts)
}

fn attempt(addr: &SocketAddr, send: &str, deadline: Instant) -> io::Result<Option<String>> {
    let mut stream = TcpStream::connect_timeout(addr, Duration::from_secs(5))?;
    stream.write_all(format!("{send}\n").as_bytes())?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => reply.push(byte[0]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    let text = String::from_utf8_lossy(&reply);
    Ok(Some(text.trim_end_matches('\r').to_owned()))
}

/// `packed-from-image`: every `nanoimg: packed GUEST <- SOURCE` line of a build against
/// an image must come from the image's unpacked root (`.../rootfs/<digest>/root/...`),
/// and each of `required` (file names) must be packed.
pub fn packed_from_image(stderr: &str, required: &[String]) -> Vec<String> {
    let packed: Vec<(&str, &str)> = stderr
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("nanoimg: packed ")?
                .split_once(" <- ")
        })
        .collect();
    let in_root = |source: &str| {
        let parts: Vec<&str> = source.split('/').collect();
        parts.windows(3).any(|w| {
            w[0] == "rootfs"
                && w[2] == "root"
                && w[1].len() >= 32
                && w[1].bytes().all(|b| b.is_ascii_hexdigit())
        })
    };
    let mut problems: Vec<String> = packed
        .iter()
        .filter(|(_, source)| !in_root(source))
        .map(|(guest, source)| {
            format!("nanoimg build packed {guest} from {source}, not from the image root")
        })
        .collect();
    for name in required {
        let named = |guest: &&str| {
            Path::new(guest)
                .file_name()
                .is_some_and(|n| n == name.as_str())
        };
        if !packed.iter().any(|(guest, _)| named(guest)) {
            problems.push(format!(
                "nanoimg build printed no \"nanoimg: packed .../{name} <- ...\" line"
            ));
        }
    }
    problems
}

/// `suggested-config`: the config lines `nanoimg run --missing-files` suggested (`...; to
/// pack it: "Field": VALUE`), merged into one config.
pub fn suggested_config(stderr: &str) -> Result<Value> {
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
                (_, v) => drop(config.insert(k, v)),
            }
        }
    }
    Ok(Value::Object(config))
}

/// The files `nanoimg run --missing-files` named as missing (its lines after `nanoimg:
/// missing files:`).
pub fn named_missing(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .skip_while(|l| !l.starts_with("nanoimg: missing files:"))
        .skip(1)
        .take_while(|l| l.starts_with("nanoimg: ") && !l.starts_with("nanoimg: the VM"))
        .map(str::to_owned)
        .collect()
}

/// A boot without `--accel` on x86_64: `nanoimg run` must say in one stderr line that it
/// boots with TCG, unless KVM ran the guest. Returns the note to print, or the problem.
pub fn kvm_fallback(stderr: &str, kvm_device: bool) -> Result<String, String> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.starts_with("nanoimg: ")
                && (l.contains("using TCG") || l.contains("booting with TCG"))
        })
        .collect();
    match lines.as_slice() {
        [line] => Ok(format!("KVM->TCG fallback: {line}")),
        [] if kvm_device => Ok("no TCG fallback line: KVM ran the guest".to_owned()),
        [] => Err("no /dev/kvm, but nanoimg run did not say that it boots with TCG".to_owned()),
        lines => Err(format!(
            "{} TCG fallback lines, expected one: {lines:?}",
            lines.len()
        )),
    }
}

/// An entry guestfs.c leaves under `/t`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Symlink(&'static str),
}

/// The tree guestfs.c leaves under `/t` of the root and of the volume.
fn guest_tree() -> BTreeMap<&'static str, Entry> {
    let pattern: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut alloc = b"head".to_vec();
    alloc.resize(65_536, 0);
    let file = |s: &str| Entry::File(s.as_bytes().to_vec());
    BTreeMap::from([
        ("a", Entry::Dir),
        ("a/b", Entry::Dir),
        // Written as a/one.txt, linked here, appended to, then a/one.txt unlinked.
        ("a/b/one-link.txt", file("one\nmore\n")),
        ("a/two-renamed.txt", file("two\n")),
        ("alloc.bin", Entry::File(alloc)),
        ("big.bin", Entry::File(pattern)),
        // a/b/c, renamed with its file.
        ("c-moved", Entry::Dir),
        ("c-moved/three.txt", file("three\n")),
        ("dangling", Entry::Symlink("/nowhere")),
        ("empty-kept", Entry::Dir),
        ("replace-dst", file("new\n")),
        ("sym", Entry::Symlink("a/b/one-link.txt")),
        ("three-link.txt", file("three\n")),
    ])
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `disk.before`: the copy `guest-fs` diffs against.
pub fn before(disk: &Path) -> PathBuf {
    let mut name = disk.as_os_str().to_owned();
    name.push(".before");
    PathBuf::from(name)
}

/// `guest-fs` on one disk after the boot: `inspect --files --json`, `inspect --files`,
/// `extract` and `diff` against [`before`] must all show exactly [`guest_tree`].
pub fn guest_fs(nanoimg: &Path, disk: &Path, dir: &Path) -> Result<Vec<String>> {
    let name = disk
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let tree = guest_tree();
    // Kept with --keep: the listing tests/data/kernel-written.files.txt was made from.
    fs::write(dir.join("guestfs.expected-files.txt"), listing(&tree))?;
    let mut problems = Vec::new();
    let d = disk.display().to_string();
    match nanoimg_out(nanoimg, &["inspect", "--files", "--json", &d])? {
        Ok(out) => problems.extend(inspect_json(&out, &tree)?),
        Err(e) => problems.push(format!("nanoimg inspect: {e}")),
    }
    match nanoimg_out(nanoimg, &["inspect", "--files", &d])? {
        Ok(out) => {
            let shown: String = out
                .lines()
                .filter(|l| l.starts_with("  /t/"))
                .map(|l| format!("{l}\n"))
                .collect();
            let want = listing(&tree);
            if shown != want {
                problems.push(format!("inspect --files shows\n{shown}instead of\n{want}"));
            }
        }
        Err(e) => problems.push(format!("nanoimg inspect: {e}")),
    }
    let dest = dir.join(format!("{name}.extracted"));
    match nanoimg_out(nanoimg, &["extract", &d, &dest.display().to_string()])? {
        Ok(_) => problems.extend(compare_extracted(&dest.join("t"), &tree)),
        Err(e) => problems.push(format!("nanoimg extract: {e}")),
    }
    problems.extend(diff_added(nanoimg, disk, &tree)?);
    Ok(problems
        .into_iter()
        .map(|p| format!("{name}: {p}"))
        .collect())
}

/// How `inspect --files` lists the tree.
fn listing(tree: &BTreeMap<&str, Entry>) -> String {
    let mut out = "  /t/\n".to_owned();
    for (path, entry) in tree {
        out.push_str(&match entry {
            Entry::Dir => format!("  /t/{path}/\n"),
            Entry::File(data) => format!("  /t/{path}  {}  sha256 {}\n", data.len(), sha256(data)),
            Entry::Symlink(target) => format!("  /t/{path} -> {target}\n"),
        });
    }
    out
}

/// How `diff` describes an entry.
fn described(entry: &Entry) -> String {
    match entry {
        Entry::Dir => "directory".to_string(),
        Entry::Symlink(t) => format!("symlink -> {t}"),
        Entry::File(data) => format!("{} bytes, sha256 {}", data.len(), sha256(data)),
    }
}

fn inspect_json(out: &str, tree: &BTreeMap<&str, Entry>) -> Result<Vec<String>> {
    let report: Value = serde_json::from_str(out).context("nanoimg inspect --json")?;
    let files = report["root"]["files"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut listed: BTreeMap<String, Value> = files
        .iter()
        .filter_map(|(p, v)| Some((p.strip_prefix("/t/")?.to_owned(), v.clone())))
        .collect();
    let mut problems = Vec::new();
    if !files.contains_key("/t") {
        problems.push("inspect lists no /t".to_owned());
    }
    for (rel, want) in tree {
        let got = listed.remove(*rel);
        let ok = match (want, &got) {
            (Entry::Dir, Some(v)) => v["kind"] == "dir",
            (Entry::Symlink(t), Some(v)) => v["kind"] == "symlink" && v["target"] == *t,
            (Entry::File(data), Some(v)) => {
                v["kind"] == "file" && v["size"] == data.len() && v["sha256"] == sha256(data)
            }
            (_, None) => false,
        };
        if !ok {
            problems.push(format!(
                "inspect shows /t/{rel} as {got:?}, expected {want:?}"
            ));
        }
    }
    problems.extend(
        listed
            .keys()
            .map(|rel| format!("inspect lists /t/{rel}, which the guest did not leave")),
    );
    Ok(problems)
}

fn compare_extracted(dir: &Path, tree: &BTreeMap<&str, Entry>) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, want) in tree {
        let path = dir.join(rel);
        let ok = match (want, fs::symlink_metadata(&path)) {
            (Entry::Dir, Ok(m)) => m.is_dir(),
            (Entry::Symlink(t), Ok(m)) => {
                m.file_type().is_symlink() && fs::read_link(&path).ok() == Some(PathBuf::from(t))
            }
            (Entry::File(data), Ok(m)) => {
                m.is_file() && fs::read(&path).ok().as_ref() == Some(data)
            }
            (_, Err(_)) => false,
        };
        if !ok {
            problems.push(format!("extracted {} is not {want:?}", path.display()));
        }
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for e in fs::read_dir(&at).into_iter().flatten().flatten() {
            let rel = e
                .path()
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().into_owned());
            if let Ok(rel) = rel {
                if !tree.contains_key(rel.as_str()) {
                    problems.push(format!(
                        "extract wrote {rel}, which the guest did not leave"
                    ));
                }
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    problems
}

fn diff_added(nanoimg: &Path, disk: &Path, tree: &BTreeMap<&str, Entry>) -> Result<Vec<String>> {
    let output = Command::new(nanoimg)
        .args(["diff", "--json"])
        .arg(before(disk))
        .arg(disk)
        .stdin(Stdio::null())
        .output()
        .context("running nanoimg diff")?;
    if output.status.code() != Some(1) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Ok(vec![format!(
            "nanoimg diff exited with {} (expected 1, different): {}",
            output.status,
            stderr.trim()
        )]);
    }
    let diff: Value = serde_json::from_slice(&output.stdout).context("nanoimg diff --json")?;
    let mut problems = Vec::new();
    let mut added = BTreeMap::new();
    for c in diff["changes"].as_array().cloned().unwrap_or_default() {
        let path = c["name"].as_str().unwrap_or_default().to_string();
        // The kernel makes /proc/self/exe on a writable root; it is not the guest's.
        if c["area"] != "file" || path == "/proc/self" || path == "/proc/self/exe" {
            continue;
        }
        if !c["a"].is_null() {
            problems.push(format!("diff says {path} changed or was removed: {c}"));
            continue;
        }
        added.insert(path, c["b"].as_str().unwrap_or_default().to_string());
    }
    let mut want = BTreeMap::from([("/t".to_string(), "directory".to_string())]);
    want.extend(
        tree.iter()
            .map(|(rel, e)| (format!("/t/{rel}"), described(e))),
    );
    if added != want {
        problems.push(format!("diff adds {added:?}, expected {want:?}"));
    }
    Ok(problems)
}

/// `nanoimg ARGS`: its stdout, or why it failed.
fn nanoimg_out(nanoimg: &Path, args: &[&str]) -> Result<Result<String, String>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    #[test]
    fn exchange_retries_until_a_reply_comes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            drop(listener.accept().unwrap());
            let (mut stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            write!(stream, "pong:{}\r\n", line.trim_end()).unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (reply, attempts) = exchange(port, "ping", deadline, &mut || false);
        server.join().unwrap();
        assert_eq!((reply, attempts), (Ok("pong:ping".to_owned()), 2));
    }

    #[test]
    fn packed_lines_must_come_from_the_image_root() {
        let root =
            "/c/rootfs/622f80eda055beb11c5ca8013ce2fd29578bc64f217bece123663df2bed75cac/root";
        let stderr = format!("nanoimg: packed /lib/libc.so.6 <- {root}/lib/libc.so.6\n");
        assert!(packed_from_image(&stderr, &["libc.so.6".into()]).is_empty());
        assert_eq!(packed_from_image(&stderr, &["libm.so.6".into()]).len(), 1);
        let host = "nanoimg: packed /lib/libc.so.6 <- /lib/x86_64-linux-gnu/libc.so.6\n";
        assert!(
            packed_from_image(host, &["libc.so.6".into()])[0].contains("not from the image root")
        );
    }

    #[test]
    fn suggestions_make_one_config() {
        let stderr = "nanoimg: missing files: ...\n\
            nanoimg: l.so: a library (/l.so); to pack it: \"Libraries\": [\"l.so\"]\n\
            nanoimg: a: /etc/a in the target root; to pack it: \"MapDirs\": {\"/etc/a\": \"/etc\"}\n\
            nanoimg: b: /etc/b in the target root; to pack it: \"MapDirs\": {\"/etc/b\": \"/etc\"}\n\
            nanoimg: x: not in the target root / either\nnanoimg: the VM powered off\n";
        assert_eq!(
            suggested_config(stderr).unwrap(),
            serde_json::json!({"Libraries": ["l.so"], "MapDirs": {"/etc/a": "/etc", "/etc/b": "/etc"}})
        );
        assert_eq!(named_missing(stderr).len(), 4);
    }

    #[test]
    fn kvm_fallback_wants_one_line() {
        let line = "nanoimg: KVM cannot run this guest here (...); booting with TCG instead";
        assert_eq!(
            kvm_fallback(line, true),
            Ok(format!("KVM->TCG fallback: {line}"))
        );
        assert!(kvm_fallback("", true).is_ok());
        assert!(kvm_fallback("", false).is_err());
        assert!(kvm_fallback(&format!("{line}\n{line}\n"), true).is_err());
    }

    #[test]
    fn the_guest_tree_as_inspect_and_extract_show_it() {
        let tree = guest_tree();
        assert_eq!(tree.len(), 13);
        assert!(listing(&tree).starts_with("  /t/\n  /t/a/\n  /t/a/b/\n"));
        let d = tempfile::tempdir().unwrap();
        let small = BTreeMap::from([("a", Entry::Dir), ("a/f", Entry::File(b"x".to_vec()))]);
        fs::create_dir(d.path().join("a")).unwrap();
        fs::write(d.path().join("a/f"), b"x").unwrap();
        assert!(compare_extracted(d.path(), &small).is_empty());
        fs::write(d.path().join("extra"), b"").unwrap();
        assert_eq!(
            compare_extracted(d.path(), &small),
            ["extract wrote extra, which the guest did not leave"]
        );
    }
}
