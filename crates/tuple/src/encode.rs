use std::collections::HashMap;

use crate::value::{Tuple, Value};
use crate::{ty, varint, MAX_DEPTH};

/// Why a value cannot be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// An untyped buffer that the encoding reserves: empty means "delete the key" and a single
    /// zero byte means `null_value`.
    #[error("an untyped buffer value of {0:?} cannot be encoded (reserved by the tuple encoding)")]
    ReservedBuffer(Vec<u8>),
    /// Integers are written as a sign and a 64-bit magnitude.
    #[error("integer {0} does not fit the tuple encoding (sign and 64-bit magnitude)")]
    IntegerOutOfRange(i128),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("values nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A `..` key whose value is a tuple: the kernel's parent link, which readers (Nanos's
    /// and nanoimg's [`crate::Decoder`]) leave out of the tree, so it cannot be written as
    /// content.
    #[error("a \"..\" key with a tuple value cannot be encoded (it is the kernel's parent link)")]
    ParentLink,
}

/// Writes values in the TFS v5 encoding, sharing one symbol dictionary across everything it
/// writes (the dictionary of a TFS log spans all of its records).
///
/// Dictionary indices are 1-based and assigned in order of appearance to every immediate
/// tuple, vector and symbol. A symbol already written is referenced by index afterwards, as
/// Nanos's own writers do.
#[derive(Debug)]
pub struct Encoder {
    out: Vec<u8>,
    // Only ever looked up, never iterated, so the map type does not affect the output.
    symbols: HashMap<Vec<u8>, u64>,
    next_index: u64,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            out: Vec::new(),
            symbols: HashMap::new(),
            next_index: 1,
        }
    }
}

impl Encoder {
    /// An encoder for a new log: the first immediate tuple written gets index 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one value.
    pub fn value(&mut self, v: &Value) -> Result<(), EncodeError> {
        self.value_at(v, 0)
    }

    /// Appends an immediate tuple.
    pub fn tuple(&mut self, t: &Tuple) -> Result<(), EncodeError> {
        self.tuple_at(t, 0)
    }

    /// The bytes written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// Takes the bytes written so far, keeping the dictionary for later records.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn assign_index(&mut self) -> u64 {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    /// Starts an immediate tuple of `len` entries, for writing one piece by piece: follow it
    /// with exactly `len` pairs of [`symbol`](Self::symbol) and a value, keys in ascending
    /// bytewise order. The caller bounds the nesting ([`MAX_DEPTH`]).
    pub fn begin_tuple(&mut self, len: usize) {
        push_header(&mut self.out, true, ty::TUPLE, len as u64);
        self.assign_index();
    }

    /// Appends a string value.
    pub fn string(&mut self, s: &[u8]) {
        push_header(&mut self.out, true, ty::STRING, s.len() as u64);
        self.out.extend_from_slice(s);
    }

    /// Appends a non-negative integer value.
    pub fn integer(&mut self, n: u64) {
        push_header(&mut self.out, true, ty::INTEGER, 0);
        varint::push(&mut self.out, n);
    }

    /// Appends a key (a symbol): by index if it was written before, else in full.
    pub fn symbol(&mut self, name: &[u8]) {
        if let Some(&index) = self.symbols.get(name) {
            push_header(&mut self.out, false, ty::BUFFER, index);
        } else {
            push_header(&mut self.out, true, ty::BUFFER, name.len() as u64);
            self.out.extend_from_slice(name);
            let index = self.assign_index();
            self.symbols.insert(name.to_vec(), index);
        }
    }

    fn tuple_at(&mut self, t: &Tuple, depth: usize) -> Result<(), EncodeError> {
        if depth >= MAX_DEPTH {
            return Err(EncodeError::TooDeep);
        }
        if matches!(t.get(&b".."[..]), Some(Value::Tuple(_))) {
            return Err(EncodeError::ParentLink);
        }
        self.begin_tuple(t.len());
        for (k, v) in t {
            self.symbol(k);
            self.value_at(v, depth + 1)?;
        }
        Ok(())
    }

