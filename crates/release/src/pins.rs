use serde::Deserialize;

include!(concat!(env!("OUT_DIR"), "/pins.rs"));

/// Where NanoVMs publish releases; `--mirror` replaces this prefix.
pub const OFFICIAL_BASE: &str = "https://storage.googleapis.com/nanos/release";

/// A pinned Nanos release (one `kernels/*.toml`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub version: String,
    /// The x86_64 release tarball.
    pub url: String,
    /// The `.md5` published beside the tarball.
    pub md5_url: String,
    /// The tarball's SHA-256, where known.
    pub sha256: Option<String>,
}

impl Pin {
    /// A pin for a release nanoimg does not know, at the official location (no SHA-256).
    pub fn unpinned(version: &str) -> Pin {
        Pin {
            version: version.to_string(),
            url: format!("{OFFICIAL_BASE}/{version}/nanos-release-linux-{version}.tar.gz"),
            md5_url: format!("{OFFICIAL_BASE}/{version}/nanos-release-linux-{version}.md5"),
            sha256: None,
        }
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

/// Every pinned release, oldest first.
pub fn pins() -> Vec<Pin> {
    let mut pins: Vec<Pin> = PIN_FILES
        .iter()
        .map(|(name, text)| {
            toml::from_str(text)
                .unwrap_or_else(|e| panic!("kernels/{name} is not a valid pin: {e}"))
        })
        .collect();
    pins.sort_by_key(|p| version_key(&p.version));
    pins
}

/// The pin of `version`, if any.
pub fn find_pin(version: &str) -> Option<Pin> {
    pins().into_iter().find(|p| p.version == version)
}

/// The newest pinned release: the default kernel of `nanoimg build`.
pub fn default_pin() -> Pin {
    pins().pop().expect("kernels/ pins at least one release")
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
                .ends_with(&format!("nanos-release-linux-{}.tar.gz", p.version)));
            assert!(p
                .md5_url
                .ends_with(&format!("nanos-release-linux-{}.md5", p.version)));
            if let Some(s) = &p.sha256 {
                assert_eq!(s.len(), 64);
            }
        }
        assert_eq!(default_pin().version, all.last().unwrap().version);
    }

    #[test]
    fn versions_order_numerically_and_mirrors_replace_the_base() {
        assert!(version_key("0.1.9") < version_key("0.1.10"));
        let p = Pin::unpinned("0.1.99");
        assert_eq!(
            p.mirrored("http://127.0.0.1:8080/nanos/"),
            (
                "http://127.0.0.1:8080/nanos/0.1.99/nanos-release-linux-0.1.99.tar.gz".into(),
                "http://127.0.0.1:8080/nanos/0.1.99/nanos-release-linux-0.1.99.md5".into()
            )
        );
    }
}
