//! `cargo xtask bench-hostile`: how long nanoimg-oci takes on hostile container images —
//! repeated opaque markers, long symbolic-link chains, deep nesting, a nested index listed
//! many times, tar header bombs — each beside a baseline writing the same files without
//! the hostile part.
//!
//! The images are made, and the crate called, by the ignored test `bench_hostile_images` in
//! `crates/oci/tests/hostile.rs` (which asserts every root is right); this task runs it in
//! release mode and lets it print its table. A measurement, not a test: exit 0 however
//! slow the machine, 1 if the run fails.

use std::process::Command;

use anyhow::{bail, Context};

#[derive(Debug, clap::Args)]
pub struct HostileArgs {}

pub fn run(_args: &HostileArgs) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let status = Command::new(&cargo)
        .current_dir(workspace)
        .args(["test", "--release", "-p", "nanoimg-oci"])
        .args(["--test", "hostile", "--", "--ignored", "--exact"])
        .args(["bench_hostile_images", "--nocapture", "--test-threads=1"])
        .status()
        .with_context(|| format!("running {cargo} test"))?;
    if !status.success() {
        bail!("the hostile-image bench failed ({status})");
    }
    Ok(())
}
