//! `docker://HOST[:PORT]/REPO[:TAG]` and `docker://…@sha256:HEX`, as skopeo spells them.

use nanoimg_oci::escape;

use crate::RegistryError;

/// The transport prefix of a registry reference.
pub const PREFIX: &str = "docker://";

/// Docker Hub, the registry of a reference that names none (`docker://alpine`).
pub const DOCKER_HUB: &str = "docker.io";

/// An image or artifact in a registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `HOST` or `HOST:PORT` (`docker.io` for Docker Hub).
    pub registry: String,
    /// `library/alpine`, `team/app`.
    pub repository: String,
    /// The tag; `None` when a digest is given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

fn bad(text: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::Reference {
        text: escape(text).to_string(),
        reason: reason.into(),
    }
}

/// Whether `text` is a registry reference (starts with `docker://`).
pub fn is_reference(text: &str) -> bool {
    text.starts_with(PREFIX)
}

/// `sha256:<64 lower-case hex>`.
pub(crate) fn is_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ( (\.|_|__|-+) [a-z0-9]+ )*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    if !b
        .iter()
        .all(|&x| matches!(x, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
    {
        return false;
    }
    // No two separators in a row other than "__" and runs of '-'.
    let mut prev = b'a';
    for (i, &x) in b.iter().enumerate() {
        let sep = |y: u8| matches!(y, b'.' | b'_' | b'-');
        if sep(x) && sep(prev) {
            let ok = (x == b'_' && prev == b'_' && (i < 2 || b[i - 2] != b'_'))
                || (x == b'-' && prev == b'-');
            if !ok {
                return false;
            }
        }
        prev = x;
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn valid_host(h: &str) -> bool {
    let (host, port) = if h.starts_with('[') {
        match h.find(']') {
            Some(i) => match &h[i + 1..] {
                "" => (&h[..=i], None),
                p => match p.strip_prefix(':') {
                    Some(p) => (&h[..=i], Some(p)),
                    None => return false,
                },
            },
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok())
}

/// `NAME@DIGEST` split into the name and the digest (which must be `sha256:<hex>`).
fn split_digest<'a>(text: &str, rest: &'a str) -> Result<(&'a str, Option<String>), RegistryError> {
    match rest.split_once('@') {
        Some((n, d)) => {
            if !is_sha256(d) {
                return Err(bad(
                    text,
                    format!(
                        "digest \"{}\" is not sha256:<64 lower-case hex digits>",
                        escape(d)
                    ),
                ));
            }
            Ok((n, Some(d.to_string())))
        }
        None => Ok((rest, None)),
    }
}

/// The registry (a valid `HOST[:PORT]` first component, else Docker Hub) and the rest of
/// `name`.
fn split_registry<'a>(text: &str, name: &'a str) -> Result<(String, &'a str), RegistryError> {
    match name.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            if !valid_host(first) {
                return Err(bad(
                    text,
                    format!("registry \"{}\" is not HOST or HOST:PORT", escape(first)),
                ));
            }
            Ok((first.to_string(), path))
        }
        _ => Ok((DOCKER_HUB.to_string(), name)),
    }
}

/// `REPO[:TAG]` split at a `:` in its last component.
fn split_tag(path: &str) -> (&str, Option<&str>) {
    let last_slash = path.rfind('/').map_or(0, |i| i + 1);
    match path[last_slash..].rfind(':') {
        Some(i) => (&path[..last_slash + i], Some(&path[last_slash + i + 1..])),
        None => (path, None),
    }
}

/// A tag must be valid, and not given with a digest.
fn check_tag(text: &str, t: &str, has_digest: bool) -> Result<(), RegistryError> {
    if !valid_tag(t) {
        return Err(bad(
            text,
            format!("tag \"{}\" is not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]*, at most 128 characters)", escape(t)),
        ));
    }
    if has_digest {
        return Err(bad(
            text,
            "give a tag or a digest, not both (as skopeo requires)",
        ));
    }
    Ok(())
}

