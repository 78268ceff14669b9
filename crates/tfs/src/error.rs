use std::path::PathBuf;

use nanoimg_tuple::{DecodeError, EncodeError};

/// A tree that cannot be built as asked.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("invalid path {path:?} in the image: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{path:?} is already in the image")]
    Exists { path: String },
    #[error("cannot create {path:?} in the image: {parent:?} is not a directory")]
    NotADirectory { path: String, parent: String },
}

/// A volume that cannot be planned or written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("volume label {label:?} is longer than {max} bytes or contains a NUL byte", max = crate::MAX_LABEL_LEN)]
    BadLabel { label: String },
    #[error("manifest key {key:?} is reserved for the filesystem tree")]
    ReservedKey { key: String },
    #[error("cannot encode the filesystem metadata: {0}")]
    Encode(#[from] EncodeError),
    #[error("cannot read {path}: {source}")]
    ReadSource {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} changed while the image was written (expected {expected} bytes)")]
    SourceChanged { path: PathBuf, expected: u64 },
    #[error("cannot write the image: {0}")]
    Output(std::io::Error),
}

/// A volume that cannot be read. Positions are byte offsets from the start of the volume.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the volume at byte {offset}: {source}")]
    Io { offset: u64, source: std::io::Error },
    #[error("no TFS filesystem: the log extension at byte {offset} does not start with NVMTFS")]
    BadMagic { offset: u64 },
    #[error("unsupported TFS version {version} at byte {offset} (Nanos reads 4 and 5)")]
    UnsupportedVersion { version: u64, offset: u64 },
    #[error("bad volume label: no NUL within 32 bytes")]
    BadLabel,
    #[error("unknown log frame byte 0x{byte:02x} at byte {offset}")]
    UnknownFrame { byte: u8, offset: u64 },
    #[error("bad log frame at byte {offset}: {reason}")]
    BadFrame { offset: u64, reason: &'static str },
    #[error("log extension link at byte {offset} points to sectors {sector}..{end}, outside the {volume_sectors}-sector volume")]
    LinkOutOfRange {
        offset: u64,
        sector: u64,
        end: u64,
        volume_sectors: u64,
    },
    #[error("log extension link at byte {offset} points back to the extension at sector {sector}")]
    LinkLoop { offset: u64, sector: u64 },
    #[error("bad metadata record ending at byte {offset}: {source}")]
    Decode { offset: u64, source: DecodeError },
    #[error("bad metadata: {0}")]
    Root(DecodeError),
    #[error("bad node {path:?}: {reason}")]
    BadNode { path: String, reason: String },
}
