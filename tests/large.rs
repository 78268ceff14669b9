//! Large inputs: a 2 GiB file is streamed (peak memory stays small) and a 5,000-file tree
//! builds and reads back. Sizes, not speed, are asserted: these are not timed tests.

mod common;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use nanoimg::disk::{write_image, BootImage, DiskImage, ImageSpec};
use nanoimg::tfs::{plan, Dir, Entry, FileSource, Node, VolumeSpec};
use nanoimg::tuple::{Tuple, Value};

const GIB: u64 = 1 << 30;

/// Places where the sparse 2 GiB file holds data: an ELF header at the start (the file is
/// the program), across an extent boundary in the middle, and the very end.
fn markers() -> Vec<(u64, Vec<u8>)> {
    let pattern = |i: u8| (0..4096u32).map(|b| (b as u8) ^ (0x5A + i)).collect();
    vec![
        (0, common::tiny_static_elf()),
        (GIB - 100, pattern(1)),
        (2 * GIB - 4096, pattern(2)),
    ]
}

/// A writer that checks what it is given against the expected sparse content, without
/// keeping it.
struct Expect {
    pos: u64,
    markers: Vec<(u64, Vec<u8>)>,
}

impl Write for Expect {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut want = vec![0u8; buf.len()];
        let (start, end) = (self.pos, self.pos + buf.len() as u64);
        for (at, bytes) in &self.markers {
            let (m0, m1) = (*at, at + bytes.len() as u64);
            let (lo, hi) = (m0.max(start), m1.min(end));
            if lo < hi {
                want[(lo - start) as usize..(hi - start) as usize]
                    .copy_from_slice(&bytes[(lo - m0) as usize..(hi - m0) as usize]);
            }
        }
        assert!(want == buf, "content differs in bytes {start}..{end}");
        self.pos = end;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_2_gib_file_is_streamed_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let big = dir.path().join("big");
    let mut f = File::create(&big).unwrap();
    f.set_len(2 * GIB).unwrap();
    for (at, bytes) in markers() {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&bytes).unwrap();
    }
    drop(f);
    let out = dir.path().join("big.img");
    let o = common::nanoimg(
        &[
            OsStr::new("build"),
            big.as_os_str(),
            OsStr::new("--kernel-dir"),
            release.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut u), 0);
        u
    };
    let peak_mib = usage.ru_maxrss as f64 / 1024.0; // ru_maxrss is in KiB on Linux
    eprintln!("peak memory of nanoimg building a 2 GiB image: {peak_mib:.1} MiB");
    assert!(peak_mib < 100.0, "peak memory {peak_mib:.1} MiB");

    let img = DiskImage::open(&out).unwrap();
    let mut root = img.root_fs().unwrap();
    let tree = root.tree().unwrap();
    let Entry::File(f) = &tree[&b"big"[..]] else {
        panic!()
    };
    assert_eq!(f.len, 2 * GIB);
    assert_eq!(f.extents.len(), 64, "32 MiB extents");
    let mut check = Expect {
        pos: 0,
        markers: markers(),
    };
    root.copy_file(f, &mut check).unwrap();
    assert_eq!(check.pos, 2 * GIB);
}

#[test]
fn a_tree_of_5000_files_builds_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("tree");
    let mut root = Dir::new();
    for i in 0..5000 {
        let sub = host.join(format!("d{:02}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        let p = sub.join(format!("file-{i:04}.dat"));
        std::fs::write(&p, format!("contents of file {i}\n").repeat(i % 7)).unwrap();
        let image_path = format!("/srv/data/d{:02}/file-{i:04}.dat", i % 50);
        root.insert(
            image_path.as_bytes(),
            Node::File(FileSource::host(&p).unwrap()),
        )
        .unwrap();
    }
    let mut manifest = Tuple::new();
    manifest.insert(
        b"program".to_vec(),
        Value::string("/srv/data/d00/file-0000.dat"),
    );
    let mut boot = Dir::new();
    boot.insert(b"/kernel", Node::File(FileSource::Bytes(vec![1; 1000])))
        .unwrap();
    let boot_fs = plan(&VolumeSpec::new(&boot)).unwrap();
    let root_fs = plan(&VolumeSpec {
        manifest: &manifest,
        ..VolumeSpec::new(&root)
    })
    .unwrap();
    let boot_image = BootImage::parse(common::fake_boot_img(94), "boot.img".as_ref()).unwrap();
    let out = dir.path().join("many.img");
    write_image(
        &File::create(&out).unwrap(),
        &ImageSpec {
            boot_image: Some(&boot_image),
            boot_fs: &boot_fs,
            root_fs: &root_fs,
            root_free_space: 0,
            min_image_size: 0,
            uefi_loader: None,
        },
        false,
    )
    .unwrap();

    let img = DiskImage::open(&out).unwrap();
    let mut fs = img.root_fs().unwrap();
    let tree = fs.tree().unwrap();
    let Entry::Dir(srv) = &tree[&b"srv"[..]] else {
        panic!()
    };
    let Entry::Dir(data) = &srv[&b"data"[..]] else {
        panic!()
    };
    assert_eq!(data.len(), 50);
    let mut n = 0;
    for (d, e) in data {
        let Entry::Dir(files) = e else { panic!() };
        for (name, f) in files {
            let Entry::File(f) = f else { panic!() };
            let host_path = host
                .join(String::from_utf8_lossy(d).as_ref())
                .join(String::from_utf8_lossy(name).as_ref());
            assert_eq!(fs.read_file(f).unwrap(), std::fs::read(host_path).unwrap());
            n += 1;
        }
    }
    assert_eq!(n, 5000);
}
