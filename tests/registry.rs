//! `docker://` images and artifacts against a real registry on loopback (Debian's
//! `docker-registry`, TLS with a CA made in the test, htpasswd basic auth; images put there
//! with skopeo): pulls by tag and by digest, the lock, offline rebuilds from the cache,
//! wrong credentials, a registry sending wrong bytes, an interrupted pull, push and pull
//! of a built image, `verify` of a build from a registry image (by the recorded digest).

// A scenario test reads as one script; the function-length lint (Cargo.toml) is for the
// product code in src/ and crates/*/src.
#![allow(clippy::too_many_lines)]

mod common;
#[path = "../crates/oci/tests/common/mod.rs"]
mod images;
mod registry_server;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use images::{tar_of, E};
use registry_server::{Registry, Stall};
use sha2::{Digest, Sha256};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn sha(p: &Path) -> String {
    Sha256::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A layout `dir/NAME` (tag `t`) with the static program `/prog` (ending in `marker`) and
/// `/etc/data`.
fn app_image(dir: &Path, name: &str, marker: &[u8]) -> PathBuf {
    let mut prog = common::tiny_static_elf();
    prog.extend_from_slice(marker);
    let layer = tar_of(&[
        E::File("prog", &prog),
        E::Dir("etc"),
        E::File("etc/data", b"data of the image"),
    ]);
    images::layout(&dir.join(name), &[layer], true)
}

/// `nanoimg ARGS` in `cwd` with the registry's environment and the cache `cache`.
fn nanoimg(r: &Registry, cwd: &Path, cache: &Path, args: &[&OsStr]) -> Output {
    let mut env: Vec<(String, String)> = r.env();
    env.push(("NANOIMG_CACHE".into(), cache.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::nanoimg_env(args, cwd, &env)
}

/// `nanoimg build --from-image IMAGE /prog` with the fake kernel of `dir`, into `cwd/out`,
/// lock `cwd/nanoimg.lock`.
fn build(
    r: &Registry,
    dir: &Path,
    cwd: &Path,
    image: &str,
    out: &str,
    extra: &[&str],
) -> (Output, PathBuf) {
    std::fs::create_dir_all(cwd).unwrap();
    let out = cwd.join(out);
    let release = dir.join("release");
    let mut args = vec![
        os("build"),
        os("--from-image"),
        os(image),
        os("/prog"),
        os("--kernel-dir"),
        release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(|s| os(s)));
    let o = nanoimg(r, cwd, &dir.join("cache"), &args);
    (o, out)
}

fn entries(dir: &Path) -> Vec<String> {
    images::entries(dir)
}

/// Nothing of a pull is left in the cache: no image layout, no blob, nothing in tmp.
fn assert_nothing_cached(cache: &Path) {
    assert_eq!(
        entries(&cache.join("registry/images")),
        Vec::<String>::new()
    );
    assert_eq!(
        entries(&cache.join("registry/blobs/sha256")),
        Vec::<String>::new()
    );
    assert_eq!(entries(&cache.join("tmp")), Vec::<String>::new());
}

#[test]
fn pulls_by_tag_and_digest_are_locked_and_rebuild_offline_identically() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let mut r = Registry::start(&dir.join("registry"));
    let layout = app_image(dir, "app", b"one");
    let digest = r.put(&layout, "t", "team/app:v1");
    assert!(digest.starts_with("sha256:"), "{digest}");
    let by_tag = format!("docker://{}/team/app:v1", r.host);
    let by_digest = format!("docker://{}/team/app@{digest}", r.host);

    // By tag: pulled, the lock records the manifest digest.
    let (o, a) = build(&r, dir, &dir.join("one"), &by_tag, "a.img", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lock = std::fs::read_to_string(dir.join("one/nanoimg.lock")).unwrap();
    assert!(
        lock.contains(&format!("source = \"{by_tag}\"")) && lock.contains(&digest),
        "{lock}"
    );
    let cache = dir.join("cache");
    assert_eq!(
        entries(&cache.join("registry/images")),
        vec![digest[7..].to_string()]
    );
    // The layout holds exactly that manifest.
    let index = std::fs::read_to_string(
        cache
            .join("registry/images")
            .join(&digest[7..])
            .join("index.json"),
    )
    .unwrap();
    assert!(index.contains(&digest), "{index}");
    assert_eq!(entries(&cache.join("tmp")), Vec::<String>::new());

    // By digest, in another folder: the same bytes, its own lock entry.
    let (o, b) = build(&r, dir, &dir.join("two"), &by_digest, "b.img", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha(&a), sha(&b));
    let lock2 = std::fs::read_to_string(dir.join("two/nanoimg.lock")).unwrap();
    assert!(lock2.contains(&by_digest), "{lock2}");

    // The registry stopped: a locked rebuild offline from the cache gives the same bytes.
    r.stop();
    let (o, c) = build(
        &r,
        dir,
        &dir.join("one"),
        &by_tag,
        "c.img",
        &["--offline", "--locked"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha(&a), sha(&c));
    // The same @sha256: reference in a third folder, offline (no lock there): same bytes.
    let (o, e) = build(
        &r,
        dir,
        &dir.join("three"),
        &by_digest,
        "e.img",
        &["--offline"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha(&a), sha(&e));
    // Offline, a tag the lock does not know: one line saying what is missing and what to do.
    let other = format!("docker://{}/team/app:v2", r.host);
    let (o, _) = build(&r, dir, &dir.join("one"), &other, "f.img", &["--offline"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(
        err.contains("--offline") && err.contains("digest is not known"),
        "{err}"
    );
    // Online, a registry that is down: one line naming it.
    let (o, _) = build(&r, dir, &dir.join("four"), &other, "g.img", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot reach the registry"),
        "{}",
        stderr(&o)
    );

    // The tag moved to another image: --locked refuses it, naming both digests.
    r.restart();
    let moved = r.put(&app_image(dir, "app2", b"two"), "t", "team/app:v1");
    assert_ne!(moved, digest);
    let (o, _) = build(&r, dir, &dir.join("one"), &by_tag, "h.img", &["--locked"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("--locked refuses") && err.contains(&digest) && err.contains(&moved),
        "{err}"
    );
}

#[test]
fn credentials_and_certificates_that_do_not_fit_are_one_clear_line() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let r = Registry::start(&dir.join("registry"));
    r.put(&app_image(dir, "app", b"x"), "t", "app:v1");
    let image = format!("docker://{}/app:v1", r.host);
    let one_line = |o: &Output| {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
        let e = stderr(o);
        assert!(
            e.starts_with("error: ") && e.trim_end().lines().count() == 1,
            "{e}"
        );
        e
    };
    let run = |env: &[(&str, &str)]| {
        let release = dir.join("release");
        let out = dir.join("x.img");
        let mut all: Vec<(String, String)> = r.env();
        for (k, v) in env {
            all.retain(|(a, _)| a != k);
            all.push((k.to_string(), v.to_string()));
        }
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::nanoimg_env(
            &[
                os("build"),
                os("--from-image"),
                os(&image),
                os("/prog"),
                os("--kernel-dir"),
                release.as_os_str(),
                os("-o"),
                out.as_os_str(),
            ],
            dir,
            &all,
        )
    };
    // A wrong password.
    let bad = dir.join("bad-auth.json");
    r.write_auth(&bad, &[&r.host], registry_server::USER, "wrong");
    let e = one_line(&run(&[("REGISTRY_AUTH_FILE", bad.to_str().unwrap())]));
    assert!(
        e.contains("refused the credentials of user \"tester\"")
            && e.contains(&r.host)
            && e.contains("bad-auth.json")
            && e.contains("skopeo login"),
        "{e}"
    );
    // No entry at all.
    let none = dir.join("none.json");
    std::fs::write(&none, "{\"auths\": {}}").unwrap();
    let e = one_line(&run(&[("REGISTRY_AUTH_FILE", none.to_str().unwrap())]));
    assert!(
        e.contains("asks for credentials") && e.contains("none.json"),
        "{e}"
    );
    // Only a credential helper: named, not run.
    let helper = dir.join("helper.json");
    std::fs::write(&helper, "{\"auths\": {}, \"credsStore\": \"desktop\"}").unwrap();
    let e = one_line(&run(&[("REGISTRY_AUTH_FILE", helper.to_str().unwrap())]));
    assert!(
        e.contains("credential helper \"desktop\"") && e.contains("does not run"),
        "{e}"
    );
    // A HOME without the CA in certs.d: the TLS failure says where the CA goes.
    let e = one_line(&run(&[("HOME", dir.join("nohome").to_str().unwrap())]));
    assert!(e.contains("certs.d") && e.contains(&r.host), "{e}");
    // A TLS registry named --insecure-registry: plain HTTP to a TLS port fails in one line.
    let release = dir.join("release");
    let env = r.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let o = common::nanoimg_env(
        &[
            os("deps"),
            os("/prog"),
            os("--target-root"),
            os(&image),
            os("--insecure-registry"),
            os(&r.host),
        ],
        dir,
        &env,
    );
    let _ = release;
    one_line(&o);
    // Nothing was cached by any of these.
    assert_nothing_cached(&dir.join("cache"));
}

#[test]
fn a_blob_with_wrong_bytes_is_refused_and_nothing_is_cached() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let r = Registry::start(&dir.join("registry"));
    let layout = app_image(dir, "app", b"x");
    r.put(&layout, "t", "app:v1");
    // The layer's blob in the registry's storage, same length, other bytes.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(images::blob_path(&layout, m)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let data = r.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let (o, out) = build(
        &r,
        dir,
        dir,
        &format!("docker://{}/app:v1", r.host),
        "x.img",
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.trim_end().lines().count() == 1, "{e}");
    assert!(
        e.contains(&format!("blob {layer} has digest sha256:")) && e.contains("expected"),
        "{e}"
    );
    assert!(!out.exists());
    assert_nothing_cached(&dir.join("cache"));
}

/// 8 MiB that do not compress.
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn an_interrupted_pull_exits_130_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let r = Registry::start(&dir.join("registry"));
    let prog = common::tiny_static_elf();
    let big = random_bytes(8 << 20, 0x9e37_79b9_7f4a_7c15);
    let layer = tar_of(&[E::File("prog", &prog), E::File("big", &big)]);
    let layout = images::layout(&dir.join("big"), &[layer], false);
    r.put(&layout, "t", "big:v1");
    // Through a proxy that stops after 2 MiB of answers on a connection.
    let stall = Stall::start(r.port, 2 << 20);
    let proxy = format!("127.0.0.1:{}", stall.port);
    r.trust(&proxy);
    r.write_auth(
        &r.auth_file,
        &[&r.host, &proxy],
        registry_server::USER,
        registry_server::PASSWORD,
    );
    let cache = dir.join("cache");
    let release = dir.join("release");
    let out = dir.join("x.img");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nanoimg"));
    cmd.args([
        os("build"),
        os("--from-image"),
        os(&format!("docker://{proxy}/big:v1")),
        os("/prog"),
        os("--kernel-dir"),
        release.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ])
    .current_dir(dir)
    .env("NANOIMG_CACHE", &cache)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in r.env() {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    // Wait until the layer is streaming into the cache's temporary folder.
    let start = Instant::now();
    let partial = loop {
        let found = std::fs::read_dir(cache.join("tmp")).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok()).find_map(|e| {
                let blobs = e.path().join("blobs/sha256");
                std::fs::read_dir(blobs)
                    .ok()?
                    .filter_map(|b| b.ok())
                    .find_map(|b| {
                        let n = b.file_name().to_string_lossy().into_owned();
                        (n.ends_with(".partial") && b.metadata().ok()?.len() > 0).then(|| b.path())
                    })
            })
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the pull never started streaming a layer"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(partial.exists());
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("interrupted by SIGINT"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    assert_nothing_cached(&cache);
}

#[test]
fn a_pushed_image_pulls_back_to_the_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let r = Registry::start(&dir.join("registry"));
    let prog = dir.join("prog");
    std::fs::write(&prog, common::tiny_static_elf()).unwrap();
    let cache = dir.join("cache");
    let release = dir.join("release");
    let built = dir.join("prover.qcow2");
    let o = nanoimg(
        &r,
        dir,
        &cache,
        &[
            os("build"),
            prog.as_os_str(),
            os("--kernel-dir"),
            release.as_os_str(),
            os("--nanos-version"),
            os("0.1.55"),
            os("--format"),
            os("qcow2"),
            os("-o"),
            built.as_os_str(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = format!("docker://{}/images/prover:v1", r.host);
    let o = nanoimg(
        &r,
        dir,
        &cache,
        &[os("push"), built.as_os_str(), os(&reference), os("--json")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let pushed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let digest = pushed["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{pushed}");
    assert_eq!(
        pushed["media_type"],
        "application/vnd.nanoimg.image.v1.qcow2"
    );
    let a = &pushed["annotations"];
    assert_eq!(a["dev.nanoimg.image.sha256"], sha(&built));
    assert_eq!(a["dev.nanoimg.image.format"], "qcow2");
    assert_eq!(a["dev.nanoimg.image.arch"], "amd64");
    assert_eq!(a["dev.nanoimg.nanos.version"], "0.1.55");
    assert_eq!(a["org.opencontainers.image.title"], "prover.qcow2");

    // Pushed again: the same manifest digest (nothing in it changes with time).
    let o = nanoimg(
        &r,
        dir,
        &cache,
        &[os("push"), built.as_os_str(), os(&reference)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains(&format!("Digest: {digest}")), "{text}");

    // Pulled by tag and by digest: the same bytes, the digest printed matches.
    for (i, from) in [
        reference.clone(),
        format!("docker://{}/images/prover@{digest}", r.host),
    ]
    .iter()
    .enumerate()
    {
        let out = dir.join(format!("pulled{i}.qcow2"));
        let o = nanoimg(
            &r,
            dir,
            &cache,
            &[
                os("pull"),
                os(from),
                os("-o"),
                out.as_os_str(),
                os("--json"),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let pulled: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(pulled["digest"].as_str().unwrap(), digest);
        assert_eq!(sha(&out), sha(&built));
        assert_eq!(
            entries(dir)
                .iter()
                .filter(|n| n.starts_with(".nanoimg-"))
                .count(),
            0
        );
    }

    // `run docker://…`: pulled into the cache by its digest and booted from there (the
    // command line only: no kernel here).
    let o = nanoimg(
        &r,
        dir,
        &cache,
        &[
            os("run"),
            os(&reference),
            os("--print-command"),
            os("--accel"),
            os("tcg"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cached = cache.join("registry/blobs/sha256").join(sha(&built));
    assert_eq!(sha(&cached), sha(&built));
    let command = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(command.contains(cached.to_str().unwrap()), "{command}");
    assert_eq!(entries(&cache.join("tmp")), Vec::<String>::new());

    // The layer corrupted in the registry: refused, nothing at the output path.
    let layer = r.blob_data(&format!("sha256:{}", sha(&built)));
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&layer, bytes).unwrap();
    let out = dir.join("bad.qcow2");
    let o = nanoimg(
        &r,
        dir,
        &cache,
        &[os("pull"), os(&reference), os("-o"), out.as_os_str()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("has digest"), "{}", stderr(&o));
    assert!(!out.exists());
    assert_eq!(
        entries(dir)
            .iter()
            .filter(|n| n.starts_with(".nanoimg-"))
            .count(),
        0
    );

    // A container image is not an image artifact, and an artifact is not a sysroot.
    let o = nanoimg(
        &r,
        dir,
        &cache,
        &[
            os("build"),
            os("--from-image"),
            os(&reference),
            os("/prog"),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-o"),
            dir.join("y.img").as_os_str(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("nanoimg pull"), "{}", stderr(&o));
}

#[test]
fn bearer_tokens_are_exchanged_at_the_realm() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let (r, tokens) = Registry::start_token(&dir.join("registry"), &["team/app"]);
    let digest = r.put(&app_image(dir, "app", b"t"), "t", "team/app:v1");
    let image = format!("docker://{}/team/app:v1", r.host);
    let before = tokens.granted.load(std::sync::atomic::Ordering::SeqCst);
    let (o, a) = build(&r, dir, &dir.join("one"), &image, "a.img", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(a.is_file());
    assert!(
        tokens.granted.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the token server was asked"
    );
    let lock = std::fs::read_to_string(dir.join("one/nanoimg.lock")).unwrap();
    assert!(lock.contains(&digest), "{lock}");
    // Credentials the token server refuses: one line, as for basic authentication.
    let bad = dir.join("bad-auth.json");
    r.write_auth(&bad, &[&r.host], registry_server::USER, "wrong");
    let release = dir.join("release");
    let out = dir.join("b.img");
    let mut env = r.env();
    env.retain(|(k, _)| k != "REGISTRY_AUTH_FILE");
    env.push(("REGISTRY_AUTH_FILE".into(), bad.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let o = common::nanoimg_env(
        &[
            os("build"),
            os("--from-image"),
            os(&format!("docker://{}/team/app@{digest}", r.host)),
            os("/prog"),
            os("--kernel-dir"),
            release.as_os_str(),
            os("-o"),
            out.as_os_str(),
            os("--offline"),
        ],
        dir,
        &env,
    );
    // (Offline by digest from the cache: no credentials needed at all.)
    assert!(o.status.success(), "{}", stderr(&o));
    let o = common::nanoimg_env(
        &[
            os("deps"),
            os("/prog"),
            os("--target-root"),
            os(&format!("docker://{}/team/app:v1", r.host)),
        ],
        dir,
        &env,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("refused the credentials of user \"tester\"") && e.contains("bad-auth.json"),
        "{e}"
    );
    assert!(tokens.refused.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[test]
fn plain_http_only_with_insecure_registry() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let r = Registry::start_plain(&dir.join("registry"));
    let digest = r.put(&app_image(dir, "app", b"p"), "t", "app:v1");
    let image = format!("docker://{}/app:v1", r.host);
    // TLS by default: a plain HTTP registry is refused, and the line says how to allow it.
    let (o, _) = build(&r, dir, &dir.join("one"), &image, "a.img", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.trim_end().lines().count() == 1 && e.contains(&format!("--insecure-registry {}", r.host)),
        "{e}"
    );
    assert_nothing_cached(&dir.join("cache"));
    // Named with --insecure-registry: pulled over HTTP; another port is still TLS.
    let (o, a) = build(
        &r,
        dir,
        &dir.join("one"),
        &image,
        "a.img",
        &[
            "--insecure-registry",
            "127.0.0.1:1",
            "--insecure-registry",
            &r.host,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(a.is_file());
    let lock = std::fs::read_to_string(dir.join("one/nanoimg.lock")).unwrap();
    assert!(lock.contains(&digest), "{lock}");
}

#[test]
fn verify_rebuilds_a_registry_image_by_its_recorded_digest() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    common::fake_release(dir);
    let mut r = Registry::start(&dir.join("registry"));
    let digest = r.put(&app_image(dir, "app", b"one"), "t", "team/app:v1");
    let by_tag = format!("docker://{}/team/app:v1", r.host);
    let cwd = dir.join("one");
    let (o, _) = build(
        &r,
        dir,
        &cwd,
        &by_tag,
        "a.img",
        &["--provenance", "a.prov.json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let statement = std::fs::read_to_string(cwd.join("a.prov.json")).unwrap();
    assert!(statement.contains(&digest[7..]), "{statement}");
    let verify = |r: &Registry, cache: &Path| {
        let o = nanoimg(
            r,
            &cwd,
            cache,
            &[
                os("verify"),
                os("a.img"),
                os("--provenance"),
                os("a.prov.json"),
            ],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), text)
    };
    // From the cache.
    let (code, text) = verify(&r, &dir.join("cache"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("verified: rebuilt a.img byte for byte"),
        "{text}"
    );
    // An empty cache: fetched by the recorded digest, even after the tag moved.
    let moved = r.put(&app_image(dir, "app2", b"two"), "t", "team/app:v1");
    assert_ne!(moved, digest);
    let (code, text) = verify(&r, &dir.join("empty-cache"));
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        entries(&dir.join("empty-cache/registry/images")),
        vec![digest[7..].to_string()],
        "the recorded manifest was fetched, not the tag's new one"
    );
    // Neither cached nor reachable: the input is missing, named.
    r.stop();
    let (code, text) = verify(&r, &dir.join("third-cache"));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "the --from-image image {by_tag} (sha256 {}) recorded in the provenance is missing",
            &digest[7..]
        )),
        "{text}"
    );
    assert!(text.contains("cannot reach the registry"), "{text}");
}
