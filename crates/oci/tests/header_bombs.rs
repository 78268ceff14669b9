//! Tar header bombs: a small layer (or image archive) whose GNU long-name, long-link or
//! PAX member claims gigabytes, with the data there to read (zeros, compressed a
//! thousandfold). Each is resolved and unpacked in a child process (this test binary run
//! again, see [`child`]) whose peak memory is measured with `wait4`: it must fail with one
//! line, in well under 64 MiB. (Its own test binary, with one test doing the measuring: a
//! child's peak memory as Linux reports it includes what its parent held when it started
//! the child, so nothing else may run in this process.)

mod common;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

const CASE: &str = "NANOIMG_OCI_BOMB";
const OUT: &str = "NANOIMG_OCI_BOMB_OUT";

/// Zeros of the data the bombs' headers claim, actually present.
const DATA: u64 = 256 << 20;

/// Run again by [`header_bombs_fail_at_once_in_bounded_memory`] with the image in `$CASE`:
/// resolves and unpacks it, writes the error (or "ok") to `$OUT`. Does nothing otherwise.
#[test]
fn child() {
    let (Ok(image), Ok(out)) = (std::env::var(CASE), std::env::var(OUT)) else {
        return;
    };
    let cache = Path::new(&out).with_extension("cache");
    let s = nanoimg_oci::Source::new(&image, None);
    let text = match nanoimg_oci::resolve(&s).and_then(|r| nanoimg_oci::unpack(&r, &s, &cache)) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    std::fs::write(out, text).unwrap();
}

/// Runs [`child`] on `image`: its message, peak memory in MiB and time in seconds.
// The child is reaped by wait4, which clippy does not know.
#[allow(clippy::zombie_processes)]
fn measured(image: &Path, dir: &Path) -> (String, f64, f64) {
    let out = dir.join("child.out");
    let _ = std::fs::remove_file(&out);
    let start = Instant::now();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--test-threads=1", "--quiet"])
        .env(CASE, image)
        .env(OUT, &out)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: wait4 writes only the status and the rusage it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        let pid = libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut u);
        assert_eq!(pid, child.id() as libc::pid_t);
        u
    };
    let secs = start.elapsed().as_secs_f64();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    (text, usage.ru_maxrss as f64 / 1024.0, secs)
}

/// Writes `header` then `DATA` zeros then end-of-archive blocks, through `w`.
fn bomb_tar(mut w: impl Write, header: &[u8]) {
    w.write_all(header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..DATA >> 20 {
        w.write_all(&zeros).unwrap();
    }
    w.write_all(&[0; 1024]).unwrap();
}

#[test]
fn header_bombs_fail_at_once_in_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    let claimed: u64 = 6 << 30;
    let mut cases = vec![];
    for (kind, what, limit) in [
        (b'L', "a GNU long name", "4096"),
        (b'K', "a GNU long link name", "4096"),
        (b'x', "a PAX extended header", "1048576"),
        (b'g', "a PAX global header", "1048576"),
    ] {
        // A gzip'd layer: the header, then 256 MiB of zeros (about 250 KiB compressed).
        let name = format!("layer-{}", kind as char);
        let header = raw_header(kind, b"././@LongLink", claimed);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        bomb_tar(&mut gz, &header);
        let blob = gz.finish().unwrap();
        let tar_sha = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            bomb_tar(HashWriter(&mut h), &header);
            format!("sha256:{:x}", h.finalize())
        };
        let l = d.path().join(&name);
        init_layout(&l);
        let (ld, ls) = put_blob(&l, &blob);
        let config = serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [tar_sha]}});
        let (cd, cs) = put_blob(&l, &serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]});
        let (md, ms) = put_blob(&l, &serde_json::to_vec(&manifest).unwrap());
        write_index(
            &l,
            vec![
                serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": md, "size": ms}),
            ],
        );
        assert!(blob.len() < 2 << 20, "{} bytes", blob.len());
        cases.push((l, what, limit, format!("layer {ld}")));

        // An image archive starting with such a member (the zeros a sparse hole).
        let a = d.path().join(format!("archive-{}.tar", kind as char));
        let mut f = File::create(&a).unwrap();
        f.write_all(&header).unwrap();
        f.set_len(512 + DATA + 1024).unwrap();
        cases.push((a, what, limit, "larger than allowed".to_string()));
    }
    for (image, what, limit, wher) in cases {
        let (text, peak_mib, secs) = measured(&image, d.path());
        eprintln!("{peak_mib:5.1} MiB {secs:5.2} s {text}");
        assert!(!text.contains('\n') && text.len() < 1000, "{text}");
        for part in [
            what,
            limit,
            &claimed.to_string(),
            "\"././@LongLink\"",
            &wher,
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert!(
            peak_mib < 64.0,
            "{}: peak memory {peak_mib:.1} MiB",
            image.display()
        );
    }
}

/// Feeds what is written into a hasher.
struct HashWriter<'a>(&'a mut sha2::Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
