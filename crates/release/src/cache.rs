use std::path::{Path, PathBuf};

/// The release cache: extracted releases by tarball SHA-256 under `releases/`, an index of
/// version → SHA-256 under `index/`, and work in progress under `tmp/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// `$NANOIMG_CACHE`, else `$XDG_CACHE_HOME/nanoimg`, else `~/.cache/nanoimg`.
    pub fn from_env() -> Option<Cache> {
        let var = |k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        var("NANOIMG_CACHE")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("nanoimg")))
            .or_else(|| var("HOME").map(|h| h.join(".cache/nanoimg")))
            .map(Cache::new)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the release whose tarball has SHA-256 `sha256` is (or would be) extracted.
    pub fn release_dir(&self, sha256: &str) -> PathBuf {
        self.root.join("releases").join(sha256)
    }

    /// A scratch directory on the same filesystem as the entries, for atomic renames.
    pub(crate) fn tmp(&self) -> std::io::Result<PathBuf> {
        let t = self.root.join("tmp");
        std::fs::create_dir_all(&t)?;
        std::fs::create_dir_all(self.root.join("releases"))?;
        Ok(t)
    }

    /// The SHA-256 of the tarball last fetched for `version`, if any.
    pub fn indexed(&self, version: &str) -> Option<String> {
        let s = std::fs::read_to_string(self.root.join("index").join(version)).ok()?;
        let s = s.trim();
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_string())
    }

    pub(crate) fn set_index(&self, version: &str, sha256: &str) -> std::io::Result<()> {
        let dir = self.root.join("index");
        std::fs::create_dir_all(&dir)?;
        let target = dir.join(version);
        let mut tmp = nanoimg_atomic::TempFile::beside(&target)?;
        std::io::Write::write_all(tmp.as_file_mut(), format!("{sha256}\n").as_bytes())?;
        tmp.persist(&target)
    }

    /// Moves a fully extracted release into place. If another process got there first, its
    /// entry is kept and `staged` is discarded.
    pub(crate) fn install(
        &self,
        staged: nanoimg_atomic::TempDir,
        sha256: &str,
    ) -> std::io::Result<PathBuf> {
        let dest = self.release_dir(sha256);
        match staged.persist(&dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.is_dir() => Ok(dest),
            Err(e) => Err(e),
        }
    }
}
