use nanoimg_stream::{CopyError, Digests, ImageWriter};
use nanoimg_tuple::{varint, EncodeError, Encoder, Tuple, MAX_DEPTH};
use sha2::{Digest, Sha256};

use crate::error::WriteError;
use crate::tree::{Dir, FileSource, Node};
use crate::{
    frame, DATA_START_SECTOR, LOG_EXTENSION_SECTORS, MAGIC, MAX_EXTENT_SECTORS, MAX_LABEL_LEN,
    SECTOR, TFS_VERSION,
};

const EXTENSION_BYTES: usize = (LOG_EXTENSION_SECTORS * SECTOR) as usize;
/// Worst-case size of a TUPLE_AVAILABLE header and of a link frame (1 + 2 varints of 10).
const FRAME_RESERVE: usize = 21;
/// Below this much room an extension is closed with a link (same rule as ops).
const MIN_ROOM: usize = FRAME_RESERVE + 32 + FRAME_RESERVE;

/// What to put in a volume.
#[derive(Clone, Copy, Debug)]
pub struct VolumeSpec<'a> {
    /// Volume label, at most 31 bytes ("" for the filesystems of a bootable image).
    pub label: &'a [u8],
    /// Filesystem UUID. `None` derives it from the volume's metadata (see [`plan`]).
    pub uuid: Option<[u8; 16]>,
    /// Mixed into a derived UUID, to tell apart volumes that would otherwise be identical.
    pub seed: &'a [u8],
    /// The directory tree.
    pub root: &'a Dir,
    /// Other keys of the root tuple (the manifest: `program`, `arguments`...). `children`
    /// is reserved for the tree.
    pub manifest: &'a Tuple,
}

/// An empty manifest, for volumes that hold only files.
static NO_MANIFEST: Tuple = Tuple::new();

impl<'a> VolumeSpec<'a> {
    /// A volume holding `root`, with no label, no manifest keys, no seed and a derived UUID;
    /// set other fields with `VolumeSpec { manifest: &m, ..VolumeSpec::new(&root) }`.
    pub fn new(root: &'a Dir) -> VolumeSpec<'a> {
        VolumeSpec {
            label: b"",
            uuid: None,
            seed: b"",
            root,
            manifest: &NO_MANIFEST,
        }
    }
}

/// A volume whose layout and metadata are fixed, ready to be written.
#[derive(Debug)]
pub struct PlannedVolume<'a> {
    uuid: [u8; 16],
    label: Vec<u8>,
    /// File data in write order: image path, first sector and source.
    files: Vec<(Vec<u8>, u64, &'a FileSource)>,
    /// Log extensions, in sector order (the first at sector 1): first sector and used bytes.
    extensions: Vec<(u64, Vec<u8>)>,
    end_sector: u64,
    data_sectors: u64,
}

/// Fixes the layout of a volume without reading any file data.
///
/// File data is placed contiguously from sector 1025 in the canonical order of
/// [`Dir::files`], each file split into extents of at most 32 MiB. The whole tree and manifest
/// become one metadata record, written to the log extension at sector 1 and, if it is larger
/// than one extension, continued in extensions placed right after the data. The record is
/// encoded while the tree is walked, so planning holds the encoded bytes, not a tuple tree.
///
/// Without a UUID in the spec, the UUID is the first 16 bytes of SHA-256 over
/// `"nanoimg tfs uuid v3" NUL seed NUL label NUL record`. The record holds every path, file
/// length, extent and manifest value, so the UUID changes with any of them; it does not
/// depend on the bytes inside files (they come after it in the image and are hashed while
/// they stream, see `docs/reproducibility.md`).
pub fn plan<'a>(spec: &VolumeSpec<'a>) -> Result<PlannedVolume<'a>, WriteError> {
    if spec.label.len() > MAX_LABEL_LEN || spec.label.contains(&0) {
        return Err(WriteError::BadLabel {
            label: String::from_utf8_lossy(spec.label).into_owned(),
        });
    }
    if spec.manifest.contains_key(&b"children"[..]) {
        return Err(WriteError::ReservedKey {
            key: "children".into(),
        });
    }
    let mut placer = Placer {
        next_sector: DATA_START_SECTOR,
        files: Vec::new(),
        enc: Encoder::new(),
    };
    // The root tuple: the manifest's keys and `children`, in key order.
    placer.enc.begin_tuple(spec.manifest.len() + 1);
    let mut children_done = false;
    for (key, value) in spec.manifest {
        if !children_done && key.as_slice() > &b"children"[..] {
            placer.enc.symbol(b"children");
            placer.dir(spec.root, b"", 1)?;
            children_done = true;
        }
        placer.enc.symbol(key);
        placer.enc.value(value)?;
    }
    if !children_done {
        placer.enc.symbol(b"children");
        placer.dir(spec.root, b"", 1)?;
    }
    let record = placer.enc.take_bytes();

    let data_end = placer.next_sector;
    let mut next_extension = data_end;
    let extensions = frame_log(&record, || {
        let s = next_extension;
        next_extension += LOG_EXTENSION_SECTORS;
        s
    });
    let end_sector = if extensions.len() > 1 {
        next_extension
    } else {
        data_end
    };
    let uuid = spec.uuid.unwrap_or_else(|| {
        let mut h = Sha256::new();
        h.update(b"nanoimg tfs uuid v3\0");
        h.update(spec.seed);
        h.update([0]);
        h.update(spec.label);
        h.update([0]);
        h.update(&record);
        let mut u = [0u8; 16];
        u.copy_from_slice(&h.finalize()[..16]);
        u
    });
    Ok(PlannedVolume {
        uuid,
        label: spec.label.to_vec(),
        files: placer.files,
        extensions,
        end_sector,
        data_sectors: data_end - DATA_START_SECTOR,
    })
}

