//! The disk-format cases: the `static-c` sample built with `nanoimg build --format F` for
//! qcow2, VHD, VMDK, VHDX and the GCE tar, each booted by `nanoimg run` and checked for
//! exactly what the raw image prints. QEMU reads the first four itself (`-drive format=…`);
//! a GCE tar is not a disk QEMU reads, so `nanoimg run` converts it to a raw image first
//! (a temporary file; for `--print-command`, the `-o` file) and boots that as `format=raw`.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::boot::{self, RunOptions};
use crate::e2e::{self, CaseReport};
use crate::expect;
use crate::prereq::Tools;

/// Subfolder of the work directory (and of `--keep`) for these cases.
pub const SUBDIR: &str = "formats";

/// The sample whose program every format case packs.
pub const PROGRAM: &str = "hello_static";

/// One format case: `--format` value and QEMU's name for it (`-drive format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub format: &'static str,
    pub qemu: &'static str,
}

impl Case {
    pub fn name(&self) -> String {
        format!("format-{}", self.format)
    }
}

pub const CASES: [Case; 5] = [
    Case {
        format: "qcow2",
        qemu: "qcow2",
    },
    Case {
        format: "vhd",
        qemu: "vpc",
    },
    Case {
        format: "vmdk",
        qemu: "vmdk",
    },
    Case {
        format: "vhdx",
        qemu: "vhdx",
    },
    // Booted through its raw image, converted by `nanoimg run`.
    Case {
        format: "gce",
        qemu: "raw",
    },
];

/// What is wrong with the QEMU command line `nanoimg run --print-command` printed for `case`:
/// the disk must be given in its own format (and a stream-optimized VMDK, which QEMU cannot
/// write in place, behind a temporary overlay).
pub fn qemu_line_problems(case: &Case, printed: &str) -> Vec<String> {
    let drive = printed
        .lines()
        .find(|l| l.contains("id=hd0"))
        .unwrap_or_default();
    let mut problems = Vec::new();
    if !drive.contains(&format!(",format={},", case.qemu)) {
        problems.push(format!(
            "the disk is not given to QEMU as format={}: {drive:?}",
            case.qemu
        ));
    }
    if case.format == "vmdk" && !drive.contains("snapshot=on") {
        problems.push(format!("the VMDK disk has no snapshot=on: {drive:?}"));
    }
    problems
}

/// Builds, boots and checks every format case with `program` (the compiled `static-c`
/// sample in `work_dir`).
pub fn run_cases(
    tools: &Tools,
    nanoimg: &Path,
    work_dir: &Path,
    program: &Path,
    timeout_secs: u64,
    record: &mut dyn FnMut(&str, CaseReport) -> Result<()>,
) -> Result<()> {
    let dir = work_dir.join(SUBDIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for case in CASES {
        let name = case.name();
        let report = run_case(
            &case,
            &name,
            tools,
            nanoimg,
            work_dir,
            &dir,
            program,
            timeout_secs,
        )?;
        record(&name, report)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    case: &Case,
    name: &str,
    tools: &Tools,
    nanoimg: &Path,
    work_dir: &Path,
    dir: &Path,
    program: &Path,
    timeout_secs: u64,
) -> Result<CaseReport> {
    let mut report = CaseReport::default();
    let config = dir.join(format!("{name}.config.json"));
    fs::write(
        &config,
        serde_json::to_vec_pretty(&e2e::hello_config(PROGRAM, name))
            .context("serializing the case config")?,
    )
    .with_context(|| format!("writing {}", config.display()))?;
    report.artifacts.push(config.clone());

    let image = dir.join(format!("{PROGRAM}.{}", case.format));
    let mut command = e2e::nanoimg_build_command(
        nanoimg,
        program,
        &config,
        &tools.kernel_dir,
        &image,
        work_dir,
        false,
    );
    command.args(["--format", case.format]);
    if e2e::run_build(command, name, &image, dir, &mut report)?.is_none() {
        return Ok(report);
    }

    let options = RunOptions::new(timeout_secs);
    let mut print = boot::command(nanoimg, &image, &options);
    if case.format == "gce" {
        // The printed command needs the converted raw image kept somewhere.
        print
            .arg("-o")
            .arg(dir.join(format!("{PROGRAM}.gce-raw.img")));
    }
    if !e2e::check_print_command(print, &mut report, |printed| {
        qemu_line_problems(case, printed)
    })? {
        return Ok(report);
    }

    let command = boot::command(nanoimg, &image, &options);
    let boot = e2e::boot_logged(command, &options, dir, name, &mut report)?;
    report
        .problems
        .extend(e2e::status_problem_for(0, &options, &boot));
    let expected = expect::expected_lines(PROGRAM, name);
    for missing in expect::missing_lines(&boot.console, &expected) {
        report.problems.push(format!("missing line \"{missing}\""));
    }
    e2e::add_boot_detail(&mut report, &boot);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_qemu_boots_is_a_case_with_qemus_name() {
        let names: Vec<_> = CASES.iter().map(Case::name).collect();
        assert_eq!(
            names,
            [
                "format-qcow2",
                "format-vhd",
                "format-vmdk",
                "format-vhdx",
                "format-gce"
            ]
        );
        assert_eq!(CASES[4].qemu, "raw");
        assert_eq!(CASES[1].qemu, "vpc");
    }

    #[test]
    fn the_drive_must_carry_the_format_and_vmdk_an_overlay() {
        let line = |d: &str| format!("qemu-system-x86_64\n-drive\n{d}\n-display\n");
        let qcow2 = CASES[0];
        assert!(
            qemu_line_problems(&qcow2, &line("file=/w/h.qcow2,format=qcow2,if=none,id=hd0"))
                .is_empty()
        );
        assert_eq!(
            qemu_line_problems(&qcow2, &line("file=/w/h.qcow2,format=raw,if=none,id=hd0")).len(),
            1
        );
        let vmdk = CASES[2];
        assert!(qemu_line_problems(
            &vmdk,
            &line("file=/w/h.vmdk,format=vmdk,if=none,id=hd0,snapshot=on")
        )
        .is_empty());
        assert_eq!(
            qemu_line_problems(&vmdk, &line("file=/w/h.vmdk,format=vmdk,if=none,id=hd0")),
            ["the VMDK disk has no snapshot=on: \"file=/w/h.vmdk,format=vmdk,if=none,id=hd0\""]
        );
    }
}
