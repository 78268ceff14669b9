use std::collections::BTreeMap;

use crate::value::{Tuple, Value};
use crate::{ty, varint, MAX_DEPTH};

/// Which tuple encoding a log extension uses (the TFS version in its header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// TFS version 4, the deprecated "old encoding": 1-bit type, buffers and tuples only.
    V4,
    /// TFS version 5: 3-bit type with vectors, integers and strings.
    V5,
}

/// What is wrong with an encoded record. Offsets count bytes from the start of the record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record ends inside a value (at byte {offset})")]
    Truncated { offset: usize },
    #[error(
        "length {len} at byte {offset} runs past the end of the record ({remaining} bytes left)"
    )]
    TooLong {
        len: u64,
        offset: usize,
        remaining: usize,
    },
    #[error("value type {ty} at byte {offset} is not defined")]
    UnknownType { ty: u8, offset: usize },
    #[error("dictionary index {index} at byte {offset} is not defined")]
    UnknownIndex { index: u64, offset: usize },
    #[error("dictionary index {index} at byte {offset} is a {found}, expected a {expected}")]
    WrongKind {
        index: u64,
        offset: usize,
        found: &'static str,
        expected: &'static str,
    },
    #[error("integer in reference form at byte {offset}")]
    IntegerReference { offset: usize },
    #[error("vector element {element} at byte {offset} is deleted or out of order")]
    BadVectorElement { element: u64, offset: usize },
    #[error("values nested deeper than {MAX_DEPTH} levels (at byte {offset})")]
    TooDeep { offset: usize },
    #[error("{count} bytes left over after the record's value")]
    Trailing { count: usize },
    #[error("the log defines no root tuple (dictionary entry #1)")]
    NoRoot,
    #[error("dictionary entry #1 is a {0}, not a tuple")]
    RootNotTuple(&'static str),
    #[error("a tuple or vector contains itself")]
    Cycle,
    #[error("shared references expand to more than {0} values")]
    TooLarge(u64),
    #[error("shared references expand to more than {0} bytes of keys and strings")]
    TooManyBytes(u64),
}

#[derive(Clone, Debug)]
enum Entry {
    Symbol(Vec<u8>),
    Tuple(usize),
    Vector(usize),
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Symbol(_) => "symbol",
            Entry::Tuple(_) => "tuple",
            Entry::Vector(_) => "vector",
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    Tuple(usize),
    Vector(usize),
    Leaf(Value),
}

/// Decodes the records of one TFS log into the tuple graph they describe.
///
/// Records are fed in log order with [`Decoder::record`]; they share one dictionary, and a
/// later record may add to, change or delete entries of a tuple an earlier one defined (Nanos's
/// mkfs and kernel write files that way). [`Decoder::root`] then gives the tree rooted at
/// dictionary entry #1, as the kernel takes it.
///
/// Hostile input is an error, never a panic: lengths are checked against the record before
/// anything is allocated, references against the dictionary, nesting against [`MAX_DEPTH`],
/// and shared references may not expand the tree beyond a small multiple of the input size
/// (plus a fixed allowance for hard links).
///
/// # Parent links (`..`)
///
/// A volume the kernel has written to has tuples that point back up the tree. In memory the
/// kernel keeps a `..` key whose value is the parent directory's tuple: on every directory
/// (`fixup_directory` in nanos 0.1.55 `src/fs/tfs.c`; `fixup_directory(root, root)` makes
/// the root's `..` the root itself), and on files and symlinks once opened or moved
/// (`fs_notify_event` with `IN_OPEN` and `fs_notify_move` in `src/unix/filesystem.c`). Its
/// encoder (`encode_tuple_internal` in `src/runtime/tuple.c`) writes a tuple already in the
/// dictionary as a reference carrying all its current entries, and one already written in the
/// same record as a reference with none. So a record that writes such a tuple, e.g. the new
/// directory entry of a hard link (`tfs_link`), carries `..` → parent (with its entries) →
/// its `..` → ... → the root, whose `..` is itself; once replayed, those `..` keys close
/// cycles. Renames strip `..` first (`cleanup_directory`), links do not.
///
/// The records are applied as they are (the entries carried by references are real updates).
/// [`Decoder::root`] then presents the tree the guest sees: a `..` key whose value is a tuple
/// (by reference or not) is a parent link, not content, and is left out without being
/// followed, wherever it points (the parent, the tuple itself, a descendant, an unrelated or
/// stale directory: the kernel overwrites `..` on every directory after mounting and uses it
/// on files only for inotify). Nanos's `dump` prints these values as `<visited>` and skips
/// `..` when it walks a tree. Otherwise:
///
/// - `..` with any other value (a string, a vector...) is an ordinary key;
/// - in a tuple that is the value of a `children` key, `..` is the name of a directory entry
///   (the kernel never creates one: path lookup resolves `..` to the parent link), so it is
///   kept as an ordinary key too: a cycle through it is [`DecodeError::Cycle`], and otherwise
///   the tree reader shows an entry named `..`, which extraction refuses;
/// - a cycle through any other key is [`DecodeError::Cycle`], and the expansion budgets and
///   [`MAX_DEPTH`] apply to what is materialized.
#[derive(Debug, Default)]
pub struct Decoder {
    entries: Vec<Entry>,
    tuples: Vec<BTreeMap<Vec<u8>, Node>>,
    vectors: Vec<Vec<Node>>,
    bytes_seen: u64,
    /// Bytes of symbols copied by references so far (see [`Self::byte_limit`]).
    bytes_copied: u64,
}

struct Header {
    immediate: bool,
    ty: u8,
    len: u64,
    offset: usize,
}

impl Decoder {
    /// A decoder with an empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one complete record (one value) in the given encoding.
    pub fn record(&mut self, bytes: &[u8], encoding: Encoding) -> Result<(), DecodeError> {
        self.bytes_seen += bytes.len() as u64;
        let mut pos = 0;
        self.value(bytes, &mut pos, encoding, 0)?;
        if pos != bytes.len() {
            return Err(DecodeError::Trailing {
                count: bytes.len() - pos,
            });
        }
        Ok(())
    }