    fn value_at(&mut self, v: &Value, depth: usize) -> Result<(), EncodeError> {
        match v {
            Value::Tuple(t) => self.tuple_at(t, depth)?,
            Value::Vector(items) => {
                if depth >= MAX_DEPTH {
                    return Err(EncodeError::TooDeep);
                }
                push_header(&mut self.out, true, ty::VECTOR, items.len() as u64);
                self.assign_index();
                for item in items {
                    self.value_at(item, depth + 1)?;
                }
            }
            Value::String(s) => self.string(s),
            Value::Buffer(b) => {
                if b.is_empty() || b.as_slice() == [0] {
                    return Err(EncodeError::ReservedBuffer(b.clone()));
                }
                push_header(&mut self.out, true, ty::BUFFER, b.len() as u64);
                self.out.extend_from_slice(b);
            }
            Value::Integer(i) => {
                let magnitude = u64::try_from(i.unsigned_abs())
                    .map_err(|_| EncodeError::IntegerOutOfRange(*i))?;
                push_header(&mut self.out, true, ty::INTEGER, u64::from(*i < 0));
                varint::push(&mut self.out, magnitude);
            }
            Value::Null => {
                push_header(&mut self.out, true, ty::BUFFER, 1);
                self.out.push(0);
            }
        }
        Ok(())
    }
}

/// Encodes `root` as the first (and only) value of a new log: the root gets index 1.
pub fn encode(root: &Tuple) -> Result<Vec<u8>, EncodeError> {
    let mut e = Encoder::new();
    e.tuple(root)?;
    Ok(e.take_bytes())
}

