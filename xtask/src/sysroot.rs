//! The container image the `sysroot-*` and `dlopen-libraries` cases take
//! their libraries from (`nanoimg build --target-root LAYOUT:TAG`).
//!
//! Made once per run in the work directory with umoci, without a daemon or
//! root: `umoci init`, `umoci new`, `umoci unpack --rootless`, then this
//! machine's loader and C/C++ runtime libraries (and the run's
//! `libhello_plugin.so`, in `/usr/lib/x86_64-linux-gnu/`) are copied into
//! the bundle's rootfs and `umoci repack` makes the one layer. nanoimg
//! unpacks the image into its cache (`$NANOIMG_CACHE/rootfs/<digest>/root/`),
//! so a build against it must report every library as packed from there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::prereq::{MissingPrerequisites, Tools};

/// The OCI image layout folder, inside the work directory.
const LAYOUT_DIR: &str = "sysroot-oci";
/// The umoci bundle the image's root is assembled in.
const BUNDLE_DIR: &str = "sysroot-bundle";
/// The image's tag.
pub const TAG: &str = "sysroot";

/// Libraries copied from this machine into the image's
/// `/lib/x86_64-linux-gnu/`.
pub const HOST_LIBRARIES: [&str; 5] = [
    "ld-linux-x86-64.so.2",
    "libc.so.6",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libm.so.6",
];

/// Where [`HOST_LIBRARIES`] are looked up on this machine.
const HOST_LIBRARY_DIRS: [&str; 2] = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"];

/// The plugin of the `dlopen-libraries` case: its source and library.
pub const PLUGIN_SOURCE: &str = "hello_plugin.c";
pub const PLUGIN_LIBRARY: &str = "libhello_plugin.so";
/// Where the plugin lives in the image (a default search folder of glibc's
/// loader on Debian/Ubuntu).
const PLUGIN_DIR: &str = "usr/lib/x86_64-linux-gnu";

/// The hint `nanoimg deps` prints for a program that names the plugin in
/// its data when the config has no `Libraries` field.
pub fn plugin_hint() -> String {
    format!("add \"Libraries\": [\"{PLUGIN_LIBRARY}\"]")
}