    /// The tree rooted at dictionary entry #1.
    pub fn root(&self) -> Result<Tuple, DecodeError> {
        let id = match self.entries.first() {
            None => return Err(DecodeError::NoRoot),
            Some(Entry::Tuple(id)) => *id,
            Some(other) => return Err(DecodeError::RootNotTuple(other.kind())),
        };
        let mut m = Materializer {
            d: self,
            tuple_on_path: vec![false; self.tuples.len()],
            vector_on_path: vec![false; self.vectors.len()],
            budget: self.value_limit(),
            byte_budget: self.byte_limit(),
        };
        m.tuple(id, 0, false)
    }

    /// Values that [`Decoder::root`] may materialize. A tuple referenced from several places
    /// is copied into each, so nested shared references could expand a small input
    /// exponentially. Hard links are such copies: the kernel writes each link with the
    /// file's entries (bytes in proportion to the copy), but a rebuilt log
    /// (`filesystem_log_rebuild`) writes the file once and every other link as a reference
    /// with no entries: 100 links to a file of 500 extents are about 200,000 values from
    /// 10 KB. 4 per input byte plus 2^18 allows that; at worst (tuples of one entry) a value
    /// costs about 400 bytes, so 2^18 is about 100 MB.
    fn value_limit(&self) -> u64 {
        self.bytes_seen.saturating_mul(4).saturating_add(1 << 18)
    }

    /// Bytes of symbols that references may copy: in [`Decoder::record`] (every key or value
    /// given by reference is a copy of its symbol) and again in [`Decoder::root`]. A symbol
    /// referenced by a 1-byte header can stand for any number of bytes, so without a limit a
    /// long symbol referenced from many places makes memory quadratic in the input (a
    /// 200 KB record took 20 GB). Real names are at most 255 bytes and a reference with its
    /// tuple entry or vector element costs at least 1-2 input bytes, so 256 per input byte
    /// (plus 64 MiB) never stops a real tree.
    fn byte_limit(&self) -> u64 {
        self.bytes_seen.saturating_mul(256).saturating_add(64 << 20)
    }

    fn header(input: &[u8], pos: &mut usize, encoding: Encoding) -> Result<Header, DecodeError> {
        let offset = *pos;
        let first = *input.get(*pos).ok_or(DecodeError::Truncated { offset })?;
        *pos += 1;
        let (ty, mut len, extended) = match encoding {
            Encoding::V5 => ((first >> 4) & 7, u64::from(first & 7), first & 0x08 != 0),
            Encoding::V4 => {
                let ty = if first & 0x40 != 0 {
                    ty::TUPLE
                } else {
                    ty::BUFFER
                };
                (ty, u64::from(first & 0x1f), first & 0x20 != 0)
            }
        };
        if extended {
            loop {
                let b = *input
                    .get(*pos)
                    .ok_or(DecodeError::Truncated { offset: *pos })?;
                *pos += 1;
                if len > (u64::MAX >> 7) {
                    return Err(DecodeError::TooLong {
                        len: u64::MAX,
                        offset,
                        remaining: input.len() - *pos,
                    });
                }
                len = (len << 7) | u64::from(b & 0x7f);
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        Ok(Header {
            immediate: first & 0x80 != 0,
            ty,
            len,
            offset,
        })
    }

    fn bytes<'a>(input: &'a [u8], pos: &mut usize, h: &Header) -> Result<&'a [u8], DecodeError> {
        let remaining = input.len() - *pos;
        if h.len > remaining as u64 {
            return Err(DecodeError::TooLong {
                len: h.len,
                offset: h.offset,
                remaining,
            });
        }
        let b = &input[*pos..*pos + h.len as usize];
        *pos += h.len as usize;
        Ok(b)
    }

