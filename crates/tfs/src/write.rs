use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use nanoimg_tuple::{encode, varint, Tuple, Value};
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
    /// Filesystem UUID. `None` derives it from the volume's content (see
    /// [`PlannedVolume::write`]).
    pub uuid: Option<[u8; 16]>,
    /// Mixed into a derived UUID, to tell apart volumes that would otherwise be identical.
    pub seed: &'a [u8],
    /// The directory tree.
    pub root: &'a Dir,
    /// Other keys of the root tuple (the manifest: `program`, `arguments`...). `children`
    /// is reserved for the tree.
    pub manifest: &'a Tuple,
}

/// A volume whose layout and metadata are fixed, ready to be written.
#[derive(Debug)]
pub struct PlannedVolume<'a> {
    uuid: Option<[u8; 16]>,
    seed: Vec<u8>,
    label: Vec<u8>,
    /// The encoded metadata record.
    record: Vec<u8>,
    /// File data in write order: image path, first sector and source.
    files: Vec<(Vec<u8>, u64, &'a FileSource)>,
    /// Log extensions after the initial sector: first sector and used bytes.
    extensions: Vec<(u64, Vec<u8>)>,
    end_sector: u64,
    data_sectors: u64,
}

/// Fixes the layout of a volume without reading any file data.
///
/// File data is placed contiguously from sector 1025 in the canonical order of
/// [`Dir::files`], each file split into extents of at most 32 MiB. The whole tree and manifest
/// become one metadata record, written to the log extension at sector 1 and, if it is larger
/// than one extension, continued in extensions placed right after the data.
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
    };
    let children = placer.dir(spec.root, b"");
    let mut root = spec.manifest.clone();
    root.insert(b"children".to_vec(), Value::Tuple(children));
    let record = encode(&root)?;

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
    Ok(PlannedVolume {
        uuid: spec.uuid,
        seed: spec.seed.to_vec(),
        label: spec.label.to_vec(),
        record,
        files: placer.files,
        extensions,
        end_sector,
        data_sectors: data_end - DATA_START_SECTOR,
    })
}

struct Placer<'a> {
    next_sector: u64,
    files: Vec<(Vec<u8>, u64, &'a FileSource)>,
}

fn int(n: u64) -> Value {
    Value::Integer(i128::from(n))
}

