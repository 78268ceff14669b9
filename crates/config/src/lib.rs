//! The ops `config.json`, as nanoimg reads it.
//!
//! Every field of ops's `types.Config` (with `RunConfig`, `CloudConfig`, `Nics`, `Tags`) is
//! known. Keys match case-insensitively, as Go's `encoding/json` matches them; a key ops does
//! not know is an error naming the key and its line, as ops decodes with unknown fields
//! disallowed; a value of the wrong type is an error naming its path. What each field does
//! to the image is decided by `nanoimg-plan`; [`Config::ignored_fields`] lists the fields
//! present that only matter to deploying or running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// An ops configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase", default)]
pub struct Config {
    /// The program's path inside the image, and its argv\[0\].
    pub program: Option<String>,
    /// Arguments after argv\[0\].
    pub args: Vec<String>,
    pub disable_args_copy: bool,
    pub env: BTreeMap<String, String>,
    /// Host files copied to the same path in the image (relative to the working directory).
    pub files: Vec<String>,
    /// Host directories copied recursively (relative to the working directory).
    pub dirs: Vec<String>,
    /// Host glob → image directory (relative keys: relative to the config's directory).
    pub map_dirs: BTreeMap<String, String>,
    /// Volume (label, UUID or `%N`) → mount point.
    pub mounts: BTreeMap<String, String>,
    /// Keys copied into the manifest as they are.
    pub manifest_passthrough: BTreeMap<String, serde_json::Value>,
    /// Smallest total image size: digits with an optional k, m or g suffix (powers of 1024).
    pub base_volume_sz: Option<String>,
    /// boot.img to use instead of the release's.
    pub boot: Option<String>,
    /// kernel.img to use instead of the release's.
    pub kernel: Option<String>,
    pub uefi: bool,
    pub uefi_boot: Option<String>,
    pub klib_dir: Option<String>,
    pub klibs: Vec<String>,
    pub name_servers: Vec<String>,
    /// The pinned Nanos release to build with (the newest pinned one by default).
    pub nanos_version: Option<String>,
    pub nightly_build: bool,
    pub no_trace: Vec<String>,
    pub debugflags: Vec<String>,
    pub reboot_on_exit: bool,
    /// A directory to resolve the program's interpreter and libraries in, instead of `/`.
    pub target_root: Option<String>,
    /// nanoimg only (ops has no such field): sonames (or paths) packed with their own
    /// dependencies as if they were `DT_NEEDED` of the program — the libraries it `dlopen`s.
    pub libraries: Vec<String>,
    /// nanoimg only (ops picks the format from the target cloud and converts with
    /// `qemu-img`): the disk format `nanoimg build` writes — `raw`, `qcow2`, `vhd`, `vmdk`,
    /// `vhdx` or `gce`; `--format` overrides it.
    pub disk_format: Option<String>,
    #[serde(rename = "TFSv4")]
    pub tfs_v4: bool,
    pub run_config: RunConfig,
    pub cloud_config: CloudConfig,
    // Fields that do not change a locally built image.
    pub build_dir: Option<String>,
    pub target_config: BTreeMap<String, String>,
    pub force: bool,
    #[serde(rename = "home")]
    pub home: Option<String>,
    pub program_path: Option<String>,
    pub local_files_parent_directory: Option<String>,
    pub version: Option<String>,
    pub language: Option<String>,
    pub description: Option<String>,
    pub volumes_dir: Option<String>,
    #[serde(rename = "PackageBaseURL")]
    pub package_base_url: Option<String>,
    #[serde(rename = "PackageManifestURL")]
    pub package_manifest_url: Option<String>,
}

