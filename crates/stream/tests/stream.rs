//! The writer's output and digests against an image assembled in memory.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;

use nanoimg_stream::{CopyError, ImageWriter, CHUNK, HOLE_BLOCK};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// One step of building an image.
#[derive(Clone, Debug)]
enum Step {
    Write(Vec<u8>),
    Zeros(u64),
    FileBytes(Vec<u8>),
    HostFile(Vec<u8>),
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                | 1
        })
        .collect()
}

/// Runs `steps` through a writer; returns the file's bytes, the expected bytes, the digests
/// and the expected file digests.
fn run(
    steps: &[Step],
    file_digests: bool,
    direct_io: bool,
) -> (Vec<u8>, Vec<u8>, nanoimg_stream::Digests, Vec<[u8; 32]>) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("image");
    let out = File::create_new(&out_path).unwrap();
    let mut w = ImageWriter::with_direct_io(&out, file_digests, direct_io).unwrap();
    let mut expected = Vec::new();
    let mut file_sums = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Write(b) => {
                w.write(b).unwrap();
                expected.extend_from_slice(b);
            }
            Step::Zeros(n) => {
                w.zeros(*n).unwrap();
                expected.resize(expected.len() + *n as usize, 0);
            }
            Step::FileBytes(b) => {
                w.file_bytes(b).unwrap();
                expected.extend_from_slice(b);
                file_sums.push(Sha256::digest(b).into());
            }
            Step::HostFile(b) => {
                let p = dir.path().join(format!("src{i}"));
                fs::write(&p, b).unwrap();
                w.copy_file(&p, b.len() as u64).unwrap();
                expected.extend_from_slice(b);
                file_sums.push(Sha256::digest(b).into());
            }
        }
        assert_eq!(w.position(), expected.len() as u64);
    }
    let digests = w.finish().unwrap();
    drop(out);
    (fs::read(&out_path).unwrap(), expected, digests, file_sums)
}

fn check(steps: &[Step]) {
    // Direct I/O (where the test filesystem allows it) and the page cache.
    for (file_digests, direct_io) in [(false, true), (true, true), (true, false)] {
        let (got, expected, digests, file_sums) = run(steps, file_digests, direct_io);
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "image bytes differ");
        assert_eq!(digests.sha256, <[u8; 32]>::from(Sha256::digest(&expected)));
        assert_eq!(digests.blake3, *blake3::hash(&expected).as_bytes());
        if file_digests {
            assert_eq!(digests.files, file_sums);
        } else {
            assert!(digests.files.is_empty());
        }
    }
}

#[test]
fn a_mixed_image_comes_out_byte_for_byte_with_its_digests() {
    check(&[
        Step::Write(pattern(512, 1)),
        Step::Zeros(4096 - 512),
        Step::Write(pattern(3 * CHUNK + 77, 2)),
        Step::HostFile(Vec::new()),
        Step::FileBytes(Vec::new()),
        Step::HostFile(pattern(4096, 3)),
        Step::Zeros(5 * CHUNK as u64 + 123),
        Step::FileBytes(pattern(100, 4)),
        Step::HostFile(pattern(2 * CHUNK + 1, 5)),
        Step::Zeros(HOLE_BLOCK as u64 * 3),
        Step::HostFile(vec![0; 3 * HOLE_BLOCK + 5]),
        Step::Write(pattern(1, 6)),
        Step::Zeros(7),
    ]);
}

#[test]
fn an_empty_image_and_an_all_zero_image() {
    check(&[]);
    check(&[Step::Zeros(3 * CHUNK as u64 + 512)]);
}

