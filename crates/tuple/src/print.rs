//! Printing values the way Nanos's `dump` tool prints filesystem metadata.
//!
//! The format is `print_value` of `nanos/src/runtime/extra_prints.c` with indentation on:
//! tuple entries in bytewise key order as `key:value`, one per line, aligned under the first
//! entry; vectors as `[a` / ` b]` aligned the same way; strings raw; integers in decimal;
//! `<null>` for the null value; `{binary, length N}` for untyped buffers that are not
//! printable ASCII. A value already printed on the current path prints `<visited>`.
//!
//! What is printed is a tree ([`Value`]), without the identity of shared tuples, so two
//! things `dump` prints from a volume the kernel has written to come out differently: a
//! file's `..` link (which [`crate::Decoder`] leaves out; `dump` prints `..:<visited>`), and
//! the second and later names of a hard-linked file (`dump` prints `<visited>`, since its
//! visited set spans the whole print; here each name shows the file in full).

use crate::value::{Tuple, Value};

/// Options for [`nanos_dump`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DumpOptions {
    /// Show the `..` entry that the kernel adds in memory to every directory (the root and
    /// every tuple with `children` reached through `children`). It always prints as
    /// `<visited>`, since it points at the parent being printed, and replaces any `..` key
    /// of the tuple itself, as the kernel's `fixup_directory` does. `dump` shows these.
    pub parent_links: bool,
    /// Stop after about this many bytes and end with `…(truncated)`; 0 means no limit. The
    /// indentation makes the output grow with depth × key width, so a small hostile value
    /// can print gigabytes.
    pub limit: usize,
}

const TRUNCATED: &str = "…(truncated)";

/// `value` as Nanos's `dump` prints it (without a trailing newline).
pub fn nanos_dump(value: &Value, options: DumpOptions) -> String {
    let mut out = String::new();
    let mut p = Printer {
        out: &mut out,
        options,
    };
    p.value(value, 0, options.parent_links);
    if p.full() {
        let mut cut = options.limit;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(TRUNCATED);
    }
    out
}

struct Printer<'a> {
    out: &'a mut String,
    options: DumpOptions,
}