/// Appends a v5 value header: immediate bit, 3-bit type, and the length `len` with its top
/// 3 bits in the first byte and 7 bits in each following byte, most significant first.
pub(crate) fn push_header(out: &mut Vec<u8>, immediate: bool, ty: u8, len: u64) {
    let bits = 64 - len.leading_zeros();
    let words = if bits <= 3 { 0 } else { (bits - 3).div_ceil(7) };
    let mut first = (u8::from(immediate) << 7) | (ty << 4);
    if words > 0 {
        first |= 0x08;
    }
    first |= (len >> (7 * words)) as u8 & 0x07;
    out.push(first);
    for i in (0..words).rev() {
        let mut b = ((len >> (7 * i)) & 0x7f) as u8;
        if i > 0 {
            b |= 0x80;
        }
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(imm: bool, t: u8, len: u64) -> Vec<u8> {
        let mut v = Vec::new();
        push_header(&mut v, imm, t, len);
        v
    }

    #[test]
    fn header_forms() {
        assert_eq!(header(true, ty::BUFFER, 5), [0x85]);
        assert_eq!(header(true, ty::BUFFER, 9), [0x88, 0x09]);
        assert_eq!(header(true, ty::TUPLE, 4), [0x94]);
        assert_eq!(header(true, ty::STRING, 8), [0xC8, 0x08]);
        assert_eq!(header(false, ty::BUFFER, 4), [0x04]);
        assert_eq!(header(true, ty::STRING, 1000), [0xCF, 0x68]);
        assert_eq!(header(true, ty::STRING, 1024), [0xC8, 0x88, 0x00]);
        assert_eq!(header(true, ty::BUFFER, 131071), [0x8F, 0xFF, 0x7F]);
    }

    /// The worked example of nanos-image-format.md §2.9, byte for byte.
    #[test]
    fn worked_example_from_the_format_document() {
        let s = Value::string;
        let mut extent = Tuple::new();
        extent.insert(b"allocated".to_vec(), s("1"));
        extent.insert(b"length".to_vec(), s("1"));
        extent.insert(b"offset".to_vec(), s("1025"));
        let mut extents = Tuple::new();
        extents.insert(b"0".to_vec(), Value::Tuple(extent));
        let mut app = Tuple::new();
        app.insert(b"extents".to_vec(), Value::Tuple(extents));
        app.insert(b"filelength".to_vec(), s("13"));
        let mut bin_children = Tuple::new();
        bin_children.insert(b"app".to_vec(), Value::Tuple(app));
        let mut bin = Tuple::new();
        bin.insert(b"children".to_vec(), Value::Tuple(bin_children));
        let mut lnk = Tuple::new();
        lnk.insert(b"linktarget".to_vec(), s("bin/app"));
        let mut children = Tuple::new();
        children.insert(b"bin".to_vec(), Value::Tuple(bin));
        children.insert(b"lnk".to_vec(), Value::Tuple(lnk));
        let mut env = Tuple::new();
        env.insert(b"HOME".to_vec(), s("/"));
        let mut root = Tuple::new();
        root.insert(
            b"arguments".to_vec(),
            Value::Vector(vec![s("app"), s("-v")]),
        );
        root.insert(b"children".to_vec(), Value::Tuple(children));
        root.insert(b"environment".to_vec(), Value::Tuple(env));
        root.insert(b"program".to_vec(), s("/bin/app"));

        let mut expected = vec![0x94, 0x88, 0x09];
        expected.extend_from_slice(b"arguments");
        expected.extend_from_slice(&[0xA2, 0xC3]);
        expected.extend_from_slice(b"app");
        expected.push(0xC2);
        expected.extend_from_slice(b"-v");
        expected.extend_from_slice(&[0x88, 0x08]);
        expected.extend_from_slice(b"children");
        expected.extend_from_slice(&[0x92, 0x83]);
        expected.extend_from_slice(b"bin");
        expected.extend_from_slice(&[0x91, 0x04, 0x91, 0x83]);
        expected.extend_from_slice(b"app");
        expected.extend_from_slice(&[0x92, 0x87]);
        expected.extend_from_slice(b"extents");
        expected.extend_from_slice(&[0x91, 0x81, b'0', 0x93, 0x88, 0x09]);
        expected.extend_from_slice(b"allocated");
        expected.extend_from_slice(&[0xC1, b'1', 0x86]);
        expected.extend_from_slice(b"length");
        expected.extend_from_slice(&[0xC1, b'1', 0x86]);
        expected.extend_from_slice(b"offset");
        expected.extend_from_slice(&[0xC4]);
        expected.extend_from_slice(b"1025");
        expected.extend_from_slice(&[0x88, 0x0A]);
        expected.extend_from_slice(b"filelength");
        expected.extend_from_slice(&[0xC2]);
        expected.extend_from_slice(b"13");
        expected.push(0x83);
        expected.extend_from_slice(b"lnk");
        expected.extend_from_slice(&[0x91, 0x88, 0x0A]);
        expected.extend_from_slice(b"linktarget");
        expected.push(0xC7);
        expected.extend_from_slice(b"bin/app");
        expected.extend_from_slice(&[0x88, 0x0B]);
        expected.extend_from_slice(b"environment");
        expected.extend_from_slice(&[0x91, 0x84]);
        expected.extend_from_slice(b"HOME");
        expected.extend_from_slice(&[0xC1, b'/', 0x87]);
        expected.extend_from_slice(b"program");
        expected.extend_from_slice(&[0xC8, 0x08]);
        expected.extend_from_slice(b"/bin/app");

        let bytes = encode(&root).unwrap();
        assert_eq!(bytes.len(), 168, "the document's record is 168 bytes");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn reserved_buffers_and_huge_integers_are_refused() {
        let mut e = Encoder::new();
        assert_eq!(
            e.value(&Value::Buffer(vec![])),
            Err(EncodeError::ReservedBuffer(vec![]))
        );
        assert_eq!(
            e.value(&Value::Integer(i128::MAX)),
            Err(EncodeError::IntegerOutOfRange(i128::MAX))
        );
    }
}
