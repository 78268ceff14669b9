//! The loader's configuration inside a root: `/etc/ld.so.cache` and `/etc/ld.so.conf`.

use std::path::Path;

use crate::root::resolve_in_root;

const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const HEADER: usize = 48;
const ENTRY: usize = 24;
/// The largest `ld.so.cache` read (a full Debian system's is about 100 KiB).
const MAX_CACHE: u64 = 64 << 20;
/// The largest `ld.so.conf` (or included file) read.
const MAX_CONF: u64 = 1 << 20;
/// The entries of a glibc `ld.so.cache` (new format), as (flags, soname, path), in file
/// order: the flags tell the architecture (`Arch::ld_cache_flags`). `None` if the file is
/// absent or not in that format.
pub(crate) fn read_cache(root: &Path) -> Option<Vec<(u32, String, String)>> {
    let path = resolve_in_root(root, "/etc/ld.so.cache")?;
    let bytes = nanoimg_chroot::read_regular(&path, MAX_CACHE).ok()?;
    parse_cache(&bytes)
}

fn parse_cache(b: &[u8]) -> Option<Vec<(u32, String, String)>> {
    if !b.starts_with(NEW_MAGIC) || b.len() < HEADER {
        return None;
    }
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?)) };
    let nlibs = u32_at(20)? as usize;
    let string = |o: u32| -> Option<String> {
        let rest = b.get(o as usize..)?;
        let end = rest.iter().position(|&c| c == 0)?;
        String::from_utf8(rest[..end].to_vec()).ok()
    };
    let mut out = Vec::new();
    for i in 0..nlibs {
        let e = HEADER.checked_add(i.checked_mul(ENTRY)?)?;
        let flags = u32_at(e)? & 0xffff;
        out.push((flags, string(u32_at(e + 4)?)?, string(u32_at(e + 8)?)?));
    }
    Some(out)
}

/// The directories `/etc/ld.so.conf` lists, `include` lines (with `*` globs in the last
/// component) followed, in order.
pub(crate) fn read_conf(root: &Path) -> Vec<String> {
    let mut dirs = Vec::new();
    conf_file(root, "/etc/ld.so.conf", &mut dirs, 0);
    dirs
}

fn conf_file(root: &Path, guest: &str, dirs: &mut Vec<String>, depth: usize) {
    if depth > 8 {
        return;
    }
    let Some(text) = resolve_in_root(root, guest)
        .and_then(|p| nanoimg_chroot::read_regular(&p, MAX_CONF).ok())
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include") {
            let pattern = pattern.trim();
            let pattern = if pattern.starts_with('/') {
                pattern.to_string()
            } else {
                format!("/etc/{pattern}")
            };
            for f in glob(root, &pattern) {
                conf_file(root, &f, dirs, depth + 1);
            }
        } else if line.starts_with('/') {
            dirs.push(line.to_string());
        }
    }
}

/// Expands a `*` in the last component of a guest path, sorted.
fn glob(root: &Path, pattern: &str) -> Vec<String> {
    let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![pattern.to_string()];
    };
    let Some(host_dir) = resolve_in_root(root, if dir.is_empty() { "/" } else { dir }) else {
        return Vec::new();
    };
    let mut out: Vec<String> = std::fs::read_dir(host_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.starts_with(prefix) && n.ends_with(suffix) && n.len() >= prefix.len() + suffix.len()
        })
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_new_format_cache() {
        let mut b = NEW_MAGIC.to_vec();
        b.extend_from_slice(&2u32.to_le_bytes()); // nlibs
        b.resize(HEADER, 0);
        let strings = HEADER + 2 * ENTRY;
        let key = strings as u32;
        let val = key + 10;
        for flags in [0x0303u32, 0x0a03] {
            b.extend_from_slice(&flags.to_le_bytes());
            b.extend_from_slice(&key.to_le_bytes());
            b.extend_from_slice(&val.to_le_bytes());
            b.extend_from_slice(&[0; 12]);
        }
        b.extend_from_slice(b"libc.so.6\0/lib/libc.so.6\0");
        assert_eq!(
            parse_cache(&b),
            Some(vec![
                (0x0303, "libc.so.6".into(), "/lib/libc.so.6".into()),
                (0x0a03, "libc.so.6".into(), "/lib/libc.so.6".into())
            ])
        );
        assert_eq!(parse_cache(b"junk"), None);
        b.truncate(HEADER + 10);
        assert_eq!(parse_cache(&b), None, "truncated entries");
    }

    #[test]
    fn reads_conf_with_includes() {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        std::fs::create_dir_all(etc.join("ld.so.conf.d")).unwrap();
        std::fs::write(
            etc.join("ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n/opt/lib # c\n",
        )
        .unwrap();
        std::fs::write(etc.join("ld.so.conf.d/b.conf"), "/b\n").unwrap();
        std::fs::write(etc.join("ld.so.conf.d/a.conf"), "# x\n/a\n").unwrap();
        std::fs::write(etc.join("ld.so.conf.d/ignored.txt"), "/no\n").unwrap();
        assert_eq!(read_conf(d.path()), ["/a", "/b", "/opt/lib"]);
    }
}