impl Printer<'_> {
    /// Whether the output has reached the limit (nothing more is printed then).
    fn full(&self) -> bool {
        self.options.limit != 0 && self.out.len() >= self.options.limit
    }

    fn column(&self) -> usize {
        self.out.len() - self.out.rfind('\n').map_or(0, |i| i + 1)
    }

    fn bytes(&mut self, b: &[u8]) {
        // dump writes raw bytes; keep them readable as far as UTF-8 allows.
        self.out.push_str(&String::from_utf8_lossy(b));
    }

    fn value(&mut self, v: &Value, indent: usize, is_dir: bool) {
        if self.full() {
            return;
        }
        match v {
            Value::Tuple(t) => self.tuple(t, indent, is_dir),
            Value::Vector(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if self.full() {
                        return;
                    }
                    if i > 0 {
                        self.out.push('\n');
                        self.out.push_str(&" ".repeat(indent + 1));
                    }
                    self.value(item, indent + 1, false);
                }
                self.out.push(']');
            }
            Value::String(s) => self.bytes(s),
            Value::Buffer(b) => {
                if b.iter().all(|c| (0x20..=0x7e).contains(c)) {
                    self.bytes(b)
                } else {
                    self.out
                        .push_str(&format!("{{binary, length {}}}", b.len()))
                }
            }
            Value::Integer(i) => self.out.push_str(&i.to_string()),
            Value::Null => self.out.push_str("<null>"),
        }
    }

    fn tuple(&mut self, t: &Tuple, indent: usize, is_dir: bool) {
        self.out.push('(');
        let indent = indent + 1;
        let parent: Option<(&[u8], Option<&Value>)> = is_dir.then_some((b"..", None));
        let mut entries: Vec<(&[u8], Option<&Value>)> = parent.into_iter().collect();
        entries.extend(
            t.iter()
                .filter(|(k, _)| !(is_dir && k.as_slice() == b".."))
                .map(|(k, v)| (k.as_slice(), Some(v))),
        );
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let walks_children = self.options.parent_links && is_dir;
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if self.full() {
                return;
            }
            if i > 0 {
                self.out.push('\n');
                self.out.push_str(&" ".repeat(indent));
            }
            self.bytes(k);
            self.out.push(':');
            let next = self.column();
            match v {
                None => self.out.push_str("<visited>"),
                Some(Value::Tuple(children)) if walks_children && k == b"children" => {
                    self.children(children, next)
                }
                Some(v) => self.value(v, next, false),
            }
        }
        self.out.push(')');
    }

    /// A `children` tuple: each entry that has `children` itself is a directory.
    fn children(&mut self, t: &Tuple, indent: usize) {
        self.out.push('(');
        let indent = indent + 1;
        for (i, (k, v)) in t.iter().enumerate() {
            if self.full() {
                return;
            }
            if i > 0 {
                self.out.push('\n');
                self.out.push_str(&" ".repeat(indent));
            }
            self.bytes(k);
            self.out.push(':');
            let next = self.column();
            let is_dir = v
                .as_tuple()
                .is_some_and(|t| t.contains_key(&b"children"[..]));
            self.value(v, next, is_dir);
        }
        self.out.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_bounds_the_output() {
        // Deep nesting under a long key: the indentation alone would be quadratic.
        let key = vec![b'k'; 200];
        let mut v = Value::Tuple(Tuple::new());
        for _ in 0..500 {
            let mut t = Tuple::new();
            t.insert(key.clone(), v);
            t.insert(b"z".to_vec(), Value::string("x"));
            v = Value::Tuple(t);
        }
        let out = nanos_dump(
            &v,
            DumpOptions {
                parent_links: false,
                limit: 10_000,
            },
        );
        assert!(out.len() <= 10_000 + TRUNCATED.len(), "{}", out.len());
        assert!(out.ends_with(TRUNCATED));
        let small = nanos_dump(
            &Value::string("abc"),
            DumpOptions {
                parent_links: false,
                limit: 10,
            },
        );
        assert_eq!(small, "abc");
    }

    #[test]
    fn prints_like_dump() {
        let mut env = Tuple::new();
        env.insert(b"RUST_LOG".to_vec(), Value::string("debug"));
        env.insert(b"RUST_BACKTRACE".to_vec(), Value::string("1"));
        let mut dir = Tuple::new();
        dir.insert(b"children".to_vec(), Value::Tuple(Tuple::new()));
        let mut children = Tuple::new();
        children.insert(b"workspace".to_vec(), Value::Tuple(dir));
        let mut root = Tuple::new();
        root.insert(
            b"arguments".to_vec(),
            Value::Vector(vec![Value::string("prog"), Value::string("two words")]),
        );
        root.insert(b"children".to_vec(), Value::Tuple(children));
        root.insert(b"environment".to_vec(), Value::Tuple(env));
        let text = nanos_dump(
            &Value::Tuple(root),
            DumpOptions {
                parent_links: true,
                limit: 0,
            },
        );
        assert_eq!(
            text,
            "(..:<visited>\n arguments:[prog\n            two words]\n children:(workspace:(..:<visited>\n                      children:()))\n environment:(RUST_BACKTRACE:1\n              RUST_LOG:debug))"
        );
    }

    /// A `..` key that a directory itself carries (a string: a parent link would not be in
    /// the decoded tree) gives way to the parent link; elsewhere it is an ordinary key.
    #[test]
    fn a_directorys_own_parent_key_gives_way() {
        let mut file = Tuple::new();
        file.insert(b"..".to_vec(), Value::string("f"));
        let mut children = Tuple::new();
        children.insert(b"f".to_vec(), Value::Tuple(file));
        let mut root = Tuple::new();
        root.insert(b"..".to_vec(), Value::string("r"));
        root.insert(b"children".to_vec(), Value::Tuple(children));
        let dump = |parent_links| {
            nanos_dump(
                &Value::Tuple(root.clone()),
                DumpOptions {
                    parent_links,
                    limit: 0,
                },
            )
        };
        assert_eq!(dump(true), "(..:<visited>\n children:(f:(..:f)))");
        assert_eq!(dump(false), "(..:r\n children:(f:(..:f)))");
    }
}