/// A repository must be `/`-separated valid components, at most 255 characters.
fn check_repository(text: &str, repository: &str) -> Result<(), RegistryError> {
    if repository.is_empty() || !repository.split('/').all(valid_component) {
        return Err(bad(
            text,
            format!(
                "repository \"{}\" is not a valid name (lower-case letters, digits and . _ - separators, / between components)",
                escape(repository)
            ),
        ));
    }
    if repository.len() > 255 {
        return Err(bad(text, "repository name longer than 255 characters"));
    }
    Ok(())
}

impl Reference {
    /// Reads `docker://[HOST[:PORT]/]REPO[:TAG]` or `docker://[HOST[:PORT]/]REPO@sha256:HEX`
    /// as skopeo does: a first component with a `.` or a `:`, or `localhost`, is the
    /// registry, else the registry is Docker Hub (`docker.io`, where a one-component name
    /// is under `library/`); no tag and no digest is `:latest`. A tag and a digest together
    /// are refused, as skopeo refuses them.
    pub fn parse(text: &str) -> Result<Reference, RegistryError> {
        let rest = text.strip_prefix(PREFIX).ok_or_else(|| {
            bad(
                text,
                "a registry reference starts with docker:// (docker://HOST[:PORT]/REPO[:TAG])",
            )
        })?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        if rest.is_empty() {
            return Err(bad(text, "no image named after docker://"));
        }
        let (name, digest) = split_digest(text, rest)?;
        let (registry, path) = split_registry(text, name)?;
        let (repository, tag) = split_tag(path);
        if let Some(t) = tag {
            check_tag(text, t, digest.is_some())?;
        }
        check_repository(text, repository)?;
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        let tag = match (&digest, tag) {
            (None, None) => Some("latest".to_string()),
            (_, t) => t.map(str::to_string),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The same image, by `digest`.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The tag or digest asked for (the digest if both).
    pub fn selector(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match &self.digest {
            Some(d) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            None => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                self.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }

    /// The host the API is reached at (Docker Hub's API is not at `docker.io`).
    pub(crate) fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "index.docker.io"
        } else {
            &self.registry
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Reference, RegistryError> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn skopeo_spellings() {
        let r = p("docker://alpine");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.to_string(), "docker://docker.io/library/alpine:latest");
        let r = p("docker://team/app:1.2");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "team/app")
        );
        let r = p("docker://127.0.0.1:5000/a/b/c:v1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b/c");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        let r = p("docker://localhost/x");
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = p(&format!("docker://ghcr.io/o/r@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.selector(), d);
        assert_eq!(r.to_string(), format!("docker://ghcr.io/o/r@{d}"));
        let r = p("docker://[::1]:5000/x:y");
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(p("docker://a__b/c-d--e.f:T_1").repository, "a__b/c-d--e.f");
        assert_eq!(p("docker://r.io:443/x").with_digest(&d).tag, None);
    }

    #[test]
    fn bad_references_are_one_escaped_line() {
        let d = format!("sha256:{}", "ab".repeat(32));
        for (text, why) in [
            ("alpine", "starts with docker://"),
            ("docker://", "no image"),
            ("docker://Alpine", "repository"),
            ("docker://a//b", "repository"),
            ("docker://a/b:", "tag"),
            ("docker://a/b:-x", "tag"),
            ("docker://a/b@sha256:zz", "digest"),
            ("docker://a/b@md5:00", "digest"),
            ("docker://bad_host.io/x", "registry"),
            ("docker://h.io:99999/x", "registry"),
            ("docker://a/b..c", "repository"),
            ("docker://a/b\n", "repository"),
        ] {
            let e = Reference::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let e = Reference::parse(&format!("docker://a/b:t@{d}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
        assert!(is_reference("docker://x") && !is_reference("oci:x"));
    }
}