/// Places file data and encodes the tree in one walk.
struct Placer<'a> {
    next_sector: u64,
    files: Vec<(Vec<u8>, u64, &'a FileSource)>,
    enc: Encoder,
}

impl<'a> Placer<'a> {
    /// Encodes the `children` tuple of `dir`, whose tuple sits at nesting `depth`.
    fn dir(&mut self, dir: &'a Dir, prefix: &[u8], depth: usize) -> Result<(), EncodeError> {
        // A directory level is two tuples deep (its entry and its `children`), and a file's
        // extents go three below its directory's `children`.
        if depth + 3 >= MAX_DEPTH {
            return Err(EncodeError::TooDeep);
        }
        self.enc.begin_tuple(dir.entries().len());
        let mut path = prefix.to_vec();
        for (name, node) in dir.entries() {
            path.truncate(prefix.len());
            path.push(b'/');
            path.extend_from_slice(name);
            self.enc.symbol(name);
            match node {
                Node::Dir(d) => {
                    self.enc.begin_tuple(1);
                    self.enc.symbol(b"children");
                    self.dir(d, &path, depth + 2)?;
                }
                Node::Symlink(target) => {
                    self.enc.begin_tuple(1);
                    self.enc.symbol(b"linktarget");
                    self.enc.string(target);
                }
                Node::File(f) => {
                    let len = f.len();
                    let sectors = len.div_ceil(SECTOR);
                    self.enc.begin_tuple(2);
                    self.enc.symbol(b"extents");
                    let count = sectors.div_ceil(MAX_EXTENT_SECTORS);
                    // Extent keys are decimal sector offsets within the file; tuple keys
                    // go in bytewise order, which for numbers of different widths is not
                    // numeric order.
                    let mut starts: Vec<u64> = (0..count).map(|i| i * MAX_EXTENT_SECTORS).collect();
                    starts.sort_by_cached_key(|s| s.to_string());
                    self.enc.begin_tuple(starts.len());
                    for start in starts {
                        let n = (sectors - start).min(MAX_EXTENT_SECTORS);
                        self.enc.symbol(start.to_string().as_bytes());
                        self.enc.begin_tuple(3);
                        self.enc.symbol(b"allocated");
                        self.enc.integer(n);
                        self.enc.symbol(b"length");
                        self.enc.integer(n);
                        self.enc.symbol(b"offset");
                        self.enc.integer(self.next_sector + start);
                    }
                    self.enc.symbol(b"filelength");
                    self.enc.integer(len);
                    self.files.push((path.clone(), self.next_sector, f));
                    self.next_sector += sectors;
                }
            }
        }
        Ok(())
    }
}

