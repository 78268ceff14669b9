use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek, SeekFrom, Write};

use nanoimg_tuple::{varint, Decoder, Encoding, Tuple, Value};

use crate::error::ReadError;
use crate::{frame, MAGIC, SECTOR};

/// Largest log extension the reader accepts, in sectors (writers use 1024).
const MAX_EXTENSION_SECTORS: u64 = 1 << 16;

/// A TFS volume opened for reading: its header, its metadata, and access to file data.
#[derive(Debug)]
pub struct Tfs<R> {
    source: R,
    base: u64,
    size: u64,
    version: u64,
    uuid: [u8; 16],
    label: Vec<u8>,
    root: Tuple,
    extensions: Vec<(u64, u64)>,
}

/// A node of a volume's tree as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File(FileEntry),
    Dir(BTreeMap<Vec<u8>, Entry>),
    Symlink(Vec<u8>),
    /// A tuple that is neither file, directory nor link.
    Other(Tuple),
}

/// A regular file: its length and where its data is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub len: u64,
    /// In file order. Sectors no extent covers read as zeros.
    pub extents: Vec<Extent>,
}

/// A run of a file's sectors on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First sector of the file this extent holds.
    pub file_sector: u64,
    /// First sector on the volume.
    pub start: u64,
    /// Sectors of data.
    pub length: u64,
    /// Sectors reserved on the volume (at least `length`).
    pub allocated: u64,
    /// Reserved but never written: reads as zeros.
    pub uninited: bool,
}

fn io_err(offset: u64) -> impl FnOnce(io::Error) -> ReadError {
    move |source| ReadError::Io { offset, source }
}

impl<R: Read + Seek> Tfs<R> {
    /// Opens the volume of `size` bytes that starts at byte `base` of `source`, and reads its
    /// whole metadata log.
    pub fn open(mut source: R, base: u64, size: u64) -> Result<Self, ReadError> {
        let volume_sectors = size / SECTOR;
        let mut sector0 = vec![0u8; SECTOR as usize];
        read_at(&mut source, base, 0, &mut sector0)?;
        let mut pos = 0;
        let version = parse_header(&sector0, &mut pos, 0)?;
        let uuid_end = pos + 16;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sector0[pos..uuid_end]);
        let label_area = &sector0[uuid_end..uuid_end + 32];
        let nul = label_area
            .iter()
            .position(|&b| b == 0)
            .ok_or(ReadError::BadLabel)?;
        let label = label_area[..nul].to_vec();
        pos = uuid_end + nul + 1;