/// ops's `RunConfig`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase", default)]
pub struct RunConfig {
    #[serde(rename = "IPAddress")]
    pub ip_address: Option<String>,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: Option<String>,
    pub gateway: Option<String>,
    pub net_mask: Option<String>,
    pub nics: Vec<Nic>,
    pub ports: Vec<String>,
    pub image_name: Option<String>,
    // Run-time only.
    pub accel: bool,
    pub at_exit: Option<String>,
    pub bridged: bool,
    #[serde(rename = "BridgeIPAddress")]
    pub bridge_ip_address: Option<String>,
    pub bridge_name: Option<String>,
    #[serde(rename = "CanIPForward")]
    pub can_ip_forward: bool,
    #[serde(rename = "CPUs")]
    pub cpus: i64,
    #[serde(rename = "GPUs")]
    pub gpus: i64,
    #[serde(rename = "GPUType")]
    pub gpu_type: Option<String>,
    pub debug: bool,
    pub gdb_port: i64,
    pub instance_group: Option<String>,
    pub instance_name: Option<String>,
    pub kernel: Option<String>,
    pub memory: Option<String>,
    pub mgmt: Option<String>,
    pub vga: bool,
    pub mounts: Vec<String>,
    pub attach_volume_on_instance_create: bool,
    pub background: bool,
    pub background_detach: bool,
    #[serde(rename = "QMP")]
    pub qmp: bool,
    pub show_debug: bool,
    pub show_errors: bool,
    pub show_warnings: bool,
    #[serde(rename = "JSON")]
    pub json: bool,
    pub tap_name: Option<String>,
    #[serde(rename = "UDPPorts")]
    pub udp_ports: Vec<String>,
    pub verbose: bool,
    pub volume_size_in_gb: i64,
    pub threads_per_core: i64,
}

/// One network interface of `RunConfig.Nics`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase", default)]
pub struct Nic {
    #[serde(rename = "IPAddress")]
    pub ip_address: Option<String>,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: Option<String>,
    pub net_mask: Option<String>,
    pub gateway: Option<String>,
    pub bridge_name: Option<String>,
}

/// ops's `CloudConfig` (`ProviderConfig`): deploy-time only, except `ImageName`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase", default)]
pub struct CloudConfig {
    pub image_name: Option<String>,
    pub bucket_name: Option<String>,
    pub bucket_namespace: Option<String>,
    #[serde(rename = "ConfidentialVM")]
    pub confidential_vm: bool,
    #[serde(rename = "DedicatedHostID")]
    pub dedicated_host_id: Option<String>,
    pub domain_name: Option<String>,
    #[serde(rename = "StaticIP")]
    pub static_ip: Option<String>,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    pub flavor: Option<String>,
    pub image_type: Option<String>,
    pub instance_profile: Option<String>,
    #[serde(rename = "KMS")]
    pub kms: Option<String>,
    pub platform: Option<String>,
    #[serde(rename = "ProjectID")]
    pub project_id: Option<String>,
    pub root_volume: serde_json::Value,
    pub security_group: Option<String>,
    pub skip_import_verify: bool,
    pub spot: bool,
    pub subnet: Option<String>,
    pub tags: Vec<serde_json::Value>,
    pub user_data: Option<String>,
    #[serde(rename = "VPC")]
    pub vpc: Option<String>,
    pub zone: Option<String>,
}

/// The JSON names of each struct's fields, for case-insensitive matching.
const CONFIG_FIELDS: &[&str] = &[
    "Program",
    "Args",
    "DisableArgsCopy",
    "Env",
    "Files",
    "Dirs",
    "MapDirs",
    "Mounts",
    "ManifestPassthrough",
    "BaseVolumeSz",
    "Boot",
    "Kernel",
    "Uefi",
    "UefiBoot",
    "KlibDir",
    "Klibs",
    "NameServers",
    "NanosVersion",
    "NightlyBuild",
    "NoTrace",
    "Debugflags",
    "RebootOnExit",
    "TargetRoot",
    "Libraries",
    "DiskFormat",
    "TFSv4",
    "RunConfig",
    "CloudConfig",
    "BuildDir",
    "TargetConfig",
    "Force",
    "home",
    "ProgramPath",
    "LocalFilesParentDirectory",
    "Version",
    "Language",
    "Description",
    "VolumesDir",
    "PackageBaseURL",
    "PackageManifestURL",
];
const RUN_CONFIG_FIELDS: &[&str] = &[
    "IPAddress",
    "IPv6Address",
    "Gateway",
    "NetMask",
    "Nics",
    "Ports",
    "ImageName",
    "Accel",
    "AtExit",
    "Bridged",
    "BridgeIPAddress",
    "BridgeName",
    "CanIPForward",
    "CPUs",
    "GPUs",
    "GPUType",
    "Debug",
    "GdbPort",
    "InstanceGroup",
    "InstanceName",
    "Kernel",
    "Memory",
    "Mgmt",
    "Vga",
    "Mounts",
    "AttachVolumeOnInstanceCreate",
    "Background",
    "BackgroundDetach",
    "QMP",
    "ShowDebug",
    "ShowErrors",
    "ShowWarnings",
    "JSON",
    "TapName",
    "UDPPorts",
    "Verbose",
    "VolumeSizeInGb",
    "ThreadsPerCore",
];
const NIC_FIELDS: &[&str] = &[
    "IPAddress",
    "IPv6Address",
    "NetMask",
    "Gateway",
    "BridgeName",
];
const CLOUD_CONFIG_FIELDS: &[&str] = &[
    "ImageName",
    "BucketName",
    "BucketNamespace",
    "ConfidentialVM",
    "DedicatedHostID",
    "DomainName",
    "StaticIP",
    "EnableIPv6",
    "Flavor",
    "ImageType",
    "InstanceProfile",
    "KMS",
    "Platform",
    "ProjectID",
    "RootVolume",
    "SecurityGroup",
    "SkipImportVerify",
    "Spot",
    "Subnet",
    "Tags",
    "UserData",
    "VPC",
    "Zone",
];