fn extension_header() -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    varint::push(&mut h, TFS_VERSION);
    varint::push(&mut h, LOG_EXTENSION_SECTORS);
    h
}

/// Frames one record into log extensions (the algorithm of ops's `tfs.flush`): the first
/// extension is at sector 1, each further one at the sector `next_sector` gives.
fn frame_log(record: &[u8], mut next_sector: impl FnMut() -> u64) -> Vec<(u64, Vec<u8>)> {
    let mut extensions = vec![(1, extension_header())];
    let mut remaining = record;
    let mut first = true;
    while !remaining.is_empty() {
        let mut current = &mut extensions.last_mut().expect("never empty").1;
        if EXTENSION_BYTES - current.len() < MIN_ROOM {
            let sector = next_sector();
            current.push(frame::LOG_EXTENSION_LINK);
            varint::push(current, sector);
            varint::push(current, LOG_EXTENSION_SECTORS);
            extensions.push((sector, extension_header()));
            current = &mut extensions.last_mut().expect("never empty").1;
        }
        let room = EXTENSION_BYTES - current.len() - 2 * FRAME_RESERVE;
        let n = room.min(remaining.len());
        if first {
            current.push(frame::TUPLE_AVAILABLE);
            varint::push(current, record.len() as u64);
        } else {
            current.push(frame::TUPLE_EXTENDED);
        }
        varint::push(current, n as u64);
        current.extend_from_slice(&remaining[..n]);
        remaining = &remaining[n..];
        first = false;
    }
    extensions
        .last_mut()
        .expect("never empty")
        .1
        .push(frame::END_OF_LOG);
    extensions
}

impl PlannedVolume<'_> {
    /// Bytes from the start of the volume to the end of its last log extension or data
    /// sector: the smallest size the volume can have.
    pub fn size(&self) -> u64 {
        self.end_sector * SECTOR
    }

    /// Number of log extensions, not counting the initial sector.
    pub fn log_extensions(&self) -> usize {
        self.extensions.len()
    }

    /// Sectors of file data.
    pub fn data_sectors(&self) -> u64 {
        self.data_sectors
    }

    /// The filesystem UUID (given, or derived when planned).
    pub fn uuid(&self) -> [u8; 16] {
        self.uuid
    }

    /// Number of regular files, the files [`write`](Self::write) passes to the writer.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Writes the volume, front to back, at the writer's current position; on return the
    /// writer stands [`size`](Self::size) bytes further.
    ///
    /// The initial sector, then the first log extension, then every file (each through
    /// [`ImageWriter::file_bytes`] or [`ImageWriter::copy_file`], in the canonical order, at
    /// its sector), then any further extensions. Everything in between — the rest of a
    /// file's last sector included — is zeros, which the writer leaves as holes.
    pub fn write(&self, out: &mut ImageWriter) -> Result<WrittenVolume, WriteError> {
        let base = out.position();
        let at = |sector: u64| base + sector * SECTOR;
        let mut initial = MAGIC.to_vec();
        varint::push(&mut initial, TFS_VERSION);
        varint::push(&mut initial, 1);
        initial.extend_from_slice(&self.uuid);
        initial.extend_from_slice(&self.label);
        initial.push(0);
        initial.push(frame::LOG_EXTENSION_LINK);
        varint::push(&mut initial, 1);
        varint::push(&mut initial, LOG_EXTENSION_SECTORS);
        out.write(&initial).map_err(WriteError::Output)?;

        // The first log extension sits at sector 1, before the data; the others after it.
        let (first, rest) = self
            .extensions
            .split_first()
            .expect("frame_log makes at least one extension");
        let write_extension = |out: &mut ImageWriter, (sector, bytes): &(u64, Vec<u8>)| {
            out.pad_to(at(*sector)).map_err(WriteError::Output)?;
            out.write(bytes).map_err(WriteError::Output)
        };
        write_extension(out, first)?;

        let mut files = Vec::with_capacity(self.files.len());
        for (path, sector, source) in &self.files {
            out.pad_to(at(*sector)).map_err(WriteError::Output)?;
            let host = match source {
                FileSource::Bytes(b) => {
                    out.file_bytes(b).map_err(WriteError::Output)?;
                    None
                }
                FileSource::Host { path, len } => {
                    out.copy_file(path, *len).map_err(|e| match e {
                        CopyError::Read(source) => WriteError::ReadSource {
                            path: path.clone(),
                            source,
                        },
                        CopyError::Changed { expected } => WriteError::SourceChanged {
                            path: path.clone(),
                            expected,
                        },
                        CopyError::Write(e) => WriteError::Output(e),
                    })?;
                    Some(path.clone())
                }
            };
            files.push(WrittenFile {
                path: path.clone(),
                len: source.len(),
                host,
            });
        }
        for extension in rest {
            write_extension(out, extension)?;
        }
        out.pad_to(at(self.end_sector))
            .map_err(WriteError::Output)?;
        Ok(WrittenVolume {
            uuid: self.uuid,
            files,
        })
    }
}