        let mut log = LogReader {
            decoder: Decoder::new(),
            pending: None,
            extensions: vec![(0, 1)],
            visited: BTreeSet::from([0]),
        };
        let mut buf = sector0;
        let mut ext_offset = 0u64;
        let mut encoding = encoding_of(version);
        loop {
            match log.frames(&buf, pos, ext_offset, encoding)? {
                Next::End => break,
                Next::Link {
                    sector,
                    nsectors,
                    at,
                } => {
                    let end = sector.saturating_add(nsectors);
                    if nsectors == 0 || nsectors > MAX_EXTENSION_SECTORS || end > volume_sectors {
                        return Err(ReadError::LinkOutOfRange {
                            offset: at,
                            sector,
                            end,
                            volume_sectors,
                        });
                    }
                    if !log.visited.insert(sector) {
                        return Err(ReadError::LinkLoop { offset: at, sector });
                    }
                    log.extensions.push((sector, nsectors));
                    ext_offset = sector * SECTOR;
                    buf = vec![0u8; (nsectors * SECTOR) as usize];
                    read_at(&mut source, base, ext_offset, &mut buf)?;
                    pos = 0;
                    encoding = encoding_of(parse_header(&buf, &mut pos, ext_offset)?);
                }
            }
        }
        if log.pending.is_some() {
            return Err(ReadError::BadFrame {
                offset: ext_offset,
                reason: "the log ends inside a record",
            });
        }
        let root = log.decoder.root().map_err(ReadError::Root)?;
        Ok(Tfs {
            source,
            base,
            size,
            version,
            uuid,
            label,
            root,
            extensions: log.extensions,
        })
    }

    /// The TFS version of the initial log extension (5, or 4 for old images).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The filesystem UUID, raw.
    pub fn uuid(&self) -> [u8; 16] {
        self.uuid
    }

    /// The UUID as Nanos prints it: bytes in order, `8-4-4-4-12`.
    pub fn uuid_string(&self) -> String {
        format_uuid(&self.uuid)
    }

    /// The volume label.
    pub fn label(&self) -> &[u8] {
        &self.label
    }

    /// The size of the volume in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the log lives: (first sector, sectors) of each extension, the initial one first.
    pub fn log_extensions(&self) -> &[(u64, u64)] {
        &self.extensions
    }

    /// The root tuple: `children` (the tree) and the manifest keys.
    pub fn root(&self) -> &Tuple {
        &self.root
    }

    /// The directory tree, with every file's extents checked against the volume.
    pub fn tree(&self) -> Result<BTreeMap<Vec<u8>, Entry>, ReadError> {
        match self.root.get(&b"children"[..]) {
            None => Ok(BTreeMap::new()),
            Some(Value::Tuple(children)) => self.dir(children, b""),
            Some(_) => Err(ReadError::BadNode {
                path: "/".into(),
                reason: "children is not a tuple".into(),
            }),
        }
    }

    fn dir(&self, children: &Tuple, path: &[u8]) -> Result<BTreeMap<Vec<u8>, Entry>, ReadError> {
        let mut out = BTreeMap::new();
        for (name, v) in children {
            let mut p = path.to_vec();
            p.push(b'/');
            p.extend_from_slice(name);
            let bad = |reason: &str| ReadError::BadNode {
                path: String::from_utf8_lossy(&p).into_owned(),
                reason: reason.to_string(),
            };
            let t = v.as_tuple().ok_or_else(|| bad("not a tuple"))?;
            let entry = if let Some(ext) = t.get(&b"extents"[..]) {
                Entry::File(self.file(t, ext, &bad)?)
            } else if let Some(target) = t.get(&b"linktarget"[..]) {
                Entry::Symlink(
                    target
                        .as_bytes()
                        .ok_or_else(|| bad("linktarget is not a string"))?
                        .to_vec(),
                )
            } else if let Some(c) = t.get(&b"children"[..]) {
                let c = c.as_tuple().ok_or_else(|| bad("children is not a tuple"))?;
                Entry::Dir(self.dir(c, &p)?)
            } else {
                Entry::Other(t.clone())
            };
            out.insert(name.clone(), entry);
        }
        Ok(out)
    }

    fn file(
        &self,
        t: &Tuple,
        extents: &Value,
        bad: &dyn Fn(&str) -> ReadError,
    ) -> Result<FileEntry, ReadError> {
        let len = match t.get(&b"filelength"[..]) {
            None => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad("filelength is not a number"))?,
        };
        let extents = extents
            .as_tuple()
            .ok_or_else(|| bad("extents is not a tuple"))?;
        let volume_sectors = self.size / SECTOR;
        let mut out = Vec::new();
        for (key, e) in extents {
            let file_sector = std::str::from_utf8(key)
                .ok()
                .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|k| k.parse::<u64>().ok())
                .ok_or_else(|| bad("extent key is not a sector number"))?;
            let e = e.as_tuple().ok_or_else(|| bad("extent is not a tuple"))?;
            let field = |name: &str| {
                e.get(name.as_bytes())
                    .and_then(Value::as_u64)
                    .ok_or_else(|| bad(&format!("extent {file_sector} has no numeric {name}")))
            };
            let x = Extent {
                file_sector,
                start: field("offset")?,
                length: field("length")?,
                allocated: field("allocated")?,
                uninited: e.contains_key(&b"uninited"[..]),
            };
            // `copy_file` works in bytes of the file: its end must fit in a u64 too.
            if x.start
                .checked_add(x.length)
                .is_none_or(|end| end > volume_sectors)
                || file_sector
                    .checked_add(x.length)
                    .and_then(|end| end.checked_mul(SECTOR))
                    .is_none()
            {
                return Err(bad(&format!(
                    "extent {file_sector} (sectors {}+{}) lies outside the {volume_sectors}-sector volume",
                    x.start, x.length
                )));
            }
            out.push(x);
        }
        out.sort_by_key(|x| x.file_sector);
        Ok(FileEntry { len, extents: out })
    }

    /// Streams the contents of `file` to `out`; returns the number of bytes written.
    pub fn copy_file<W: Write>(&mut self, file: &FileEntry, out: &mut W) -> Result<u64, ReadError> {
        let mut pos = 0u64; // next file byte to produce
        let mut buf = vec![0u8; 1 << 20];
        let write_err = |e| ReadError::Io {
            offset: 0,
            source: e,
        };
        let zeros = |out: &mut W, mut n: u64, buf: &mut [u8]| -> Result<(), ReadError> {
            buf.fill(0);
            while n > 0 {
                let k = n.min(buf.len() as u64) as usize;
                out.write_all(&buf[..k]).map_err(write_err)?;
                n -= k as u64;
            }
            Ok(())
        };
        for x in &file.extents {
            let ext_start = x.file_sector * SECTOR;
            let ext_end = (ext_start + x.length * SECTOR).min(file.len);
            if ext_end <= pos {
                continue;
            }
            if ext_start > pos {
                let gap = ext_start.min(file.len) - pos;
                zeros(out, gap, &mut buf)?;
                pos += gap;
            }
            if pos >= file.len {
                break;
            }
            let mut disk = x.start * SECTOR + (pos - ext_start);
            while pos < ext_end {
                let k = (ext_end - pos).min(buf.len() as u64) as usize;
                if x.uninited {
                    buf[..k].fill(0);
                } else {
                    read_at(&mut self.source, self.base, disk, &mut buf[..k])?;
                }
                out.write_all(&buf[..k]).map_err(write_err)?;
                pos += k as u64;
                disk += k as u64;
            }
        }
        if pos < file.len {
            zeros(out, file.len - pos, &mut buf)?;
        }
        Ok(file.len)
    }

    /// The whole contents of `file` in memory (for small files).
    pub fn read_file(&mut self, file: &FileEntry) -> Result<Vec<u8>, ReadError> {
        let mut v = Vec::new();
        self.copy_file(file, &mut v)?;
        Ok(v)
    }
}

