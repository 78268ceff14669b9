//! The Nanos tuple model and its binary encoding.
//!
//! Everything Nanos keeps in a TFS filesystem — the directory tree, file extents, and the
//! "manifest" (program, arguments, environment, flags) — is one tree of *tuples*: maps from
//! symbol (byte string) keys to values. This crate owns that model ([`Value`], [`Tuple`]) and
//! its on-disk encoding:
//!
//! - [`encode`] writes a value in the TFS v5 encoding, interning symbols in a dictionary the
//!   way the kernel expects (see `nanos-image-format.md` §2.7–2.8);
//! - [`Decoder`] reads records written by nanoimg, by Nanos's `mkfs`/kernel (which update
//!   tuples by reference) and by ops, in both the v5 and the deprecated v4 encoding. It never
//!   panics, never allocates more than the input justifies, and leaves out the `..` parent
//!   links the kernel writes (see "Parent links" on [`Decoder`]);
//! - [`print::nanos_dump`] prints a value exactly as Nanos's `dump` tool does.
//!
//! Tuples are `BTreeMap`s, so iteration — and therefore the encoding — is in bytewise key
//! order, which is what makes nanoimg's output reproducible.

mod decode;
mod encode;
pub mod print;
mod value;
pub mod varint;

pub use decode::{DecodeError, Decoder, Encoding};
pub use encode::{encode, EncodeError, Encoder};
pub use value::{Tuple, Value};

/// Deepest nesting of tuples and vectors that the encoder writes and the decoder accepts.
///
/// A directory level costs two tuples (the directory and its `children`), so this allows
/// paths of about 500 components (far deeper than real trees go) while keeping the
/// recursive encoder and decoder well inside a 2 MiB thread stack.
pub const MAX_DEPTH: usize = 1024;

/// Value types of the v5 header (bits 6..4).
pub(crate) mod ty {
    pub const BUFFER: u8 = 0;
    pub const TUPLE: u8 = 1;
    pub const VECTOR: u8 = 2;
    pub const INTEGER: u8 = 3;
    pub const STRING: u8 = 4;
}
