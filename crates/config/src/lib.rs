//! The ops `config.json`, as nanoimg reads it.
//!
//! Field names and meanings are ops's (`types/config.go`); unknown fields are an error, as in
//! ops, which decodes with unknown fields disallowed. This crate only parses and checks the
//! file; what each field does to the image is decided by `nanoimg-plan`.
//!
//! Supported so far: `Program`, `Args`, `Env`, `ManifestPassthrough`, `BaseVolumeSz`,
//! `TargetRoot`, `NanosVersion`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// An ops configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Config {
    /// The program's path inside the image, and its argv\[0\].
    pub program: Option<String>,
    /// Arguments after argv\[0\].
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Keys copied into the manifest as they are (strings, arrays and objects of them).
    #[serde(default)]
    pub manifest_passthrough: BTreeMap<String, serde_json::Value>,
    /// Smallest total image size: digits with an optional k, m or g suffix (powers of 1024).
    pub base_volume_sz: Option<String>,
    /// A directory to resolve the program's interpreter and libraries in, instead of `/`.
    pub target_root: Option<String>,
    /// The pinned Nanos release to build with (the newest pinned one by default).
    pub nanos_version: Option<String>,
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not a valid ops config: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config {path}: BaseVolumeSz {value:?} is not a size (digits with an optional k, m or g suffix)")]
    BadSize { path: PathBuf, value: String },
}

impl Config {
    /// Reads and parses the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text read from `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = serde_json::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        config.base_volume_size(path)?;
        Ok(config)
    }

    /// `BaseVolumeSz` in bytes, rounded up to a sector, if set.
    pub fn base_volume_size(&self, path: &Path) -> Result<Option<u64>, ConfigError> {
        self.base_volume_sz
            .as_deref()
            .map(|v| {
                parse_size(v).ok_or_else(|| ConfigError::BadSize {
                    path: path.to_path_buf(),
                    value: v.to_string(),
                })
            })
            .transpose()
    }
}

/// Parses an ops size: digits and an optional `k`, `m` or `g` (any case) multiplying by
/// 1024, 1024² or 1024³, rounded up to a multiple of 512 (`SetFileSystemSize` in ops).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.chars().last()?.to_ascii_lowercase() {
        'k' => (&s[..s.len() - 1], 10),
        'm' => (&s[..s.len() - 1], 20),
        'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(1 << shift)?
        .checked_next_multiple_of(512)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("config.json"))
    }

    #[test]
    fn reads_the_fields_it_knows() {
        let c = parse(
            r#"{"Program": "prover", "Args": ["a", "b c"], "Env": {"RUST_LOG": "debug"},
                "ManifestPassthrough": {"readonly_rootfs": "true"}, "BaseVolumeSz": "64m"}"#,
        )
        .unwrap();
        assert_eq!(c.program.as_deref(), Some("prover"));
        assert_eq!(c.args, ["a", "b c"]);
        assert_eq!(c.env["RUST_LOG"], "debug");
        assert_eq!(c.manifest_passthrough["readonly_rootfs"], "true");
        assert_eq!(c.base_volume_size(Path::new("c")).unwrap(), Some(64 << 20));
    }

    #[test]
    fn unknown_fields_and_bad_json_name_the_problem() {
        let e = parse("{\n  \"Programme\": \"x\"\n}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `Programme`") && e.contains("line 2"),
            "{e}"
        );
        assert!(e.contains("config.json"), "{e}");
        let e = parse("not json").unwrap_err().to_string();
        assert!(e.contains("config.json is not a valid ops config"), "{e}");
        let e = parse(r#"{"BaseVolumeSz": "12q"}"#).unwrap_err().to_string();
        assert!(e.contains("\"12q\""), "{e}");
    }

    #[test]
    fn sizes_as_ops_reads_them() {
        assert_eq!(parse_size("100"), Some(512));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("g"), None);
        assert_eq!(parse_size("1.5g"), None);
        assert_eq!(parse_size("99999999999999999999g"), None);
    }
}
