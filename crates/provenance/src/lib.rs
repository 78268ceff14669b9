//! The provenance of a nanoimg image: an [in-toto Statement v1] whose predicate is a
//! [SLSA v1 provenance], written by `nanoimg build --provenance FILE` and read back by
//! `nanoimg verify IMAGE --provenance FILE`, which rebuilds the image from it.
//!
//! - `subject`: the image file (its file name, its `sha256`).
//! - `predicate.buildDefinition.buildType`: [`BUILD_TYPE`]. Its `externalParameters`
//!   ([`ExternalParameters`]) are every option that shapes the image's bytes, as given on the
//!   command line (paths as written, so relative to the working directory of the build);
//!   `resolvedDependencies` every input with its digest: the program, the config (its bytes
//!   also inline, base64 in `content`), each host file packed (`uri` `file:PATH`, path
//!   relative to the working directory when inside it, `annotations.imagePath`), the Nanos
//!   release (its tarball's URL and SHA-256 and the kernel's and boot.img's in
//!   `annotations`) or each file of a `--kernel-dir` folder, and each container image
//!   (`uri` the spec as given, `digest.sha256` its manifest digest, `annotations.platform`).
//!   Files inside a container image are covered by the image's digest and not listed.
//! - `predicate.runDetails.builder`: `id` [`BUILDER_ID`], `version.nanoimg` the version;
//!   `metadata.startedOn` only when `SOURCE_DATE_EPOCH` is set (its time, RFC 3339).
//!
//! The bytes are deterministic: fields in a fixed order, dependencies sorted, no time or
//! host-specific value unless given, so the same build from two folders gives the same file.
//!
//! [in-toto Statement v1]: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
//! [SLSA v1 provenance]: https://slsa.dev/spec/v1.0/provenance

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The in-toto Statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA provenance predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type of a `nanoimg build`: `externalParameters` are [`ExternalParameters`],
/// rebuilt by `nanoimg verify` (documented in the README, "What's inside, and proving it").
pub const BUILD_TYPE: &str = "https://github.com/nanoimg/nanoimg/build-types/build/v1";
/// The builder: nanoimg itself, run by whoever built the image.
pub const BUILDER_ID: &str = "https://github.com/nanoimg/nanoimg";

/// An in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Provenance,
}

/// An in-toto ResourceDescriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default)]
    pub digest: BTreeMap<String, String>,
    /// The resource's bytes, base64 (the config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ResourceDescriptor {
    /// The `sha256` digest, if recorded.
    pub fn sha256(&self) -> Option<&str> {
        self.digest.get("sha256").map(String::as_str)
    }

    /// The path of a `file:` URI.
    pub fn file_path(&self) -> Option<PathBuf> {
        self.uri
            .as_deref()
            .and_then(|u| u.strip_prefix("file:"))
            .map(PathBuf::from)
    }
}

/// The SLSA v1 provenance predicate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    #[serde(default)]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetails {
    pub builder: Builder,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    pub id: String,
    #[serde(default)]
    pub version: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
}

impl Metadata {
    fn is_empty(&self) -> bool {
        self.started_on.is_none()
    }
}

/// Every option of `nanoimg build` that shapes the image, as given (paths as written).
/// All fields are always written, so a statement says explicitly what was not given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalParameters {
    /// PROGRAM (with `fromImage`: its path inside the image).
    pub program: Option<String>,
    /// `-c`.
    pub config: Option<String>,
    /// `-a` (replaces the config's `Args`), if given.
    pub args: Option<Vec<String>>,
    /// `-e K=V`, in order.
    pub envs: Vec<(String, String)>,
    /// `--mounts VOLUME:PATH`, in order.
    pub mounts: Vec<(String, String)>,
    /// `-i`.
    pub image_name: Option<String>,
    pub keep_mount_ids: bool,
    /// `--uuid`, 8-4-4-4-12 hex.
    pub uuid: Option<String>,
    pub seed: Option<String>,
    pub uefi: bool,
    /// `--arch`, as ops spells it.
    pub arch: Option<String>,
    pub from_image: Option<String>,
    pub target_root: Option<String>,
    pub prune: bool,
    /// `--platform` (or the one `--arch` implied), `os/arch[/variant]`.
    pub platform: Option<String>,
    /// `--library`.
    pub libraries: Vec<String>,
    /// `--format`, if given (else the config's `DiskFormat`, else raw).
    pub format: Option<String>,
    pub nanos_version: Option<String>,
    pub kernel_dir: Option<String>,
    pub ld_library_path: bool,
    pub allow_unpinned: bool,
}

