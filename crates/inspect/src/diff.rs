use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use nanoimg_tuple::{Tuple, Value};

use crate::report::{inspect, one_line, FileInfo, FsReport, InspectError, Report};

/// One difference between two images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `layout`, `bootloader`, `kernel`, `klib`, `boot-file`, `manifest` or `file`.
    pub area: &'static str,
    /// What changed: a key, a path, or a layout property.
    ///
    /// For `manifest`, the path of one changed leaf of the root tuple: tuple keys joined with
    /// `.` (`environment.GREETING`, `mounts.%0`), vector elements as `[i]` (`arguments[2]`).
    /// A key that is empty, is not UTF-8, or holds `.`, `[`, `]`, `"`, `\` or a control
    /// character is written `["key"]` instead (`environment["A.B"]`, `[""]` for an empty root
    /// key), with `\"` and `\\` for a quote and a backslash, `\u{N}` (hex) for a control
    /// character and `\xNN` for a byte that is not UTF-8. Unchanged siblings are not
    /// reported. A value that changes kind (string to tuple, say) is reported at its own path;
    /// a tuple or vector present on one side only is reported as each leaf under it (an empty
    /// one as itself). Values are one-lined as Nanos's `dump` prints them.
    pub name: String,
    /// The value in the first image (`None`: absent there).
    pub a: Option<String>,
    /// The value in the second image (`None`: absent there).
    pub b: Option<String>,
}

/// Why two images differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// The files are byte for byte the same.
    pub identical: bool,
    pub changes: Vec<Change>,
    /// Same metadata and files, but file data placed in another order on disk (as ops's
    /// random map order does).
    pub same_content_other_order: bool,
}

impl Diff {
    /// Whether the images differ at all.
    pub fn differs(&self) -> bool {
        !self.identical
    }
}

fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn describe(f: &FileInfo) -> String {
    match f {
        FileInfo::File { size, sha256, .. } => format!("{size} bytes, sha256 {sha256}"),
        FileInfo::Dir => "directory".into(),
        FileInfo::Symlink { target } => format!("symlink -> {target}"),
        FileInfo::Other => "other".into(),
    }
}

fn content(f: &FileInfo) -> FileInfo {
    match f {
        FileInfo::File { size, sha256, .. } => FileInfo::File {
            size: *size,
            sha256: sha256.clone(),
            first_sector: None,
        },
        other => other.clone(),
    }
}

fn compare_maps(
    changes: &mut Vec<Change>,
    area_of: impl Fn(&str) -> &'static str,
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (va, vb) = (a.get(k), b.get(k));
        if va != vb {
            changes.push(Change {
                area: area_of(k),
                name: k.clone(),
                a: va.cloned(),
                b: vb.cloned(),
            });
        }
    }
}

/// A tuple key as a path segment: `.key`, or `["key"]` when it needs quoting (see
/// [`Change::name`]).
fn key_segment(parent: &str, key: &[u8]) -> String {
    let plain = std::str::from_utf8(key).ok().filter(|k| {
        !k.is_empty()
            && !k
                .chars()
                .any(|c| matches!(c, '.' | '[' | ']' | '"' | '\\') || c.is_control())
    });
    if let Some(k) = plain {
        return if parent.is_empty() {
            k.to_string()
        } else {
            format!("{parent}.{k}")
        };
    }
    let mut out = format!("{parent}[\"");
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push_str("\"]");
    out
}

/// One changed leaf: its path, its value in the first and in the second tuple.
type Leaf = (String, Option<String>, Option<String>);

/// Every leaf that differs between `a` and `b` (either may be absent) at `path` and below.
fn compare_values(out: &mut Vec<Leaf>, path: &str, a: Option<&Value>, b: Option<&Value>) {
    match (a, b) {
        (Some(x), Some(y)) if x == y => {}
        (None, None) => {}
        (Some(Value::Tuple(x)), Some(Value::Tuple(y))) => compare_tuples(out, path, x, y),
        (Some(Value::Vector(x)), Some(Value::Vector(y))) => compare_vectors(out, path, x, y),
        // On one side only: each leaf under it (an empty tuple or vector is its own leaf).
        (Some(Value::Tuple(x)), None) if !x.is_empty() => {
            compare_tuples(out, path, x, &Tuple::new())
        }
        (None, Some(Value::Tuple(y))) if !y.is_empty() => {
            compare_tuples(out, path, &Tuple::new(), y)
        }
        (Some(Value::Vector(x)), None) if !x.is_empty() => compare_vectors(out, path, x, &[]),
        (None, Some(Value::Vector(y))) if !y.is_empty() => compare_vectors(out, path, &[], y),
        // A leaf, or a value that changed kind.
        _ => out.push((path.to_string(), a.map(one_line), b.map(one_line))),
    }
}

