//! UEFI hybrid images (reproducible, the ESP holds the loader) and data volumes (round trip,
//! label limits). Booting both is the e2e runner's job.

mod common;

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use nanoimg::disk::{DiskImage, ESP_SIZE, PARTITION_TYPE_ESP};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let loader: Vec<u8> = (0..157_862u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(release.join("bootx64.efi"), loader).unwrap();
    let prog = dir.path().join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    (dir, release, prog)
}

fn build_uefi(dir: &Path, release: &Path, prog: &Path, out: &str) -> std::process::Output {
    let out = dir.join(out);
    common::nanoimg(
        &[
            os("build"),
            prog.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
            os("--uefi"),
            os("-o"),
            out.as_os_str(),
        ],
        dir,
    )
}

/// A window of a file, for fatfs.
struct Window {
    file: std::fs::File,
    start: u64,
    pos: u64,
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}
impl std::io::Write for Window {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("read-only"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
            SeekFrom::End(d) => ESP_SIZE.checked_add_signed(d).unwrap(),
        };
        Ok(self.pos)
    }
}

#[test]
fn a_uefi_image_is_hybrid_reproducible_and_holds_the_loader() {
    let (dir, release, prog) = setup();
    let d = dir.path();
    for out in ["a.img", "b.img"] {
        let o = build_uefi(d, &release, &prog, out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (a, b) = (
        std::fs::read(d.join("a.img")).unwrap(),
        std::fs::read(d.join("b.img")).unwrap(),
    );
    assert!(a == b, "two UEFI builds differ");

    let img = DiskImage::open(&d.join("a.img")).unwrap();
    let esp = img.esp().expect("an ESP");
    assert_eq!(
        (esp.index, esp.entry.partition_type, esp.size),
        (0, PARTITION_TYPE_ESP, ESP_SIZE)
    );
    assert_eq!(esp.offset, 48_640 + 4096);
    assert_eq!(img.boot_partition().unwrap().offset, esp.offset + ESP_SIZE);
    assert!(img.root_fs().is_ok() && img.boot_fs().unwrap().is_some());

    let fs = fatfs::FileSystem::new(
        Window {
            file: std::fs::File::open(d.join("a.img")).unwrap(),
            start: esp.offset,
            pos: 0,
        },
        fatfs::FsOptions::new(),
    )
    .unwrap();
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    let mut loader = Vec::new();
    fs.root_dir()
        .open_file("EFI/BOOT/BOOTX64.EFI")
        .unwrap()
        .read_to_end(&mut loader)
        .unwrap();
    assert!(loader == std::fs::read(release.join("bootx64.efi")).unwrap());
}

#[test]
fn a_release_without_a_uefi_loader_is_a_clear_error() {
    let (dir, release, prog) = setup();
    std::fs::remove_file(release.join("bootx64.efi")).unwrap();
    let o = build_uefi(dir.path(), &release, &prog, "x.img");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: a UEFI image needs the release's bootx64.efi, and {} has none",
            release.display()
        )
    );
    assert!(!dir.path().join("x.img").exists());
}

#[test]
fn a_volume_round_trips_and_labels_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("src");
    std::fs::create_dir_all(src.join("params")).unwrap();
    std::fs::write(src.join("params/kzg.srs"), vec![3u8; 100_000]).unwrap();
    std::fs::write(src.join("README"), b"data").unwrap();
    std::os::unix::fs::symlink("params/kzg.srs", src.join("current")).unwrap();
    let vol = d.join("data.vol");
    let o = common::nanoimg(
        &[
            os("volume"),
            os("create"),
            src.as_os_str(),
            os("-o"),
            vol.as_os_str(),
            os("--label"),
            os("appdata"),
            os("--size"),
            os("16m"),
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(&vol).unwrap().len(), 16 << 20);
    let img = DiskImage::open(&vol).unwrap();
    assert!(img.mbr().is_none(), "a data volume has no MBR");
    assert_eq!(img.root_fs().unwrap().label(), b"appdata");

    let out = d.join("out");
    let o = common::nanoimg(&[os("extract"), vol.as_os_str(), out.as_os_str()], d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.join("params/kzg.srs")).unwrap(),
        vec![3u8; 100_000]
    );
    assert_eq!(std::fs::read(out.join("README")).unwrap(), b"data");
    assert_eq!(
        std::fs::read_link(out.join("current")).unwrap(),
        Path::new("params/kzg.srs")
    );

    let long = "l".repeat(32);
    let o = common::nanoimg(
        &[
            os("volume"),
            os("create"),
            src.as_os_str(),
            os("-o"),
            d.join("x.vol").as_os_str(),
            os("--label"),
            os(&long),
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is longer than 31 bytes"));
    assert!(!d.join("x.vol").exists());
}
