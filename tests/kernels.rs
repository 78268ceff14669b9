//! The CLI with releases fetched from a loopback mirror: trust on first use, the lock next to
//! the config, offline rebuilds from the cache, `kernel list/verify`.

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;

#[path = "../crates/release/tests/http/mod.rs"]
mod http;
#[path = "../crates/release/tests/tarball/mod.rs"]
mod tarball;

use std::ffi::OsStr;

use http::TestServer;
use md5::Digest as _;

const VERSION: &str = "9.9.2";

fn release_tarball() -> Vec<u8> {
    tarball::tarball(&[
        ("boot.img", &common::fake_boot_img(94)),
        ("kernel.img", &common::fake_kernel(62, 0x4B, 100_000)),
        ("klibs/tls", b"tls"),
    ])
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn build_fetches_through_a_mirror_then_rebuilds_offline() {
    let server = TestServer::start();
    let tar = release_tarball();
    server.put(
        &format!("/{VERSION}/nanos-release-linux-{VERSION}.tar.gz"),
        tar.clone(),
    );
    let md5: String = md5::Md5::digest(&tar)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    server.put(
        &format!("/{VERSION}/nanos-release-linux-{VERSION}.md5"),
        md5.into_bytes(),
    );

    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let prog = project.join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let config = project.join("config.json");
    std::fs::write(&config, format!(r#"{{"NanosVersion": "{VERSION}"}}"#)).unwrap();
    let build = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec![
            os("build"),
            prog.as_os_str(),
            os("-c"),
            config.as_os_str(),
            os("-o"),
            out.as_os_str(),
        ];
        args.extend(extra.iter().map(|a| os(a)));
        let o = common::nanoimg_env(&args, dir.path(), &[("NANOIMG_HTTP_TIMEOUT", "2")]);
        (o, out)
    };

    let mirror = server.base_url();
    let (o, first) = build("first.img", &["--allow-unpinned", "--mirror", &mirror]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("trusting it on first use"), "{stderr}");
    let lock = std::fs::read_to_string(project.join("nanoimg.lock")).unwrap();
    assert!(lock.contains(&format!("version = \"{VERSION}\"")), "{lock}");
    assert!(lock.contains("\"klibs/tls\""), "{lock}");
    assert!(
        lock.contains("https://storage.googleapis.com/nanos/release/9.9.2/"),
        "the lock records the official URL, not the mirror: {lock}"
    );

    // The network is gone: offline and --locked builds come from the cache, same bytes.
    server.stop();
    let sbom = dir.path().join("second.spdx.json");
    let (o, second) = build(
        "second.img",
        &[
            "--allow-unpinned",
            "--offline",
            "--locked",
            "--sbom",
            &sbom.to_string_lossy(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap());
    // The SBOM's Nanos package is the release the lock records: version, official URL,
    // the tarball's SHA-256.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    let nanos = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Nanos")
        .expect("the Nanos package");
    assert_eq!(nanos["versionInfo"], VERSION);
    assert_eq!(
        nanos["downloadLocation"],
        format!("https://storage.googleapis.com/nanos/release/{VERSION}/nanos-release-linux-{VERSION}.tar.gz")
    );
    let tar_sha256: String = sha2::Sha256::digest(&tar)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(nanos["checksums"][0]["checksumValue"], tar_sha256.as_str());
    assert_eq!(
        nanos["externalRefs"][0]["referenceLocator"],
        format!("pkg:github/nanovms/nanos@{VERSION}")
    );

    let o = common::nanoimg_env(
        &[
            os("kernel"),
            os("verify"),
            os("--lock"),
            project.join("nanoimg.lock").as_os_str(),
        ],
        dir.path(),
        &[],
    );
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("Nanos {VERSION}: ok\n")
    );

    // Another version is not in the lock: --locked refuses it, offline there is nothing.
    let (o, third) = build(
        "third.img",
        &["--nanos-version", "9.9.3", "--allow-unpinned", "--offline"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: Nanos 9.9.3 is not in the cache"),
        "{stderr}"
    );
    assert!(!third.exists());
}

#[test]
fn kernel_list_shows_the_pins_without_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let o = common::nanoimg_env(
        &[os("kernel"), os("list")],
        dir.path(),
        &[("NANOIMG_MIRROR", "http://127.0.0.1:9")],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use nanoimg::elf::Arch;
    let newest = nanoimg::release::default_pin(Arch::X86_64).version;
    assert!(
        out.contains(&format!("\n{newest}  amd64 (default)  not cached")),
        "{out}"
    );
    // The aarch64 release of each version is listed by its -virt name.
    assert!(
        out.contains(&format!("\n{newest}-virt  arm64 (default)  not cached")),
        "{out}"
    );
    assert_eq!(out.lines().count(), nanoimg::release::pins().len());
}

#[test]
fn an_unpinned_version_is_refused_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let o = common::nanoimg_env(
        &[
            os("build"),
            prog.as_os_str(),
            os("--nanos-version"),
            os("0.0.1"),
            os("--offline"),
        ],
        dir.path(),
        &[],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: Nanos 0.0.1 is not pinned (pinned: "),
        "{stderr}"
    );
}

/// A kernel folder changed on purpose: the build names the file and the remedy, the remedy
/// (`--update-lock`) records the new files, and `--locked` refuses any change before that.
#[test]
fn a_changed_kernel_folder_is_accepted_with_update_lock_only() {
    let dir = tempfile::tempdir().unwrap();
    let release = common::fake_release(dir.path());
    let prog = dir.path().join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let lock = dir.path().join("nanoimg.lock");
    let build = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec![
            os("build"),
            prog.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-o"),
            out.as_os_str(),
        ];
        args.extend(extra.iter().map(|a| os(a)));
        (common::nanoimg(&args, dir.path()), out)
    };
    let (o, _) = build("first.img", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recorded = std::fs::read_to_string(&lock).unwrap();

    // The kernel is rebuilt: a plain build names the file and the flag that accepts it.
    std::fs::write(
        release.join("kernel.img"),
        common::fake_kernel(62, 0x4C, 1_000_003),
    )
    .unwrap();
    let (o, out) = build("second.img", &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: kernel.img in the kernel folder {} does not match nanoimg.lock (sha256 ",
            release.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("if you changed the kernel on purpose, run again with --update-lock"),
        "{stderr}"
    );
    assert!(!out.exists());
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), recorded);

    // --locked refuses the change, and cannot be combined with accepting it.
    let (o, out) = build("locked.img", &["--locked"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--locked refuses any change"), "{stderr}");
    assert!(!out.exists());
    let (o, _) = build("both.img", &["--locked", "--update-lock"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), recorded);

    // The remedy: the build succeeds and the lock now records the new kernel.
    let (o, out) = build("third.img", &["--update-lock"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
    let updated = std::fs::read_to_string(&lock).unwrap();
    assert_ne!(updated, recorded);
    let new_sha: String = sha2::Sha256::digest(common::fake_kernel(62, 0x4C, 1_000_003))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(updated.contains(&new_sha), "{updated}");

    // From now on the new kernel is the locked one; a new klib is again a change.
    let (o, _) = build("fourth.img", &["--locked"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::create_dir(release.join("klibs")).unwrap();
    std::fs::write(release.join("klibs/ntp"), b"ntp").unwrap();
    let (o, _) = build("fifth.img", &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("klibs/ntp in the kernel folder") && stderr.contains("not recorded"),
        "{stderr}"
    );
}
