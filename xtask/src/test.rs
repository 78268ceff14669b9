//! `cargo xtask test [CARGO TEST ARGS...]`: the whole test suite, as a newcomer runs it.
//!
//! The tests use real tools (container images made with `umoci` and `skopeo`, arm64
//! programs cross-compiled with Debian's cross gcc against its arm64 sysroot, disk formats
//! checked with `qemu-img`). This task first looks for each; what is missing is installed
//! from Debian's packages when it can be (a Debian host, as root or with password-less
//! sudo), else it stops before running anything, naming each missing tool and the one
//! command that installs them all. Then it runs `cargo test --workspace --no-fail-fast`
//! with the arguments given (so one failing test binary does not hide the others).
//! `.ci/run` calls it.

use std::path::Path;
use std::process::{Command, ExitCode};

use crate::prereq;

/// A tool the tests need, how to tell it is there, and the Debian package holding it.
struct Need {
    what: &'static str,
    present: fn() -> bool,
    package: &'static str,
}

fn on_path(cmd: &str) -> bool {
    prereq::find_on_path(cmd).is_some()
}

const NEEDS: &[Need] = &[
    Need {
        what: "umoci (OCI images for the container-image tests)",
        present: || on_path("umoci"),
        package: "umoci",
    },
    Need {
        what: "skopeo (docker-archive and oci-archive conversions)",
        present: || on_path("skopeo"),
        package: "skopeo",
    },
    Need {
        what: "aarch64-linux-gnu-gcc (arm64 test programs)",
        present: || on_path("aarch64-linux-gnu-gcc"),
        package: "gcc-aarch64-linux-gnu",
    },
    Need {
        what: "/usr/aarch64-linux-gnu (the arm64 sysroot the arm64 tests resolve in)",
        present: || Path::new("/usr/aarch64-linux-gnu/lib/libc.so.6").is_file(),
        package: "libc6-arm64-cross",
    },
    Need {
        what: "qemu-img (qemu-img check/compare of every disk format)",
        present: || on_path("qemu-img"),
        package: "qemu-utils",
    },
    Need {
        what: "docker-registry (a real registry on loopback for the docker:// tests)",
        present: || on_path("docker-registry"),
        package: "docker-registry",
    },
    Need {
        what: "htpasswd (the test registry's basic-auth password file)",
        present: || on_path("htpasswd"),
        package: "apache2-utils",
    },
    Need {
        what: "openssl (the test registry's TLS certificates)",
        present: || on_path("openssl"),
        package: "openssl",
    },
    Need {
        what: "python3 -m venv (the SBOM validators' venv, target/sbom-venv)",
        present: || {
            Command::new("python3")
                .args(["-c", "import venv, ensurepip"])
                .output()
                .is_ok_and(|o| o.status.success())
        },
        package: "python3-venv",
    },
    Need {
        what: "mmdebstrap (a real Debian root for the SBOM tests, from apt's mirror)",
        present: || on_path("mmdebstrap"),
        package: "mmdebstrap",
    },
    Need {
        what: "cc (test programs)",
        present: || on_path("cc"),
        package: "gcc",
    },
];

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Only say what is missing; install nothing.
    #[arg(long)]
    no_install: bool,
    /// Passed to `cargo test` (e.g. `--locked`, a test name, `-- --nocapture`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cargo_args: Vec<String>,
}

/// How packages can be installed here, if they can.
fn installer() -> Option<Vec<&'static str>> {
    if !Path::new("/etc/debian_version").is_file() || !on_path("apt-get") {
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Some(vec![]);
    }
    let sudo_ok = on_path("sudo")
        && Command::new("sudo")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success());
    sudo_ok.then(|| vec!["sudo", "-n"])
}

/// Runs `apt-get ARGS`, behind `prefix` (`sudo -n`) when there is one.
fn apt(prefix: &[&str], args: &[&str]) -> bool {
    let mut words = prefix.iter().chain(std::iter::once(&"apt-get")).chain(args);
    let mut c = Command::new(words.next().unwrap_or(&"apt-get"));
    c.args(words).env("DEBIAN_FRONTEND", "noninteractive");
    c.status().is_ok_and(|s| s.success())
}

pub fn run(args: &TestArgs) -> ExitCode {
    let venv = match install_missing(args.no_install).and_then(|()| sbom_venv()) {
        Ok(venv) => venv,
        Err(e) => {
            eprintln!("test: ERROR: {e}");
            return ExitCode::from(2);
        }
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .env("NANOIMG_SBOM_VENV", &venv)
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(&args.cargo_args)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("test: ERROR: cannot run cargo test: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Names what [`NEEDS`] lacks and installs it when it can (and may); `Err` says why the
/// tests cannot run.
fn install_missing(no_install: bool) -> Result<(), String> {
    let missing: Vec<&Need> = NEEDS.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    for n in &missing {
        eprintln!("test: missing {} (Debian package {})", n.what, n.package);
    }
    let line = format!("apt-get install -y {}", packages.join(" "));
    let Some(prefix) = installer().filter(|_| !no_install) else {
        return Err(format!("the tests need these tools; install them (Debian/Ubuntu: `sudo {line}`), then run again"));
    };
    eprintln!("test: installing {}", packages.join(" "));
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&packages);
    if !apt(&prefix, &["update", "-qq"]) || !apt(&prefix, &install) {
        return Err(format!(
            "`{line}` failed; install them by hand, then run again"
        ));
    }
    let still: Vec<&str> = NEEDS
        .iter()
        .filter(|n| !(n.present)())
        .map(|n| n.what)
        .collect();
    match still.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "still missing after installing: {}",
            still.join("; ")
        )),
    }
}

/// The venv with the SPDX and CycloneDX validators `tests/sbom.rs` runs (`pyspdxtools` from
/// PyPI's `spdx-tools`, `cyclonedx-python-lib[json-validation]`): `target/sbom-venv`, made
/// and filled once (pip needs the network then).
fn sbom_venv() -> Result<std::path::PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let venv = target.join("sbom-venv");
    let ready = venv.join("bin/pyspdxtools").is_file()
        && Command::new(venv.join("bin/python"))
            .args(["-c", "import cyclonedx.validation.json, jsonschema"])
            .output()
            .is_ok_and(|o| o.status.success());
    if ready {
        return Ok(venv);
    }
    eprintln!(
        "test: making {} (spdx-tools, cyclonedx-python-lib)",
        venv.display()
    );
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "-q",
                "spdx-tools",
                "cyclonedx-python-lib[json-validation]",
            ])
            .status()
            .is_ok_and(|s| s.success());
    match ok {
        true => Ok(venv),
        false => Err(format!(
            "cannot make the SBOM validators' venv {}: `python3 -m venv` (Debian: python3-venv) \
             and `pip install spdx-tools 'cyclonedx-python-lib[json-validation]'` (network) must work",
            venv.display()
        )),
    }
}
