//! The e2e case format: one TOML file per case in `xtask/cases/`, parsed into [`Case`]
//! (unknown fields are refused) and expanded into one [`Variant`] per architecture × disk
//! format. Every field but `name` is optional:
//!
//! ```toml
//! name = "static-c"            # report name; an arm64 variant is "arm64-<name>",
//!                              # a format variant "<name>-<format>"
//! arch = ["x86_64", "arm64"]   # default ["x86_64"] (see dims.rs)
//! formats = ["raw"]            # `nanoimg build --format`, default ["raw"] (dims::FORMATS)
//!
//! [program]                    # compiled in the case folder from xtask/samples/<source>
//! source = "hello_static.c"
//! build = "c-static"           # c-static | c | c++ | rust-static | rust
//! name = "hello_static"        # file name: nanoimg build's PROGRAM, argv[0] in the guest
//!
//! [config]                     # the ops config, written as config.json (`-c`)
//! Program = "hello_static"
//!
//! [files]                      # written into the case folder before anything runs
//! "workspace/input" = "witness-42\n"
//!
//! [image]                      # an OCI image made with umoci: `build --from-image L:T`
//! debian = ["nodejs"]          # a first layer from mmdebstrap (bookworm, essential)
//! program = "usr/local/bin/prover"   # the compiled program, put into the files layer
//! entrypoint = ["/usr/bin/node"]
//! cmd = ["server.js"]
//! workdir = "/app"
//! env = ["GREETING=hello"]
//! [image.files]                # the files layer: path in the image = text
//! "app/server.js" = "..."
//!
//! [build]
//! flags = ["--uefi"]           # more `nanoimg build` flags
//! target_root = "sysroot-image"      # --target-root of a fixture (fixtures.rs)
//!
//! [run]
//! flags = ["--boot", "bios"]   # more `nanoimg run` flags
//! timeout = 5                  # `--timeout`, default the runner's --timeout-secs
//! accel = "default"            # tcg (default) | default: no --accel (x86_64 only)
//! program = true               # `nanoimg run PROGRAM -c ... -o IMAGE` (no build step)
//!
//! [[steps]]                    # more nanoimg commands, in the case folder
//! when = "after-build"         # after-build | after-boot
//! args = ["extract", "data.vol", "extracted"]
//! output = ["add *"]           # lines (of stdout and stderr) that must be printed
//!
//! [expect]
//! status = 0                   # nanoimg run's exit status
//! console = ["HELLO-DONE"]     # lines the serial console must show (ANSI stripped)
//! stderr = []                  # lines nanoimg run must print on stderr
//! build_stderr = []            # lines nanoimg build must print on stderr
//! inspect = []                 # lines `nanoimg inspect IMAGE` must print
//! files = { "workspace/output" = "proof" }  # files the case folder must hold after
//!                              # the boot (one trailing newline ignored)
//! max_boot_secs = 20           # the boot must end within this
//! qemu = { args = ["-kernel"], no_args = ["-bios"], parts = [",format=vpc,"] }
//!                              # `nanoimg run --print-command`: arguments (consecutive
//!                              # ones space-separated), absent ones, parts of arguments
//! checks = [{ port-forward = { send = "ping", reply = "pong:ping" } }]
//!                              # named checks that need code (checks.rs)
//! ```
//!
//! Expected lines are whole lines; `*` in one matches any text. Strings in `config`,
//! flags, steps and expectations may name `{case}` (the variant's name), `{program}`,
//! `{dir}` (the case folder), `{image}` (the image file), `{format}`, `{target_root}` and `{port}`
//! (a free host port picked for the case).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::dims::{self, Arch, Format, Qemu};

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// Empty means `["x86_64"]`.
    pub arch: Vec<Arch>,
    /// Empty means `["raw"]`.
    pub formats: Vec<String>,
    pub program: Option<Program>,
    pub config: Option<toml::Table>,
    pub files: BTreeMap<String, String>,
    pub image: Option<Image>,
    pub build: Build,
    pub run: Run,
    pub steps: Vec<Step>,
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub source: String,
    pub build: dims::Compile,
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Image {
    pub debian: Vec<String>,
    pub files: BTreeMap<String, String>,
    pub program: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub workdir: Option<String>,
    pub env: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Build {
    pub flags: Vec<String>,
    pub target_root: Option<Fixture>,
}

/// A target root the runner makes once and shares (fixtures.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fixture {
    /// A umoci image of this machine's loader, C/C++ runtime and `libhello_plugin.so`.
    SysrootImage,
    /// A folder with glibc, `libnanoimg_missing.so.1` and `/etc/nanoimg-missing.conf`.
    MissingFilesRoot,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Run {
    pub flags: Vec<String>,
    pub timeout: Option<u64>,
    pub accel: Accel,
    pub program: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accel {
    #[default]
    Tcg,
    Default,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub when: When,
    pub args: Vec<String>,
    #[serde(default)]
    pub output: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    AfterBuild,
    AfterBoot,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Expect {
    pub status: i32,
    pub console: Vec<String>,
    pub stderr: Vec<String>,
    pub build_stderr: Vec<String>,
    pub inspect: Vec<String>,
    pub files: BTreeMap<String, String>,
    pub max_boot_secs: Option<u64>,
    pub qemu: Qemu,
    pub checks: Vec<Check>,
}

/// The checks that need code (checks.rs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Check {
    /// While the VM runs, `send` a line to 127.0.0.1:`{port}`; `reply` must come back.
    PortForward { send: String, reply: String },
    /// These disks (after the boot) must hold exactly guestfs.c's tree under `/t`, by
    /// `inspect --files [--json]`, `extract` and `diff` against a copy from before it.
    GuestFs(Vec<String>),
    /// nanoimg build must pack these files, and only from the target root image.
    PackedFromImage(Vec<String>),
    /// Run again with a config made of the lines `--missing-files` suggested: the
    /// console must show `console`, and nanoimg name only `still_missing`.
    SuggestedConfig {
        console: Vec<String>,
        still_missing: Vec<String>,
    },
}

/// One case on one architecture in one disk format.
#[derive(Debug)]
pub struct Variant<'a> {
    pub name: String,
    pub case: &'a Case,
    pub arch: Arch,
    pub format: &'static Format,
}

/// Reads every `*.toml` in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>> {
    let mut paths: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading the case folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let cases = paths.iter().map(|p| load(p)).collect::<Result<Vec<_>>>()?;
    if cases.is_empty() {
        bail!("no case file (*.toml) in {}", dir.display());
    }
    Ok(cases)
}

