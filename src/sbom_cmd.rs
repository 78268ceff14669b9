//! `nanoimg build --sbom FILE [--sbom-format spdx|cyclonedx]`: the SBOM of a build
//! ([`nanoimg_sbom`]) from its [`BuildReport`], written atomically after the image.
//!
//! Each packed file's origin comes from the report: a file under a container image's
//! unpacked root is that image's (its path in the root and the layer that last wrote it,
//! from `Root::layer_of`); any other host file is named by its path (relative to the
//! build's folder when inside it, so builds in different folders give the same document);
//! files with no host source are nanoimg's generated ones. The owning Debian package comes
//! from the dpkg database of the root the file was taken from (the image's root, or the
//! target root / `/` for host files inside it).
//!
//! The documents need each file's SHA-1 (SPDX requires it) besides the SHA-256 the build
//! computed: every source is read once more, after the image is written, and its SHA-256
//! checked against the image's (a source changed meanwhile is an error).

use std::path::{Path, PathBuf};

use nanoimg_sbom::{Container, Database, Description, File, Nanos, Origin, SbomError};

use crate::BuildReport;

/// The document's format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    #[default]
    Spdx,
    /// CycloneDX 1.5 JSON.
    Cyclonedx,
}

impl std::str::FromStr for SbomFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spdx" | "spdx-json" => Ok(SbomFormat::Spdx),
            "cyclonedx" | "cyclonedx-json" => Ok(SbomFormat::Cyclonedx),
            _ => Err(format!("{s:?} is not an SBOM format: spdx or cyclonedx")),
        }
    }
}

/// Why an SBOM cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum SbomCmdError {
    #[error("SBOM: {0}")]
    Sbom(#[from] SbomError),
    #[error("SBOM: cannot read {path}, packed as {image_path}: {source}")]
    Source {
        path: PathBuf,
        image_path: String,
        source: std::io::Error,
    },
    #[error("SBOM: {path} (packed as {image_path}) changed while the image was built: its SHA-256 is now {now}, the image holds {packed}")]
    Changed {
        path: PathBuf,
        image_path: String,
        now: String,
        packed: String,
    },
    #[error("SBOM: the generated file {image_path} is not in the plan")]
    NoGenerated { image_path: String },
    #[error("cannot write the SBOM {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `path` relative to `cwd` when inside it, else as it is.
fn shown(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The description of what `report` built, for [`nanoimg_sbom`]; host paths shown relative
/// to `cwd` when inside it; the time stamp from `source_date_epoch`.
pub fn describe(
    report: &BuildReport,
    cwd: &Path,
    source_date_epoch: Option<&str>,
) -> Result<Description, SbomCmdError> {
    // One entry per distinct image (the same image may be the target root and the source).
    let mut roots: Vec<(&str, &nanoimg_oci::Root)> = Vec::new();
    for (spec, root) in &report.containers {
        if !roots
            .iter()
            .any(|(_, r)| r.manifest_digest == root.manifest_digest)
        {
            roots.push((spec, root));
        }
    }
    let containers: Vec<Container> = roots
        .iter()
        .map(|(spec, r)| Container {
            reference: spec.to_string(),
            manifest_digest: r.manifest_digest.clone(),
        })
        .collect();
    // The dpkg databases, read when first needed: one per image root, one for a host root.
    let mut image_dbs: Vec<Option<Option<Database>>> = vec![None; roots.len()];
    let mut host_db: Option<Option<Database>> = None;
    let mut files = Vec::with_capacity(report.files.len());
    for f in &report.files {
        let (sha256, sha1) = digests(report, f)?;
        let mut package = None;
        let origin = match &f.source {
            None => Origin::Generated,
            Some(host) => {
                let in_image = roots
                    .iter()
                    .enumerate()
                    .find_map(|(i, (_, r))| host.strip_prefix(&r.dir).ok().map(|rel| (i, rel)));
                match in_image {
                    Some((i, rel)) => {
                        let root = roots[i].1;
                        let db = match &mut image_dbs[i] {
                            Some(db) => db,
                            slot => slot.insert(Database::read(&root.dir)?),
                        };
                        let path = format!("/{}", rel.to_string_lossy());
                        if let Some(db) = db {
                            package = db.owner(&path).or_else(|| db.owner(&f.path)).cloned();
                        }
                        Origin::Layer {
                            container: i,
                            layer: root.layer_of(rel).map(str::to_string),
                            path,
                        }
                    }
                    None => {
                        if !report.image_root && f.filesystem == "root" {
                            if let Ok(rel) = host.strip_prefix(&report.target_root) {
                                let db = match &mut host_db {
                                    Some(db) => db,
                                    slot => slot.insert(Database::read(&report.target_root)?),
                                };
                                if let Some(db) = db {
                                    let path = format!("/{}", rel.to_string_lossy());
                                    package = db.owner(&path).cloned();
                                }
                            }
                        }
                        Origin::Host(shown(host, cwd))
                    }
                }
            }
        };
        files.push(File {
            filesystem: f.filesystem.to_string(),
            path: f.path.clone(),
            size: f.size,
            sha256,
            sha1,
            origin,
            package,
        });
    }
    Ok(Description {
        name: report.plan.image_name.clone(),
        sha256: report.file.sha256.clone(),
        nanos: Nanos {
            version: report.nanos_version.clone(),
            arch: report.plan.arch.ops_name().to_string(),
        },
        files,
        containers,
        created: nanoimg_sbom::created(source_date_epoch)?,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// The SHA-256 and SHA-1 of a packed file, from its source (checked against the image's
/// SHA-256 when the build computed it).
fn digests(report: &BuildReport, f: &crate::ImageFile) -> Result<(String, String), SbomCmdError> {
    let (sha256, sha1) = match &f.source {
        Some(host) => nanoimg_sbom::digest_file(host).map_err(|source| SbomCmdError::Source {
            path: host.clone(),
            image_path: f.path.clone(),
            source,
        })?,
        None => {
            let tree = match f.filesystem {
                "boot" => &report.plan.boot,
                _ => &report.plan.root,
            };
            match tree.get(f.path.as_bytes()) {
                Some(nanoimg_tfs::Node::File(nanoimg_tfs::FileSource::Bytes(b))) => {
                    nanoimg_sbom::digest_bytes(b)
                }
                _ => {
                    return Err(SbomCmdError::NoGenerated {
                        image_path: f.path.clone(),
                    })
                }
            }
        }
    };
    if let Some(packed) = &f.sha256 {
        if *packed != sha256 {
            return Err(SbomCmdError::Changed {
                path: f.source.clone().unwrap_or_default(),
                image_path: f.path.clone(),
                now: sha256,
                packed: packed.clone(),
            });
        }
    }
    Ok((sha256, sha1))
}

/// The document for `d` in `format`.
pub fn render(d: &Description, format: SbomFormat) -> Vec<u8> {
    match format {
        SbomFormat::Spdx => nanoimg_sbom::spdx::write(d),
        SbomFormat::Cyclonedx => nanoimg_sbom::cyclonedx::write(d),
    }
}

/// Writes the SBOM of `report` to `path` atomically (nothing there unless complete).
pub fn write(report: &BuildReport, path: &Path, format: SbomFormat) -> Result<(), SbomCmdError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let bytes = render(&describe(report, &cwd, epoch.as_deref())?, format);
    nanoimg_atomic::write_file(
        path,
        |file| {
            use std::io::Write;
            file.write_all(&bytes)
        },
        |_, e| e,
    )
    .map_err(|source| SbomCmdError::Write {
        path: path.to_path_buf(),
        source,
    })
}
