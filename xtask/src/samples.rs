//! The sample programs' sources, in `xtask/samples/` (C files include `sample.h`).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Copies every sample source into `dir`.
pub fn write_sources(dir: &Path) -> Result<()> {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    for entry in fs::read_dir(&samples).with_context(|| format!("reading {}", samples.display()))? {
        let from = entry?.path();
        let to = dir.join(from.file_name().unwrap_or_default());
        fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}
