//! Reading tar archives with bounded extension headers.
//!
//! The `tar` crate's `entries()` reads a GNU long-name or long-link member
//! (`././@LongLink`, types `L` and `K`) or a PAX extended header (`x`) wholly into memory
//! before anything can look at it, whatever size its header claims: a small gzip'd layer can
//! make it allocate gigabytes. This reader checks the size first ([`MAX_LONG_NAME`],
//! [`MAX_PAX_HEADER`]), reads such members itself, and applies what they say to the next
//! member as the `tar` crate does: a GNU long name (else a PAX `path`, else the header's
//! ustar name) is its path, a GNU long link (else PAX `linkpath`, else the header's) its link
//! target, a PAX `size` its data size. PAX global headers (`g`) are read (bounded) and
//! ignored, as before. The `tar` crate still decodes each 512-byte header.

use std::fs::File;
use std::io::{self, BufReader, Read};

use crate::escape::escape_bytes;

/// Longest GNU long name or long link accepted, in bytes (its closing NUL besides): the
/// longest path accepted anywhere.
pub(crate) const MAX_LONG_NAME: u64 = 4096;
/// Largest PAX extended header (`x`, or global `g`) accepted, in bytes.
pub(crate) const MAX_PAX_HEADER: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// Where the archive's bytes come from: a stream (skipping means reading) or a file
/// (skipping is a seek).
pub(crate) trait Input: Read {
    /// Passes over the next `n` bytes; an error if fewer are left.
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

/// A stream: skipping reads and discards.
pub(crate) struct Streamed<R>(pub R);

impl<R: Read> Read for Streamed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Input for Streamed<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let got = io::copy(&mut (&mut self.0).take(n), &mut io::sink())?;
        if got < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// A file: skipping seeks, checked against its length.
pub(crate) struct Seekable {
    file: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Seekable {
    pub(crate) fn new(file: File) -> io::Result<Seekable> {
        let len = file.metadata()?.len();
        Ok(Seekable {
            file: BufReader::with_capacity(64 << 10, file),
            pos: 0,
            len,
        })
    }
}

impl Read for Seekable {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Input for Seekable {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        if n > self.len.saturating_sub(self.pos) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let step = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        self.file.seek_relative(step)?;
        self.pos += n;
        Ok(())
    }
}

/// Why the next member could not be read.
#[derive(Debug)]
pub(crate) enum TarError {
    /// Reading failed, or the archive ended inside a header or member.
    Io(io::Error),
    /// Not a well-formed archive.
    Bad(String),
    /// An extension header claims more than its limit: `member` (escaped) is its own name
    /// (`././@LongLink`, `PaxHeaders.0/…`), `what` what it is.
    Oversized {
        member: String,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// A GNU sparse member (its extra headers are not read, so the rest would be misread).
    Sparse { member: String },
}

impl std::fmt::Display for TarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TarError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                write!(f, "the archive ends inside a header or member")
            }
            TarError::Io(e) => write!(f, "{e}"),
            TarError::Bad(s) => write!(f, "{s}"),
            TarError::Oversized {
                member,
                what,
                size,
                limit,
            } => write!(
                f,
                "member \"{member}\": {what} claiming {size} bytes, more than the {limit} allowed"
            ),
            TarError::Sparse { member } => {
                write!(f, "member \"{member}\": a GNU sparse file is not supported")
            }
        }
    }
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> TarError {
        TarError::Io(e)
    }
}

/// One member, extension headers applied.
pub(crate) struct Member {
    /// Its own header (type, mode, …); path, link and size are below.
    pub header: tar::Header,
    /// Its path as bytes (long name, PAX `path` or the header's).
    pub path: Vec<u8>,
    /// Its link target, if it has one.
    pub link: Option<Vec<u8>>,
    /// Its data size (PAX `size` or the header's).
    pub size: u64,
    /// Where its data starts in the archive.
    pub offset: u64,
}