    fn lookup(&self, index: u64, offset: usize) -> Result<&Entry, DecodeError> {
        index
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.entries.get(i))
            .ok_or(DecodeError::UnknownIndex { index, offset })
    }

    fn reference(
        &self,
        input: &[u8],
        pos: &mut usize,
        expected: &'static str,
    ) -> Result<usize, DecodeError> {
        let offset = *pos;
        let index = varint::read(input, pos).ok_or(DecodeError::Truncated { offset })?;
        match (self.lookup(index, offset)?, expected) {
            (Entry::Tuple(id), "tuple") | (Entry::Vector(id), "vector") => Ok(*id),
            (other, _) => Err(DecodeError::WrongKind {
                index,
                offset,
                found: other.kind(),
                expected,
            }),
        }
    }

    /// Decodes one value. `None` is the encoding's "delete this key".
    ///
    /// Recursive through [`Self::tuple_body`] and [`Self::vector_body`]; everything else is
    /// kept out of line so that each level of nesting costs little stack, even unoptimised.
    fn value(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        encoding: Encoding,
        depth: usize,
    ) -> Result<Option<Node>, DecodeError> {
        let h = Self::header(input, pos, encoding)?;
        if depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep { offset: h.offset });
        }
        match h.ty {
            ty::TUPLE => self.tuple_body(input, pos, encoding, depth, &h).map(Some),
            ty::VECTOR => self.vector_body(input, pos, encoding, depth, &h).map(Some),
            _ => self.leaf(input, pos, encoding, &h),
        }
    }

    fn tuple_body(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        encoding: Encoding,
        depth: usize,
        h: &Header,
    ) -> Result<Node, DecodeError> {
        let id = if h.immediate {
            self.tuples.push(BTreeMap::new());
            self.entries.push(Entry::Tuple(self.tuples.len() - 1));
            self.tuples.len() - 1
        } else {
            self.reference(input, pos, "tuple")?
        };
        // Each entry consumes at least one byte, so the loop is bounded by the input.
        for _ in 0..h.len {
            let key = self.key(input, pos, encoding)?;
            match self.value(input, pos, encoding, depth + 1)? {
                Some(v) => {
                    self.tuples[id].insert(key, v);
                }
                None => {
                    self.tuples[id].remove(&key);
                }
            }
        }
        Ok(Node::Tuple(id))
    }

    fn vector_body(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        encoding: Encoding,
        depth: usize,
        h: &Header,
    ) -> Result<Node, DecodeError> {
        let id = if h.immediate {
            self.vectors.push(Vec::new());
            self.entries.push(Entry::Vector(self.vectors.len() - 1));
            self.vectors.len() - 1
        } else {
            self.reference(input, pos, "vector")?
        };
        for i in 0..h.len {
            let at = *pos;
            let v = self.value(input, pos, encoding, depth + 1)?;
            self.set_element(id, i, v, at)?;
        }
        Ok(Node::Vector(id))
    }

    #[inline(never)]
    fn set_element(
        &mut self,
        id: usize,
        element: u64,
        v: Option<Node>,
        offset: usize,
    ) -> Result<(), DecodeError> {
        let items = &mut self.vectors[id];
        match (v, usize::try_from(element)) {
            (Some(v), Ok(i)) if i < items.len() => items[i] = v,
            (Some(v), Ok(i)) if i == items.len() => items.push(v),
            _ => return Err(DecodeError::BadVectorElement { element, offset }),
        }
        Ok(())
    }

    /// A tuple key: an immediate symbol (which joins the dictionary) or a symbol reference.
    #[inline(never)]
    fn key(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        encoding: Encoding,
    ) -> Result<Vec<u8>, DecodeError> {
        let kh = Self::header(input, pos, encoding)?;
        if kh.immediate {
            let name = Self::bytes(input, pos, &kh)?.to_vec();
            self.entries.push(Entry::Symbol(name.clone()));
            return Ok(name);
        }
        self.referenced_symbol(&kh)
    }

    /// The symbol a reference header points to, counted as bytes copied.
    fn referenced_symbol(&mut self, h: &Header) -> Result<Vec<u8>, DecodeError> {
        let name = match self.lookup(h.len, h.offset)? {
            Entry::Symbol(s) => s.clone(),
            other => {
                return Err(DecodeError::WrongKind {
                    index: h.len,
                    offset: h.offset,
                    found: other.kind(),
                    expected: "symbol",
                })
            }
        };
        self.copied(name.len())?;
        Ok(name)
    }

    /// Counts bytes copied out of the dictionary by a reference (see [`Self::byte_limit`]).
    fn copied(&mut self, n: usize) -> Result<(), DecodeError> {
        self.bytes_copied = self.bytes_copied.saturating_add(n as u64);
        if self.bytes_copied > self.byte_limit() {
            return Err(DecodeError::TooManyBytes(self.byte_limit()));
        }
        Ok(())
    }

    /// Integers, strings and untyped buffers (which may also reference any dictionary entry).
    #[inline(never)]
    fn leaf(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        encoding: Encoding,
        h: &Header,
    ) -> Result<Option<Node>, DecodeError> {
        match h.ty {
            ty::INTEGER => {
                if !h.immediate {
                    return Err(DecodeError::IntegerReference { offset: h.offset });
                }
                let at = *pos;
                let magnitude =
                    varint::read(input, pos).ok_or(DecodeError::Truncated { offset: at })?;
                let v = if h.len > 0 {
                    -i128::from(magnitude)
                } else {
                    i128::from(magnitude)
                };
                Ok(Some(Node::Leaf(Value::Integer(v))))
            }
            ty::STRING => {
                if h.immediate {
                    let s = Self::bytes(input, pos, h)?;
                    Ok(Some(Node::Leaf(Value::String(s.to_vec()))))
                } else {
                    let s = self.referenced_symbol(h)?;
                    Ok(Some(Node::Leaf(Value::String(s))))
                }
            }
            ty::BUFFER => {
                if h.len == 0 {
                    return Ok(None);
                }
                // The v4 encoding has no string type: its text values are buffers.
                let text = |b: Vec<u8>| match encoding {
                    Encoding::V4 => Value::String(b),
                    Encoding::V5 => Value::Buffer(b),
                };
                if h.immediate {
                    let b = Self::bytes(input, pos, h)?;
                    if b == [0] {
                        return Ok(Some(Node::Leaf(Value::Null)));
                    }
                    Ok(Some(Node::Leaf(text(b.to_vec()))))
                } else {
                    let node = match self.lookup(h.len, h.offset)? {
                        Entry::Symbol(s) => Node::Leaf(text(s.clone())),
                        Entry::Tuple(id) => Node::Tuple(*id),
                        Entry::Vector(id) => Node::Vector(*id),
                    };
                    if let Node::Leaf(Value::String(b) | Value::Buffer(b)) = &node {
                        self.copied(b.len())?;
                    }
                    Ok(Some(node))
                }
            }
            other => Err(DecodeError::UnknownType {
                ty: other,
                offset: h.offset,
            }),
        }
    }
}

/// The key of a parent link (see "Parent links" on [`Decoder`]).
const PARENT: &[u8] = b"..";
/// The key whose tuple holds a directory's entries.
const CHILDREN: &[u8] = b"children";

struct Materializer<'a> {
    d: &'a Decoder,
    tuple_on_path: Vec<bool>,
    vector_on_path: Vec<bool>,
    /// Values still allowed ([`Decoder::value_limit`]).
    budget: u64,
    /// Bytes of keys and strings still allowed ([`Decoder::byte_limit`]).
    byte_budget: u64,
}

