//! The build plan: what goes into an image, decided before a byte is written.
//!
//! [`plan`] turns a program, its ops config and a Nanos release into two directory trees —
//! the boot filesystem (`/kernel`) and the root filesystem (the program) — plus the manifest
//! keys of the root tuple and the sizes the image must have. Files are referenced by host
//! path, not read; `nanoimg-tfs` and `nanoimg-disk` stream them into place later.
//!
//! The rules follow `ops build` (see `nanos-image-format.md` §4 and `docs/`):
//! - the program's image path is the config's `Program` with a leading `./` dropped, made
//!   absolute and cleaned, or `/<file name>` without one; argv\[0\] is `Program` as written
//!   (or the file name), followed by `Args`;
//! - a dynamic program's interpreter and libraries are resolved from its ELF headers by
//!   `nanoimg-elf` (in `TargetRoot` or `/`) and stored where the guest's loader will open
//!   them; nothing is executed;
//! - `Env` becomes `environment`;
//! - `ManifestPassthrough` keys are copied into the manifest last, overriding anything; their
//!   values must be strings, arrays or objects of those, as in ops;
//! - the root filesystem gets [`DEFAULT_FREE_SPACE`] of free space unless `readonly_rootfs`
//!   is set, and the image is at least `BaseVolumeSz` bytes.

use std::path::{Path, PathBuf};

use nanoimg_config::{Config, ConfigError};
use nanoimg_elf::{Dependency, ResolveError, Resolver};
use nanoimg_release::KernelDir;
use nanoimg_tfs::{Dir, FileSource, Node, TreeError};
use nanoimg_tuple::{Tuple, Value};

/// Free space given to a writable root filesystem when the config does not ask for a size:
/// enough for the kernel's log growth (which reserves 2 × 512 KiB before allocating any data)
/// and a few MiB of files.
pub const DEFAULT_FREE_SPACE: u64 = 8 * 1024 * 1024;

/// What to build from.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The program on the host.
    pub program: &'a Path,
    pub config: &'a Config,
    /// The config file's path (for messages), if there is one.
    pub config_path: Option<&'a Path>,
    pub kernel: &'a KernelDir,
    /// Where to resolve libraries, overriding the config's `TargetRoot`; `/` when neither.
    pub target_root: Option<&'a Path>,
    /// Directories searched after `DT_RPATH`, as `LD_LIBRARY_PATH` (only when asked for).
    pub ld_library_path: &'a [String],
}

/// Everything the image will contain.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The boot filesystem tree.
    pub boot: Dir,
    /// The root filesystem tree.
    pub root: Dir,
    /// Root tuple keys besides `children`.
    pub manifest: Tuple,
    /// The program's path in the image.
    pub program_path: String,
    /// Zeroed space after the root filesystem's data.
    pub root_free_space: u64,
    /// Smallest total image size.
    pub min_image_size: u64,
    /// The image's name as ops derives it: the program's base name up to its first `.`.
    pub image_name: String,
    /// The interpreter and libraries packed for a dynamic program.
    pub dependencies: Vec<Dependency>,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read program {path}: {source}")]
    Program {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("program {path} is not a regular file")]
    ProgramNotFile { path: PathBuf },
    #[error("cannot read kernel {path}: {source}")]
    Kernel {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config Program {0:?} does not name a file")]
    BadProgramPath(String),
    #[error("ManifestPassthrough {key:?}: {reason}")]
    Passthrough { key: String, reason: String },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// The image path for a config `Program` value, as ops computes it: a leading `./` dropped,
/// then `"/" + path`, cleaned (`.` and empty components removed, `..` applied).
pub fn image_path(program: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in program.trim_start_matches("./").split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| format!("/{}", parts.join("/")))
}

/// The program's path in the image and its argv\[0\]: the config's `Program` (see
/// [`image_path`]) or the host file's name.
pub fn program_paths(program: &Path, config: &Config) -> Result<(String, String), PlanError> {
    let file_name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(match &config.program {
        Some(p) => (
            image_path(p).ok_or_else(|| PlanError::BadProgramPath(p.clone()))?,
            p.clone(),
        ),
        None => (format!("/{file_name}"), file_name),
    })
}

