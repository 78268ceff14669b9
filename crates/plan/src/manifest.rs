//! The manifest keys ops derives from a config (`setManifestFromConfig` and friends).

use nanoimg_elf::Arch;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nanoimg_config::Config;
use nanoimg_tuple::{Tuple, Value};

use crate::PlanError;

/// ops's flags are written as the string "t".
fn flag() -> Value {
    Value::string("t")
}

/// What the root tuple says besides `children`.
pub(crate) struct RootTuple<'a> {
    pub program_path: &'a str,
    pub argv0: &'a str,
    pub arch: Arch,
    pub image_name: &'a str,
    /// The `mounts` tuple (empty: none).
    pub mounts: Tuple,
    /// The boot filesystem holds klibs.
    pub klibs: bool,
}

/// The root tuple's keys: `program`, `arguments`, `environment`, the config's settings,
/// `mounts`, `klibs`, then `ManifestPassthrough`, which overrides anything.
pub(crate) fn root_tuple(
    config: &Config,
    nanos_version: &str,
    keys: RootTuple,
) -> Result<Tuple, PlanError> {
    let mut manifest = Tuple::new();
    manifest.insert(b"program".to_vec(), Value::string(keys.program_path));
    let mut argv = vec![Value::string(keys.argv0)];
    argv.extend(config.args.iter().map(Value::string));
    manifest.insert(b"arguments".to_vec(), Value::Vector(argv));
    manifest.insert(
        b"environment".to_vec(),
        Value::Tuple(environment(
            config,
            nanos_version,
            keys.arch,
            keys.image_name,
        )),
    );
    settings(config, &mut manifest);
    if !keys.mounts.is_empty() {
        manifest.insert(b"mounts".to_vec(), Value::Tuple(keys.mounts));
    }
    if keys.klibs {
        manifest.insert(b"klibs".to_vec(), Value::string("bootfs"));
    }
    for (key, value) in &config.manifest_passthrough {
        if key == "children" {
            return Err(PlanError::PassthroughChildren);
        }
        manifest.insert(key.as_bytes().to_vec(), passthrough_value(value));
    }
    Ok(manifest)
}

/// `environment`: ops's defaults (`USER`, `PWD`, `NANOS_VERSION`, `NANOS_ARCH`, `OPS_PORT`),
/// then the config's `Env`, which overrides them. ops's `OPS_VERSION` and `IMAGE_NAME` are
/// left out: a tool upgrade or a rename must not change the image.
pub(crate) fn environment(
    config: &Config,
    nanos_version: &str,
    arch: Arch,
    image_name: &str,
) -> Tuple {
    let mut env = BTreeMap::new();
    env.insert("USER".to_string(), "root".to_string());
    env.insert("PWD".into(), "/".into());
    env.insert("NANOS_VERSION".into(), nanos_version.to_string());
    env.insert("NANOS_ARCH".into(), arch.ops_name().into());
    if !config.run_config.ports.is_empty() {
        env.insert("OPS_PORT".into(), config.run_config.ports.join(","));
    }
    for (k, v) in &config.env {
        env.insert(k.clone(), v.clone());
    }
    if config.env.contains_key("RADAR_KEY") && !config.env.contains_key("RADAR_IMAGE_NAME") {
        env.insert("RADAR_IMAGE_NAME".into(), image_name.to_string());
    }
    env.into_iter()
        .map(|(k, v)| (k.into_bytes(), Value::string(v)))
        .collect()
}

/// The klibs to load: the config's, plus those ops adds (`cloud_init` → `tls`; `RADAR_KEY`
/// → `tls`, `radar`; a `firewall` passthrough key → `firewall`).
pub(crate) fn klibs(config: &Config) -> BTreeSet<String> {
    let mut k: BTreeSet<String> = config.klibs.iter().cloned().collect();
    if k.contains("cloud_init") {
        k.insert("tls".into());
    }
    if config.env.contains_key("RADAR_KEY") {
        k.insert("tls".into());
        k.insert("radar".into());
    }
    if config.manifest_passthrough.contains_key("firewall") {
        k.insert("firewall".into());
    }
    k
}