impl PlannedVolume<'_> {
    /// Writes the volume alone (no partition table: a data volume) into `out`, a new empty
    /// file, followed by zeros up to `size` bytes (at least [`size`](Self::size)).
    pub fn write_file(
        &self,
        out: &std::fs::File,
        size: u64,
        file_digests: bool,
    ) -> Result<(WrittenVolume, Digests), WriteError> {
        let mut w = ImageWriter::new(out, file_digests).map_err(WriteError::Output)?;
        let written = self.write(&mut w)?;
        w.pad_to(size.max(self.size()))
            .map_err(WriteError::Output)?;
        let digests = w.finish().map_err(WriteError::Output)?;
        Ok((written, digests))
    }
}

/// What [`PlannedVolume::write`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenVolume {
    pub uuid: [u8; 16],
    /// Every regular file, in write (canonical) order. Their digests, when asked for, come
    /// from the writer, in the same order.
    pub files: Vec<WrittenFile>,
}

/// One file as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    /// Its path in the volume.
    pub path: Vec<u8>,
    pub len: u64,
    /// The host file it was copied from; `None` for bytes given in memory.
    pub host: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_records_fit_one_extension() {
        let ext = frame_log(&[0x90], || unreachable!());
        assert_eq!(ext.len(), 1);
        assert_eq!(ext[0].0, 1);
        assert_eq!(
            ext[0].1,
            [b'N', b'V', b'M', b'T', b'F', b'S', 5, 0x88, 0, 2, 1, 1, 0x90, 1]
        );
    }

    #[test]
    fn large_records_spill_into_linked_extensions() {
        let record = vec![0x42u8; 1_300_000];
        let mut next = 5000;
        let ext = frame_log(&record, || {
            next += 1024;
            next - 1024
        });
        assert_eq!(ext.len(), 3);
        assert_eq!(ext[1].0, 5000);
        assert_eq!(ext[2].0, 6024);
        for (_, bytes) in &ext {
            assert!(bytes.len() <= EXTENSION_BYTES);
        }
        // The first segment is as large as ops makes it: 524288 - 9 - 42 bytes.
        let mut pos = 10;
        assert_eq!(varint::read(&ext[0].1, &mut pos), Some(1_300_000));
        assert_eq!(varint::read(&ext[0].1, &mut pos), Some(524_237));
    }
}