/// Why a statement cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("cannot read the provenance {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the provenance {path} is not an in-toto statement nanoimg reads: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the provenance {path} has {field} {found:?}, not {expected:?}")]
    Type {
        path: PathBuf,
        field: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("the provenance {path} has no subject with a sha256 digest")]
    NoSubject { path: PathBuf },
    #[error("cannot write the provenance {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Statement {
    /// A statement about the image `name` with `sha256`.
    pub fn new(
        name: &str,
        sha256: &str,
        parameters: ExternalParameters,
        mut dependencies: Vec<ResourceDescriptor>,
        version: &str,
        started_on: Option<String>,
    ) -> Statement {
        dependencies.sort_by(|a, b| (&a.name, &a.uri).cmp(&(&b.name, &b.uri)));
        dependencies.dedup();
        Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: vec![ResourceDescriptor {
                name: Some(name.into()),
                digest: BTreeMap::from([("sha256".into(), sha256.into())]),
                ..Default::default()
            }],
            predicate_type: PREDICATE_TYPE.into(),
            predicate: Provenance {
                build_definition: BuildDefinition {
                    build_type: BUILD_TYPE.into(),
                    external_parameters: parameters,
                    resolved_dependencies: dependencies,
                },
                run_details: RunDetails {
                    builder: Builder {
                        id: BUILDER_ID.into(),
                        version: BTreeMap::from([("nanoimg".into(), version.into())]),
                    },
                    metadata: Metadata { started_on },
                },
            },
        }
    }

    /// The subject's SHA-256 (hex).
    pub fn subject_sha256(&self) -> Option<&str> {
        self.subject.iter().find_map(ResourceDescriptor::sha256)
    }

    /// The statement's bytes: pretty JSON and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs, strings and string maps cannot fail.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Writes the statement at `path` atomically (complete or absent).
    pub fn write(&self, path: &Path) -> Result<(), ProvenanceError> {
        use std::io::Write;
        let bytes = self.to_bytes();
        nanoimg_atomic::write_file(path, |file| file.write_all(&bytes), |_, source| source).map_err(
            |source| ProvenanceError::Write {
                path: path.to_path_buf(),
                source,
            },
        )
    }

    /// Reads a statement written by [`Statement::write`], checking its types.
    pub fn read(path: &Path) -> Result<Statement, ProvenanceError> {
        let bytes = std::fs::read(path).map_err(|source| ProvenanceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let s: Statement =
            serde_json::from_slice(&bytes).map_err(|source| ProvenanceError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let checks = [
            ("_type", &s.statement_type, STATEMENT_TYPE),
            ("predicateType", &s.predicate_type, PREDICATE_TYPE),
            (
                "buildType",
                &s.predicate.build_definition.build_type,
                BUILD_TYPE,
            ),
        ];
        for (field, found, expected) in checks {
            if found != expected {
                return Err(ProvenanceError::Type {
                    path: path.to_path_buf(),
                    field,
                    found: found.clone(),
                    expected,
                });
            }
        }
        if s.subject_sha256().is_none() {
            return Err(ProvenanceError::NoSubject {
                path: path.to_path_buf(),
            });
        }
        Ok(s)
    }
}

/// The SHA-256 (hex) of a file's bytes, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// The SHA-256 (hex) of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes` in base64 (standard alphabet, padded), for [`ResourceDescriptor::content`].
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of base64 `text`, if it is base64.
pub fn from_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// `SOURCE_DATE_EPOCH` (seconds since 1970, UTC) as RFC 3339 (`2023-11-14T22:13:20Z`), or
/// `None` when it is not a non-negative integer.
pub fn rfc3339(epoch: &str) -> Option<String> {
    // RFC 3339 ends with year 9999.
    let secs: u64 = epoch.trim().parse().ok().filter(|s| *s < 253_402_300_800)?;
    let t = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))?;
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_epochs() {
        assert_eq!(rfc3339("0").as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339("1700000000").as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            rfc3339("951782400").as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(rfc3339("-1"), None);
        assert_eq!(rfc3339("soon"), None);
        assert_eq!(rfc3339("253402300800"), None);
        assert_eq!(rfc3339("18446744073709551615"), None);
    }

    #[test]
    fn written_statements_read_back_and_are_deterministic() {
        let d = tempfile::tempdir().unwrap();
        let deps = vec![
            ResourceDescriptor {
                name: Some("program".into()),
                uri: Some("file:prover".into()),
                digest: BTreeMap::from([("sha256".into(), "ab".into())]),
                ..Default::default()
            },
            ResourceDescriptor {
                name: Some("config".into()),
                uri: Some("file:config.json".into()),
                digest: BTreeMap::from([("sha256".into(), "cd".into())]),
                content: Some(base64(b"{}")),
                ..Default::default()
            },
        ];
        let s = Statement::new(
            "app.img",
            "ff",
            ExternalParameters::default(),
            deps.clone(),
            "0.1.0",
            None,
        );
        let mut reversed = deps;
        reversed.reverse();
        let t = Statement::new(
            "app.img",
            "ff",
            ExternalParameters::default(),
            reversed,
            "0.1.0",
            None,
        );
        assert_eq!(s.to_bytes(), t.to_bytes());
        let p = d.path().join("p.json");
        s.write(&p).unwrap();
        let back = Statement::read(&p).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.subject_sha256(), Some("ff"));
        let v: serde_json::Value = serde_json::from_slice(&s.to_bytes()).unwrap();
        assert_eq!(v["_type"], STATEMENT_TYPE);
        assert_eq!(v["predicateType"], PREDICATE_TYPE);
        assert!(v["predicate"]["runDetails"].get("metadata").is_none());
        assert_eq!(
            v["predicate"]["buildDefinition"]["resolvedDependencies"][0]["name"],
            "config"
        );
        std::fs::write(&p, b"{\"_type\": 1}").unwrap();
        assert!(Statement::read(&p)
            .unwrap_err()
            .to_string()
            .contains("not an in-toto statement"));
    }
}