/// The members of an archive, in order; a member's data is read through the reader
/// itself ([`Read`]) until the next call to [`Reader::next`].
pub(crate) struct Reader<R> {
    inner: R,
    /// Bytes read or skipped so far.
    pos: u64,
    /// Data of the current member not yet read.
    data_left: u64,
    /// Padding after it.
    pad_left: u64,
    done: bool,
}

impl<R: Input> Reader<R> {
    pub(crate) fn new(inner: R) -> Reader<R> {
        Reader {
            inner,
            pos: 0,
            data_left: 0,
            pad_left: 0,
            done: false,
        }
    }

    /// Skips what is left of the current member.
    fn skip_rest(&mut self) -> io::Result<()> {
        let n = self.data_left + self.pad_left;
        if n > 0 {
            self.inner.skip(n)?;
            self.pos += n;
            self.data_left = 0;
            self.pad_left = 0;
        }
        Ok(())
    }

    /// The next 512-byte header, `None` at the end (end of the stream at a block boundary,
    /// or a zero block).
    fn header(&mut self) -> Result<Option<tar::Header>, TarError> {
        let mut header = tar::Header::new_old();
        let block = header.as_mut_bytes();
        let mut got = 0;
        while got < block.len() {
            match self.inner.read(&mut block[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pos += got as u64;
        if got == 0 {
            return Ok(None);
        }
        if got < block.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let bytes = header.as_bytes();
        let sum: u32 = bytes[..148]
            .iter()
            .chain(&bytes[156..])
            .map(|&b| b as u32)
            .sum::<u32>()
            + 8 * 32;
        let cksum = header
            .cksum()
            .map_err(|e| TarError::Bad(format!("bad header checksum field: {e}")))?;
        if sum != cksum {
            return Err(TarError::Bad("archive header checksum mismatch".into()));
        }
        Ok(Some(header))
    }

    /// Reads all of the current member's data (known to be at most a limit) and its padding.
    fn read_small(&mut self, size: u64) -> io::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(size as usize);
        (&mut *self).take(size).read_to_end(&mut data)?;
        if (data.len() as u64) < size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.skip_rest()?;
        Ok(data)
    }

    /// Reads the extension header `header` (of `size` bytes, its data next) into `ext`,
    /// once its size is checked against its limit; a PAX global header is read and ignored.
    fn read_extension(
        &mut self,
        header: &tar::Header,
        kind: Extension,
        size: u64,
        ext: &mut Extensions,
    ) -> Result<(), TarError> {
        let Extension { what, limit, nul } = kind;
        if size > limit + nul {
            return Err(TarError::Oversized {
                member: escape_bytes(&header.path_bytes()),
                what,
                size,
                limit,
            });
        }
        let data = self.read_small(size)?;
        let slot = match header.entry_type().as_byte() {
            b'L' => &mut ext.long_name,
            b'K' => &mut ext.long_link,
            b'x' => &mut ext.pax,
            _ => return Ok(()), // global: ignored
        };
        if slot.is_some() {
            return Err(TarError::Bad(format!(
                "two {what}s describing the same member"
            )));
        }
        *slot = Some(data);
        Ok(())
    }

    /// The next member, extension headers applied; `None` at the end of the archive.
    pub(crate) fn next(&mut self) -> Result<Option<Member>, TarError> {
        if self.done {
            return Ok(None);
        }
        let mut ext = Extensions::default();
        loop {
            self.skip_rest()?;
            let Some(header) = self.header()? else {
                self.done = true;
                if ext.any() {
                    return Err(TarError::Bad(
                        "extension headers describing a member, but no member follows".into(),
                    ));
                }
                return Ok(None);
            };
            let size = header
                .entry_size()
                .map_err(|e| TarError::Bad(format!("bad size field: {e}")))?;
            let kind = header.entry_type();
            let special = Extension::of(kind);
            let size = ext.size(size, special.is_some())?;
            let padded = size
                .checked_add(BLOCK - 1)
                .map(|s| s / BLOCK * BLOCK)
                .ok_or_else(|| TarError::Bad(format!("a member of {size} bytes")))?;
            self.data_left = size;
            self.pad_left = padded - size;
            let offset = self.pos;
            if let Some(special) = special {
                self.read_extension(&header, special, size, &mut ext)?;
                continue;
            }
            if kind.is_gnu_sparse() {
                return Err(TarError::Sparse {
                    member: escape_bytes(&header.path_bytes()),
                });
            }
            let (path, link) = ext.names(&header)?;
            return Ok(Some(Member {
                header,
                path,
                link,
                size,
                offset,
            }));
        }
    }
}

/// An extension header's kind: what it is, for messages, and its limit in bytes, besides
/// `nul` more for a closing NUL.
#[derive(Clone, Copy)]
struct Extension {
    what: &'static str,
    limit: u64,
    nul: u64,
}

impl Extension {
    /// The extension header a member of type `kind` is, if it is one.
    fn of(kind: tar::EntryType) -> Option<Extension> {
        let (what, limit, nul) = match kind.as_byte() {
            // A long name's data ends with a NUL besides the name.
            b'L' => ("a GNU long name", MAX_LONG_NAME, 1),
            b'K' => ("a GNU long link name", MAX_LONG_NAME, 1),
            b'x' => ("a PAX extended header", MAX_PAX_HEADER, 0),
            b'g' => ("a PAX global header", MAX_PAX_HEADER, 0),
            _ => return None,
        };
        Some(Extension { what, limit, nul })
    }
}

/// The extension headers read so far for the member that follows them.
#[derive(Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Extensions {
    /// Whether any was read.
    fn any(&self) -> bool {
        self.long_name.is_some() || self.long_link.is_some() || self.pax.is_some()
    }

    /// The data size of a member whose header says `size`: the PAX `size`, if there is one
    /// and the member is not itself an extension header (`special`).
    fn size(&self, size: u64, special: bool) -> Result<u64, TarError> {
        let pax_size = match (&self.pax, special) {
            (Some(p), false) => pax_value(p, b"size")?
                .map(|v| {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| TarError::Bad("a PAX size that is not a number".into()))
                })
                .transpose()?,
            _ => None,
        };
        Ok(pax_size.unwrap_or(size))
    }

