use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Symlinks followed before a lookup gives up, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// The host file that `guest` (an absolute path as the guest would open it) names inside
/// `root`, following symlinks component by component with absolute link targets taken
/// relative to `root` — so a sysroot's `/lib64 -> usr/lib64` or `libc.so.6 ->
/// /lib/x86_64-linux-gnu/libc-2.36.so` resolve inside the sysroot, never on the host.
/// `None` if some component does not exist, a link is unreadable or links loop.
pub fn resolve_in_root(root: &Path, guest: &str) -> Option<PathBuf> {
    let mut pending: VecDeque<String> = guest.split('/').map(str::to_string).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&c);
        let meta = std::fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINKS {
                return None;
            }
            let target = std::fs::read_link(&candidate).ok()?;
            let target = target.to_str()?;
            if target.starts_with('/') {
                resolved.clear();
            }
            for part in target.split('/').rev() {
                pending.push_front(part.to_string());
            }
        } else {
            resolved.push(c);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Some(out)
}

/// `path` with `.` and `..` applied lexically (an absolute guest path).
pub(crate) fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_links_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/lib64")).unwrap();
        std::fs::create_dir_all(r.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(r.join("lib/x86_64-linux-gnu/ld-2.36.so"), b"ld").unwrap();
        symlink("usr/lib64", r.join("lib64")).unwrap();
        symlink(
            "/lib/x86_64-linux-gnu/ld-2.36.so",
            r.join("usr/lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        assert_eq!(
            resolve_in_root(r, "/lib64/ld-linux-x86-64.so.2"),
            Some(r.join("lib/x86_64-linux-gnu/ld-2.36.so"))
        );
        assert_eq!(resolve_in_root(r, "/lib64/missing"), None);
        symlink("/loop", r.join("loop")).unwrap();
        assert_eq!(resolve_in_root(r, "/loop"), None);
        // ".." cannot climb out of the root.
        assert_eq!(
            resolve_in_root(r, "/../../lib/x86_64-linux-gnu/ld-2.36.so"),
            Some(r.join("lib/x86_64-linux-gnu/ld-2.36.so"))
        );
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize("/app/bin/../lib"), "/app/lib");
        assert_eq!(normalize("/../lib//x/."), "/lib/x");
    }
}