impl Materializer<'_> {
    fn spend(&mut self) -> Result<(), DecodeError> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or(DecodeError::TooLarge(self.d.value_limit()))?;
        Ok(())
    }

    fn spend_bytes(&mut self, n: usize) -> Result<(), DecodeError> {
        self.byte_budget = self
            .byte_budget
            .checked_sub(n as u64)
            .ok_or(DecodeError::TooManyBytes(self.d.byte_limit()))?;
        Ok(())
    }

    /// Tuple `id`; `names` when it is the value of a `children` key (its keys are the names
    /// of directory entries, so a `..` among them is not a parent link).
    fn tuple(&mut self, id: usize, depth: usize, names: bool) -> Result<Tuple, DecodeError> {
        if self.tuple_on_path[id] {
            return Err(DecodeError::Cycle);
        }
        self.tuple_on_path[id] = true;
        let mut out = Tuple::new();
        for (k, v) in &self.d.tuples[id] {
            if !names && k == PARENT && matches!(v, Node::Tuple(_)) {
                continue; // a parent link (see "Parent links" on `Decoder`)
            }
            self.spend_bytes(k.len())?;
            out.insert(k.clone(), self.node(v, depth + 1, k == CHILDREN)?);
        }
        self.tuple_on_path[id] = false;
        Ok(out)
    }

    fn node(&mut self, n: &Node, depth: usize, names: bool) -> Result<Value, DecodeError> {
        self.spend()?;
        if depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep { offset: 0 });
        }
        Ok(match n {
            Node::Leaf(v) => {
                if let Value::String(b) | Value::Buffer(b) = v {
                    self.spend_bytes(b.len())?;
                }
                v.clone()
            }
            Node::Tuple(id) => Value::Tuple(self.tuple(*id, depth, names)?),
            Node::Vector(id) => {
                let id = *id;
                if self.vector_on_path[id] {
                    return Err(DecodeError::Cycle);
                }
                self.vector_on_path[id] = true;
                let mut out = Vec::new();
                for item in &self.d.vectors[id] {
                    out.push(self.node(item, depth + 1, false)?);
                }
                self.vector_on_path[id] = false;
                Value::Vector(out)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Result<Tuple, DecodeError> {
        let mut d = Decoder::new();
        d.record(bytes, Encoding::V5)?;
        d.root()
    }

    /// The per-attribute records mkfs writes after the tree (nanos-image-format.md §2.9):
    /// tuple #5 gets `extents`, then an extent, then `filelength`, all by reference.
    #[test]
    fn mkfs_style_updates_by_reference() {
        let mut d = Decoder::new();
        // root (#1) { children (#2): (#3) { hello (#4): (#5) {} } }
        let mut r = vec![0x91, 0x88, 0x08];
        r.extend_from_slice(b"children");
        r.extend_from_slice(&[0x91, 0x85]);
        r.extend_from_slice(b"hello");
        r.push(0x90);
        d.record(&r, Encoding::V5).unwrap();
        // #5 gets extents = new empty tuple (#7; symbol "extents" is #6)
        let mut r = vec![0x11, 0x05, 0x87];
        r.extend_from_slice(b"extents");
        r.push(0x90);
        d.record(&r, Encoding::V5).unwrap();
        // #7 gets "0" = {length 1490, allocated 1490, offset 3073}
        let mut r = vec![0x11, 0x07, 0x81, b'0', 0x93, 0x86];
        r.extend_from_slice(b"length");
        r.extend_from_slice(&[0xB0, 0x8B, 0x52, 0x88, 0x09]);
        r.extend_from_slice(b"allocated");
        r.extend_from_slice(&[0xB0, 0x8B, 0x52, 0x86]);
        r.extend_from_slice(b"offset");
        r.extend_from_slice(&[0xB0, 0x98, 0x01]);
        d.record(&r, Encoding::V5).unwrap();
        // #5 gets filelength = 762392
        let mut r = vec![0x11, 0x05, 0x88, 0x0A];
        r.extend_from_slice(b"filelength");
        r.extend_from_slice(&[0xB0, 0xAE, 0xC4, 0x18]);
        d.record(&r, Encoding::V5).unwrap();

        let root = d.root().unwrap();
        let hello = root[&b"children"[..]].as_tuple().unwrap()[&b"hello"[..]]
            .as_tuple()
            .unwrap();
        assert_eq!(hello[&b"filelength"[..]], Value::Integer(762_392));
        let ext = hello[&b"extents"[..]].as_tuple().unwrap()[&b"0"[..]]
            .as_tuple()
            .unwrap();
        assert_eq!(ext[&b"offset"[..]].as_u64(), Some(3073));
        assert_eq!(ext[&b"length"[..]].as_u64(), Some(1490));
        assert_eq!(ext[&b"allocated"[..]].as_u64(), Some(1490));
    }

    #[test]
    fn an_empty_untyped_value_deletes_the_key() {
        let mut d = Decoder::new();
        d.record(&[0x91, 0x81, b'a', 0xC1, b'x'], Encoding::V5)
            .unwrap();
        assert_eq!(d.root().unwrap().len(), 1);
        // tuple #1 by reference, 1 entry: symbol #2 ("a") = untyped buffer of length 0
        d.record(&[0x11, 0x01, 0x02, 0x80], Encoding::V5).unwrap();
        assert!(d.root().unwrap().is_empty());
    }

    #[test]
    fn null_and_negative_integers() {
        let t = decode(&[0x92, 0x81, b'f', 0x81, 0x00, 0x81, b'n', 0xB1, 0x05]).unwrap();
        assert_eq!(t[&b"f"[..]], Value::Null);
        assert_eq!(t[&b"n"[..]], Value::Integer(-5));
    }

    #[test]
    fn v4_headers() {
        // v4: tuple 0x41 (imm, type bit 6, 1 entry), key 0x81 "a", value buffer 0x82 "hi"
        let mut d = Decoder::new();
        d.record(&[0xC1, 0x81, b'a', 0x82, b'h', b'i'], Encoding::V4)
            .unwrap();
        let t = d.root().unwrap();
        assert_eq!(t[&b"a"[..]], Value::string("hi"));
    }

    #[test]
    fn hostile_records_are_errors() {
        // truncated string
        assert!(matches!(
            decode(&[0x91, 0x81, b'a', 0xC5, b'x']),
            Err(DecodeError::TooLong { .. })
        ));
        // huge claimed entry count: runs out of input, no giant allocation
        assert!(matches!(
            decode(&[0x9F, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
            Err(DecodeError::Truncated { .. })
        ));
        // reference to an undefined index
        assert!(matches!(
            decode(&[0x91, 0x08, 0x09, 0xC1, b'x']),
            Err(DecodeError::UnknownIndex { index: 9, .. })
        ));
        // type 7
        assert!(matches!(
            decode(&[0x91, 0x81, b'a', 0xF0]),
            Err(DecodeError::UnknownType { ty: 7, .. })
        ));
        // a tuple that contains itself: #1 { a: ref #1 }
        assert_eq!(decode(&[0x91, 0x81, b'a', 0x01]), Err(DecodeError::Cycle));
        // the first object is a vector
        let mut d = Decoder::new();
        d.record(&[0xA0], Encoding::V5).unwrap();
        assert_eq!(d.root(), Err(DecodeError::RootNotTuple("vector")));
        // trailing garbage
        assert_eq!(
            decode(&[0x90, 0x00]),
            Err(DecodeError::Trailing { count: 1 })
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut r = vec![0x91, 0x81, b'a'];
        for _ in 0..100_000 {
            r.extend_from_slice(&[0x91, 0x02]);
        }
        assert!(matches!(
            decode(&r),
            Err(DecodeError::TooDeep { .. }) | Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn shared_references_cannot_explode() {
        // Each level is a tuple whose two entries both refer to the level below: 2^40 values
        // if expanded naively.
        let reference = |index: u64| {
            let mut v = Vec::new();
            crate::encode::push_header(&mut v, false, ty::BUFFER, index);
            v
        };
        let mut d = Decoder::new();
        d.record(&[0x90], Encoding::V5).unwrap(); // #1: the root
        d.record(&[0x90], Encoding::V5).unwrap(); // #2: the bottom level
        let mut r = vec![0x92, 0x81, b'a'];
        r.extend(reference(2));
        r.extend([0x81, b'b']);
        r.extend(reference(2));
        d.record(&r, Encoding::V5).unwrap(); // #3 tuple, #4 "a", #5 "b"
        let mut prev = 3;
        for level in 0..40 {
            let mut r = vec![0x92];
            r.extend(reference(4));
            r.extend(reference(prev));
            r.extend(reference(5));
            r.extend(reference(prev));
            d.record(&r, Encoding::V5).unwrap();
            prev = 6 + level;
        }
        let mut r = vec![0x11, 0x01, 0x81, b'x'];
        r.extend(reference(prev));
        d.record(&r, Encoding::V5).unwrap();
        assert!(matches!(d.root(), Err(DecodeError::TooLarge(_))));
    }

    /// Found with the fuzz harness (`fuzz/`, tuple_decoder): a long symbol referenced from
    /// many places by 1-byte headers was copied once per reference, so memory grew with the
    /// square of the input (a 200 KB record took 20 GB and 40 s).
    #[test]
    fn long_symbols_referenced_many_times_cannot_explode() {
        let (l, r) = (10_000u64, 10_000u64);
        // #1 { <l bytes> (#2): null, v (#3): #4 [r references to #2] }
        let record = |reference: u8| {
            let mut v = Vec::new();
            crate::encode::push_header(&mut v, true, ty::TUPLE, 2);
            crate::encode::push_header(&mut v, true, ty::BUFFER, l);
            v.extend(std::iter::repeat_n(b'k', l as usize));
            v.extend([0x81, 0x00, 0x81, b'v']);
            crate::encode::push_header(&mut v, true, ty::VECTOR, r);
            v.extend(std::iter::repeat_n(reference, r as usize));
            v
        };
        // as untyped buffers (0x02) and as strings (0x42)
        for reference in [0x02, 0x42] {
            assert!(matches!(
                Decoder::new().record(&record(reference), Encoding::V5),
                Err(DecodeError::TooManyBytes(_))
            ));
        }
        // Copied only when the tree is built: #1 { t (#2): #3 { <l bytes> (#4): null },
        // v (#5): #6 [r references to #3] }
        let mut v = vec![0x92, 0x81, b't', 0x91];
        crate::encode::push_header(&mut v, true, ty::BUFFER, l);
        v.extend(std::iter::repeat_n(b'k', l as usize));
        v.extend([0x81, 0x00, 0x81, b'v']);
        crate::encode::push_header(&mut v, true, ty::VECTOR, r);
        v.extend(std::iter::repeat_n(0x03, r as usize));
        let mut d = Decoder::new();
        d.record(&v, Encoding::V5).unwrap();
        assert!(matches!(d.root(), Err(DecodeError::TooManyBytes(_))));
    }

    /// The byte limit leaves room for real trees: 255-byte names referenced by 1-byte
    /// headers from 300,000 tuples (76 MB of keys from a 1.2 MB record) decode.
    #[test]
    fn many_references_to_long_names_are_fine() {
        let r = 300_000u64;
        // #1 { <255 bytes> (#2): null, v (#3): #4 [r × #n { #2: null }] }
        let mut v = Vec::new();
        crate::encode::push_header(&mut v, true, ty::TUPLE, 2);
        crate::encode::push_header(&mut v, true, ty::BUFFER, 255);
        v.extend([b'n'; 255]);
        v.extend([0x81, 0x00, 0x81, b'v']);
        crate::encode::push_header(&mut v, true, ty::VECTOR, r);
        for _ in 0..r {
            v.extend([0x91, 0x02, 0x81, 0x00]);
        }
        let mut d = Decoder::new();
        d.record(&v, Encoding::V5).unwrap();
        let root = d.root().unwrap();
        let Value::Vector(items) = &root[&b"v"[..]] else {
            panic!("not a vector")
        };
        assert_eq!(items.len(), r as usize);
    }

    /// A tuple graph as the kernel holds it in memory, and its log encoder: a port of
    /// `encode_tuple_internal`, `encode_eav` and `encode_symbol` (nanos 0.1.55,
    /// `src/runtime/tuple.c`), so that records come out as the kernel writes them.
    #[derive(Default)]
    struct Kernel {
        tuples: Vec<Vec<(Vec<u8>, K)>>,
        symbols: std::collections::HashMap<Vec<u8>, u64>,
        indices: std::collections::HashMap<usize, u64>,
        count: u64,
    }

    #[derive(Clone, Copy)]
    enum K {
        T(usize),
        Int(u64),
    }

    impl Kernel {
        fn tuple(&mut self, entries: &[(&str, K)]) -> usize {
            self.tuples.push(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), *v))
                    .collect(),
            );
            self.tuples.len() - 1
        }

        fn get(&self, t: usize, key: &str) -> Option<K> {
            let e = self.tuples[t].iter().find(|(k, _)| k == key.as_bytes());
            e.map(|(_, v)| *v)
        }

        fn set(&mut self, t: usize, key: &str, v: K) {
            match self.tuples[t].iter_mut().find(|(k, _)| k == key.as_bytes()) {
                Some(e) => e.1 = v,
                None => self.tuples[t].push((key.as_bytes().to_vec(), v)),
            }
        }

        /// `fixup_directory` (`src/fs/tfs.c`): `..` on every directory, recursively.
        fn fixup_directory(&mut self, parent: usize, n: usize) {
            if let Some(K::T(c)) = self.get(n, "children") {
                for (_, v) in self.tuples[c].clone() {
                    if let K::T(child) = v {
                        self.fixup_directory(n, child);
                    }
                }
                self.set(n, "..", K::T(parent));
            }
        }

        fn next_index(&mut self) -> u64 {
            self.count += 1;
            self.count
        }

        fn symbol(&mut self, out: &mut Vec<u8>, name: &[u8]) {
            if let Some(&i) = self.symbols.get(name) {
                encode::push_header(out, false, ty::BUFFER, i);
            } else {
                encode::push_header(out, true, ty::BUFFER, name.len() as u64);
                out.extend_from_slice(name);
                let i = self.next_index();
                self.symbols.insert(name.to_vec(), i);
            }
        }

        fn encode_tuple(&mut self, out: &mut Vec<u8>, t: usize, visited: &mut Vec<usize>) {
            let count = if visited.contains(&t) {
                0
            } else {
                self.tuples[t].len()
            };
            if let Some(&i) = self.indices.get(&t) {
                encode::push_header(out, false, ty::TUPLE, count as u64);
                varint::push(out, i);
            } else {
                encode::push_header(out, true, ty::TUPLE, count as u64);
                let i = self.next_index();
                self.indices.insert(t, i);
            }
            if count > 0 {
                visited.push(t);
                for (k, v) in self.tuples[t].clone() {
                    self.symbol(out, &k);
                    self.encode_value(out, v, visited);
                }
            }
        }

        fn encode_value(&mut self, out: &mut Vec<u8>, v: K, visited: &mut Vec<usize>) {
            match v {
                K::T(t) => self.encode_tuple(out, t, visited),
                K::Int(n) => {
                    encode::push_header(out, true, ty::INTEGER, 0);
                    varint::push(out, n);
                }
            }
        }

        /// `log_write`: a whole tuple, as mkfs and a log rebuild write the root.
        fn write(&mut self, t: usize) -> Vec<u8> {
            let mut out = Vec::new();
            self.encode_tuple(&mut out, t, &mut Vec::new());
            out
        }

        /// `log_write_eav` (`encode_eav`): `e.a = v` as one record, then set in memory.
        fn write_eav(&mut self, e: usize, a: &str, v: K) -> Vec<u8> {
            let mut out = Vec::new();
            match self.indices.get(&e) {
                Some(&i) => {
                    encode::push_header(&mut out, false, ty::TUPLE, 1);
                    varint::push(&mut out, i);
                }
                None => {
                    encode::push_header(&mut out, true, ty::TUPLE, 1);
                    let i = self.next_index();
                    self.indices.insert(e, i);
                }
            }
            self.symbol(&mut out, a.as_bytes());
            self.encode_value(&mut out, v, &mut vec![e]);
            self.set(e, a, v);
            out
        }
    }

    fn tuple<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Tuple(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    fn dir<const N: usize>(entries: [(&str, Value); N]) -> Value {
        tuple([("children", tuple(entries))])
    }

    /// A kernel-side volume: root { children: { a: { children: { b: { children: { f } } } },
    /// c: { children: {} } } }, written by mkfs (one record, no `..`), then mounted
    /// (`fixup_directory(root, root)`) and `f` opened from `b` (its `..` is `b`).
    /// Returns the kernel, the records so far, and (root, c's children, f).
    fn mounted_volume(extents: u64) -> (Kernel, Vec<Vec<u8>>, [usize; 3]) {
        let mut k = Kernel::default();
        let ext: Vec<(String, usize)> = (0..extents)
            .map(|i| {
                let e = k.tuple(&[
                    ("length", K::Int(1)),
                    ("allocated", K::Int(1)),
                    ("offset", K::Int(100 + i)),
                ]);
                (i.to_string(), e)
            })
            .collect();
        let ext: Vec<(&str, K)> = ext.iter().map(|(n, e)| (n.as_str(), K::T(*e))).collect();
        let extents_t = k.tuple(&ext);
        let f = k.tuple(&[
            ("extents", K::T(extents_t)),
            ("filelength", K::Int(512 * extents)),
        ]);
        let bc = k.tuple(&[("f", K::T(f))]);
        let b = k.tuple(&[("children", K::T(bc))]);
        let ac = k.tuple(&[("b", K::T(b))]);
        let a = k.tuple(&[("children", K::T(ac))]);
        let cc = k.tuple(&[]);
        let c = k.tuple(&[("children", K::T(cc))]);
        let rc = k.tuple(&[("a", K::T(a)), ("c", K::T(c))]);
        let root = k.tuple(&[("children", K::T(rc))]);
        let records = vec![k.write(root)];
        k.fixup_directory(root, root);
        k.set(f, "..", K::T(b)); // fs_notify_event(f, b, IN_OPEN)
        (k, records, [root, cc, f])
    }

    /// `tfs_link`: `name` in the directory whose children are `cc` becomes `f`, then the
    /// new `nlink` is written.
    fn link(k: &mut Kernel, cc: usize, name: &str, f: usize, nlink: u64) -> Vec<Vec<u8>> {
        k.set(f, "nlink", K::Int(nlink)); // set before by the caller of fs->link
        vec![
            k.write_eav(cc, name, K::T(f)),
            k.write_eav(f, "nlink", K::Int(nlink)),
        ]
    }

    fn decode_records(records: &[Vec<u8>]) -> (Decoder, Result<Tuple, DecodeError>) {
        let mut d = Decoder::new();
        for r in records {
            d.record(r, Encoding::V5).unwrap();
        }
        let root = d.root();
        (d, root)
    }

    /// A hard link made by the kernel to a file it has opened: the record carries the file
    /// with its `..` → `b` with all its entries → `a` → the root, whose `..` is itself.
    #[test]
    fn kernel_parent_links_are_left_out() {
        let (mut k, mut records, [_, cc, f]) = mounted_volume(1);
        records.extend(link(&mut k, cc, "g", f, 2));
        let (d, root) = decode_records(&records);
        // The replayed dictionary does hold the back-references: root, a, b, c and f.
        let with_parent = d.tuples.iter().filter(|t| t.contains_key(PARENT)).count();
        assert_eq!(with_parent, 5);
        let file = tuple([
            (
                "extents",
                tuple([(
                    "0",
                    tuple([
                        ("allocated", Value::Integer(1)),
                        ("length", Value::Integer(1)),
                        ("offset", Value::Integer(100)),
                    ]),
                )]),
            ),
            ("filelength", Value::Integer(512)),
            ("nlink", Value::Integer(2)),
        ]);
        let expected = dir([
            ("a", dir([("b", dir([("f", file.clone())]))])),
            ("c", dir([("g", file)])),
        ]);
        assert_eq!(Value::Tuple(root.unwrap()), expected);
    }

    /// `fixup_directory(root, root)`: the root's `..` is the root.
    #[test]
    fn the_roots_parent_link_to_itself() {
        // #1 { ".." (#2): ref #1 with no entries, x (#3): 1 }
        let t = decode(&[0x92, 0x82, b'.', b'.', 0x10, 0x01, 0x81, b'x', 0xB0, 0x01]).unwrap();
        assert_eq!(Value::Tuple(t), tuple([("x", Value::Integer(1))]));
        // the same given later by reference, as the kernel writes it
        let mut d = Decoder::new();
        d.record(&[0x90], Encoding::V5).unwrap();
        d.record(&[0x11, 0x01, 0x82, b'.', b'.', 0x10, 0x01], Encoding::V5)
            .unwrap();
        assert_eq!(d.root().unwrap(), Tuple::new());
    }

    /// `..` pointing anywhere else (a descendant, an unrelated tuple) is not followed either,
    /// but its entries are still applied to the dictionary.
    #[test]
    fn parent_links_are_never_followed() {
        // #1 { d (#2): #3 { ".." (#4): ref #5 = new #5 { y (#6): ref #3 } }, u (#7): ref #5 }:
        // `d..` goes to #5, whose `y` leads back to #3: a cycle only through `..`.
        let mut r = vec![0x92, 0x81, b'd', 0x91, 0x82, b'.', b'.'];
        r.extend([0x91, 0x81, b'y', 0x10, 0x03, 0x81, b'u', 0x10, 0x05]);
        let t = decode(&r).unwrap();
        assert_eq!(
            Value::Tuple(t),
            tuple([("d", tuple([])), ("u", tuple([("y", tuple([]))])),])
        );
        // #1 { "..": #2 { a (#4): #5 { } } } then #1 { b (#6): ref #5 }: the entry carried
        // inside `..` defined #5, which the root then uses.
        let mut d = Decoder::new();
        d.record(
            &[0x91, 0x82, b'.', b'.', 0x91, 0x81, b'a', 0x90],
            Encoding::V5,
        )
        .unwrap();
        d.record(&[0x11, 0x01, 0x81, b'b', 0x10, 0x05], Encoding::V5)
            .unwrap();
        assert_eq!(Value::Tuple(d.root().unwrap()), tuple([("b", tuple([]))]));
    }

    #[test]
    fn cycles_through_other_keys_are_still_errors() {
        // #1 { a (#2): #3 { "..": ref #1, b (#5): ref #3 } }: `..` is fine, `b` is a cycle
        let r = [
            0x91, 0x81, b'a', 0x92, 0x82, b'.', b'.', 0x10, 0x01, 0x81, b'b', 0x10, 0x03,
        ];
        assert_eq!(decode(&r), Err(DecodeError::Cycle));
        // a vector under `..` is an ordinary value: #1 { "..": #3 [ref #1] }
        assert_eq!(
            decode(&[0x91, 0x82, b'.', b'.', 0xA1, 0x10, 0x01]),
            Err(DecodeError::Cycle)
        );
        // In a `children` tuple `..` names a directory entry: #1 { children (#2):
        // #3 { "..": ref #1 } } is a cycle.
        let mut r = vec![0x91, 0x88, 0x08];
        r.extend_from_slice(b"children");
        r.extend([0x91, 0x82, b'.', b'.', 0x10, 0x01]);
        assert_eq!(decode(&r), Err(DecodeError::Cycle));
        // ... and an entry named `..` that is no cycle is kept, for the tree reader to judge.
        let mut r = vec![0x91, 0x88, 0x08];
        r.extend_from_slice(b"children");
        r.extend([0x91, 0x82, b'.', b'.', 0x90]);
        assert_eq!(Value::Tuple(decode(&r).unwrap()), dir([("..", tuple([]))]));
    }

    #[test]
    fn a_parent_key_with_another_value_is_ordinary() {
        // #1 { "..": "up", n: { "..": 7 } }
        let t = decode(&[
            0x92, 0x82, b'.', b'.', 0xC2, b'u', b'p', 0x81, b'n', 0x91, 0x02, 0xB0, 0x07,
        ])
        .unwrap();
        assert_eq!(
            Value::Tuple(t),
            tuple([
                ("..", Value::string("up")),
                ("n", tuple([("..", Value::Integer(7))])),
            ])
        );
    }

    /// Parent links cost nothing to skip, and do not open a way around the budgets.
    #[test]
    fn hostile_parent_links_stay_within_budgets() {
        let reference = |index: u64| {
            let mut v = Vec::new();
            encode::push_header(&mut v, false, ty::TUPLE, 0);
            varint::push(&mut v, index);
            v
        };
        // 40 levels, each { "..", a, b: the level below }: 2^40 values through `a` and `b`.
        let mut d = Decoder::new();
        d.record(&[0x90], Encoding::V5).unwrap(); // #1: the root
        d.record(&[0x90], Encoding::V5).unwrap(); // #2: the bottom level
        let mut r = vec![0x93, 0x82, b'.', b'.', 0x10, 0x02, 0x81, b'a', 0x10, 0x02];
        r.extend([0x81, b'b', 0x10, 0x02]);
        d.record(&r, Encoding::V5).unwrap(); // #3 { ".." (#4), a (#5), b (#6): #2 }
        let mut prev = 3;
        for level in 0..40 {
            let mut r = vec![0x93];
            for key in [0x04, 0x05, 0x06] {
                r.push(key);
                r.extend(reference(prev));
            }
            d.record(&r, Encoding::V5).unwrap();
            prev = 7 + level;
        }
        let mut top = vec![0x11, 0x01, 0x81, b'x'];
        top.extend(reference(prev));
        d.record(&top, Encoding::V5).unwrap();
        assert!(matches!(d.root(), Err(DecodeError::TooLarge(_))));

        // The same with `..` only: nothing is followed, so it is small.
        let mut d = Decoder::new();
        d.record(&[0x90], Encoding::V5).unwrap(); // #1
        d.record(&[0x91, 0x82, b'.', b'.', 0x10, 0x01], Encoding::V5)
            .unwrap(); // #2 { ".." (#3): #1 }
        let mut prev = 2;
        for level in 0..40 {
            let mut r = vec![0x91, 0x03];
            r.extend(reference(prev));
            d.record(&r, Encoding::V5).unwrap();
            prev = 4 + level;
        }
        let mut top = vec![0x11, 0x01, 0x81, b'x'];
        top.extend(reference(prev));
        d.record(&top, Encoding::V5).unwrap();
        assert_eq!(Value::Tuple(d.root().unwrap()), tuple([("x", tuple([]))]));

        // 100,000 tuples with `..` → the root and `..` → each other, all in the tree.
        let n = 100_000u64;
        let mut r = Vec::new();
        encode::push_header(&mut r, true, ty::TUPLE, 2);
        r.extend([0x82, b'.', b'.', 0x10, 0x01, 0x81, b'v']); // #2 "..", #3 "v"
        encode::push_header(&mut r, true, ty::VECTOR, n); // #4
        for i in 0..n {
            // #(5 + i) { "..": ref #1 or the previous one }
            r.push(0x91);
            r.push(0x02);
            r.extend(reference(if i == 0 { 1 } else { 4 + i }));
        }
        let (_, root) = decode_records(&[r]);
        let root = root.unwrap();
        let Value::Vector(items) = &root[&b"v"[..]] else {
            panic!("not a vector")
        };
        assert!(items.iter().all(|v| *v == tuple([])));

        // `..` nested deeper than MAX_DEPTH in a record is still refused while decoding it.
        let mut r = vec![0x91, 0x82, b'.', b'.'];
        for _ in 0..2 * MAX_DEPTH {
            r.extend_from_slice(&[0x91, 0x02]);
        }
        r.push(0x90);
        assert!(matches!(decode(&r), Err(DecodeError::TooDeep { .. })));
    }

    /// Hard links: a file in many directories is copied into each, within the budget, both
    /// as the kernel writes the links (each record carries the file) and as a log rebuild
    /// does (one full copy, then references with no entries).
    #[test]
    fn a_hundred_hard_links_decode() {
        let (mut k, mut records, [_, cc, f]) = mounted_volume(16);
        for i in 0..100 {
            records.extend(link(&mut k, cc, &format!("l{i}"), f, 2 + i));
        }
        let (_, root) = decode_records(&records);
        let root = Value::Tuple(root.unwrap());
        let c = &root.as_tuple().unwrap()[&b"children"[..]]
            .as_tuple()
            .unwrap()[&b"c"[..]];
        let links = c.as_tuple().unwrap()[&b"children"[..]].as_tuple().unwrap();
        assert_eq!(links.len(), 100);
        assert!(links
            .values()
            .all(|v| v.as_tuple().unwrap()[&b"extents"[..]]
                .as_tuple()
                .unwrap()
                .len()
                == 16));

        // The rebuilt log (`filesystem_log_rebuild`: `cleanup_directory`, then one record
        // of the root in a new dictionary): 100 links to a file of 500 extents.
        let (mut k, _, [root, cc, f]) = mounted_volume(500);
        for i in 0..100 {
            k.set(cc, &format!("l{i}"), K::T(f));
        }
        k.set(f, "nlink", K::Int(101));
        for t in &mut k.tuples {
            t.retain(|(key, _)| key != PARENT);
        }
        k.indices.clear();
        k.symbols.clear();
        k.count = 0;
        let record = k.write(root);
        assert!(record.len() < 12_000, "{}", record.len());
        let (_, root) = decode_records(&[record]);
        let root = root.unwrap();
        let c = &root[&b"children"[..]].as_tuple().unwrap()[&b"c"[..]];
        let links = c.as_tuple().unwrap()[&b"children"[..]].as_tuple().unwrap();
        assert_eq!(links.len(), 100);
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 2..20).prop_map(Value::Buffer),
            (-(1i128 << 64) + 1..(1i128 << 64)).prop_map(Value::Integer),
            Just(Value::Null),
        ];
        leaf.prop_recursive(6, 200, 8, |inner| {
            prop_oneof![
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..6),
                    inner.clone(),
                    0..8
                )
                .prop_map(Value::Tuple),
                proptest::collection::vec(inner, 0..8).prop_map(Value::Vector),
            ]
        })
    }

    /// Found by the round-trip property: a `..` key with a tuple value is a parent link to
    /// readers, so the encoder refuses it; other `..` values are ordinary keys.
    #[test]
    fn parent_links_are_not_written_as_content() {
        let mut root = Tuple::new();
        root.insert(b"..".to_vec(), Value::Tuple(Tuple::new()));
        assert_eq!(encode(&root), Err(crate::EncodeError::ParentLink));
        let mut nested = Tuple::new();
        nested.insert(b"d".to_vec(), Value::Tuple(root));
        assert_eq!(encode(&nested), Err(crate::EncodeError::ParentLink));
        let mut ok = Tuple::new();
        ok.insert(b"..".to_vec(), Value::string("up"));
        assert_eq!(decode(&encode(&ok).unwrap()).unwrap(), ok);
    }

    proptest! {
        #[test]
        fn encode_then_decode_gives_the_same_tree(
            root in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..6), arb_value(), 0..10)
        ) {
            // Everything the encoder accepts reads back the same; it refuses only the
            // kernel's parent links (`..` keys with tuple values), which readers leave out.
            match encode(&root) {
                Ok(bytes) => prop_assert_eq!(decode(&bytes).unwrap(), root),
                Err(e) => prop_assert_eq!(e, crate::EncodeError::ParentLink),
            }
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut d = Decoder::new();
            if d.record(&bytes, Encoding::V5).is_ok() {
                let _ = d.root();
            }
            let mut d = Decoder::new();
            if d.record(&bytes, Encoding::V4).is_ok() {
                let _ = d.root();
            }
        }
    }
}
