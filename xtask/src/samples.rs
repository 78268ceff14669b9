//! The sample programs the e2e runner packs and boots.
//!
//! Sources live in `xtask/samples/` and are embedded with `include_str!`, so
//! the runner works from any directory; they are written into the temporary
//! work directory and compiled there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::prereq::{MissingPrerequisites, Tools};

/// A sample source file, embedded into the xtask binary.
struct Source {
    file_name: &'static str,
    text: &'static str,
}

/// All sample sources. `hello_dynamic.c` `#include`s `hello_static.c`, so
/// every source is written out even if only some cases run.
const SOURCES: &[Source] = &[
    Source {
        file_name: "hello_static.c",
        text: include_str!("../samples/hello_static.c"),
    },
    Source {
        file_name: "hello_dynamic.c",
        text: include_str!("../samples/hello_dynamic.c"),
    },
    Source {
        file_name: "hello_rust.rs",
        text: include_str!("../samples/hello_rust.rs"),
    },
];

/// How a sample is turned into an x86-64 Linux ELF executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `cc -static -O2`
    StaticC,
    /// `cc -O2` (dynamically linked against the host glibc)
    DynamicC,
    /// `rustc -O -C target-feature=+crt-static` (static glibc)
    StaticRust,
}

/// One e2e case.
#[derive(Debug)]
pub struct Sample {
    /// Case name shown in the report, e.g. `static-c`.
    pub case: &'static str,
    /// File name of the compiled program; passed to `nanoimg build` as the
    /// program, so it is also what the guest sees as `argv[0]`.
    pub program: &'static str,
    source_file: &'static str,
    build: Build,
    /// The program needs shared libraries packed into the image, i.e. the
    /// ELF dependency resolver (issue 3). Skipped unless enabled explicitly.
    pub requires_dynamic_libs: bool,
}

/// Every case the runner knows about, in report order.
pub const SAMPLES: &[Sample] = &[
    Sample {
        case: "static-c",
        program: "hello_static",
        source_file: "hello_static.c",
        build: Build::StaticC,
        requires_dynamic_libs: false,
    },
    Sample {
        case: "static-rust",
        program: "hello_rust",
        source_file: "hello_rust.rs",
        build: Build::StaticRust,
        requires_dynamic_libs: false,
    },
    Sample {
        case: "dynamic-c",
        program: "hello_dynamic",
        source_file: "hello_dynamic.c",
        build: Build::DynamicC,
        // Expected to need the ELF dependency resolver (issue 3).
        requires_dynamic_libs: true,
    },
];

/// Writes every embedded sample source into `dir`.
pub fn write_sources(dir: &Path) -> Result<()> {
    for source in SOURCES {
        let path = dir.join(source.file_name);
        fs::write(&path, source.text)
            .with_context(|| format!("writing sample source {}", path.display()))?;
    }
    Ok(())
}

impl Sample {
    /// Compiles the sample inside `dir` (where [`write_sources`] put the
    /// sources) and returns the path of the executable.
    ///
    /// A compiler failure means the host toolchain is incomplete (e.g. no
    /// static glibc), so it is reported as a missing prerequisite.
    pub fn compile(&self, tools: &Tools, dir: &Path) -> Result<PathBuf> {
        let output_path = dir.join(self.program);
        let mut command = match self.build {
            Build::StaticC | Build::DynamicC => {
                let mut command = Command::new(&tools.cc);
                if self.build == Build::StaticC {
                    command.arg("-static");
                }
                command.args(["-O2", "-o", self.program, self.source_file]);
                command
            }
            Build::StaticRust => {
                let mut command = Command::new(&tools.rustc);
                command.args([
                    "-O",
                    "-C",
                    "target-feature=+crt-static",
                    "-o",
                    self.program,
                    self.source_file,
                ]);
                command
            }
        };
        command.current_dir(dir);
        let output = command
            .output()
            .with_context(|| format!("running {command:?}"))?;
        if !output.status.success() {
            let hint = match self.build {
                Build::StaticC => " (static linking needs libc.a — Debian/Ubuntu: libc6-dev)",
                Build::DynamicC => "",
                Build::StaticRust => " (+crt-static needs static glibc — Debian/Ubuntu: libc6-dev)",
            };
            return Err(MissingPrerequisites::single(format!(
                "cannot compile sample {} for case {}: {command:?} failed with {}{hint}\n{}",
                self.source_file,
                self.case,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            ))
            .into());
        }
        if !output_path.is_file() {
            anyhow::bail!(
                "{command:?} succeeded but produced no {}",
                output_path.display()
            );
        }
        Ok(output_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_has_an_embedded_source() {
        for sample in SAMPLES {
            assert!(
                SOURCES.iter().any(|s| s.file_name == sample.source_file),
                "no embedded source for {}",
                sample.case
            );
        }
    }

    #[test]
    fn case_and_program_names_are_unique() {
        for (i, a) in SAMPLES.iter().enumerate() {
            for b in &SAMPLES[i + 1..] {
                assert_ne!(a.case, b.case);
                assert_ne!(a.program, b.program);
            }
        }
    }
}
