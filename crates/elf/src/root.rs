use std::path::{Path, PathBuf};

/// The host file that `guest` (an absolute path as the guest would open it) names inside
/// `root`, following symlinks component by component with absolute link targets taken
/// relative to `root` (`nanoimg-chroot`) — so a sysroot's `/lib64 -> usr/lib64` or
/// `libc.so.6 -> /lib/x86_64-linux-gnu/libc-2.36.so` resolve inside the sysroot, never on
/// the host. `None` if some component does not exist, a link is unreadable or links loop.
pub fn resolve_in_root(root: &Path, guest: &str) -> Option<PathBuf> {
    nanoimg_chroot::resolve(root, Path::new(guest)).ok()
}

/// `path` with `.` and `..` applied lexically (an absolute guest path).
pub(crate) fn normalize(path: &str) -> String {
    nanoimg_chroot::normalize(path)
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