/// The differing elements of two vectors at `path`, by index, trailing ones included.
fn compare_vectors(out: &mut Vec<Leaf>, path: &str, a: &[Value], b: &[Value]) {
    for i in 0..a.len().max(b.len()) {
        compare_values(out, &format!("{path}[{i}]"), a.get(i), b.get(i));
    }
}

/// The differing leaves of two tuples at `path` (`""`: the root), in key order.
fn compare_tuples(out: &mut Vec<Leaf>, path: &str, a: &Tuple, b: &Tuple) {
    let keys: std::collections::BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    for k in keys {
        compare_values(out, &key_segment(path, k), a.get(k), b.get(k));
    }
}

fn files_map(fs: &FsReport) -> BTreeMap<String, String> {
    fs.files
        .iter()
        .map(|(p, f)| (p.clone(), describe(&content(f))))
        .collect()
}

fn data_order(fs: &FsReport) -> Vec<&String> {
    let mut v: Vec<(u64, &String)> = fs
        .files
        .iter()
        .filter_map(|(p, f)| match f {
            FileInfo::File {
                first_sector: Some(s),
                ..
            } => Some((*s, p)),
            _ => None,
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

fn layout_of(r: &Report) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("format".into(), r.format.clone());
    m.insert("layout".into(), r.layout.to_string());
    m.insert("image size".into(), r.size.to_string());
    if let Some(s) = r.stage2_len {
        m.insert("stage2 size".into(), s.to_string());
    }
    for p in &r.partitions {
        m.insert(
            format!("partition {} ({})", p.index, p.role),
            format!(
                "offset {}, size {}, type 0x{:02x}",
                p.offset, p.size, p.partition_type
            ),
        );
    }
    if let Some(b) = &r.boot {
        m.insert("boot filesystem UUID".into(), b.uuid.clone());
    }
    m.insert("root filesystem UUID".into(), r.root.uuid.clone());
    m.insert("root filesystem label".into(), r.root.label.clone());
    m.insert(
        "root filesystem free space".into(),
        r.root.size.saturating_sub(r.root.used_bytes).to_string(),
    );
    m
}

/// Compares the images (or volumes) at `a` and `b`.
pub fn diff(a: &Path, b: &Path) -> Result<Diff, InspectError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InspectError::Open { path, source }
    };
    std::fs::metadata(a).map_err(io(a))?;
    std::fs::metadata(b).map_err(io(b))?;
    if same_bytes(a, b).map_err(io(a))? {
        return Ok(Diff {
            identical: true,
            changes: Vec::new(),
            same_content_other_order: false,
        });
    }
    let (ra, rb) = (inspect(a)?, inspect(b)?);
    let mut changes = Vec::new();
    compare_maps(&mut changes, |_| "layout", &layout_of(&ra), &layout_of(&rb));
    if ra.bootloader_sha256 != rb.bootloader_sha256 {
        changes.push(Change {
            area: "bootloader",
            name: "boot.img (MBR code and stage2) sha256".into(),
            a: ra.bootloader_sha256.clone(),
            b: rb.bootloader_sha256.clone(),
        });
    }
    let empty = BTreeMap::new();
    let boot_a = ra
        .boot
        .as_ref()
        .map(files_map)
        .unwrap_or_else(|| empty.clone());
    let boot_b = rb.boot.as_ref().map(files_map).unwrap_or(empty);
    compare_maps(
        &mut changes,
        |p| match p {
            "/kernel" => "kernel",
            p if p.starts_with("/klib/") => "klib",
            _ => "boot-file",
        },
        &boot_a,
        &boot_b,
    );
    let mut manifest = Vec::new();
    compare_tuples(&mut manifest, "", &ra.root.root_tuple, &rb.root.root_tuple);
    changes.extend(manifest.into_iter().map(|(name, a, b)| Change {
        area: "manifest",
        name,
        a,
        b,
    }));
    compare_maps(
        &mut changes,
        |_| "file",
        &files_map(&ra.root),
        &files_map(&rb.root),
    );
    // A changed filesystem gets a changed UUID when UUIDs follow content (nanoimg's): report
    // a UUID change only when it is the filesystem's only change.
    let root_changed = changes
        .iter()
        .any(|c| matches!(c.area, "manifest" | "file"));
    let boot_changed = changes
        .iter()
        .any(|c| matches!(c.area, "kernel" | "klib" | "boot-file"));
    changes.retain(|c| {
        !(c.area == "layout"
            && ((c.name == "root filesystem UUID" && root_changed)
                || (c.name == "boot filesystem UUID" && boot_changed)))
    });
    let content_changed = root_changed || boot_changed;
    let same_content_other_order = !content_changed && data_order(&ra.root) != data_order(&rb.root);
    Ok(Diff {
        identical: false,
        changes,
        same_content_other_order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::string(v)
    }

    fn t(entries: &[(&str, Value)]) -> Value {
        Value::Tuple(
            entries
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        )
    }

    fn leaves(a: &Value, b: &Value) -> Vec<(String, Option<String>, Option<String>)> {
        let mut out = Vec::new();
        compare_tuples(&mut out, "", a.as_tuple().unwrap(), b.as_tuple().unwrap());
        out
    }

    fn leaf(path: &str, a: Option<&str>, b: Option<&str>) -> Leaf {
        (path.into(), a.map(Into::into), b.map(Into::into))
    }

    #[test]
    fn a_nested_change_is_named_by_its_path_alone() {
        let a = t(&[
            (
                "environment",
                t(&[("GREETING", s("one")), ("OTHER", s("same"))]),
            ),
            ("program", s("/prover")),
            ("boot", t(&[("klibs", t(&[("tls", Value::Null)]))])),
        ]);
        let b = t(&[
            (
                "environment",
                t(&[("GREETING", s("two")), ("OTHER", s("same"))]),
            ),
            ("program", s("/prover")),
            ("boot", t(&[("klibs", t(&[("radar", Value::Null)]))])),
        ]);
        assert_eq!(
            leaves(&a, &b),
            vec![
                leaf("boot.klibs.radar", None, Some("<null>")),
                leaf("boot.klibs.tls", Some("<null>"), None),
                leaf("environment.GREETING", Some("one"), Some("two")),
            ]
        );
        assert_eq!(leaves(&a, &a), vec![]);
    }

    #[test]
    fn vectors_compare_by_index_and_report_trailing_elements() {
        let a = t(&[(
            "arguments",
            Value::Vector(vec![s("prover"), s("-v"), s("x")]),
        )]);
        let b = t(&[(
            "arguments",
            Value::Vector(vec![s("prover"), s("-q"), s("x"), s("y"), s("z")]),
        )]);
        let changed = vec![
            leaf("arguments[1]", Some("-v"), Some("-q")),
            leaf("arguments[3]", None, Some("y")),
            leaf("arguments[4]", None, Some("z")),
        ];
        assert_eq!(leaves(&a, &b), changed);
        let back: Vec<Leaf> = changed.into_iter().map(|(p, x, y)| (p, y, x)).collect();
        assert_eq!(leaves(&b, &a), back);
    }

    #[test]
    fn a_change_of_kind_is_reported_where_it_happens() {
        let a = t(&[("x", t(&[("k", s("v"))])), ("y", s("plain"))]);
        let b = t(&[
            ("x", s("now a string")),
            ("y", Value::Vector(vec![s("a"), s("b")])),
        ]);
        assert_eq!(
            leaves(&a, &b),
            vec![
                leaf("x", Some("(k:v)"), Some("now a string")),
                leaf("y", Some("plain"), Some("[a b]")),
            ]
        );
    }

    #[test]
    fn an_added_or_removed_subtree_is_reported_leaf_by_leaf() {
        let a = t(&[("program", s("/prover"))]);
        let b = t(&[
            ("program", s("/prover")),
            ("mounts", t(&[("%0", s("/data")), ("%1", s("/logs"))])),
            ("notrace", Value::Vector(vec![s("mmap")])),
            ("empty", t(&[])),
            ("nested", t(&[("inner", t(&[("deep", Value::Integer(7))]))])),
        ]);
        let added = vec![
            leaf("empty", None, Some("()")),
            leaf("mounts.%0", None, Some("/data")),
            leaf("mounts.%1", None, Some("/logs")),
            leaf("nested.inner.deep", None, Some("7")),
            leaf("notrace[0]", None, Some("mmap")),
        ];
        assert_eq!(leaves(&a, &b), added);
        let removed: Vec<Leaf> = added.into_iter().map(|(p, x, y)| (p, y, x)).collect();
        assert_eq!(leaves(&b, &a), removed);
    }

    #[test]
    fn awkward_keys_are_quoted() {
        let a = t(&[(
            "environment",
            t(&[
                ("A.B", s("1")),
                ("", s("1")),
                ("q\"[x]\\", s("1")),
                ("tab\t", s("1")),
            ]),
        )]);
        let mut b = a.clone();
        if let Value::Tuple(root) = &mut b {
            let env = root.get_mut(b"environment".as_slice()).unwrap();
            if let Value::Tuple(env) = env {
                for v in env.values_mut() {
                    *v = s("2");
                }
                env.insert(b"\xff".to_vec(), s("2"));
            }
            root.insert(Vec::new(), s("root"));
        }
        assert_eq!(
            leaves(&a, &b),
            vec![
                leaf("[\"\"]", None, Some("root")),
                leaf("environment[\"\"]", Some("1"), Some("2")),
                leaf("environment[\"A.B\"]", Some("1"), Some("2")),
                leaf("environment[\"q\\\"[x]\\\\\"]", Some("1"), Some("2")),
                leaf("environment[\"tab\\u{9}\"]", Some("1"), Some("2")),
                leaf("environment[\"\\xff\"]", None, Some("2")),
            ]
        );
    }
}