/// Top-level fields that do not change a locally built image (package, deploy and run
/// settings). `RunConfig` and `CloudConfig` fields are ignored except those below.
const IGNORED_FIELDS: &[&str] = &[
    "DisableArgsCopy",
    "BuildDir",
    "TargetConfig",
    "Force",
    "home",
    "ProgramPath",
    "LocalFilesParentDirectory",
    "Version",
    "Language",
    "Description",
    "VolumesDir",
    "PackageBaseURL",
    "PackageManifestURL",
];
/// The `RunConfig` fields that do shape the image (network keys, `OPS_PORT`, image name).
const RUN_CONFIG_IMAGE_FIELDS: &[&str] = &[
    "IPAddress",
    "IPv6Address",
    "Gateway",
    "NetMask",
    "Nics",
    "Ports",
    "ImageName",
];

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not valid JSON: {source}")]
    Syntax {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config {path}: unknown field `{field}` at line {line}")]
    UnknownField {
        path: PathBuf,
        field: String,
        line: usize,
    },
    #[error("config {path}: {field}{at}: {message}", at = line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Type {
        path: PathBuf,
        field: String,
        line: Option<usize>,
        message: String,
    },
    #[error("config {path}: BaseVolumeSz {value:?} is not a size (digits with an optional k, m or g suffix)")]
    BadSize { path: PathBuf, value: String },
}

/// The line of the first `"key"` in `text` (1-based).
fn line_of(text: &str, key: &str) -> Option<usize> {
    let at = text.find(&format!("\"{key}\""))?;
    Some(text[..at].matches('\n').count() + 1)
}