/// Flags, tracing, network: everything but the tree, the program and the environment.
pub(crate) fn settings(config: &Config, manifest: &mut Tuple) {
    if config.reboot_on_exit {
        manifest.insert(b"reboot_on_exit".to_vec(), flag());
    }
    for f in &config.debugflags {
        manifest.insert(f.as_bytes().to_vec(), flag());
    }
    if !config.no_trace.is_empty() {
        manifest.insert(
            b"notrace".to_vec(),
            Value::Vector(config.no_trace.iter().map(Value::string).collect()),
        );
    }
    let rc = &config.run_config;
    let text = |v: &Option<String>| Value::string(v.clone().unwrap_or_default());
    if rc.ip_address.is_some() || rc.ipv6_address.is_some() {
        // ops writes all four once either address is set; its CLI default netmask applies.
        manifest.insert(b"ipaddr".to_vec(), text(&rc.ip_address));
        manifest.insert(
            b"netmask".to_vec(),
            Value::string(
                rc.net_mask
                    .clone()
                    .unwrap_or_else(|| "255.255.255.0".into()),
            ),
        );
        manifest.insert(b"gateway".to_vec(), text(&rc.gateway));
        manifest.insert(b"ip6addr".to_vec(), text(&rc.ipv6_address));
    }
    for (i, nic) in rc.nics.iter().enumerate() {
        let mut t = Tuple::new();
        t.insert(b"ipaddr".to_vec(), text(&nic.ip_address));
        t.insert(b"netmask".to_vec(), text(&nic.net_mask));
        t.insert(b"gateway".to_vec(), text(&nic.gateway));
        if i == 0 {
            manifest.extend(t);
            manifest.insert(b"ip6addr".to_vec(), Value::string(""));
        } else {
            manifest.insert(format!("en{}", i + 1).into_bytes(), Value::Tuple(t));
        }
    }
}

/// A `ManifestPassthrough` value as a tuple value. ops aborts on numbers, booleans and null;
/// nanoimg writes numbers and booleans as their JSON text and null as the null flag.
pub(crate) fn passthrough_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::String(s) => Value::string(s),
        J::Number(n) => Value::string(n.to_string()),
        J::Bool(b) => Value::string(b.to_string()),
        J::Null => Value::Null,
        J::Array(items) => Value::Vector(items.iter().map(passthrough_value).collect()),
        J::Object(map) => Value::Tuple(
            map.iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), passthrough_value(v)))
                .collect(),
        ),
    }
}

/// `mounts`, with ops's onprem renumbering: `%N` keys and keys naming a host directory
/// (relative to the config's directory) become 9p attach ids `%0`, `%1`, … in sorted order of
/// their host paths. Labels and UUIDs stay as written. Gives the tuple, what was renumbered,
/// and the host folder of each attach id in order.
pub(crate) fn mounts(
    config: &Config,
    config_dir: &Path,
    keep_ids: bool,
) -> Result<(Tuple, Vec<String>, Vec<std::path::PathBuf>), PlanError> {
    let mut notes = Vec::new();
    let mut shares: Vec<(std::path::PathBuf, &String, &String)> = Vec::new();
    let mut out = Tuple::new();
    for (key, path) in &config.mounts {
        if !path.starts_with('/') || path.split(':').next() == Some("/") {
            return Err(PlanError::BadMount {
                key: key.clone(),
                path: path.clone(),
            });
        }
        let host = if Path::new(key).is_absolute() {
            Path::new(key).to_path_buf()
        } else {
            config_dir.join(key)
        };
        let attach_id = key
            .strip_prefix('%')
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if !keep_ids && (attach_id || host.is_dir()) {
            shares.push((host, key, path));
        } else {
            out.insert(key.as_bytes().to_vec(), Value::string(path));
        }
    }
    shares.sort();
    let mut hosts = Vec::new();
    for (i, (host, key, path)) in shares.into_iter().enumerate() {
        let id = format!("%{i}");
        if *key != id {
            notes.push(format!("mount {key} -> {id} ({path})"));
        }
        out.insert(id.into_bytes(), Value::string(path));
        hosts.push(host);
    }
    Ok((out, notes, hosts))
}
