//! What the writers of formats whose file begins with a description of the whole disk must
//! know before their first byte: the image's [`Survey`], and the [`Surveyor`] that makes it.
//!
//! A survey is a function of two things only: where the image's *files* keep their data (the
//! byte ranges the filesystems' extents cover), and every other byte of the image (the
//! metadata: partition table, boot code, the filesystems' logs, the ESP). It never depends on
//! what the files hold. So a build knows its image's survey from its plan, without reading a
//! file (one cheap pass in which file data is only a length), and `convert` finds the same
//! survey in an existing image by reading its filesystems' extents and its metadata: a
//! converted image has the bytes of a direct build.

use std::ops::Range;

use crate::{DataMap, ZERO_BLOCK};

/// Where the raw image may hold data, and an identifier its container's identifiers derive
/// from (VMDK's CID, VHDX's GUIDs). See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Survey {
    /// Every [`ZERO_BLOCK`] of the image that a file's data touches, and every other block
    /// with a non-zero byte: a writer stores these (a block of a file that holds only zeros
    /// too) and nothing else.
    pub map: DataMap,
    /// BLAKE3 of the image's metadata and layout: each block with a non-zero byte outside
    /// the files' data (those bytes read as zeros), preceded by its offset (u64,
    /// little-endian; the image's last block padded with zeros), then the image's length,
    /// then each range of file data as its start and end. Its cost follows the metadata, not
    /// the data or the holes.
    pub layout_id: [u8; 32],
}

/// Makes a [`Survey`] from the image given front to back: the ranges of file data declared
/// with [`file`](Self::file), every other byte given with [`bytes`](Self::bytes) (bytes
/// inside a declared range are ignored; a range given neither way is zeros).
#[derive(Debug, Default)]
pub struct Surveyor {
    /// Byte ranges of file data, increasing, merged where they touch.
    files: Vec<Range<u64>>,
    /// The first range of `files` that may still matter to [`bytes`](Self::bytes).
    cursor: usize,
    /// The blocks file data touches.
    file_blocks: DataMap,
    /// The blocks with a non-zero byte outside file data.
    metadata: DataMap,
    /// The metadata block being filled: its index and bytes (file data as zeros).
    block: Option<(u64, Vec<u8>)>,
    id: blake3::Hasher,
    /// The offset up to which bytes were given.
    at: u64,
}

impl Surveyor {
    pub fn new() -> Surveyor {
        Surveyor::default()
    }

    /// Declares `range` of the image to hold a file's data. Ranges come in increasing order
    /// (a range starting before the end of the last one is merged into it).
    pub fn file(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        match self.files.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => self.files.push(range.clone()),
        }
        let first = range.start / ZERO_BLOCK * ZERO_BLOCK;
        let end = range.end.next_multiple_of(ZERO_BLOCK);
        self.file_blocks.add_range(first..end);
    }

    /// The image's bytes `data` at `offset` (calls in increasing offset order, never
    /// overlapping).
    pub fn bytes(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        self.at = self.at.max(end);
        let mut at = offset;
        while at < end {
            // Skip the file ranges that end before `at`, and any that covers it.
            while self.files.get(self.cursor).is_some_and(|r| r.end <= at) {
                self.cursor += 1;
            }
            let to = match self.files.get(self.cursor) {
                Some(r) if r.start <= at => {
                    at = r.end.min(end);
                    continue;
                }
                Some(r) => r.start.min(end),
                None => end,
            };
            self.metadata_bytes(at, &data[(at - offset) as usize..(to - offset) as usize]);
            at = to;
        }
    }

    /// Bytes outside file data, block by block.
    fn metadata_bytes(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let index = at / ZERO_BLOCK;
            let to = ((index + 1) * ZERO_BLOCK).min(end);
            let piece = &data[(at - offset) as usize..(to - offset) as usize];
            if !crate::is_zero(piece) {
                if self.block.as_ref().is_some_and(|(i, _)| *i != index) {
                    self.flush();
                }
                let (_, block) = self
                    .block
                    .get_or_insert_with(|| (index, vec![0; ZERO_BLOCK as usize]));
                let from = (at - index * ZERO_BLOCK) as usize;
                block[from..from + piece.len()].copy_from_slice(piece);
            }
            at = to;
        }
    }

    fn flush(&mut self) {
        if let Some((index, block)) = self.block.take() {
            let start = index * ZERO_BLOCK;
            self.id.update(&start.to_le_bytes());
            self.id.update(&block);
            self.metadata.add_range(start..start + ZERO_BLOCK);
        }
    }

    /// The survey of the image of `len` bytes.
    pub fn finish(mut self, len: u64) -> Survey {
        self.flush();
        self.id.update(&len.to_le_bytes());
        for r in &self.files {
            self.id.update(&r.start.to_le_bytes());
            self.id.update(&r.end.to_le_bytes());
        }
        let mut map = DataMap::union(&self.file_blocks, &self.metadata);
        map.finish(len);
        Survey {
            map,
            layout_id: *self.id.finalize().as_bytes(),
        }
    }
}

