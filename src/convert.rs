//! `nanoimg convert`: the raw image held in one disk format, written in another through the
//! writers a build uses.

use std::path::{Path, PathBuf};

use nanoimg_disk::Format;
use nanoimg_stream::{ImageWriter, CHUNK};

use crate::{image_sums, write_atomically, BuildError, Sums};

/// What [`convert`] wrote.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    pub output: PathBuf,
    /// The container read and the one written.
    pub from: Format,
    pub format: Format,
    /// Size of the file written.
    pub file_size: u64,
    /// Size of the raw image (the same in input and output).
    pub raw_size: u64,
    /// Bytes of the raw image read: those of the input's allocated ranges (the rest was
    /// given to the writer as holes without being read), and how many ranges.
    pub data: u64,
    pub ranges: usize,
    /// The sums of the file written and of the raw image, when asked for.
    pub file: Option<Sums>,
    pub raw: Option<Sums>,
    /// What the reader noticed about the input (`VirtualDisk::notes`), one line each.
    pub notes: Vec<String>,
}

/// Why an image cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Read(#[from] nanoimg_vdisk::VdiskError),
    #[error("{path}: cannot read the raw image at byte {offset}: {source}")]
    ReadAt {
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
    #[error("{path}: cannot write the {format} image: {source}")]
    Write {
        path: PathBuf,
        format: Format,
        source: std::io::Error,
    },
}

/// Copies the raw image held in `input` (any format `nanoimg-vdisk` reads: a raw image or
/// volume, qcow2, VHD, VMDK, VHDX, a GCE tar) into `output` in `format`, streaming, through
/// the same writers a build uses, so a converted image has the bytes a direct build would.
/// Nothing is left at `output` unless the whole file was written.
///
/// Only the input's allocated ranges (`VirtualDisk::allocated`: its own map, or the file's
/// extents) are read; the rest goes to the writer as holes, so the work follows the data
/// stored, not the size a header claims, and the output is as sparse as the format allows.
/// With `sums`, the SHA-256 and BLAKE3 of the file and of the raw image are computed as
/// well: those cover every byte, holes included, so they cost time in proportion to the
/// disk's size (as they do for VMDK, VHD and VHDX output, whose identifiers are derived from
/// the raw image's SHA-256).
pub fn convert(
    input: &Path,
    output: &Path,
    format: Format,
    sums: bool,
) -> Result<ConvertReport, BuildError> {
    let disk = nanoimg_vdisk::open(input).map_err(ConvertError::from)?;
    if output.is_dir() {
        return Err(BuildError::OutputIsDir {
            path: output.to_path_buf(),
        });
    }
    let ranges = disk.allocated().map_err(|source| ConvertError::ReadAt {
        path: input.to_path_buf(),
        offset: 0,
        source,
    })?;
    let input = Input {
        path: input,
        disk,
        ranges,
    };
    let size = input.disk.size();
    let write_err = |source| ConvertError::Write {
        path: output.to_path_buf(),
        format,
        source,
    };
    let survey = match format.needs_survey() {
        true => Some(survey_of_disk(input.path, size, |each| input.pieces(each))?),
        false => None,
    };
    // The raw image is hashed for --sums, and for VHD, whose unique id derives from its
    // SHA-256: those hashes cover every byte, holes included.
    let hash = sums || format.id_from_raw_sha256();
    let (file_size, sums) = write_atomically(output, |file| {
        let out = file.try_clone().map_err(write_err)?;
        let sink = nanoimg_vdisk::writer(format, out, size, survey).map_err(write_err)?;
        let writer = match hash {
            true => ImageWriter::with_sink(sink, false),
            false => ImageWriter::with_sink_unhashed(sink, false),
        };
        let digests = input.feed(writer.map_err(write_err)?, &write_err)?;
        let file_size = file.metadata().map_err(write_err)?.len();
        Ok((file_size, sums.then(|| image_sums(size, true, &digests))))
    })?;
    let (file, raw) = sums.unzip();
    Ok(ConvertReport {
        output: output.to_path_buf(),
        from: input.disk.format(),
        format,
        file_size,
        raw_size: size,
        data: input.ranges.iter().map(|r| r.end - r.start).sum(),
        ranges: input.ranges.len(),
        file,
        raw: raw.flatten(),
        notes: input.disk.notes(),
    })
}

/// The disk being converted, and the ranges of its raw image that hold data.
struct Input<'a> {
    path: &'a Path,
    disk: Box<dyn nanoimg_vdisk::VirtualDisk>,
    ranges: Vec<std::ops::Range<u64>>,
}

impl Input<'_> {
    /// Calls `each` with the allocated ranges' bytes, in pieces that end on CHUNK
    /// boundaries of the raw image.
    fn pieces(&self, each: &mut EachPiece) -> Result<(), ConvertError> {
        let mut buf = vec![0u8; CHUNK];
        for r in &self.ranges {
            let mut at = r.start;
            while at < r.end {
                let to = r.end.min((at / CHUNK as u64 + 1) * CHUNK as u64);
                let piece = &mut buf[..(to - at) as usize];
                self.disk
                    .read_exact_at(piece, at)
                    .map_err(|source| ConvertError::ReadAt {
                        path: self.path.to_path_buf(),
                        offset: at,
                        source,
                    })?;
                each(at, piece)?;
                at = to;
            }
        }
        Ok(())
    }

    /// Hands the allocated ranges to `w` (the rest as holes) and finishes it.
    fn feed(
        &self,
        mut w: ImageWriter<'_>,
        write_err: &dyn Fn(std::io::Error) -> ConvertError,
    ) -> Result<nanoimg_stream::Digests, ConvertError> {
        self.pieces(&mut |at, data| {
            w.pad_to(at).map_err(write_err)?;
            if nanoimg_vdisk::is_zero(data) {
                w.zeros(data.len() as u64)
            } else {
                w.write(data)
            }
            .map_err(write_err)
        })?;
        w.pad_to(self.disk.size()).map_err(write_err)?;
        w.finish().map_err(write_err)
    }
}

/// What `convert` calls with each piece of the input's allocated bytes, in order.
type EachPiece<'a> = dyn FnMut(u64, &[u8]) -> Result<(), ConvertError> + 'a;

/// The survey of the image at `input` (`size` bytes), whose allocated bytes `pieces` gives:
/// where a Nanos image's files lie comes from its filesystems, so the survey is the one its
/// build had and the converted file has a build's bytes; any other disk has no files, and
/// its survey maps the blocks with a non-zero byte.
fn survey_of_disk(
    input: &Path,
    size: u64,
    pieces: impl FnOnce(&mut EachPiece) -> Result<(), ConvertError>,
) -> Result<nanoimg_vdisk::Survey, ConvertError> {
    let mut surveyor = nanoimg_vdisk::Surveyor::new();
    // Not a Nanos image, or one whose filesystems cannot be read: a disk without files.
    let files = nanoimg_disk::DiskImage::open(input)
        .and_then(|image| image.file_data())
        .unwrap_or_default();
    for range in files {
        surveyor.file(range);
    }
    pieces(&mut |at, data| {
        surveyor.bytes(at, data);
        Ok(())
    })?;
    Ok(surveyor.finish(size))
}
