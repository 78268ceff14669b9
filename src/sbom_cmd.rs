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
//! `nanoimg sbom IMAGE` makes the same document from a finished image alone
//! ([`from_image`]): every file of both filesystems hashed as the image holds it, the
//! Nanos release from the manifest's `NANOS_VERSION`/`NANOS_ARCH` (and its pin), and the
//! owning Debian packages from a dpkg database the image itself holds (an image built with
//! a container image's whole root); where each file came from is not recorded in an
//! image, so its origin is `unrecorded`.
//!
//! The documents need each file's SHA-1 (SPDX requires it) besides the SHA-256 the build
//! computed: every source is read once more, after the image is written, and its SHA-256
//! checked against the image's (a source changed meanwhile is an error).

use std::path::{Path, PathBuf};

use nanoimg_sbom::{Container, Database, Description, File, Nanos, Origin, Package, SbomError};

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
    #[error("SBOM: {0}")]
    Image(#[from] nanoimg_inspect::InspectError),
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
    nanos: Nanos,
    cwd: &Path,
    source_date_epoch: Option<&str>,
) -> Result<Description, SbomCmdError> {
    let roots = distinct_roots(report);
    let containers: Vec<Container> = roots
        .iter()
        .map(|(spec, r)| Container {
            reference: spec.to_string(),
            manifest_digest: r.manifest_digest.clone(),
        })
        .collect();
    let mut origins = Origins {
        report,
        roots: &roots,
        cwd,
        image_dbs: vec![None; roots.len()],
        host_db: None,
    };
    let mut files = Vec::with_capacity(report.files.len());
    for f in &report.files {
        let (sha256, sha1) = digests(report, f)?;
        let (origin, package) = origins.of(f)?;
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
        nanos,
        files,
        containers,
        created: nanoimg_sbom::created(source_date_epoch)?,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// The build's container images, each with the spec it was first given by.
fn distinct_roots(report: &BuildReport) -> Vec<(&str, &nanoimg_oci::Root)> {
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
    roots
}

/// Where the packed files of `report` came from, and the Debian packages owning them.
struct Origins<'a> {
    report: &'a BuildReport,
    roots: &'a [(&'a str, &'a nanoimg_oci::Root)],
    cwd: &'a Path,
    // The dpkg databases, read when first needed: one per image root, one for a host root.
    image_dbs: Vec<Option<Option<Database>>>,
    host_db: Option<Option<Database>>,
}

impl Origins<'_> {
    /// The origin of `f` (generated, an image's layer, or a host file) and its package.
    fn of(&mut self, f: &crate::ImageFile) -> Result<(Origin, Option<Package>), SbomCmdError> {
        let Some(host) = &f.source else {
            return Ok((Origin::Generated, None));
        };
        let in_image = self
            .roots
            .iter()
            .enumerate()
            .find_map(|(i, (_, r))| host.strip_prefix(&r.dir).ok().map(|rel| (i, rel)));
        match in_image {
            Some((i, rel)) => self.in_image(f, i, rel),
            None => {
                let package = self.host_package(f, host)?;
                Ok((Origin::Host(shown(host, self.cwd)), package))
            }
        }
    }

    /// `f`, taken from `rel` in the unpacked root of image `i`: that image's layer, and the
    /// package owning it in the image's dpkg database.
    fn in_image(
        &mut self,
        f: &crate::ImageFile,
        i: usize,
        rel: &Path,
    ) -> Result<(Origin, Option<Package>), SbomCmdError> {
        let root = self.roots[i].1;
        let db = match &mut self.image_dbs[i] {
            Some(db) => db,
            slot => slot.insert(Database::read(&root.dir)?),
        };
        let path = format!("/{}", rel.to_string_lossy());
        let mut package = None;
        if let Some(db) = db {
            package = db.owner(&path).or_else(|| db.owner(&f.path)).cloned();
        }
        let origin = Origin::Layer {
            container: i,
            layer: root.layer_of(rel).map(str::to_string),
            path,
        };
        Ok((origin, package))
    }

    /// The package owning the host file `host` (packed as `f`) in the target root's dpkg
    /// database, for a root filesystem file inside a target root that is not an image's.
    fn host_package(
        &mut self,
        f: &crate::ImageFile,
        host: &Path,
    ) -> Result<Option<Package>, SbomCmdError> {
        let report = self.report;
        let mut package = None;
        if !report.image_root && f.filesystem == "root" {
            if let Ok(rel) = host.strip_prefix(&report.target_root) {
                let db = match &mut self.host_db {
                    Some(db) => db,
                    slot => slot.insert(Database::read(&report.target_root)?),
                };
                if let Some(db) = db {
                    let path = format!("/{}", rel.to_string_lossy());
                    package = db.owner(&path).cloned();
                }
            }
        }
        Ok(package)
    }
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

/// The Nanos release `version` for `arch` as a package: where its tarball is published and
/// its SHA-256, from `lock` (what the build verified) or else its pin; neither for a release
/// that is not pinned, or an unknown version (`--kernel-dir`).
pub fn nanos(
    version: &str,
    arch: nanoimg_elf::Arch,
    lock: Option<&nanoimg_release::Lock>,
) -> Nanos {
    let mut n = Nanos {
        version: version.to_string(),
        arch: arch.ops_name().to_string(),
        ..Nanos::default()
    };
    if version.is_empty() {
        return n;
    }
    if let Some(r) = lock.and_then(|l| l.release(version, arch)) {
        n.download = Some(r.url.clone());
        n.tarball_sha256 = Some(r.sha256.clone());
    } else if let Some(pin) = nanoimg_release::find_pin(version, arch) {
        n.download = Some(pin.url);
        n.tarball_sha256 = pin.sha256;
    }
    n
}

/// Writes the SBOM of the build `options` made (`report`) to `path` atomically (nothing
/// there unless complete).
pub fn write(
    report: &BuildReport,
    options: &crate::BuildOptions,
    path: &Path,
    format: SbomFormat,
) -> Result<(), SbomCmdError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let release = match options.kernel.kernel_dir {
        // A kernel folder is not a release: nothing is known of a tarball.
        Some(_) => None,
        None => {
            let lock_file =
                crate::lock_path(options.kernel.lock.as_deref(), options.config.as_deref());
            Some(nanoimg_release::Lock::load(&lock_file).unwrap_or_default())
        }
    };
    let nanos = match &release {
        Some(lock) => nanos(&report.nanos_version, report.plan.arch, Some(lock)),
        None => Nanos {
            version: report.nanos_version.clone(),
            arch: report.plan.arch.ops_name().to_string(),
            ..Nanos::default()
        },
    };
    let bytes = render(&describe(report, nanos, &cwd, epoch.as_deref())?, format);
    write_document(path, &bytes)
}

