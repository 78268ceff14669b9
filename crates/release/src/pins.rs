use nanoimg_elf::Arch;
use serde::{Deserialize, Deserializer};

include!(concat!(env!("OUT_DIR"), "/pins.rs"));

/// Where NanoVMs publish releases; `--mirror` replaces this prefix.
pub const OFFICIAL_BASE: &str = "https://storage.googleapis.com/nanos/release";

/// A pinned Nanos release (one `kernels/*.toml`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub version: String,
    /// The machine the release is for (`arch = "arm64"` in the file; x86_64 if absent):
    /// x86_64 is the `pc` platform's tarball, aarch64 the `virt` platform's (`-virt`).
    #[serde(default, deserialize_with = "arch_from_ops_name")]
    pub arch: Arch,
    /// The release tarball.
    pub url: String,
    /// The `.md5` published beside the tarball.
    pub md5_url: String,
    /// The tarball's SHA-256, where known.
    pub sha256: Option<String>,
}

fn arch_from_ops_name<'de, D: Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// How NanoVMs name a release: the version, with `-virt` for the aarch64 (`virt` platform)
/// build, as in `nanos-release-linux-0.1.55-virt.tar.gz`. The cache index and messages use it.
pub fn release_name(version: &str, arch: Arch) -> String {
    match arch {
        Arch::X86_64 => version.to_string(),
        Arch::Aarch64 => format!("{version}-virt"),
    }
}

impl Pin {
    /// A pin for a release nanoimg does not know, at the official location (no SHA-256).
    pub fn unpinned(version: &str, arch: Arch) -> Pin {
        let name = release_name(version, arch);
        Pin {
            version: version.to_string(),
            arch,
            url: format!("{OFFICIAL_BASE}/{version}/nanos-release-linux-{name}.tar.gz"),
            md5_url: format!("{OFFICIAL_BASE}/{version}/nanos-release-linux-{name}.md5"),
            sha256: None,
        }
    }

    /// The release's name (`0.1.55`, `0.1.55-virt`).
    pub fn name(&self) -> String {
        release_name(&self.version, self.arch)
    }

    /// `url` and `md5_url` with the official location replaced by `mirror`.
    pub fn mirrored(&self, mirror: &str) -> (String, String) {
        let m = mirror.trim_end_matches('/');
        let swap = |u: &str| match u.strip_prefix(OFFICIAL_BASE) {
            Some(rest) => format!("{m}{rest}"),
            None => u.to_string(),
        };
        (swap(&self.url), swap(&self.md5_url))
    }
}

/// Orders versions numerically, component by component ("0.1.9" < "0.1.10").
pub(crate) fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-'])
        .map(|p| (p.parse().unwrap_or(u64::MAX), p.to_string()))
        .collect()
}

/// Every pinned release, oldest first (x86_64 before aarch64 of the same version).
pub fn pins() -> Vec<Pin> {
    let mut pins: Vec<Pin> = PIN_FILES
        .iter()
        .map(|(name, text)| {
            toml::from_str(text)
                .unwrap_or_else(|e| panic!("kernels/{name} is not a valid pin: {e}"))
        })
        .collect();
    pins.sort_by_key(|p| (version_key(&p.version), p.arch));
    pins
}

/// The pin of `version` for `arch`, if any.
pub fn find_pin(version: &str, arch: Arch) -> Option<Pin> {
    pins()
        .into_iter()
        .find(|p| p.version == version && p.arch == arch)
}

/// The newest pinned release for `arch`: the default kernel of `nanoimg build`.
pub fn default_pin(arch: Arch) -> Pin {
    pins()
        .into_iter()
        .rfind(|p| p.arch == arch)
        .expect("kernels/ pins at least one release per architecture")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_pins_parse_and_point_at_the_official_location() {
        let all = pins();
        assert!(!all.is_empty());
        for p in &all {
            assert!(p.url.starts_with(OFFICIAL_BASE), "{p:?}");
            assert!(p
                .url
                .ends_with(&format!("nanos-release-linux-{}.tar.gz", p.name())));
            assert!(p
                .md5_url
                .ends_with(&format!("nanos-release-linux-{}.md5", p.name())));
            if let Some(s) = &p.sha256 {
                assert_eq!(s.len(), 64);
            }
            // The pin is what an unpinned release of the same name would fetch.
            let u = Pin::unpinned(&p.version, p.arch);
            assert_eq!((&u.url, &u.md5_url), (&p.url, &p.md5_url));
        }
        // Every version is pinned for both architectures, the -virt tarball for aarch64.
        for a in Arch::ALL {
            let versions: Vec<_> = all
                .iter()
                .filter(|p| p.arch == a)
                .map(|p| &p.version)
                .collect();
            let x86: Vec<_> = all
                .iter()
                .filter(|p| p.arch == Arch::X86_64)
                .map(|p| &p.version)
                .collect();
            assert_eq!(versions, x86, "{a}");
        }
        let arm = find_pin("0.1.55", Arch::Aarch64).unwrap();
        assert_eq!(arm.name(), "0.1.55-virt");
        assert_eq!(
            arm.url,
            "https://storage.googleapis.com/nanos/release/0.1.55/nanos-release-linux-0.1.55-virt.tar.gz"
        );
        assert_eq!(default_pin(Arch::X86_64).arch, Arch::X86_64);
        assert_eq!(default_pin(Arch::Aarch64).arch, Arch::Aarch64);
        assert_eq!(
            default_pin(Arch::Aarch64).version,
            default_pin(Arch::X86_64).version
        );
    }

    #[test]
    fn versions_order_numerically_and_mirrors_replace_the_base() {
        assert!(version_key("0.1.9") < version_key("0.1.10"));
        let p = Pin::unpinned("0.1.99", Arch::X86_64);
        assert_eq!(
            p.mirrored("http://127.0.0.1:8080/nanos/"),
            (
                "http://127.0.0.1:8080/nanos/0.1.99/nanos-release-linux-0.1.99.tar.gz".into(),
                "http://127.0.0.1:8080/nanos/0.1.99/nanos-release-linux-0.1.99.md5".into()
            )
        );
    }
}
