//! The temporaries that exist right now, so that an interrupt can remove them.
//!
//! One process-wide lock guards creating a temporary, renaming it into place and the
//! interrupt handler's removal; the handler keeps the lock until the process exits, so no
//! temporary is created or persisted after it started.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct Registry {
    next: u64,
    paths: BTreeMap<u64, PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    paths: BTreeMap::new(),
});

fn lock() -> MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves the map itself consistent.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A registered temporary; dropping it forgets the path (its owner removes the file).
#[derive(Debug, Default)]
pub(crate) struct Registration(Option<u64>);

impl Registration {
    /// Runs `rename` (the move into place) under the lock, then forgets the path.
    pub(crate) fn persist<T>(mut self, rename: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let mut registry = lock();
        let result = rename();
        if let Some(id) = self.0.take() {
            registry.paths.remove(&id);
        }
        result
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(id) = self.0.take() {
            lock().paths.remove(&id);
        }
    }
}

/// Creates a temporary with `make` (which returns it and its path) and registers its path,
/// both under the lock.
pub(crate) fn create<T>(
    make: impl FnOnce() -> io::Result<(T, PathBuf)>,
) -> io::Result<(T, Registration)> {
    let mut registry = lock();
    let (value, path) = make()?;
    let id = registry.next;
    registry.next += 1;
    registry.paths.insert(id, path);
    Ok((value, Registration(Some(id))))
}

/// The registered paths (for tests).
#[cfg(test)]
pub(crate) fn registered() -> Vec<PathBuf> {
    lock().paths.values().cloned().collect()
}

/// Removes every registered temporary and returns how many there were, keeping the lock
/// held for good: the caller is about to end the process.
pub(crate) fn remove_all_and_hold() -> usize {
    let registry = lock();
    let n = registry.paths.len();
    for path in registry.paths.values() {
        remove(path);
    }
    std::mem::forget(registry);
    n
}

/// Removes a file, or a folder with its content. A folder is first renamed to a fresh name,
/// so that a thread still writing into it by path fails instead of adding entries while it
/// is being removed.
fn remove(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        let _ = std::fs::remove_file(path);
        return;
    }
    let mut doomed = path.as_os_str().to_owned();
    doomed.push(".removing");
    let doomed = PathBuf::from(doomed);
    let target = if std::fs::rename(path, &doomed).is_ok() {
        doomed
    } else {
        path.to_path_buf()
    };
    for _ in 0..5 {
        if std::fs::remove_dir_all(&target).is_ok() || !target.exists() {
            return;
        }
    }
}