/// A finished image's root filesystem as the root a package database is read from.
struct ImageRoot<'a>(&'a mut nanoimg_inspect::Contents, &'a Path);

impl nanoimg_sbom::RootFiles for ImageRoot<'_> {
    fn read(&mut self, guest: &str, max: u64) -> Result<Option<Vec<u8>>, SbomError> {
        self.0.read_root_file(guest, max).map_err(|e| match e {
            nanoimg_inspect::InspectError::TooLarge { limit, .. } => SbomError::Limit {
                path: guest.to_string(),
                what: "its size",
                limit,
            },
            e => SbomError::InRoot {
                root: self.1.to_path_buf(),
                path: guest.to_string(),
                reason: e.to_string(),
            },
        })
    }
}

/// The value of `key` in the manifest's `environment`.
fn manifest_env(manifest: &nanoimg_tuple::Tuple, key: &str) -> Option<String> {
    manifest
        .get(&b"environment"[..])
        .and_then(nanoimg_tuple::Value::as_tuple)
        .and_then(|e| e.get(key.as_bytes()))
        .and_then(nanoimg_tuple::Value::as_bytes)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The description of the finished image at `image`, from what it holds (module docs).
pub fn from_image(
    image: &Path,
    source_date_epoch: Option<&str>,
) -> Result<Description, SbomCmdError> {
    let mut contents = nanoimg_inspect::contents(image)?;
    let db = Database::read_from(&mut ImageRoot(&mut contents, image))?;
    let version = manifest_env(&contents.manifest, "NANOS_VERSION").unwrap_or_default();
    let arch_name = manifest_env(&contents.manifest, "NANOS_ARCH").unwrap_or_default();
    let nanos = match arch_name.parse::<nanoimg_elf::Arch>() {
        Ok(arch) => nanos(&version, arch, None),
        Err(_) => Nanos {
            version,
            arch: arch_name,
            ..Nanos::default()
        },
    };
    let files = contents
        .files
        .iter()
        .map(|f| File {
            filesystem: f.filesystem.to_string(),
            path: f.path.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
            sha1: f.sha1.clone(),
            origin: Origin::Unrecorded,
            package: match (&db, f.filesystem) {
                (Some(db), "root") => db.owner(&f.path).cloned(),
                _ => None,
            },
        })
        .collect();
    Ok(Description {
        name: image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: contents.file_sha256.clone(),
        nanos,
        files,
        containers: Vec::new(),
        created: nanoimg_sbom::created(source_date_epoch)?,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// `nanoimg sbom IMAGE`: the document of a finished image, to `output` (atomically) or to
/// stdout.
pub fn sbom_of_image(
    image: &Path,
    output: Option<&Path>,
    format: SbomFormat,
) -> Result<(), SbomCmdError> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let bytes = render(&from_image(image, epoch.as_deref())?, format);
    match output {
        Some(path) => write_document(path, &bytes),
        None => {
            use std::io::Write;
            std::io::stdout()
                .lock()
                .write_all(&bytes)
                .map_err(|source| SbomCmdError::Write {
                    path: PathBuf::from("(standard output)"),
                    source,
                })
        }
    }
}

/// `bytes` to `path`, atomically.
fn write_document(path: &Path, bytes: &[u8]) -> Result<(), SbomCmdError> {
    nanoimg_atomic::write_file(
        path,
        |file| {
            use std::io::Write;
            file.write_all(bytes)
        },
        |_, e| e,
    )
    .map_err(|source| SbomCmdError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_release_is_a_package_with_its_tarball() {
        let newest = nanoimg_release::default_pin(nanoimg_elf::Arch::X86_64);
        let n = nanos(&newest.version, nanoimg_elf::Arch::X86_64, None);
        assert_eq!(n.arch, "amd64");
        assert_eq!(n.download.as_deref(), Some(newest.url.as_str()));
        assert_eq!(n.tarball_sha256, newest.sha256);
        let lock = nanoimg_release::Lock {
            releases: vec![nanoimg_release::LockedRelease {
                version: newest.version.clone(),
                arch: nanoimg_elf::Arch::X86_64,
                url: "https://example.invalid/nanos.tar.gz".into(),
                sha256: "ab".repeat(32),
                files: Default::default(),
            }],
            ..Default::default()
        };
        let n = nanos(&newest.version, nanoimg_elf::Arch::X86_64, Some(&lock));
        assert_eq!(n.tarball_sha256.as_deref(), Some("ab".repeat(32).as_str()));
        let spdx = String::from_utf8(render(
            &Description {
                nanos: n,
                files: vec![File {
                    filesystem: "boot".into(),
                    path: "/kernel".into(),
                    size: 1,
                    sha256: "00".into(),
                    sha1: "00".into(),
                    origin: Origin::Unrecorded,
                    package: None,
                }],
                ..Description::default()
            },
            SbomFormat::Spdx,
        ))
        .unwrap();
        assert!(spdx.contains("\"downloadLocation\": \"https://example.invalid/nanos.tar.gz\""));
        let unknown = nanos("0.0.1", nanoimg_elf::Arch::X86_64, None);
        assert_eq!((unknown.download, unknown.tarball_sha256), (None, None));
    }
}