/// Formats a UUID as Nanos does: bytes in order, no swapping.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

fn encoding_of(version: u64) -> Encoding {
    if version == 4 {
        Encoding::V4
    } else {
        Encoding::V5
    }
}

fn read_at<R: Read + Seek>(
    source: &mut R,
    base: u64,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), ReadError> {
    source
        .seek(SeekFrom::Start(base + offset))
        .and_then(|_| source.read_exact(buf))
        .map_err(io_err(offset))
}

/// Parses `NVMTFS`, the version and the size varint at `*pos`; returns the version.
fn parse_header(buf: &[u8], pos: &mut usize, offset: u64) -> Result<u64, ReadError> {
    if buf.len() < 8 || &buf[..6] != MAGIC {
        return Err(ReadError::BadMagic { offset });
    }
    *pos = 6;
    let version = varint::read(buf, pos).ok_or(ReadError::BadMagic { offset })?;
    if version != 4 && version != 5 {
        return Err(ReadError::UnsupportedVersion { version, offset });
    }
    // The size is not validated by the kernel either; the link that led here gives it.
    varint::read(buf, pos).ok_or(ReadError::BadMagic { offset })?;
    if *pos + 16 + 32 > buf.len() {
        return Err(ReadError::BadMagic { offset });
    }
    Ok(version)
}

enum Next {
    End,
    Link { sector: u64, nsectors: u64, at: u64 },
}

struct LogReader {
    decoder: Decoder,
    /// A record being assembled: its declared length and the bytes so far.
    pending: Option<(u64, Vec<u8>)>,
    extensions: Vec<(u64, u64)>,
    visited: BTreeSet<u64>,
}