impl<'a> Placer<'a> {
    fn dir(&mut self, dir: &'a Dir, prefix: &[u8]) -> Tuple {
        let mut children = Tuple::new();
        for (name, node) in dir.entries() {
            let mut t = Tuple::new();
            let mut path = prefix.to_vec();
            path.push(b'/');
            path.extend_from_slice(name);
            match node {
                Node::Dir(d) => {
                    t.insert(b"children".to_vec(), Value::Tuple(self.dir(d, &path)));
                }
                Node::Symlink(target) => {
                    t.insert(b"linktarget".to_vec(), Value::String(target.clone()));
                }
                Node::File(f) => {
                    let len = f.len();
                    let sectors = len.div_ceil(SECTOR);
                    let mut extents = Tuple::new();
                    let mut done = 0;
                    while done < sectors {
                        let n = (sectors - done).min(MAX_EXTENT_SECTORS);
                        let mut e = Tuple::new();
                        e.insert(b"allocated".to_vec(), int(n));
                        e.insert(b"length".to_vec(), int(n));
                        e.insert(b"offset".to_vec(), int(self.next_sector + done));
                        extents.insert(done.to_string().into_bytes(), Value::Tuple(e));
                        done += n;
                    }
                    self.files.push((path, self.next_sector, f));
                    self.next_sector += sectors;
                    t.insert(b"extents".to_vec(), Value::Tuple(extents));
                    t.insert(b"filelength".to_vec(), int(len));
                }
            }
            children.insert(name.clone(), Value::Tuple(t));
        }
        children
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

    /// Writes the volume at byte `base` of `out`, hashing every file on the way.
    ///
    /// Metadata sectors are written whole (zero-padded) and every file's last sector is padded
    /// with zeros; the sectors in between that hold nothing (the rest of a volume's free space)
    /// are not written, so `out` must read as zeros there — a new file does.
    ///
    /// Without a UUID in the spec, the UUID is the first 16 bytes of SHA-256 over
    /// `"nanoimg tfs uuid v2" NUL seed NUL label NUL record` followed by the SHA-256 of every
    /// file in write order: it changes with any byte of metadata or data, and with nothing
    /// else. The initial sector, which holds it, is written last.
    pub fn write<W: Write + Seek>(
        &self,
        out: &mut W,
        base: u64,
    ) -> Result<WrittenVolume, WriteError> {
        let at = |out: &mut W, sector: u64| {
            out.seek(SeekFrom::Start(base + sector * SECTOR))
                .map(|_| ())
                .map_err(WriteError::Output)
        };
        for (sector, bytes) in &self.extensions {
            let mut padded = bytes.clone();
            padded.resize(EXTENSION_BYTES, 0);
            at(out, *sector)?;
            out.write_all(&padded).map_err(WriteError::Output)?;
        }

        let mut files = Vec::with_capacity(self.files.len());
        for (path, sector, source) in &self.files {
            let len = source.len();
            let sha256 = if len == 0 {
                let d: [u8; 32] = Sha256::digest([]).into();
                d
            } else {
                at(out, *sector)?;
                let digest = match source {
                    FileSource::Bytes(b) => {
                        out.write_all(b).map_err(WriteError::Output)?;
                        Sha256::digest(b).into()
                    }
                    FileSource::Host { path, len } => copy_host_file(path, *len, out)?,
                };
                let tail = (len % SECTOR) as usize;
                if tail != 0 {
                    out.write_all(&[0u8; SECTOR as usize][tail..])
                        .map_err(WriteError::Output)?;
                }
                digest
            };
            files.push(WrittenFile {
                path: path.clone(),
                len,
                sha256,
            });
        }

        let uuid = self.uuid.unwrap_or_else(|| {
            let mut h = Sha256::new();
            h.update(b"nanoimg tfs uuid v2\0");
            h.update(&self.seed);
            h.update([0]);
            h.update(&self.label);
            h.update([0]);
            h.update(&self.record);
            for f in &files {
                h.update(f.sha256);
            }
            let mut u = [0u8; 16];
            u.copy_from_slice(&h.finalize()[..16]);
            u
        });
        let mut initial = MAGIC.to_vec();
        varint::push(&mut initial, TFS_VERSION);
        varint::push(&mut initial, 1);
        initial.extend_from_slice(&uuid);
        initial.extend_from_slice(&self.label);
        initial.push(0);
        initial.push(frame::LOG_EXTENSION_LINK);
        varint::push(&mut initial, 1);
        varint::push(&mut initial, LOG_EXTENSION_SECTORS);
        initial.resize(SECTOR as usize, 0);
        at(out, 0)?;
        out.write_all(&initial).map_err(WriteError::Output)?;
        Ok(WrittenVolume { uuid, files })
    }
}

/// What [`PlannedVolume::write`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenVolume {
    pub uuid: [u8; 16],
    /// Every regular file, in write (canonical) order.
    pub files: Vec<WrittenFile>,
}

/// One file as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    /// Its path in the volume.
    pub path: Vec<u8>,
    pub len: u64,
    pub sha256: [u8; 32],
}

/// Streams exactly `len` bytes of a host file; a file that is now shorter or longer is an
/// error (it changed after the layout was fixed).
fn copy_host_file<W: Write>(
    path: &std::path::Path,
    len: u64,
    out: &mut W,
) -> Result<[u8; 32], WriteError> {
    let read_err = |source| WriteError::ReadSource {
        path: path.to_path_buf(),
        source,
    };
    let changed = || WriteError::SourceChanged {
        path: path.to_path_buf(),
        expected: len,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut limited = (&mut file).take(len);
    let mut hasher = Sha256::new();
    let copied = copy(&mut limited, out, &mut hasher).map_err(|e| match e {
        CopyError::Read(e) => read_err(e),
        CopyError::Write(e) => WriteError::Output(e),
    })?;
    if copied != len {
        return Err(changed());
    }
    let mut probe = [0u8; 1];
    if file.read(&mut probe).map_err(read_err)? != 0 {
        return Err(changed());
    }
    Ok(hasher.finalize().into())
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy` with read and write errors told apart, through a 1 MiB buffer, hashing what
/// passes.
fn copy<R: Read, W: Write>(
    from: &mut R,
    to: &mut W,
    hasher: &mut Sha256,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
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
