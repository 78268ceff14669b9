//! Prerequisite checks for the e2e runner.
//!
//! Every check runs before anything is built, and every problem found is
//! reported at once, so a fresh machine learns about all of them in one go.

use std::env;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable that supplies a default for `--kernel-dir`.
pub const KERNEL_DIR_ENV: &str = "NANOIMG_E2E_KERNEL_DIR";

/// Files a Nanos release folder must contain for `nanoimg build`.
const KERNEL_FILES: [&str; 2] = ["kernel.img", "boot.img"];

/// Where distributions install OVMF: the places `nanoimg run` itself looks.
pub const OVMF_CANDIDATES: &[&str] = &nanoimg_run::OVMF_CANDIDATES;

/// Why umoci is needed and where to get it.
const UMOCI_HINT: &str = "the sysroot-c, sysroot-rust and dlopen-libraries cases make an OCI \
     image with it (their --target-root); install umoci (Debian/Ubuntu: apt-get install umoci)";

/// The machine cannot run the e2e test; each entry is one human-readable
/// problem with a hint how to fix it. Mapped to exit status 2 by `main`.
#[derive(Debug)]
pub struct MissingPrerequisites {
    pub problems: Vec<String>,
}

impl fmt::Display for MissingPrerequisites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for MissingPrerequisites {}

impl MissingPrerequisites {
    pub fn single(problem: String) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

/// The tools the x86_64 cases need on PATH, and what to install.
const TOOLS: [(&str, &str); 5] = [
    (
        "qemu-system-x86_64",
        "`nanoimg run` boots the images with it; install QEMU \
         (Debian/Ubuntu: apt-get install qemu-system-x86)",
    ),
    (
        "cc",
        "install a C compiler with static glibc (Debian/Ubuntu: apt-get install gcc libc6-dev)",
    ),
    (
        "c++",
        "install a C++ compiler with libstdc++ (Debian/Ubuntu: apt-get install g++)",
    ),
    ("rustc", "install a Rust toolchain (https://rustup.rs)"),
    ("umoci", UMOCI_HINT),
];

/// Checks everything the x86_64 cases need: the kernel folder (`--kernel-dir`, else
/// [`KERNEL_DIR_ENV`]), the tools, OVMF. Returns the kernel folder (absolute), or every
/// problem found.
pub fn check(kernel_dir: Option<&Path>) -> Result<PathBuf, MissingPrerequisites> {
    let kernel_dir = match dir_or_env(kernel_dir, KERNEL_DIR_ENV) {
        None => Err(format!(
            "SKIPPED IS NOT PASSED — no kernel folder given; CI has no Nanos kernel, \
             run this locally with --kernel-dir DIR (or set {KERNEL_DIR_ENV}) pointing at \
             a Nanos release folder containing {}",
            KERNEL_FILES.join(" and ")
        )),
        Some(dir) => check_kernel_dir(&dir),
    };
    let mut problems: Vec<String> = kernel_dir.as_ref().err().cloned().into_iter().collect();
    for (name, hint) in TOOLS {
        require_tool(name, hint, &mut problems);
    }
    if find_firmware(OVMF_CANDIDATES).is_none() {
        problems.push(ovmf_missing_problem());
    }
    match kernel_dir {
        Ok(dir) if problems.is_empty() => Ok(dir),
        _ => Err(MissingPrerequisites { problems }),
    }
}

/// Verifies the kernel folder and returns it as an absolute path (the
/// runner changes directory before calling `nanoimg`).
fn check_kernel_dir(dir: &Path) -> Result<PathBuf, String> {
    if !dir.is_dir() {
        return Err(format!(
            "kernel folder {} does not exist or is not a directory",
            dir.display()
        ));
    }
    let missing: Vec<&str> = KERNEL_FILES
        .iter()
        .copied()
        .filter(|file| !dir.join(file).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "kernel folder {} lacks {} (expected a Nanos release folder with {})",
            dir.display(),
            missing.join(" and "),
            KERNEL_FILES.join(" and ")
        ));
    }
    dir.canonicalize()
        .map_err(|err| format!("cannot resolve kernel folder {}: {err}", dir.display()))
}

/// The first of `candidates` that is a file.
fn find_firmware(candidates: &[&str]) -> Option<PathBuf> {
    nanoimg_run::find_ovmf(None, candidates, nanoimg_run::Arch::X86_64).ok()
}

fn ovmf_missing_problem() -> String {
    format!(
        "no OVMF firmware found (looked for {}) — the uefi-ovmf case boots through UEFI \
         (`nanoimg run`'s default for a --uefi image); \
         install OVMF (Debian/Ubuntu: apt-get install ovmf)",
        OVMF_CANDIDATES.join(", ")
    )
}

fn require_tool(name: &str, hint: &str, problems: &mut Vec<String>) -> Option<PathBuf> {
    let found = find_on_path(name);
    if found.is_none() {
        problems.push(format!("`{name}` not found on PATH — {hint}"));
    }
    found
}

/// Looks `program` up in `PATH` like a shell would.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `dir` if given, else the value of the variable `name` unless it is unset or empty.
pub fn dir_or_env(dir: Option<&Path>, name: &str) -> Option<PathBuf> {
    let from_env = || env::var_os(name).filter(|value| !value.is_empty());
    dir.map(Path::to_path_buf)
        .or_else(|| from_env().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dir_must_contain_both_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let problem = check_kernel_dir(dir.path()).expect_err("empty folder accepted");
        assert!(problem.contains("kernel.img and boot.img"), "{problem}");

        std::fs::write(dir.path().join("kernel.img"), b"k").expect("write kernel.img");
        let problem = check_kernel_dir(dir.path()).expect_err("folder without boot.img");
        assert!(problem.contains("lacks boot.img"), "{problem}");

        std::fs::write(dir.path().join("boot.img"), b"b").expect("write boot.img");
        let resolved = check_kernel_dir(dir.path()).expect("complete folder rejected");
        assert!(resolved.is_absolute());
    }

    #[test]
    fn missing_kernel_dir_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("nope");
        let problem = check_kernel_dir(&gone).expect_err("missing folder accepted");
        assert!(problem.contains("does not exist"), "{problem}");
    }

    #[test]
    fn firmware_is_the_first_existing_candidate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("a/OVMF.fd");
        let second = dir.path().join("b/OVMF.fd");
        let candidates = [
            first.to_str().expect("utf-8 temp path"),
            second.to_str().expect("utf-8 temp path"),
        ];
        assert_eq!(find_firmware(&candidates), None);

        std::fs::create_dir_all(second.parent().expect("parent")).expect("mkdir");
        std::fs::write(&second, b"fw").expect("write");
        assert_eq!(find_firmware(&candidates), Some(second.clone()));

        // A folder of that name is not firmware.
        std::fs::create_dir_all(&first).expect("mkdir");
        assert_eq!(find_firmware(&candidates), Some(second));
    }

    #[test]
    fn missing_ovmf_names_the_package_and_the_places_searched() {
        let problem = ovmf_missing_problem();
        assert!(problem.contains("apt-get install ovmf"), "{problem}");
        for candidate in OVMF_CANDIDATES {
            assert!(problem.contains(candidate), "{problem}");
        }
    }

    #[test]
    fn missing_umoci_names_the_debian_package() {
        let mut problems = Vec::new();
        assert!(require_tool("nanoimg-xtask-no-such-umoci", UMOCI_HINT, &mut problems).is_none());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("apt-get install umoci"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn path_lookup_finds_nothing_for_nonsense() {
        assert!(find_on_path("nanoimg-xtask-no-such-program").is_none());
    }
}
