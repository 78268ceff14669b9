use super::*;
use std::os::unix::fs::symlink;

fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    std::fs::create_dir_all(r.join("usr/lib64")).unwrap();
    std::fs::create_dir_all(r.join("lib/x86_64-linux-gnu")).unwrap();
    std::fs::create_dir_all(r.join("etc/alternatives")).unwrap();
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::write(r.join("lib/x86_64-linux-gnu/ld-2.36.so"), b"ld").unwrap();
    std::fs::write(r.join("usr/bin/mawk"), b"mawk").unwrap();
    symlink("usr/lib64", r.join("lib64")).unwrap();
    symlink(
        "/lib/x86_64-linux-gnu/ld-2.36.so",
        r.join("usr/lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    // Debian's alternatives: two absolute links.
    symlink("/etc/alternatives/awk", r.join("usr/bin/awk")).unwrap();
    symlink("/usr/bin/mawk", r.join("etc/alternatives/awk")).unwrap();
    d
}

#[test]
fn absolute_links_are_resolved_from_the_root_not_the_host() {
    let d = tree();
    let r = d.path();
    assert_eq!(
        resolve(r, Path::new("/lib64/ld-linux-x86-64.so.2")).unwrap(),
        r.join("lib/x86_64-linux-gnu/ld-2.36.so")
    );
    assert_eq!(
        resolve(r, Path::new("/usr/bin/awk")).unwrap(),
        r.join("usr/bin/mawk")
    );
    // A link to a host path that exists on every host, but not in the root.
    symlink("/etc/passwd", r.join("passwd")).unwrap();
    let e = resolve(r, Path::new("/passwd")).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(
        e.to_string(),
        format!("/passwd does not exist in {} (no /etc/passwd)", r.display())
    );
}

#[test]
fn dot_dot_stops_at_the_root() {
    let d = tree();
    let r = d.path();
    assert_eq!(
        resolve(r, Path::new("/../../lib/x86_64-linux-gnu/ld-2.36.so")).unwrap(),
        r.join("lib/x86_64-linux-gnu/ld-2.36.so")
    );
    symlink("../../../../../usr/bin/mawk", r.join("usr/bin/up")).unwrap();
    assert_eq!(
        resolve(r, Path::new("usr/bin/up")).unwrap(),
        r.join("usr/bin/mawk")
    );
    // `..` after a link applies to where the link leads, as the kernel does.
    assert_eq!(
        resolve(r, Path::new("/lib64/../bin/mawk")).unwrap(),
        r.join("usr/bin/mawk")
    );
}

#[test]
fn not_last_keeps_the_final_link_and_allows_a_missing_name() {
    let d = tree();
    let r = d.path();
    let mut res = Resolver::new(r);
    assert_eq!(
        res.resolve(Path::new("/usr/bin/awk"), Follow::NotLast)
            .unwrap(),
        r.join("usr/bin/awk")
    );
    assert_eq!(
        res.resolve(Path::new("/lib64/new"), Follow::NotLast)
            .unwrap(),
        r.join("usr/lib64/new")
    );
}

#[test]
fn loops_and_long_chains_fail_after_forty_links() {
    let d = tree();
    let r = d.path();
    symlink("/loop", r.join("loop")).unwrap();
    let e = resolve(r, Path::new("/loop/x")).unwrap_err();
    assert!(matches!(e, ChrootError::TooManyLinks { .. }), "{e}");
    // A chain of exactly 40 links resolves; 41 do not, memoised or not.
    std::fs::write(r.join("c0"), b"end").unwrap();
    for i in 1..=41 {
        symlink(format!("c{}", i - 1), r.join(format!("c{i}"))).unwrap();
    }
    let mut res = Resolver::new(r);
    for _ in 0..2 {
        assert_eq!(
            res.resolve(Path::new("c40"), Follow::Last).unwrap(),
            r.join("c0")
        );
        let e = res.resolve(Path::new("c41"), Follow::Last).unwrap_err();
        assert!(matches!(e, ChrootError::TooManyLinks { .. }), "{e}");
    }
}

#[test]
fn files_on_the_way_and_folders_wanted() {
    let d = tree();
    let r = d.path();
    let mut res = Resolver::new(r);
    let e = res
        .resolve(Path::new("/usr/bin/mawk/x"), Follow::Last)
        .unwrap_err();
    assert!(matches!(e, ChrootError::NotAFolder { .. }), "{e}");
    let e = res
        .resolve(Path::new("/usr/bin/awk"), Follow::Folder)
        .unwrap_err();
    assert!(matches!(e, ChrootError::NotAFolder { .. }), "{e}");
    // The memo answers the same.
    let e = res
        .resolve(Path::new("/usr/bin/awk/x"), Follow::Last)
        .unwrap_err();
    assert!(matches!(e, ChrootError::NotAFolder { .. }), "{e}");
}

#[test]
fn missing_folders_can_be_created_on_the_way_even_through_links() {
    let d = tree();
    let r = d.path().to_path_buf();
    symlink("/opt/real", r.join("app")).unwrap();
    let mut made = Vec::new();
    let mut create = |p: &Path| {
        made.push(p.to_path_buf());
        std::fs::create_dir(r.join(p))
    };
    let mut res = Resolver::new(&r);
    let real = res
        .resolve_relative(
            Path::new("app/a"),
            Follow::Folder,
            Missing::Create(&mut create),
        )
        .unwrap();
    assert_eq!(real, Path::new("opt/real/a"));
    assert_eq!(
        made,
        [
            Path::new("opt"),
            Path::new("opt/real"),
            Path::new("opt/real/a")
        ]
    );
    assert!(r.join("opt/real/a").is_dir());
}

#[test]
fn the_memo_is_forgotten_on_request() {
    let d = tree();
    let r = d.path();
    let mut res = Resolver::new(r);
    std::fs::create_dir(r.join("a")).unwrap();
    std::fs::create_dir(r.join("b")).unwrap();
    std::fs::write(r.join("b/f"), b"").unwrap();
    symlink("a", r.join("l")).unwrap();
    assert!(res.resolve(Path::new("l/f"), Follow::Last).is_err());
    std::fs::remove_file(r.join("l")).unwrap();
    symlink("b", r.join("l")).unwrap();
    res.forget();
    assert_eq!(
        res.resolve(Path::new("l/f"), Follow::Last).unwrap(),
        r.join("b/f")
    );
}

#[test]
fn normalizes() {
    assert_eq!(normalize("/app/bin/../lib"), "/app/lib");
    assert_eq!(normalize("/../lib//x/."), "/lib/x");
}

#[test]
fn only_regular_files_are_opened_and_reads_are_bounded() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = open_regular(&fifo).unwrap_err();
    assert_eq!(e.to_string(), "a FIFO, not a regular file");
    let e = open_regular(d.path()).unwrap_err();
    assert_eq!(e.to_string(), "a folder, not a regular file");
    std::fs::write(d.path().join("f"), b"12345").unwrap();
    assert_eq!(read_regular(&d.path().join("f"), 5).unwrap(), b"12345");
    let e = read_regular(&d.path().join("f"), 4).unwrap_err();
    assert_eq!(e.to_string(), "5 bytes, more than the 4 read at most");
}
