//! What cases build against, made once per run in the work directory: the target roots
//! named by `build.target_root` and the OCI images of `[image]` (with umoci, no daemon).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

use crate::case::{Fixture, Image};
use crate::samples;

/// This machine's libraries copied into the sysroot image.
const HOST_LIBRARIES: [&str; 5] = [
    "ld-linux-x86-64.so.2",
    "libc.so.6",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libm.so.6",
];
/// Where the sysroot image and the missing-files root keep libraries, as on this machine.
const LIB: &str = "lib/x86_64-linux-gnu";
const HOST_LIBRARY_DIRS: [&str; 2] = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"];

/// The fixtures made so far, by a key: the `--target-root` or `--from-image` value, or
/// why making it failed.
#[derive(Default)]
pub struct Fixtures {
    made: BTreeMap<String, Result<String, String>>,
}

impl Fixtures {
    /// The target root `fixture` (made on first use in `dir`).
    pub fn target_root(&mut self, fixture: Fixture, dir: &Path) -> Result<String, String> {
        let key = format!("{fixture:?}");
        let make = || match fixture {
            Fixture::SysrootImage => sysroot_image(&dir.join("sysroot")),
            Fixture::MissingFilesRoot => missing_files_root(&dir.join("missing-files-root")),
        };
        self.get(key, make)
    }

    /// The umoci image of `image` (made on first use in `dir`; the same spec is made once),
    /// with `program` (a compiled file) put at `image.program`.
    pub fn image(
        &mut self,
        image: &Image,
        program: Option<&Path>,
        dir: &Path,
    ) -> Result<String, String> {
        let key = format!("{image:?}");
        let folder = dir.join(format!("image-{}", self.made.len()));
        self.get(key, || oci_image(image, program, &folder))
    }

    fn get(
        &mut self,
        key: String,
        make: impl FnOnce() -> Result<String>,
    ) -> Result<String, String> {
        self.made
            .entry(key)
            .or_insert_with(|| make().map_err(|e| format!("making the fixture: {e:#}")))
            .clone()
    }
}

/// Runs `command` to its end, capturing its stdout and stderr.
pub fn output(command: &mut Command) -> Result<Output> {
    command
        .output()
        .with_context(|| format!("running {command:?}"))
}