/// The resolver for these inputs: `--target-root`, else the config's `TargetRoot`, else `/`.
pub fn resolver(inputs: &Inputs) -> Resolver {
    let root = inputs
        .target_root
        .map(Path::to_path_buf)
        .or_else(|| inputs.config.target_root.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    Resolver::new(&root).with_ld_library_path(inputs.ld_library_path.to_vec())
}

/// Makes the plan.
pub fn plan(inputs: &Inputs) -> Result<Plan, PlanError> {
    let program_err = |source| PlanError::Program {
        path: inputs.program.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(inputs.program).map_err(program_err)?;
    if !meta.is_file() {
        return Err(PlanError::ProgramNotFile {
            path: inputs.program.to_path_buf(),
        });
    }
    // Fail now, not halfway through writing, if the program cannot be opened.
    std::fs::File::open(inputs.program).map_err(program_err)?;

    let (program_path, argv0) = program_paths(inputs.program, inputs.config)?;
    let image_name = program_path
        .rsplit('/')
        .next()
        .and_then(|n| n.split('.').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("image")
        .to_string();

    let mut root = Dir::new();
    root.insert(
        program_path.as_bytes(),
        Node::File(FileSource::Host {
            path: inputs.program.to_path_buf(),
            len: meta.len(),
        }),
    )?;

    let resolution = resolver(inputs).resolve(inputs.program, &program_path)?;
    for dep in &resolution.dependencies {
        let source = FileSource::host(&dep.host_path).map_err(|source| PlanError::Program {
            path: dep.host_path.clone(),
            source,
        })?;
        root.insert(dep.guest_path.as_bytes(), Node::File(source))?;
    }

    let mut boot = Dir::new();
    let kernel = FileSource::host(&inputs.kernel.kernel).map_err(|source| PlanError::Kernel {
        path: inputs.kernel.kernel.clone(),
        source,
    })?;
    boot.insert(b"/kernel", Node::File(kernel))?;

    let mut manifest = Tuple::new();
    manifest.insert(b"program".to_vec(), Value::string(&program_path));
    let mut argv = vec![Value::string(&argv0)];
    argv.extend(inputs.config.args.iter().map(Value::string));
    manifest.insert(b"arguments".to_vec(), Value::Vector(argv));
    let env: Tuple = inputs
        .config
        .env
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), Value::string(v)))
        .collect();
    manifest.insert(b"environment".to_vec(), Value::Tuple(env));
    for (key, value) in &inputs.config.manifest_passthrough {
        let bad = |reason: String| PlanError::Passthrough {
            key: key.clone(),
            reason,
        };
        if key == "children" {
            return Err(bad("the filesystem tree cannot be replaced".into()));
        }
        manifest.insert(
            key.as_bytes().to_vec(),
            passthrough_value(value).map_err(bad)?,
        );
    }

    let config_path = inputs.config_path.unwrap_or(Path::new("config"));
    let min_image_size = inputs.config.base_volume_size(config_path)?.unwrap_or(0);
    let readonly = manifest.contains_key(&b"readonly_rootfs"[..]);
    Ok(Plan {
        boot,
        root,
        manifest,
        program_path,
        root_free_space: if readonly { 0 } else { DEFAULT_FREE_SPACE },
        min_image_size,
        image_name,
        dependencies: resolution.dependencies,
    })
}