/// Renames the keys of `obj` to their canonical spelling (case-insensitively, exact matches
/// first), recursing into the structs that have a schema; an unknown key is an error.
fn canonicalize(
    value: &mut serde_json::Value,
    fields: &[&str],
    text: &str,
    path: &Path,
) -> Result<(), ConfigError> {
    let Some(obj) = value.as_object_mut() else {
        return Ok(()); // a type error, reported by deserialization
    };
    let entries: Vec<(String, serde_json::Value)> = std::mem::take(obj).into_iter().collect();
    for (key, mut v) in entries {
        let canonical = fields
            .iter()
            .find(|f| **f == key)
            .or_else(|| fields.iter().find(|f| f.eq_ignore_ascii_case(&key)))
            .ok_or_else(|| ConfigError::UnknownField {
                path: path.to_path_buf(),
                field: key.clone(),
                line: line_of(text, &key).unwrap_or(0),
            })?;
        match *canonical {
            "RunConfig" => {
                canonicalize(&mut v, RUN_CONFIG_FIELDS, text, path)?;
                if let Some(nics) = v
                    .as_object_mut()
                    .and_then(|o| o.get_mut("Nics"))
                    .and_then(|n| n.as_array_mut())
                {
                    for nic in nics {
                        canonicalize(nic, NIC_FIELDS, text, path)?;
                    }
                }
            }
            "CloudConfig" => canonicalize(&mut v, CLOUD_CONFIG_FIELDS, text, path)?,
            _ => {}
        }
        obj.insert(canonical.to_string(), v);
    }
    Ok(())
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
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|source| ConfigError::Syntax {
                path: path.to_path_buf(),
                source,
            })?;
        canonicalize(&mut value, CONFIG_FIELDS, text, path)?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            let last = field
                .rsplit('.')
                .next()
                .unwrap_or(&field)
                .split('[')
                .next()
                .unwrap_or_default()
                .to_string();
            ConfigError::Type {
                path: path.to_path_buf(),
                line: line_of(text, &last),
                field,
                message: e.into_inner().to_string(),
            }
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

    /// The fields present in `text` that do not change a locally built image (deploy and
    /// run settings), by their path, e.g. `RunConfig.Memory`.
    pub fn ignored_fields(text: &str) -> Vec<String> {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
            return Vec::new();
        };
        if canonicalize(&mut value, CONFIG_FIELDS, text, Path::new("")).is_err() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let Some(obj) = value.as_object() else {
            return out;
        };
        for (k, v) in obj {
            match (k.as_str(), v.as_object()) {
                ("RunConfig", Some(sub)) => out.extend(
                    sub.keys()
                        .filter(|sk| !RUN_CONFIG_IMAGE_FIELDS.contains(&sk.as_str()))
                        .map(|sk| format!("RunConfig.{sk}")),
                ),
                ("CloudConfig", Some(sub)) => {
                    out.extend(sub.keys().map(|sk| format!("CloudConfig.{sk}")))
                }
                _ if IGNORED_FIELDS.contains(&k.as_str()) => out.push(k.clone()),
                _ => {}
            }
        }
        out
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
    fn reads_the_gevulot_manifest() {
        let c = parse(
            r#"{"ManifestPassthrough": {"readonly_rootfs": "true"}, "Env": {"RUST_BACKTRACE": "1", "RUST_LOG": "debug"}, "Program": "prover", "Mounts": {"%1": "/workspace"}}"#,
        )
        .unwrap();
        assert_eq!(c.program.as_deref(), Some("prover"));
        assert_eq!(c.mounts["%1"], "/workspace");
        assert_eq!(c.manifest_passthrough["readonly_rootfs"], "true");
    }

    #[test]
    fn reads_the_disk_format() {
        let c = parse(r#"{"DiskFormat": "qcow2"}"#).unwrap();
        assert_eq!(c.disk_format.as_deref(), Some("qcow2"));
        assert!(Config::ignored_fields(r#"{"DiskFormat": "vhd"}"#).is_empty());
        assert_eq!(parse("{}").unwrap().disk_format, None);
    }

    #[test]
    fn reads_libraries() {
        let c = parse(r#"{"Libraries": ["libfoo.so.1", "libcuda.so.1"]}"#).unwrap();
        assert_eq!(c.libraries, ["libfoo.so.1", "libcuda.so.1"]);
        assert!(Config::ignored_fields(r#"{"Libraries": ["libfoo.so.1"]}"#).is_empty());
        let e = parse(r#"{"Libraries": "libfoo.so.1"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Libraries"), "{e}");
    }

    #[test]
    fn keys_match_case_insensitively_like_go() {
        let c = parse(r#"{"program": "p", "runconfig": {"ipaddress": "10.0.0.2", "nics": [{"ipaddress": "10.0.0.3"}]}, "tfsv4": false}"#).unwrap();
        assert_eq!(c.program.as_deref(), Some("p"));
        assert_eq!(c.run_config.ip_address.as_deref(), Some("10.0.0.2"));
        assert_eq!(c.run_config.nics[0].ip_address.as_deref(), Some("10.0.0.3"));
    }

    #[test]
    fn unknown_fields_wrong_types_and_bad_json_name_the_problem() {
        let e = parse("{\n  \"Program\": \"x\",\n  \"Programme\": \"x\"\n}")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "config config.json: unknown field `Programme` at line 3");
        let e = parse("{\"RunConfig\": {\n \"Memry\": \"2G\"}}")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "config config.json: unknown field `Memry` at line 2");
        let e = parse("{\n\"Args\": \"--fast\"\n}").unwrap_err().to_string();
        assert!(e.starts_with("config config.json: Args (line 2): invalid type: string \"--fast\", expected a sequence"), "{e}");
        let e = parse("{\"RunConfig\": {\"CPUs\": \"2\"}}")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config config.json: RunConfig.CPUs (line 1): invalid type"),
            "{e}"
        );
        let e = parse("not json").unwrap_err().to_string();
        assert!(
            e.starts_with("config config.json is not valid JSON: "),
            "{e}"
        );
        let e = parse(r#"{"BaseVolumeSz": "12q"}"#).unwrap_err().to_string();
        assert!(e.contains("\"12q\""), "{e}");
    }

    #[test]
    fn lists_the_fields_that_do_not_shape_the_image() {
        let ignored = Config::ignored_fields(
            r#"{"Program": "p", "Version": "1", "RunConfig": {"Memory": "2G", "IPAddress": "10.0.0.2"}, "CloudConfig": {"Zone": "z"}}"#,
        );
        assert_eq!(ignored, ["CloudConfig.Zone", "RunConfig.Memory", "Version"]);
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