/// Runs `program ARGS` in `dir`; a failure is an error with its stderr.
pub fn run_tool(program: &Path, dir: &Path, args: &[&str]) -> Result<()> {
    let mut command = Command::new(program);
    command.current_dir(dir).args(args).stdin(Stdio::null());
    let output = output(&mut command)?;
    if !output.status.success() {
        bail!(
            "{command:?} failed with {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(())
}

fn umoci(dir: &Path, args: &[&str]) -> Result<()> {
    run_tool(Path::new("umoci"), dir, args).context("umoci (Debian/Ubuntu: apt-get install umoci)")
}

fn host_library(name: &str) -> Result<PathBuf> {
    HOST_LIBRARY_DIRS
        .iter()
        .find_map(|dir| fs::canonicalize(Path::new(dir).join(name)).ok())
        .with_context(|| format!("{name} not found in {}", HOST_LIBRARY_DIRS.join(" or ")))
}

/// Writes each of `files` (path in `dir` = text), making the folders they need.
pub fn write_files(dir: &Path, files: &BTreeMap<String, String>) -> Result<()> {
    for (path, text) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap_or(dir))?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to.parent().unwrap_or(to))?;
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// One layer: this machine's loader and C/C++ runtime, `/lib64/ld-linux-x86-64.so.2` a
/// link to the loader, and `libhello_plugin.so` (samples/hello_plugin.c) in
/// `/usr/lib/x86_64-linux-gnu`, which only this image has. nanoimg unpacks it into its
/// cache (`rootfs/<digest>/root/`).
fn sysroot_image(dir: &Path) -> Result<String> {
    fs::create_dir_all(dir)?;
    samples::write_sources(dir)?;
    let plugin = "libhello_plugin.so";
    let cc_args = ["-shared", "-fPIC", "-O2", "-o", plugin, "hello_plugin.c"];
    run_tool(Path::new("cc"), dir, &cc_args)?;
    let image = new_image(dir, "sysroot")?;
    let bundle = dir.join("bundle");
    let bundle_arg = bundle.to_string_lossy();
    umoci(
        dir,
        &["unpack", "--rootless", "--image", &image, &bundle_arg],
    )?;
    let rootfs = bundle.join("rootfs");
    for name in HOST_LIBRARIES {
        copy(&host_library(name)?, &rootfs.join(LIB).join(name))?;
    }
    fs::create_dir_all(rootfs.join("lib64"))?;
    std::os::unix::fs::symlink(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        rootfs.join("lib64/ld-linux-x86-64.so.2"),
    )?;
    copy(
        &dir.join(plugin),
        &rootfs.join("usr/lib/x86_64-linux-gnu").join(plugin),
    )?;
    umoci(dir, &["repack", "--image", &image, &bundle_arg])?;
    Ok(image)
}

/// A new, empty image `TAG` in the OCI layout `dir/oci`; returns `LAYOUT:TAG`.
fn new_image(dir: &Path, tag: &str) -> Result<String> {
    let layout = dir.join("oci");
    let image = format!("{}:{tag}", layout.display());
    umoci(dir, &["init", "--layout", &layout.to_string_lossy()])?;
    umoci(dir, &["new", "--image", &image])?;
    Ok(image)
}

/// A folder: this machine's loader and libc, `libnanoimg_missing.so.1`
/// (samples/missing_files_lib.c) in `/usr/lib/x86_64-linux-gnu` and
/// `/etc/nanoimg-missing.conf` (but no `/etc/nanoimg-nowhere.conf`).
fn missing_files_root(dir: &Path) -> Result<String> {
    let root = dir.join("root");
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    fs::create_dir_all(&lib)?;
    samples::write_sources(dir)?;
    let soname = "libnanoimg_missing.so.1";
    let out = lib.join(soname).display().to_string();
    let soname_flag = format!("-Wl,-soname,{soname}");
    let mut args = vec!["-shared", "-fPIC", "-O2", &soname_flag];
    args.extend(["-o", &out, "missing_files_lib.c"]);
    run_tool(Path::new("cc"), dir, &args)?;
    for (at, name) in [("lib64", "ld-linux-x86-64.so.2"), (LIB, "libc.so.6")] {
        copy(&host_library(name)?, &root.join(at).join(name))?;
    }
    fs::create_dir_all(root.join("etc"))?;
    fs::write(root.join("etc/nanoimg-missing.conf"), "answer=42\n")?;
    Ok(root.display().to_string())
}

/// An OCI layout in `dir` holding the image of `spec`: a Debian root from mmdebstrap (when
/// `debian` names packages), then one layer of `files` (and the compiled `program`), then
/// its config. Returns `LAYOUT:TAG`.
fn oci_image(spec: &Image, program: Option<&Path>, dir: &Path) -> Result<String> {
    let layer = dir.join("layer");
    fs::create_dir_all(&layer)?;
    let mut tars = Vec::new();
    if !spec.debian.is_empty() {
        let tar = dir.join("debian.tar").display().to_string();
        let include = format!("--include={}", spec.debian.join(","));
        run_tool(
            Path::new("mmdebstrap"),
            dir,
            &["--quiet", "--variant=essential", &include, "bookworm", &tar],
        )
        .context("mmdebstrap (Debian/Ubuntu: apt-get install mmdebstrap)")?;
        tars.push(tar);
    }
    write_files(&layer, &spec.files)?;
    if let (Some(at), Some(program)) = (&spec.program, program) {
        copy(program, &layer.join(at))?;
    }
    let tar = dir.join("files.tar").display().to_string();
    let mut top: Vec<String> = fs::read_dir(&layer)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    top.sort();
    let mut args = vec!["-cf", &tar];
    args.extend(top.iter().map(String::as_str));
    run_tool(Path::new("tar"), &layer, &args)?;
    tars.push(tar);
    let image = new_image(dir, "image")?;
    for tar in &tars {
        umoci(dir, &["raw", "add-layer", "--image", &image, tar])?;
    }
    let mut config = vec!["config".to_owned(), "--image".to_owned(), image.clone()];
    let mut add =
        |flag: &str, value: &str| config.extend([format!("--config.{flag}"), value.to_owned()]);
    spec.entrypoint.iter().for_each(|v| add("entrypoint", v));
    spec.cmd.iter().for_each(|v| add("cmd", v));
    spec.env.iter().for_each(|v| add("env", v));
    if let Some(workdir) = &spec.workdir {
        add("workingdir", workdir);
    }
    umoci(dir, &config.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(image)
}