pub fn load(path: &Path) -> Result<Case> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut case: Case =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if case.arch.is_empty() {
        case.arch = vec![Arch::X86_64];
    }
    if case.formats.is_empty() {
        case.formats = vec!["raw".to_owned()];
    }
    case.validate()
        .with_context(|| format!("checking {}", path.display()))?;
    Ok(case)
}

impl Case {
    fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            bail!("a case needs a name");
        }
        for format in &self.formats {
            dims::format(format)?;
        }
        if self.program.is_none() && self.image.is_none() {
            bail!("a case needs a [program] or an [image]");
        }
        if self.run.program && self.program.is_none() {
            bail!("run.program needs a [program]");
        }
        if let Some(program) = &self.program {
            for arch in &self.arch {
                arch.compile_command(program.build, Path::new("cc"), &program.name, "x")?;
            }
        }
        Ok(())
    }
}

/// Every variant of `cases`: all x86_64 ones first, then the arm64 ones.
pub fn expand(cases: &[Case]) -> Result<Vec<Variant<'_>>> {
    let mut variants = Vec::new();
    for arch in [Arch::X86_64, Arch::Arm64] {
        for case in cases.iter().filter(|c| c.arch.contains(&arch)) {
            for format in &case.formats {
                let format = dims::format(format)?;
                let mut name = format!("{}{}", arch.prefix(), case.name);
                if format.name != "raw" {
                    name = format!("{name}-{}", format.name);
                }
                variants.push(Variant {
                    name,
                    case,
                    arch,
                    format,
                });
            }
        }
    }
    for (i, v) in variants.iter().enumerate() {
        if variants[..i].iter().any(|w| w.name == v.name) {
            bail!("two cases are named {}", v.name);
        }
    }
    Ok(variants)
}

