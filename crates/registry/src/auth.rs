//! Credentials from the files skopeo, podman and docker keep them in. Credential helpers
//! are never run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use nanoimg_oci::escape;

use crate::RegistryError;

/// Largest auth file read.
const MAX_AUTH_FILE: u64 = 4 << 20;

/// Where credentials are looked for, from the environment: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`. A file that is given but missing is skipped (as skopeo skips
/// it), except `$REGISTRY_AUTH_FILE`, which alone is read when set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthFiles {
    pub files: Vec<PathBuf>,
}

impl AuthFiles {
    pub fn from_env() -> AuthFiles {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(f) = var("REGISTRY_AUTH_FILE") {
            return AuthFiles { files: vec![f] };
        }
        let mut files = Vec::new();
        if let Some(d) = var("XDG_RUNTIME_DIR") {
            files.push(d.join("containers/auth.json"));
        }
        match var("DOCKER_CONFIG") {
            Some(d) => files.push(d.join("config.json")),
            None => {
                if let Some(h) = var("HOME") {
                    files.push(h.join(".docker/config.json"));
                }
            }
        }
        AuthFiles { files }
    }

    /// The files, joined for a message.
    pub fn describe(&self) -> String {
        if self.files.is_empty() {
            return "no auth file (set REGISTRY_AUTH_FILE or HOME)".into();
        }
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The credentials for `registry` (and `repository`, for per-repository entries) from
    /// the first file that has an entry for it.
    pub fn lookup(&self, registry: &str, repository: &str) -> Result<Lookup, RegistryError> {
        for file in &self.files {
            let text = match read_bounded(file) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(reason) => {
                    return Err(RegistryError::AuthFile {
                        path: file.clone(),
                        reason,
                    })
                }
            };
            match parse(&text, registry, repository) {
                Ok(Some(found)) => {
                    return Ok(match found {
                        Found::Basic(user, pass) => Lookup::Basic {
                            user,
                            password: pass,
                            file: file.clone(),
                        },
                        Found::Helper(helper) => Lookup::HelperOnly {
                            helper,
                            file: file.clone(),
                        },
                    })
                }
                Ok(None) => {}
                Err(reason) => {
                    return Err(RegistryError::AuthFile {
                        path: file.clone(),
                        reason,
                    })
                }
            }
        }
        Ok(Lookup::None)
    }
}

/// What the auth files say about one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No entry: anonymous access.
    None,
    /// A user name and password, from `file`.
    Basic {
        user: String,
        password: String,
        file: PathBuf,
    },
    /// Only a credential helper (`credsStore`/`credHelpers`) in `file`, which nanoimg
    /// does not run.
    HelperOnly { helper: String, file: PathBuf },
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::None => write!(f, "None"),
            Lookup::Basic { user, file, .. } => {
                write!(f, "Basic({user:?}, <password>, {})", file.display())
            }
            Lookup::HelperOnly { helper, file } => {
                write!(f, "HelperOnly({helper:?}, {})", file.display())
            }
        }
    }
}

enum Found {
    Basic(String, String),
    Helper(String),
}

fn read_bounded(file: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_AUTH_FILE {
        return Err(format!("{} bytes, more than {MAX_AUTH_FILE}", meta.len()));
    }
    let mut text = String::new();
    f.take(MAX_AUTH_FILE)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(Some(text))
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize, Default)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The keys an entry for `registry` may be stored under, most specific first: per
/// repository (`host/ns/repo`, `host/ns`, as containers-auth.json allows), the host, and
/// the URL forms docker writes (`https://index.docker.io/v1/` for Docker Hub).
fn keys(registry: &str, repository: &str) -> Vec<String> {
    let mut out = Vec::new();
    let parts: Vec<&str> = repository.split('/').collect();
    for n in (1..=parts.len()).rev() {
        out.push(format!("{registry}/{}", parts[..n].join("/")));
    }
    out.push(registry.to_string());
    out.push(format!("https://{registry}"));
    out.push(format!("https://{registry}/v1/"));
    out.push(format!("https://{registry}/v2/"));
    out.push(format!("http://{registry}"));
    if registry == crate::reference::DOCKER_HUB {
        for k in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io",
        ] {
            out.push(k.to_string());
        }
    }
    out
}