impl LogReader {
    /// Parses the frames of one extension from `pos` until END_OF_LOG or a link.
    fn frames(
        &mut self,
        buf: &[u8],
        mut pos: usize,
        ext_offset: u64,
        encoding: Encoding,
    ) -> Result<Next, ReadError> {
        loop {
            let at = ext_offset + pos as u64;
            let bad = |reason| ReadError::BadFrame { offset: at, reason };
            let Some(&kind) = buf.get(pos) else {
                return Err(bad("the extension ends without END_OF_LOG or a link"));
            };
            pos += 1;
            let number = |pos: &mut usize| {
                varint::read(buf, pos).ok_or(ReadError::BadFrame {
                    offset: at,
                    reason: "truncated frame",
                })
            };
            match kind {
                frame::END_OF_LOG => return Ok(Next::End),
                frame::END_OF_SEGMENT => {}
                frame::LOG_EXTENSION_LINK => {
                    let sector = number(&mut pos)?;
                    let nsectors = number(&mut pos)?;
                    return Ok(Next::Link {
                        sector,
                        nsectors,
                        at,
                    });
                }
                frame::TUPLE_AVAILABLE | frame::TUPLE_EXTENDED => {
                    let (total, mut bytes) = if kind == frame::TUPLE_AVAILABLE {
                        if self.pending.is_some() {
                            return Err(bad("a new record starts before the last one ended"));
                        }
                        (number(&mut pos)?, Vec::new())
                    } else {
                        self.pending
                            .take()
                            .ok_or(bad("a record continuation without a record"))?
                    };
                    let seg = number(&mut pos)?;
                    let remaining = (buf.len() - pos) as u64;
                    if seg >= remaining {
                        return Err(bad("record segment runs past the end of the extension"));
                    }
                    if bytes.len() as u64 + seg > total {
                        return Err(bad("record segments exceed the record's length"));
                    }
                    bytes.extend_from_slice(&buf[pos..pos + seg as usize]);
                    pos += seg as usize;
                    if bytes.len() as u64 == total {
                        self.decoder.record(&bytes, encoding).map_err(|source| {
                            ReadError::Decode {
                                offset: ext_offset + pos as u64,
                                source,
                            }
                        })?;
                    } else {
                        self.pending = Some((total, bytes));
                    }
                }
                byte => return Err(ReadError::UnknownFrame { byte, offset: at }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nanoimg_tuple::encode;
    use std::io::Cursor;

    fn tuple<const N: usize>(entries: [(&str, Value); N]) -> Tuple {
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect()
    }

    /// A 2-sector volume whose metadata sits in the initial sector: one file `f` with one
    /// extent (file sector `key`, volume sector 1) and length `filelength`.
    fn one_file_volume(key: &str, filelength: u64) -> Vec<u8> {
        let one = || Value::Integer(1);
        let extent = tuple([("offset", one()), ("length", one()), ("allocated", one())]);
        let file = tuple([
            (
                "extents",
                Value::Tuple(tuple([(key, Value::Tuple(extent))])),
            ),
            ("filelength", Value::Integer(i128::from(filelength))),
        ]);
        let root = tuple([("children", Value::Tuple(tuple([("f", Value::Tuple(file))])))]);
        let record = encode(&root).unwrap();
        let mut v = MAGIC.to_vec();
        varint::push(&mut v, 5);
        varint::push(&mut v, 1);
        v.extend_from_slice(&[0; 16]); // UUID
        v.push(0); // empty label
        v.push(frame::TUPLE_AVAILABLE);
        varint::push(&mut v, record.len() as u64);
        varint::push(&mut v, record.len() as u64);
        v.extend_from_slice(&record);
        v.push(frame::END_OF_LOG);
        v.resize(SECTOR as usize, 0);
        v.extend_from_slice(&[b'd'; SECTOR as usize]);
        v
    }

    /// Found by fuzzing (tfs_log_reader): an extent at file sector 2^55 passed the checks,
    /// then `copy_file` overflowed computing its byte offset (a panic with overflow checks,
    /// wrong data without).
    #[test]
    fn extent_whose_file_offset_overflows_is_refused() {
        let v = one_file_volume("36028797018963968", u64::MAX);
        let fs = Tfs::open(Cursor::new(&v[..]), 0, v.len() as u64).unwrap();
        assert!(matches!(fs.tree(), Err(ReadError::BadNode { .. })));
        // The largest file sector whose extent still ends inside u64 bytes is accepted.
        let last = (u64::MAX / SECTOR - 1).to_string();
        let v = one_file_volume(&last, 3);
        let mut fs = Tfs::open(Cursor::new(&v[..]), 0, v.len() as u64).unwrap();
        let tree = fs.tree().unwrap();
        let Entry::File(f) = &tree[&b"f"[..]] else {
            panic!("not a file")
        };
        assert_eq!(fs.read_file(f).unwrap(), vec![0; 3]);
    }
}