/// The values of a variant's `{placeholders}`.
#[derive(Debug, Default, Clone)]
pub struct Vars(pub BTreeMap<&'static str, String>);

impl Vars {
    /// `text` with every `{name}` of a known variable replaced; an unknown `{lowercase}`
    /// name is an error.
    pub fn subst(&self, text: &str) -> Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after.find('}').unwrap_or(0);
            let key = &after[..end];
            let named = end > 0 && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !named {
                out.push('{');
                rest = after;
                continue;
            }
            match self.0.get(key) {
                Some(value) => out.push_str(value),
                None => bail!("unknown placeholder {{{key}}} in {text:?}"),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    pub fn subst_all(&self, texts: &[String]) -> Result<Vec<String>> {
        texts.iter().map(|t| self.subst(t)).collect()
    }

    /// The case's `config` as JSON, with its strings (keys too) substituted.
    pub fn config(&self, config: &toml::Table) -> Result<serde_json::Value> {
        let value = serde_json::to_value(config).context("converting the config to JSON")?;
        self.json(value)
    }

    fn json(&self, value: serde_json::Value) -> Result<serde_json::Value> {
        use serde_json::Value;
        Ok(match value {
            Value::String(s) => Value::String(self.subst(&s)?),
            Value::Array(a) => {
                Value::Array(a.into_iter().map(|v| self.json(v)).collect::<Result<_>>()?)
            }
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| Ok((self.subst(&k)?, self.json(v)?)))
                    .collect::<Result<_>>()?,
            ),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases() -> Vec<Case> {
        load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("cases")).expect("cases load")
    }

    #[test]
    fn every_case_file_loads_and_expands_to_the_known_cases() {
        let cases = cases();
        let names: Vec<String> = expand(&cases)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        let mut want = [
            "static-c",
            "static-rust",
            "dynamic-c",
            "dynamic-cpp",
            "dynamic-rust",
            "gevulot-prover",
            "uefi-ovmf",
            "uefi-seabios",
            "data-volume",
            "guest-fs",
            "exit-code",
            "port-forward",
            "timeout",
            "sysroot-c",
            "sysroot-rust",
            "dlopen-libraries",
            "format-qcow2",
            "format-vhd",
            "format-vmdk",
            "format-vhdx",
            "format-gce",
            "app-python",
            "app-python-prune",
            "app-node",
            "app-prover",
            "missing-files",
            "arm64-static-c",
            "arm64-static-rust",
            "arm64-dynamic-c",
            "arm64-gevulot-style",
            "arm64-exit-code",
            "arm64-uefi",
        ];
        want.sort();
        assert_eq!(sorted, want);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<Case>("name = \"x\"\n[expect]\nconsole_lines = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `console_lines`"), "{err}");
        assert!(toml::from_str::<Case>("name = \"x\"\narch = [\"riscv\"]\n").is_err());
    }

    #[test]
    fn placeholders() {
        let vars = Vars(BTreeMap::from([
            ("case", "c".to_owned()),
            ("dir", "/w".to_owned()),
        ]));
        assert_eq!(
            vars.subst("{dir}/x {case} {{ %1 {A}").unwrap(),
            "/w/x c {{ %1 {A}"
        );
        assert!(vars.subst("{nope}").is_err());
        let config: toml::Table = toml::from_str("E = { C = \"{case}\" }").unwrap();
        assert_eq!(
            vars.config(&config).unwrap(),
            serde_json::json!({"E": {"C": "c"}})
        );
    }
}
