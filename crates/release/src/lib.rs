//! Nanos releases: where the kernel, the bootloaders and the klibs come from, and proof that
//! they are the bytes the project expects.
//!
//! - [`KernelDir`] is an unpacked release folder (`kernel.img`, `boot.img`, `bootx64.efi`,
//!   `klibs/`), given with `--kernel-dir` or taken from the cache.
//! - [`Pin`]s (`kernels/*.toml`, embedded at build time) name the releases nanoimg knows: the
//!   tarball URL, the `.md5` published beside it and, where known, the tarball's SHA-256.
//! - [`Lock`] is the project's `nanoimg.lock`: version, URL and SHA-256 of each tarball used
//!   and of every file taken from it. Later builds verify against it.
//! - [`Cache`] holds extracted releases by tarball SHA-256; entries are built in a temporary
//!   folder and renamed into place, so an interrupted or concurrent fetch never leaves a
//!   half-written entry that is later trusted.
//! - [`Releases`] ties these together: find a release in the cache or fetch it (streaming,
//!   hashing as it downloads, checking the `.md5`, the pin and the lock), never touching the
//!   network when offline.

mod cache;
mod download;
mod extract;
mod hash;
mod kernel_dir;
mod lock;
mod pins;
mod releases;

pub use cache::Cache;
pub use download::{DownloadError, HttpOptions};
pub use extract::ExtractError;
pub use hash::sha256_file;
pub use kernel_dir::{KernelDir, ReleaseError};
pub use lock::{ImageLockError, Lock, LockError, LockedFiles, LockedImage, LockedRelease};
pub use pins::{default_pin, find_pin, pins, release_name, Pin, OFFICIAL_BASE};
pub use releases::{lock_kernel_dir, FetchError, Fetched, ReleaseOptions, Releases};
