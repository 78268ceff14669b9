//! The reading commands: `inspect`, `diff` and `extract` print what `nanoimg-inspect`
//! found.

/// `println!` for lines holding names and values read from an image (file names, link
/// targets, manifest values): control characters escaped ([`nanoimg::escape_controls`];
/// not cut, a listing shows whole values), so an image cannot forge lines or send escape
/// sequences to the terminal. (JSON output is escaped by serde.)
macro_rules! out {
    ($($arg:tt)*) => {
        std::println!("{}", nanoimg::escape_controls(&format!($($arg)*), usize::MAX))
    };
}

pub fn inspect(
    image: &std::path::Path,
    files: bool,
    json: bool,
) -> Result<(), nanoimg::BuildError> {
    let mut r = nanoimg::inspect::inspect(image)?;
    for note in &r.notes {
        crate::say(format!("note: {note}"));
    }
    if json {
        if !files {
            r.root.files.clear();
        }
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(());
    }
    let kind = match (r.layout, r.stage2_len) {
        ("bios", _) => "BIOS-bootable disk image",
        ("uefi", Some(_)) => "BIOS and UEFI bootable disk image",
        ("uefi", None) => "UEFI bootable disk image",
        ("no-bootloader", _) => "disk image without boot code (its kernel is loaded directly)",
        _ => "raw TFS volume",
    };
    let container = if r.format == "raw" {
        String::new()
    } else {
        format!(" (raw size, in a {} container)", r.format)
    };
    out!("{}: {kind}, {} bytes{container}", r.path.display(), r.size);
    if let Some(s) = r.stage2_len {
        out!("stage2: {s} bytes");
    }
    for p in &r.partitions {
        out!(
            "partition {}: {} type 0x{:02x}{} offset {} size {}",
            p.index,
            p.role,
            p.partition_type,
            if p.active { " active" } else { "" },
            p.offset,
            p.size
        );
    }
    if let Some(b) = &r.boot {
        out!("boot filesystem: uuid {} label {:?}", b.uuid, b.label);
        for (path, f) in &b.files {
            if let nanoimg::inspect::FileInfo::File { size, sha256, .. } = f {
                out!("  {path}: {size} bytes, sha256 {sha256}");
            }
        }
    }
    let root = &r.root;
    out!(
        "root filesystem: uuid {} label {:?}, TFS v{}, {} log extension(s), {} entries, {} bytes free",
        root.uuid,
        root.label,
        root.version,
        root.log_extensions,
        root.files.len(),
        root.size.saturating_sub(root.used_bytes)
    );
    out!("manifest:");
    for (k, v) in &root.manifest {
        out!("  {k}: {v}");
    }
    if files {
        out!("files:");
        for (path, f) in &root.files {
            match f {
                nanoimg::inspect::FileInfo::File { size, sha256, .. } => {
                    out!("  {path}  {size}  sha256 {sha256}")
                }
                nanoimg::inspect::FileInfo::Dir => out!("  {path}/"),
                nanoimg::inspect::FileInfo::Symlink { target } => out!("  {path} -> {target}"),
                nanoimg::inspect::FileInfo::Other => out!("  {path} (other)"),
            }
        }
    }
    Ok(())
}

/// Prints the differences; `Ok(true)` when the images differ.
pub fn diff(
    a: &std::path::Path,
    b: &std::path::Path,
    json: bool,
) -> Result<bool, nanoimg::BuildError> {
    let d = nanoimg::inspect::diff(a, b)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
        return Ok(d.differs());
    }
    if d.identical {
        out!("identical");
        return Ok(false);
    }
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
    for c in &d.changes {
        match (&c.a, &c.b) {
            (None, Some(v)) => out!("{} added: {} = {v}", c.area, c.name),
            (Some(v), None) => out!("{} removed: {} = {v}", c.area, c.name),
            _ => out!(
                "{} changed: {}: {} -> {}",
                c.area,
                c.name,
                show(&c.a),
                show(&c.b)
            ),
        }
    }
    if d.same_content_other_order {
        out!("same filesystem content, file data in a different on-disk order");
    } else if d.changes.is_empty() {
        out!("same content and layout; other bytes differ (log framing or padding)");
    }
    Ok(true)
}

pub fn extract(image: &std::path::Path, dir: &std::path::Path) -> Result<(), nanoimg::BuildError> {
    let s = nanoimg::inspect::extract(image, dir)?;
    out!(
        "extracted {} files ({} bytes), {} directories, {} symlinks into {}",
        s.files,
        s.bytes,
        s.dirs,
        s.symlinks,
        dir.display()
    );
    Ok(())
}