/// The survey of a raw image held in memory that has no files (tests, small images): its
/// map is its non-zero blocks.
pub fn survey_of(bytes: &[u8]) -> Survey {
    let mut s = Surveyor::new();
    s.bytes(0, bytes);
    s.finish(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_survey_does_not_depend_on_how_the_image_is_given() {
        let mut img = vec![0u8; 300_000];
        img[5000] = 1;
        img[70_000..90_000].fill(7);
        img[299_999] = 9;
        let whole = survey_of(&img);
        assert_eq!(
            whole.map.ranges,
            vec![4096..8192, 69632..90112, 299008..300_000]
        );
        for step in [1usize, 511, 4096, 4097, 65_536] {
            let mut s = Surveyor::new();
            let mut at = 0;
            while at < img.len() {
                let end = (at + step).min(img.len());
                // Pieces that are all zeros may be left out: a range no call covers is zeros.
                if img[at..end].iter().any(|&b| b != 0) {
                    s.bytes(at as u64, &img[at..end]);
                }
                at = end;
            }
            assert_eq!(s.finish(img.len() as u64), whole, "step {step}");
        }
    }

    /// A build declares its files as it goes and never gives their bytes; `convert` declares
    /// them all first and gives every byte. Both find the same survey, whatever the files
    /// hold.
    #[test]
    fn files_declared_as_they_come_or_first_give_the_same_survey() {
        let len = 400_000u64;
        let mut img = vec![0u8; len as usize];
        img[10..20].fill(1); // metadata
        img[100..5000].fill(2); // file A, sharing its first block with the metadata
        img[5000..5010].fill(3); // metadata right after it
        img[70_000..80_000].fill(0); // file B: all zeros, still data
        img[300_000] = 4; // metadata
        let files = [100..5000u64, 70_000..80_000];

        let mut build = Surveyor::new();
        build.bytes(0, &img[..100]);
        build.file(files[0].clone());
        build.bytes(5000, &img[5000..70_000]);
        build.file(files[1].clone());
        build.bytes(80_000, &img[80_000..]);
        let built = build.finish(len);

        let mut other = img.clone();
        other[100..5000].fill(9); // other file contents: the same survey
        for bytes in [&img, &other] {
            let mut convert = Surveyor::new();
            for f in &files {
                convert.file(f.clone());
            }
            convert.bytes(0, bytes);
            assert_eq!(convert.finish(len), built);
        }
        assert_eq!(
            built.map.ranges,
            vec![0..8192, 69632..81920, 299_008..303_104]
        );

        // The metadata and the layout make the id.
        let mut moved = Surveyor::new();
        moved.bytes(0, &img[..100]);
        moved.file(100..5001);
        moved.bytes(5001, &img[5001..]);
        assert_ne!(moved.finish(len).layout_id, built.layout_id);
        img[300_000] = 5;
        let mut changed = Surveyor::new();
        for f in &files {
            changed.file(f.clone());
        }
        changed.bytes(0, &img);
        assert_ne!(changed.finish(len).layout_id, built.layout_id);
    }
}