    /// The path and link target of the member with `header`: a GNU long name, else a PAX
    /// `path`, else the header's; a GNU long link, else a PAX `linkpath`, else the header's.
    fn names(self, header: &tar::Header) -> Result<(Vec<u8>, Option<Vec<u8>>), TarError> {
        let Extensions {
            long_name,
            long_link,
            pax,
        } = self;
        let path = match (long_name, &pax) {
            (Some(n), _) => c_string(n),
            (None, Some(p)) => match pax_value(p, b"path")? {
                Some(v) => v.to_vec(),
                None => header.path_bytes().into_owned(),
            },
            (None, None) => header.path_bytes().into_owned(),
        };
        let link = match (long_link, &pax) {
            (Some(n), _) => Some(c_string(n)),
            (None, Some(p)) => match pax_value(p, b"linkpath")? {
                Some(v) => Some(v.to_vec()),
                None => header.link_name_bytes().map(|c| c.into_owned()),
            },
            (None, None) => header.link_name_bytes().map(|c| c.into_owned()),
        };
        Ok((path, link))
    }
}

/// A long name's bytes up to its first NUL (GNU tar reads it as a C string).
fn c_string(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(i) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(i);
    }
    bytes
}

/// The value of the last `key` record in PAX extended header data (`LEN key=value\n`
/// records); an error if the records are malformed.
fn pax_value<'a>(data: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, TarError> {
    let bad = || TarError::Bad("a malformed PAX extended header".into());
    let mut rest = data;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l > space + 1 && l <= rest.len())
            .ok_or_else(bad)?;
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").ok_or_else(bad)?;
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        if &record[..eq] == key {
            found = Some(&record[eq + 1..]);
        }
        rest = &rest[len..];
    }
    Ok(found)
}