/// A `ManifestPassthrough` value as a tuple value: strings, arrays and objects of them. ops
/// aborts on numbers, booleans and null ("unknown type of value"); so does nanoimg.
fn passthrough_value(v: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    match v {
        J::String(s) => Ok(Value::string(s)),
        J::Array(items) => items
            .iter()
            .map(passthrough_value)
            .collect::<Result<_, _>>()
            .map(Value::Vector),
        J::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.as_bytes().to_vec(), passthrough_value(v)?)))
            .collect::<Result<_, String>>()
            .map(Value::Tuple),
        other => Err(format!(
            "{other} is not a string, array or object (ops refuses it too; write \"{other}\")"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 64-byte header of a static x86_64 executable: all a static program needs to be
    /// accepted (nothing here runs it).
    pub(crate) fn tiny_static_elf() -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // ELFCLASS64
        h[5] = 1; // little-endian
        h[6] = 1; // EV_CURRENT
        h[16] = 2; // ET_EXEC
        h[18] = 62; // EM_X86_64
        h[20] = 1;
        h[24..32].copy_from_slice(&0x40_1000u64.to_le_bytes());
        h[52] = 64; // e_ehsize
        h[54] = 56; // e_phentsize
        h
    }

    fn setup() -> (tempfile::TempDir, KernelDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("kernel.img"), b"kernel").unwrap();
        std::fs::write(d.path().join("boot.img"), b"boot").unwrap();
        let prog = d.path().join("prover.bin");
        std::fs::write(&prog, tiny_static_elf()).unwrap();
        let k = KernelDir::open(d.path()).unwrap();
        (d, k, prog)
    }

    #[test]
    fn program_paths_follow_ops() {
        assert_eq!(image_path("prover").as_deref(), Some("/prover"));
        assert_eq!(
            image_path("./target/release/p").as_deref(),
            Some("/target/release/p")
        );
        assert_eq!(image_path("/usr/bin/x").as_deref(), Some("/usr/bin/x"));
        assert_eq!(image_path("a/../b//c/.").as_deref(), Some("/b/c"));
        assert_eq!(image_path("./"), None);
    }

    #[test]
    fn the_gevulot_manifest() {
        let (_d, k, prog) = setup();
        let config = Config::parse(
            r#"{"ManifestPassthrough": {"readonly_rootfs": "true"}, "Env": {"RUST_BACKTRACE": "1", "RUST_LOG": "debug"}, "Program": "prover", "Args": ["--x"]}"#,
            Path::new("c.json"),
        )
        .unwrap();
        let p = plan(&Inputs {
            program: &prog,
            config: &config,
            config_path: None,
            kernel: &k,
            target_root: None,
            ld_library_path: &[],
        })
        .unwrap();
        assert_eq!(p.program_path, "/prover");
        assert_eq!(p.image_name, "prover");
        assert_eq!(p.manifest[&b"program"[..]], Value::string("/prover"));
        assert_eq!(
            p.manifest[&b"arguments"[..]],
            Value::Vector(vec![Value::string("prover"), Value::string("--x")])
        );
        assert_eq!(p.manifest[&b"readonly_rootfs"[..]], Value::string("true"));
        assert_eq!(p.root_free_space, 0);
        assert!(matches!(p.root.get(b"/prover"), Some(Node::File(_))));
        assert!(matches!(p.boot.get(b"/kernel"), Some(Node::File(_))));
    }

    #[test]
    fn without_a_config_the_file_name_is_used() {
        let (_d, k, prog) = setup();
        let p = plan(&Inputs {
            program: &prog,
            config: &Config::default(),
            config_path: None,
            kernel: &k,
            target_root: None,
            ld_library_path: &[],
        })
        .unwrap();
        assert_eq!(p.program_path, "/prover.bin");
        assert_eq!(p.image_name, "prover");
        assert_eq!(p.root_free_space, DEFAULT_FREE_SPACE);
    }

    #[test]
    fn a_program_that_is_not_elf_is_refused() {
        let (d, k, _) = setup();
        let p = d.path().join("script.sh");
        std::fs::write(&p, "#!/bin/sh\necho hi\n").unwrap();
        let e = plan(&Inputs {
            program: &p,
            config: &Config::default(),
            config_path: None,
            kernel: &k,
            target_root: None,
            ld_library_path: &[],
        })
        .unwrap_err()
        .to_string();
        assert!(e.ends_with("script.sh is not an ELF file"), "{e}");
    }

    #[test]
    fn bad_inputs_are_named() {
        let (d, k, _) = setup();
        let missing = d.path().join("nope");
        let e = plan(&Inputs {
            program: &missing,
            config: &Config::default(),
            config_path: None,
            kernel: &k,
            target_root: None,
            ld_library_path: &[],
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("cannot read program") && e.contains("nope"),
            "{e}"
        );

        let config = Config::parse(
            r#"{"ManifestPassthrough": {"reboot_on_exit": true}}"#,
            Path::new("c.json"),
        )
        .unwrap();
        let e = plan(&Inputs {
            program: &d.path().join("prover.bin"),
            config: &config,
            config_path: None,
            kernel: &k,
            target_root: None,
            ld_library_path: &[],
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"reboot_on_exit\"") && e.contains("true"),
            "{e}"
        );
    }
}