fn parse(text: &str, registry: &str, repository: &str) -> Result<Option<Found>, String> {
    let json: AuthJson = serde_json::from_str(text)
        .map_err(|e| format!("not valid JSON ({})", escape(&e.to_string())))?;
    for key in keys(registry, repository) {
        let Some(entry) = json.auths.get(&key) else {
            continue;
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| format!("auths.\"{}\".auth is not base64", escape(&key)))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| format!("auths.\"{}\".auth is not UTF-8", escape(&key)))?;
            let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                format!(
                    "auths.\"{}\".auth is not base64 of USER:PASSWORD",
                    escape(&key)
                )
            })?;
            return Ok(Some(Found::Basic(user.to_string(), pass.to_string())));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Found::Basic(u.clone(), p.clone())));
        }
        // An empty entry: docker writes `{}` when a helper holds the secret.
    }
    let helper = keys(registry, repository)
        .iter()
        .find_map(|k| json.cred_helpers.get(k))
        .cloned()
        .or(json.creds_store.clone());
    Ok(helper.map(Found::Helper))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn lookup(text: &str, reg: &str, repo: &str) -> Lookup {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("auth.json");
        std::fs::write(&f, text).unwrap();
        AuthFiles {
            files: vec![d.path().join("missing.json"), f],
        }
        .lookup(reg, repo)
        .unwrap()
    }

    #[test]
    fn entries_by_auth_and_by_fields() {
        let text = format!(
            r#"{{"auths": {{"r.io:5000": {{"auth": "{}"}}, "q.io": {{"username": "u2", "password": "p:2"}},
                 "https://index.docker.io/v1/": {{"auth": "{}"}},
                 "r.io:5000/team/app": {{"auth": "{}"}} }}}}"#,
            b64("user:pa:ss"),
            b64("hub:pw"),
            b64("team:tpw")
        );
        let Lookup::Basic { user, password, .. } = lookup(&text, "r.io:5000", "other/x") else {
            panic!()
        };
        assert_eq!((user.as_str(), password.as_str()), ("user", "pa:ss"));
        let Lookup::Basic { user, .. } = lookup(&text, "r.io:5000", "team/app") else {
            panic!()
        };
        assert_eq!(user, "team");
        let Lookup::Basic { user, password, .. } = lookup(&text, "q.io", "x") else {
            panic!()
        };
        assert_eq!((user.as_str(), password.as_str()), ("u2", "p:2"));
        let Lookup::Basic { user, .. } = lookup(&text, "docker.io", "library/alpine") else {
            panic!()
        };
        assert_eq!(user, "hub");
        assert_eq!(lookup(&text, "none.io", "x"), Lookup::None);
    }

    #[test]
    fn helpers_are_named_not_run() {
        let text = r#"{"auths": {"h.io": {}}, "credsStore": "desktop", "credHelpers": {"g.io": "gcloud"}}"#;
        assert!(
            matches!(lookup(text, "g.io", "x"), Lookup::HelperOnly { helper, .. } if helper == "gcloud")
        );
        assert!(
            matches!(lookup(text, "h.io", "x"), Lookup::HelperOnly { helper, .. } if helper == "desktop")
        );
    }

    #[test]
    fn bad_files_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("auth.json");
        for (text, why) in [
            ("{", "not valid JSON"),
            (r#"{"auths": {"r.io": {"auth": "%%%"}}}"#, "not base64"),
            (
                &format!(
                    r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
                    b64("nocolon")
                ),
                "USER:PASSWORD",
            ),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = AuthFiles {
                files: vec![f.clone()],
            }
            .lookup("r.io", "x")
            .unwrap_err()
            .to_string();
            assert!(e.contains(why) && e.contains("auth.json"), "{e}");
        }
        assert_eq!(
            AuthFiles { files: vec![] }.lookup("r.io", "x").unwrap(),
            Lookup::None
        );
    }
}
