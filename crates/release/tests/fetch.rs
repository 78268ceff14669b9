//! Fetching releases from a real HTTP server on loopback (127.0.0.1 only): the cache, the
//! lock, and every way a download can go wrong.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod http;
mod tarball;

use std::path::Path;
use std::time::{Duration, Instant};

use http::TestServer;
use md5::Digest as _;
use nanoimg_elf::Arch;
use nanoimg_release::{
    Cache, FetchError, HttpOptions, Lock, LockedRelease, Pin, ReleaseOptions, Releases,
};
use tarball::tarball;

const VERSION: &str = "9.9.1";
const TARBALL: &str = "/9.9.1/nanos-release-linux-9.9.1.tar.gz";
const MD5: &str = "/9.9.1/nanos-release-linux-9.9.1.md5";

fn fake_boot_img() -> Vec<u8> {
    let mut b = vec![0x90u8; 512 + 94 * 512];
    b[434..442].copy_from_slice(&(94u64 * 512).to_le_bytes());
    b[442..446].copy_from_slice(&12u32.to_le_bytes());
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// An ELF64 header for `machine` followed by filler: what `KernelDir` reads of a kernel.
fn fake_kernel(machine: u16) -> Vec<u8> {
    let mut k = vec![0x4Bu8; 200_000];
    k[..64].fill(0);
    k[..4].copy_from_slice(b"\x7fELF");
    k[4] = 2;
    k[5] = 1;
    k[18..20].copy_from_slice(&machine.to_le_bytes());
    k
}

fn release_tarball() -> Vec<u8> {
    tarball(&[
        ("boot.img", &fake_boot_img()),
        ("kernel.img", &fake_kernel(62)),
        ("klibs/tls", b"tls klib"),
    ])
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn md5_hex(b: &[u8]) -> String {
    md5::Md5::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Serves `tar` and its correct .md5.
fn serve(server: &TestServer, tar: &[u8]) {
    server.put(TARBALL, tar.to_vec());
    server.put(MD5, format!("{}\n", md5_hex(tar)).into_bytes());
}

fn pin(server: &TestServer, sha256: Option<String>) -> Pin {
    Pin {
        version: VERSION.into(),
        arch: Arch::X86_64,
        url: format!("{}{TARBALL}", server.base_url()),
        md5_url: format!("{}{MD5}", server.base_url()),
        sha256,
    }
}

fn quick_http() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_millis(500),
        attempts: 2,
        retry_delay: Duration::from_millis(10),
        progress: false,
    }
}

fn releases(cache: &Path, pin: Pin, options: ReleaseOptions) -> Releases {
    Releases::new(
        Cache::new(cache),
        ReleaseOptions {
            http: quick_http(),
            ..options
        },
    )
    .with_pins(vec![pin])
}

/// Nothing was cached: no release entries and no leftovers in the scratch area.
fn assert_nothing_cached(cache: &Path) {
    for sub in ["releases", "tmp"] {
        let d = cache.join(sub);
        if d.exists() {
            let left: Vec<_> = std::fs::read_dir(&d)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            assert!(left.is_empty(), "{} holds {left:?}", d.display());
        }
    }
}

#[test]
fn a_good_fetch_fills_the_cache_and_the_lock_then_works_offline() {
    let server = TestServer::start();
    let tar = release_tarball();
    serve(&server, &tar);
    let cache = tempfile::tempdir().unwrap();
    let mut lock = Lock::default();
    let r = releases(
        cache.path(),
        pin(&server, Some(sha256(&tar))),
        ReleaseOptions::default(),
    );
    let got = r.get(VERSION, Arch::X86_64, &mut lock).unwrap();
    assert!(got.downloaded && !got.trusted_on_first_use);
    assert_eq!(
        got.kernel_dir.dir,
        cache.path().join("releases").join(sha256(&tar))
    );
    assert!(std::fs::read(&got.kernel_dir.kernel).unwrap() == fake_kernel(62));
    let entry = lock.release(VERSION, Arch::X86_64).unwrap();
    assert_eq!(entry.sha256, sha256(&tar));
    assert_eq!(
        entry.files.keys().collect::<Vec<_>>(),
        ["boot.img", "kernel.img", "klibs/tls"]
    );
    assert_eq!(entry.files["klibs/tls"], sha256(b"tls klib"));
    assert_eq!(server.requests(TARBALL), 1);

    // The network is gone: the next build is served from the cache, offline or not.
    server.stop();
    for offline in [false, true] {
        let r = releases(
            cache.path(),
            pin(&server, Some(sha256(&tar))),
            ReleaseOptions {
                offline,
                ..Default::default()
            },
        );
        let again = r.get(VERSION, Arch::X86_64, &mut lock).unwrap();
        assert!(!again.downloaded);
        assert_eq!(again.kernel_dir.dir, got.kernel_dir.dir);
    }
}

#[test]
fn the_arm64_release_is_the_virt_tarball_locked_and_cached_beside_the_x86_64_one() {
    const VIRT: &str = "/9.9.1/nanos-release-linux-9.9.1-virt.tar.gz";
    const VIRT_MD5: &str = "/9.9.1/nanos-release-linux-9.9.1-virt.md5";
    let server = TestServer::start();
    let tar = release_tarball();
    serve(&server, &tar);
    let virt = tarball(&[
        ("bootaa64.efi", b"aa64 loader"),
        ("kernel.img", &fake_kernel(183)),
        ("klibs/tls", b"arm tls klib"),
    ]);
    server.put(VIRT, virt.clone());
    server.put(VIRT_MD5, format!("{}\n", md5_hex(&virt)).into_bytes());
    let cache = tempfile::tempdir().unwrap();
    let arm_pin = Pin {
        arch: Arch::Aarch64,
        url: format!("{}{VIRT}", server.base_url()),
        md5_url: format!("{}{VIRT_MD5}", server.base_url()),
        ..pin(&server, None)
    };
    let r = Releases::new(
        Cache::new(cache.path()),
        ReleaseOptions {
            http: quick_http(),
            ..Default::default()
        },
    )
    .with_pins(vec![pin(&server, None), arm_pin]);
    let mut lock = Lock::default();
    let x86 = r.get(VERSION, Arch::X86_64, &mut lock).unwrap();
    let arm = r.get(VERSION, Arch::Aarch64, &mut lock).unwrap();
    assert_eq!(x86.kernel_dir.arch, Arch::X86_64);
    assert_eq!(arm.kernel_dir.arch, Arch::Aarch64);
    assert_eq!(arm.kernel_dir.boot, None);
    assert!(arm
        .kernel_dir
        .uefi_loader
        .as_ref()
        .unwrap()
        .ends_with("bootaa64.efi"));
    assert_eq!(
        arm.kernel_dir.dir,
        cache.path().join("releases").join(sha256(&virt))
    );
    assert_eq!(server.requests(VIRT), 1);
    // One lock entry per architecture; the arm64 one says so, the x86_64 one as before.
    assert_eq!(lock.releases.len(), 2);
    assert_eq!(
        lock.release(VERSION, Arch::Aarch64).unwrap().sha256,
        sha256(&virt)
    );
    assert_eq!(
        lock.release(VERSION, Arch::X86_64).unwrap().sha256,
        sha256(&tar)
    );
    let d = tempfile::tempdir().unwrap();
    let lock_file = d.path().join("nanoimg.lock");
    lock.save(&lock_file).unwrap();
    let text = std::fs::read_to_string(&lock_file).unwrap();
    assert_eq!(text.matches("arch = \"arm64\"").count(), 1, "{text}");
    assert_eq!(Lock::load(&lock_file).unwrap(), {
        let mut sorted = lock.clone();
        sorted.releases.sort_by_key(|r| r.arch);
        sorted
    });
    // Cached and indexed under its release name; offline it is found again.
    assert_eq!(
        std::fs::read_to_string(cache.path().join("index/9.9.1-virt"))
            .unwrap()
            .trim(),
        sha256(&virt)
    );
    server.stop();
    let offline = Releases::new(
        Cache::new(cache.path()),
        ReleaseOptions {
            offline: true,
            ..Default::default()
        },
    )
    .with_pins(vec![]);
    let e = offline
        .get(VERSION, Arch::Aarch64, &mut Lock::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("9.9.1-virt is not pinned"), "{e}");
    let again = Releases::new(
        Cache::new(cache.path()),
        ReleaseOptions {
            offline: true,
            allow_unpinned: true,
            ..Default::default()
        },
    )
    .get(VERSION, Arch::Aarch64, &mut lock)
    .unwrap();
    assert!(!again.downloaded);
    assert_eq!(again.kernel_dir.arch, Arch::Aarch64);
}

#[test]
fn without_a_pinned_hash_the_first_download_is_trusted_and_locked() {
    let server = TestServer::start();
    let tar = release_tarball();
    serve(&server, &tar);
    let cache = tempfile::tempdir().unwrap();
    let mut lock = Lock::default();
    let got = releases(cache.path(), pin(&server, None), ReleaseOptions::default())
        .get(VERSION, Arch::X86_64, &mut lock)
        .unwrap();
    assert!(got.trusted_on_first_use);
    assert_eq!(
        lock.release(VERSION, Arch::X86_64).unwrap().sha256,
        sha256(&tar)
    );

    // Offline, in a new cache: a clear error, and no request.
    let empty = tempfile::tempdir().unwrap();
    let before = server.requests(TARBALL);
    let e = releases(
        empty.path(),
        pin(&server, None),
        ReleaseOptions {
            offline: true,
            ..Default::default()
        },
    )
    .get(VERSION, Arch::X86_64, &mut lock)
    .unwrap_err();
    assert!(matches!(e, FetchError::Offline { .. }), "{e}");
    assert!(e.to_string().contains("nanoimg kernel fetch 9.9.1"), "{e}");
    assert_eq!(server.requests(TARBALL), before);
}

#[test]
fn a_tarball_that_does_not_match_the_pin_or_the_lock_is_refused() {
    let server = TestServer::start();
    let tar = release_tarball();
    serve(&server, &tar);
    let cache = tempfile::tempdir().unwrap();

    let wrong = "0".repeat(64);
    let e = releases(
        cache.path(),
        pin(&server, Some(wrong.clone())),
        ReleaseOptions::default(),
    )
    .get(VERSION, Arch::X86_64, &mut Lock::default())
    .unwrap_err();
    assert!(
        matches!(&e, FetchError::Sha256Mismatch { source_of_truth: "the pin", expected, .. } if *expected == wrong),
        "{e}"
    );
    assert_nothing_cached(cache.path());

    let mut lock = Lock::default();
    lock.set_release(LockedRelease {
        arch: Arch::X86_64,
        version: VERSION.into(),
        url: "https://example.invalid/x".into(),
        sha256: wrong,
        files: Default::default(),
    });
    let before = lock.clone();
    let e = releases(cache.path(), pin(&server, None), ReleaseOptions::default())
        .get(VERSION, Arch::X86_64, &mut lock)
        .unwrap_err();
    assert!(
        matches!(
            e,
            FetchError::Sha256Mismatch {
                source_of_truth: "nanoimg.lock",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        lock, before,
        "the lock is not changed by a refused download"
    );
    assert_nothing_cached(cache.path());
}

#[test]
fn a_wrong_md5_is_refused() {
    let server = TestServer::start();
    let tar = release_tarball();
    server.put(TARBALL, tar.clone());
    server.put(
        MD5,
        format!("{}\n", md5_hex(b"something else")).into_bytes(),
    );
    let cache = tempfile::tempdir().unwrap();
    let e = releases(cache.path(), pin(&server, None), ReleaseOptions::default())
        .get(VERSION, Arch::X86_64, &mut Lock::default())
        .unwrap_err();
    assert!(matches!(e, FetchError::Md5Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("the published .md5 says"), "{e}");
    assert_nothing_cached(cache.path());

    server.put(MD5, b"<html>not found</html>".to_vec());
    let e = releases(cache.path(), pin(&server, None), ReleaseOptions::default())
        .get(VERSION, Arch::X86_64, &mut Lock::default())
        .unwrap_err();
    assert!(matches!(e, FetchError::BadMd5File { .. }), "{e}");
}

#[test]
fn a_truncated_download_is_retried_then_refused() {
    let server = TestServer::start();
    let tar = release_tarball();
    let len = tar.len();
    server.put_truncated(TARBALL, tar.clone(), len / 2);
    server.put(MD5, md5_hex(&tar).into_bytes());
    let cache = tempfile::tempdir().unwrap();
    let e = releases(cache.path(), pin(&server, None), ReleaseOptions::default())
        .get(VERSION, Arch::X86_64, &mut Lock::default())
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("after 2 attempts"), "{msg}");
    assert!(msg.contains("truncated") || msg.contains("broken"), "{msg}");
    assert_eq!(server.requests(TARBALL), 2);
    assert_nothing_cached(cache.path());
}

#[test]
fn a_server_that_hangs_times_out() {
    let server = TestServer::start();
    server.put_hang(TARBALL);
    let cache = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let e = releases(cache.path(), pin(&server, None), ReleaseOptions::default())
        .get(VERSION, Arch::X86_64, &mut Lock::default())
        .unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    // Two attempts of 0.5 s: well under the time a hang would take.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_nothing_cached(cache.path());
}

#[test]
fn a_tarball_with_escaping_members_is_refused() {
    for bad in ["../evil", "/tmp/evil-absolute"] {
        let server = TestServer::start();
        let tar = tarball(&[("kernel.img", b"k"), (bad, b"x")]);
        serve(&server, &tar);
        let cache = tempfile::tempdir().unwrap();
        let e = releases(cache.path(), pin(&server, None), ReleaseOptions::default())
            .get(VERSION, Arch::X86_64, &mut Lock::default())
            .unwrap_err();
        assert!(matches!(e, FetchError::Extract(_)), "{e}");
        assert!(e.to_string().contains(&format!("{bad:?} refused")), "{e}");
        assert_nothing_cached(cache.path());
        assert!(!cache.path().join("evil").exists());
    }
    assert!(!Path::new("/tmp/evil-absolute").exists());
}

#[test]
fn two_concurrent_fetches_of_the_same_release() {
    let server = TestServer::start();
    let tar = release_tarball();
    server.put_slow(TARBALL, tar.clone(), Duration::from_millis(300));
    server.put(MD5, md5_hex(&tar).into_bytes());
    let cache = tempfile::tempdir().unwrap();
    let p = pin(&server, None);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let r = releases(cache.path(), p.clone(), ReleaseOptions::default());
                s.spawn(move || r.get(VERSION, Arch::X86_64, &mut Lock::default()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dirs: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap().kernel_dir.dir)
        .collect();
    assert_eq!(dirs[0], dirs[1]);
    assert_eq!(server.requests(TARBALL), 2, "both really downloaded");
    let entries: Vec<_> = std::fs::read_dir(cache.path().join("releases"))
        .unwrap()
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        std::fs::read_dir(cache.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read(dirs[0].join("klibs/tls")).unwrap(),
        b"tls klib"
    );
}

#[test]
fn locked_and_unpinned_rules() {
    let server = TestServer::start();
    let tar = release_tarball();
    serve(&server, &tar);
    let cache = tempfile::tempdir().unwrap();
    let e = releases(
        cache.path(),
        pin(&server, None),
        ReleaseOptions {
            locked: true,
            ..Default::default()
        },
    )
    .get(VERSION, Arch::X86_64, &mut Lock::default())
    .unwrap_err();
    assert!(matches!(e, FetchError::NotLocked { .. }), "{e}");
    assert_eq!(server.requests(TARBALL), 0);

    let e = releases(cache.path(), pin(&server, None), ReleaseOptions::default())
        .get("1.2.3", Arch::X86_64, &mut Lock::default())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Nanos 1.2.3 is not pinned (pinned: 9.9.1); pass --allow-unpinned to use it anyway"
    );
}

#[test]
fn a_mirror_replaces_the_official_location() {
    let server = TestServer::start();
    let tar = release_tarball();
    serve(&server, &tar);
    let cache = tempfile::tempdir().unwrap();
    // The pin points at the official location; only the mirror (loopback) is contacted.
    let official = Pin::unpinned(VERSION, Arch::X86_64);
    let got = releases(
        cache.path(),
        official.clone(),
        ReleaseOptions {
            mirror: Some(server.base_url()),
            ..Default::default()
        },
    )
    .get(VERSION, Arch::X86_64, &mut Lock::default())
    .unwrap();
    assert!(got.downloaded);
    assert_eq!(
        got.locked.url, official.url,
        "the lock keeps the official URL"
    );
}

#[test]
fn a_tampered_cache_entry_is_caught_against_the_lock() {
    let server = TestServer::start();
    let tar = release_tarball();
    serve(&server, &tar);
    let cache = tempfile::tempdir().unwrap();
    let mut lock = Lock::default();
    let r = releases(cache.path(), pin(&server, None), ReleaseOptions::default());
    let got = r.get(VERSION, Arch::X86_64, &mut lock).unwrap();
    std::fs::write(&got.kernel_dir.kernel, b"evil kernel").unwrap();
    let e = r.get(VERSION, Arch::X86_64, &mut lock).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Nanos 9.9.1: kernel.img in the release cache"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("run again to download and verify it anew"),
        "{e}"
    );
    let report = r.verify(&lock);
    assert!(matches!(report[0].1, Some(Err(_))));
}