impl<R: Input> Read for Reader<R> {
    /// The current member's data.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data_left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.data_left -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, name: &[u8], size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_mut_bytes()[..name.len()].copy_from_slice(name);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn pad(v: &mut Vec<u8>) {
        while !v.len().is_multiple_of(512) {
            v.push(0);
        }
    }

    type Listed = Vec<(Vec<u8>, Option<Vec<u8>>, Vec<u8>)>;

    fn members(bytes: &[u8]) -> Result<Listed, TarError> {
        let mut r = Reader::new(Streamed(bytes));
        let mut out = vec![];
        while let Some(m) = r.next()? {
            let mut data = vec![];
            r.read_to_end(&mut data)?;
            out.push((m.path, m.link, data));
        }
        Ok(out)
    }

    #[test]
    fn long_names_pax_and_sizes_apply_to_the_next_member() {
        let long = "d/".repeat(150) + "f";
        let mut t = header(b'L', b"././@LongLink", long.len() as u64 + 1);
        t.extend_from_slice(long.as_bytes());
        t.push(0);
        pad(&mut t);
        t.extend(header(b'0', b"short", 3));
        t.extend_from_slice(b"abc");
        pad(&mut t);
        let records = |kv: &[(&str, &str)]| {
            let mut out = String::new();
            for (k, v) in kv {
                let body = format!(" {k}={v}\n");
                let mut len = body.len() + 1;
                while format!("{len}{body}").len() != len {
                    len += 1;
                }
                out.push_str(&format!("{len}{body}"));
            }
            out
        };
        let pax = records(&[("path", "pax/named"), ("size", "5"), ("linkpath", "t")]);
        t.extend(header(b'x', b"PaxHeaders/x", pax.len() as u64));
        t.extend_from_slice(pax.as_bytes());
        pad(&mut t);
        t.extend(header(b'0', b"x", 999)); // PAX size wins
        t.extend_from_slice(b"12345");
        pad(&mut t);
        t.extend(header(b'g', b"global", 10));
        t.extend_from_slice(b"10 a=bcd\n\0");
        pad(&mut t);
        t.extend(header(b'2', b"plain", 0));
        t.extend(vec![0; 1024]);
        t.extend_from_slice(b"trailing bytes are not members");
        let m = members(&t).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].0, long.as_bytes());
        assert_eq!(m[0].2, b"abc");
        assert_eq!(m[1].0, b"pax/named");
        assert_eq!(m[1].1.as_deref(), Some(&b"t"[..]));
        assert_eq!(m[1].2, b"12345");
        assert_eq!(m[2].0, b"plain");
    }

    #[test]
    fn oversized_extension_headers_are_refused_before_reading() {
        for (kind, limit, nul) in [
            (b'L', MAX_LONG_NAME, 1),
            (b'K', MAX_LONG_NAME, 1),
            (b'x', MAX_PAX_HEADER, 0),
            (b'g', MAX_PAX_HEADER, 0),
        ] {
            // The header alone: the data it claims is never there.
            let t = header(kind, b"././@LongLink", 6 << 30);
            match members(&t) {
                Err(TarError::Oversized { size, limit: l, .. }) => {
                    assert_eq!((size, l), (6 << 30, limit))
                }
                other => panic!("{}: {:?}", kind as char, other.map(|m| m.len())),
            }
            // At the limit it is read (and here found short).
            let t = header(kind, b"././@LongLink", limit + nul);
            assert!(matches!(members(&t), Err(TarError::Io(_))));
        }
    }

    #[test]
    fn malformed_archives_are_errors() {
        let mut t = header(b'0', b"f", 0);
        t[0] ^= 1;
        assert!(matches!(members(&t), Err(TarError::Bad(_))));
        assert!(matches!(members(&[1u8; 100]), Err(TarError::Io(_))));
        let mut t = header(b'L', b"././@LongLink", 2);
        t.extend_from_slice(b"a\0");
        pad(&mut t);
        assert!(matches!(members(&t), Err(TarError::Bad(_))), "no member");
        let mut t = header(b'x', b"p", 7);
        t.extend_from_slice(b"99 a=b\n");
        pad(&mut t);
        t.extend(header(b'0', b"f", 0));
        assert!(matches!(members(&t), Err(TarError::Bad(_))), "bad record");
        assert_eq!(members(&[]).unwrap().len(), 0);
    }
}