#[test]
fn zeros_become_holes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    let out = File::create_new(&path).unwrap();
    let mut w = ImageWriter::new(&out, false).unwrap();
    w.write(&pattern(1000, 7)).unwrap();
    w.zeros(64 << 20).unwrap();
    // Zeros inside data (a sparse file's holes) are skipped as well.
    let mut data = pattern(CHUNK, 8);
    data[HOLE_BLOCK..CHUNK - HOLE_BLOCK].fill(0);
    w.write(&data).unwrap();
    w.write(&pattern(10, 9)).unwrap();
    let digests = w.finish().unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 1000 + (64 << 20) + CHUNK as u64 + 10);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated <= 64 * 1024,
        "{allocated} bytes allocated for {} bytes of which ~9 KiB are not zeros",
        meta.len()
    );
    let bytes = fs::read(&path).unwrap();
    assert_eq!(digests.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
}

#[test]
fn a_source_that_changed_or_vanished_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = File::create_new(dir.path().join("image")).unwrap();
    let src = dir.path().join("src");
    fs::write(&src, pattern(10_000, 1)).unwrap();
    let mut w = ImageWriter::new(&out, true).unwrap();
    assert!(matches!(
        w.copy_file(&src, 20_000),
        Err(CopyError::Changed { expected: 20_000 })
    ));
    let mut w = ImageWriter::new(&out, true).unwrap();
    assert!(matches!(
        w.copy_file(&src, 9_999),
        Err(CopyError::Changed { expected: 9_999 })
    ));
    let mut w = ImageWriter::new(&out, true).unwrap();
    assert!(matches!(
        w.copy_file(&dir.path().join("missing"), 1),
        Err(CopyError::Read(e)) if e.kind() == std::io::ErrorKind::NotFound
    ));
    let mut w = ImageWriter::new(&out, false).unwrap();
    w.write(b"abc").unwrap();
    assert!(w.pad_to(2).is_err(), "going backwards is refused");
}

#[test]
fn files_from_several_directories_in_any_order() {
    // The writer opens a file relative to the directory of the one before when it can; the
    // bytes must not depend on it, and errors must be the file's own.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b/c"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let files = [
        (a.join("1"), pattern(10, 1)),
        (a.join("2"), pattern(5000, 2)),
        (b.join("1"), pattern(300, 3)),
        (a.join("3"), pattern(7, 4)),
        (b.join("2"), pattern(4096, 5)),
        (b.join("3"), Vec::new()),
    ];
    for (p, bytes) in &files {
        fs::write(p, bytes).unwrap();
    }
    let out_path = dir.path().join("image");
    let out = File::create_new(&out_path).unwrap();
    let mut w = ImageWriter::new(&out, true).unwrap();
    let mut expected = Vec::new();
    for (p, bytes) in &files {
        w.copy_file(p, bytes.len() as u64).unwrap();
        expected.extend_from_slice(bytes);
    }
    // A name missing beside the last file, then in a directory that does not exist, then a
    // relative path with no directory part.
    for missing in [b.join("nope"), dir.path().join("gone/x"), "nope".into()] {
        assert!(matches!(
            w.copy_file(&missing, 1),
            Err(CopyError::Read(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
    }
    let digests = w.finish().unwrap();
    drop(out);
    assert!(fs::read(&out_path).unwrap() == expected);
    let sums: Vec<[u8; 32]> = files
        .iter()
        .map(|(_, b)| Sha256::digest(b).into())
        .collect();
    assert_eq!(digests.files, sums);
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1usize..5000, any::<u8>()).prop_map(|(n, s)| Step::Write(pattern(n, s))),
        prop_oneof![0u64..5000, 0u64..(3 * CHUNK as u64)].prop_map(Step::Zeros),
        (0usize..9000, any::<u8>()).prop_map(|(n, s)| Step::FileBytes(pattern(n, s))),
        prop_oneof![0usize..9000, 0usize..(CHUNK + 9000)]
            .prop_map(|n| Step::HostFile(pattern(n, n as u8))),
        (1usize..3).prop_map(|k| Step::HostFile(vec![0; k * HOLE_BLOCK + 17])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_images_come_out_byte_for_byte(steps in proptest::collection::vec(step(), 0..24)) {
        check(&steps);
    }
}
