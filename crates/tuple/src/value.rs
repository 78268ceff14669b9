use std::collections::BTreeMap;

/// A tuple: symbol keys (arbitrary bytes) to values, in bytewise key order.
pub type Tuple = BTreeMap<Vec<u8>, Value>;

/// One value of the Nanos tuple model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A map from symbols to values (directories, files, extents, the manifest...).
    Tuple(Tuple),
    /// An ordered list (`arguments`, `notrace`...).
    Vector(Vec<Value>),
    /// A string (v5 type 4). What nanoimg writes for every textual value.
    String(Vec<u8>),
    /// An untyped buffer (v5 type 0 used as a value, or any v4 buffer). Non-empty: an
    /// empty untyped buffer is the encoding's "delete this key" marker.
    Buffer(Vec<u8>),
    /// An integer (v5 type 3), as written by Nanos's mkfs and kernel for extents and lengths.
    Integer(i128),
    /// The special `null_value`, a key that is present without a value (a flag).
    Null,
}

impl Value {
    /// A string value from anything byte-like.
    pub fn string(s: impl AsRef<[u8]>) -> Value {
        Value::String(s.as_ref().to_vec())
    }

    /// The tuple inside, if this is a tuple.
    pub fn as_tuple(&self) -> Option<&Tuple> {
        match self {
            Value::Tuple(t) => Some(t),
            _ => None,
        }
    }

    /// The bytes of a textual value (string, or untyped buffer as older writers use).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::String(b) | Value::Buffer(b) => Some(b),
            _ => None,
        }
    }

    /// A non-negative number, whether written as an integer (mkfs, nanoimg) or as a decimal
    /// string (ops), the way the kernel's `u64_from_value` accepts both.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Integer(i) => u64::try_from(*i).ok(),
            Value::String(b) | Value::Buffer(b) => {
                if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                std::str::from_utf8(b).ok()?.parse().ok()
            }
            _ => None,
        }
    }
}
