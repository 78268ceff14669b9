//! Seeing inside Nanos images: [`inspect`] describes one (partitions, boot filesystem,
//! manifest, files), [`diff`] says why two differ, [`extract`] writes a root tree out,
//! [`contents`] lists what it holds for a bill of materials (every file's SHA-256 and
//! SHA-1, small root files read by path).
//!
//! Everything goes through the validating readers of `nanoimg-disk` and `nanoimg-tfs`, so a
//! hostile image is an error, never a panic; this crate adds the policy on top: file lengths
//! beyond what the volume could plausibly hold are refused before anything is hashed or
//! written, and extraction never writes outside its target folder.

mod contents;
mod diff;
mod extract;
mod report;

pub use contents::{contents, ContentFile, Contents};
pub use diff::{diff, Change, Diff};
pub use extract::{extract, ExtractStats};
pub use report::{inspect, FileInfo, FsReport, InspectError, PartitionInfo, Report};