/// Compiles the plugin in `work_dir` (where the sources were written) and
/// returns the library's path.
pub fn compile_plugin(tools: &Tools, work_dir: &Path) -> Result<PathBuf> {
    let mut command = Command::new(&tools.cc);
    command
        .current_dir(work_dir)
        .args([
            "-shared",
            "-fPIC",
            "-O2",
            "-o",
            PLUGIN_LIBRARY,
            PLUGIN_SOURCE,
        ])
        .stdin(Stdio::null());
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        return Err(MissingPrerequisites::single(format!(
            "cannot compile the dlopen plugin: {command:?} failed with {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
        .into());
    }
    Ok(work_dir.join(PLUGIN_LIBRARY))
}

/// The real file behind `/lib/x86_64-linux-gnu/<name>` or
/// `/usr/lib/x86_64-linux-gnu/<name>` on this machine.
fn host_library(name: &str) -> Result<PathBuf> {
    HOST_LIBRARY_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find_map(|path| fs::canonicalize(path).ok())
        .ok_or_else(|| {
            MissingPrerequisites::single(format!(
                "{name} not found in {} — the sysroot image is made from this machine's \
                 libraries (Debian/Ubuntu: libc6, libgcc-s1, libstdc++6)",
                HOST_LIBRARY_DIRS.join(" or ")
            ))
            .into()
        })
}

/// Makes the image in `work_dir` and returns the `--target-root` value
/// (`<layout>:<tag>`, absolute).
pub fn make_image(tools: &Tools, work_dir: &Path, plugin: &Path) -> Result<String> {
    let layout = work_dir.join(LAYOUT_DIR);
    let bundle = work_dir.join(BUNDLE_DIR);
    let image = format!("{}:{TAG}", layout.display());
    let umoci = |args: &[&str]| run_tool(&tools.umoci, work_dir, args);
    let layout_arg = layout.to_string_lossy();
    let bundle_arg = bundle.to_string_lossy();
    umoci(&["init", "--layout", &layout_arg])?;
    umoci(&["new", "--image", &image])?;
    umoci(&["unpack", "--rootless", "--image", &image, &bundle_arg])?;

    let rootfs = bundle.join("rootfs");
    let lib_dir = rootfs.join("lib/x86_64-linux-gnu");
    let plugin_dir = rootfs.join(PLUGIN_DIR);
    let lib64 = rootfs.join("lib64");
    for dir in [&lib_dir, &plugin_dir, &lib64] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for name in HOST_LIBRARIES {
        let source = host_library(name)?;
        let target = lib_dir.join(name);
        fs::copy(&source, &target)
            .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
    }
    let interp = lib64.join("ld-linux-x86-64.so.2");
    std::os::unix::fs::symlink("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", &interp)
        .with_context(|| format!("creating {}", interp.display()))?;
    let target = plugin_dir.join(PLUGIN_LIBRARY);
    fs::copy(plugin, &target)
        .with_context(|| format!("copying {} to {}", plugin.display(), target.display()))?;

    umoci(&["repack", "--image", &image, &bundle_arg])?;
    Ok(image)
}

/// Runs `program` with `args` in `dir` (no stdin); its failure is an error carrying its
/// status and stderr.
pub fn run_tool(program: &Path, dir: &Path, args: &[&str]) -> Result<()> {
    let mut command = Command::new(program);
    command.current_dir(dir).args(args).stdin(Stdio::null());
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed with {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(())
}

/// `nanoimg: packed GUEST <- SOURCE` lines of a build's stderr.
fn packed_lines(stderr: &str) -> impl Iterator<Item = (&str, &str)> {
    stderr.lines().filter_map(|line| {
        line.trim()
            .strip_prefix("nanoimg: packed ")?
            .split_once(" <- ")
    })
}

/// Whether `source` lies in an image root nanoimg unpacked into its cache:
/// `.../rootfs/<hex digest>/root/...`.
fn in_image_root(source: &str) -> bool {
    let mut parts = source.split('/').peekable();
    while let Some(part) = parts.next() {
        if part == "rootfs" {
            let mut rest = parts.clone();
            if let (Some(digest), Some("root")) = (rest.next(), rest.next()) {
                if digest.len() >= 32 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return true;
                }
            }
        }
    }
    false
}

/// Problems with how a build against the image packed `required` (file
/// names): each must be packed, and every packed file must come from the
/// unpacked image root.
pub fn check_packed(stderr: &str, required: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let packed: Vec<(&str, &str)> = packed_lines(stderr).collect();
    for (guest, source) in &packed {
        if !in_image_root(source) {
            problems.push(format!(
                "nanoimg build packed {guest} from {source}, not from the image root \
                 (.../rootfs/<digest>/root/)"
            ));
        }
    }
    for name in required {
        let found = packed
            .iter()
            .any(|(guest, _)| Path::new(guest).file_name().and_then(|n| n.to_str()) == Some(name));
        if !found {
            problems.push(format!(
                "nanoimg build printed no \"nanoimg: packed .../{name} <- ...\" line"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str =
        "/c/nanoimg/rootfs/622f80eda055beb11c5ca8013ce2fd29578bc64f217bece123663df2bed75cac/root";

    #[test]
    fn packed_from_the_image_root() {
        let stderr = format!(
            "nanoimg: packed /lib64/ld-linux-x86-64.so.2 <- {ROOT}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n\
             nanoimg: packed /lib/x86_64-linux-gnu/libc.so.6 <- {ROOT}/lib/x86_64-linux-gnu/libc.so.6\n"
        );
        assert!(check_packed(&stderr, &["ld-linux-x86-64.so.2", "libc.so.6"]).is_empty());
        let problems = check_packed(&stderr, &["libgcc_s.so.1"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("libgcc_s.so.1"));
    }

    #[test]
    fn packed_from_the_host_is_a_problem() {
        let stderr =
            "nanoimg: packed /lib/x86_64-linux-gnu/libc.so.6 <- /lib/x86_64-linux-gnu/libc.so.6\n";
        let problems = check_packed(stderr, &["libc.so.6"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("not from the image root"));
        assert!(!in_image_root("/x/rootfs/nothex/root/libc.so.6"));
        assert!(!in_image_root("/x/rootfs/root/libc.so.6"));
    }

    #[test]
    fn plugin_hint_is_the_libraries_line() {
        assert_eq!(plugin_hint(), "add \"Libraries\": [\"libhello_plugin.so\"]");
    }
}
