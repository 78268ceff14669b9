//! The application a container image describes, as `docker run IMAGE` would start it:
//! `nanoimg build --from-image IMAGE` with no PROGRAM takes the program and its arguments
//! from the config's `Entrypoint` + `Cmd`, its environment from `Env` and its working
//! directory from `WorkingDir`; what the ops config and the flags say wins.
//!
//! - **Program.** The first word of `Entrypoint` + `Cmd`. A word without `/` is looked up in
//!   the `PATH` of the environment (the config's or `-e`'s `PATH` if given, else the
//!   image's, else Docker's default) inside the image, as a runtime's `execvp` would; a
//!   relative path with `/` is taken from `WorkingDir`. The image path found becomes the
//!   config's `Program` (argv[0]).
//! - **The config's `Program`**, when it has one, replaces `Entrypoint` + `Cmd` (as
//!   `docker run --entrypoint` does): it is looked up as that first word would be, and the
//!   config's `Args` (or `-a`) are the only arguments. Gevulot's prover manifest
//!   (`"Program": "prover"`) thus finds `/usr/local/bin/prover` in the image's `PATH`.
//! - **Arguments.** The rest of `Entrypoint` + `Cmd`. Arguments given with `-a` or the
//!   config's `Args` replace the `Cmd` part, as `docker run IMAGE ARGS…` does; `Entrypoint`'s
//!   own arguments stay.
//! - **Environment.** Each `KEY=VALUE` of `Env`, unless the config or `-e` sets `KEY`.
//! - **Working directory.** `WorkingDir` becomes the manifest's `cwd` (Nanos starts the
//!   program there), unless the config's `ManifestPassthrough` has a `cwd`.

use std::path::{Component, Path, PathBuf};

use nanoimg_config::Config;
use nanoimg_oci::Application;

use crate::BuildError;

/// The `PATH` a container runtime uses when the image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Merges `app`, the application of image `image` whose filesystem is `root`, into
/// `config` (whose `Args`, already merged with `-a`, replace `Cmd`) and returns the
/// program's path inside the image.
pub fn merge(
    image: &str,
    app: &Application,
    root: &Path,
    config: &mut Config,
) -> Result<PathBuf, BuildError> {
    // The config's Program replaces Entrypoint + Cmd, as `docker run --entrypoint` does;
    // its Args are then the only arguments.
    if let Some(program) = config.program.clone() {
        merge_env(app, config);
        let program = find_program(image, app, root, &program, config)?;
        config.program = Some(program.to_string_lossy().into_owned());
        return Ok(program);
    }
    let mut words = app.entrypoint.iter().chain(&app.cmd);
    let Some(first) = words.next() else {
        return Err(BuildError::NoApplication {
            image: printable_image(image),
        });
    };
    // The config's (or -a's) Args replace Cmd; Entrypoint's own arguments stay.
    let user_args = std::mem::take(&mut config.args);
    let mut args: Vec<String> = if app.entrypoint.is_empty() {
        app.cmd.iter().skip(1).cloned().collect()
    } else {
        app.entrypoint
            .iter()
            .skip(1)
            .chain(if user_args.is_empty() {
                &app.cmd
            } else {
                &[] as &[_]
            })
            .cloned()
            .collect()
    };
    if !user_args.is_empty() {
        if app.entrypoint.is_empty() {
            args = user_args;
        } else {
            args.extend(user_args);
        }
    }
    config.args = args;
    merge_env(app, config);
    let program = find_program(image, app, root, first, config)?;
    config.program = Some(program.to_string_lossy().into_owned());
    Ok(program)
}

/// The image's `Env` and `WorkingDir` under what `config` sets.
fn merge_env(app: &Application, config: &mut Config) {
    for entry in &app.env {
        if let Some((key, value)) = entry.split_once('=') {
            if !key.is_empty() {
                config
                    .env
                    .entry(key.to_string())
                    .or_insert_with(|| value.to_string());
            }
        }
    }
    if !app.working_dir.is_empty() && !config.manifest_passthrough.contains_key("cwd") {
        config.manifest_passthrough.insert(
            "cwd".into(),
            serde_json::Value::String(app.working_dir.clone()),
        );
    }
}

/// Where `word` (the first word of `Entrypoint` + `Cmd`) is inside the image, as an
/// absolute image path.
fn find_program(
    image: &str,
    app: &Application,
    root: &Path,
    word: &str,
    config: &Config,
) -> Result<PathBuf, BuildError> {
    let working_dir = match app.working_dir.as_str() {
        "" => "/",
        w => w,
    };
    if word.contains('/') {
        let path = Path::new(working_dir).join(word);
        return Ok(clean(&path));
    }
    let path_var = config
        .env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or(DEFAULT_PATH);
    let mut searched = Vec::new();
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = clean(&Path::new(working_dir).join(dir).join(word));
        if is_executable(root, &candidate) {
            return Ok(candidate);
        }
        searched.push(dir.to_string());
    }
    Err(BuildError::ProgramNotInPath {
        image: printable_image(image),
        program: crate::printable(word),
        path: crate::printable(&searched.join(":")),
    })
}

/// Whether `path` inside `root` is, after links (resolved inside the root), a regular file
/// with an execute bit.
fn is_executable(root: &Path, path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    nanoimg_chroot::resolve(root, path)
        .ok()
        .and_then(|host| host.symlink_metadata().ok())
        .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `path` absolute, without `.` and with `..` taken lexically (never above `/`).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn printable_image(image: &str) -> String {
    crate::printable(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    fn exe(root: &Path, path: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"\x7fELF").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn entrypoint_and_cmd_as_docker_run_takes_them() {
        let d = tempfile::tempdir().unwrap();
        exe(d.path(), "/usr/local/bin/python3");
        let app = Application {
            entrypoint: words(&["python3", "-u"]),
            cmd: words(&["main.py", "--fast"]),
            env: words(&["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "KEEP=image"]),
            working_dir: "/app".into(),
        };
        let mut config = Config::default();
        config.env.insert("KEEP".into(), "config".into());
        let program = merge("img", &app, d.path(), &mut config).unwrap();
        assert_eq!(program, Path::new("/usr/local/bin/python3"));
        assert_eq!(config.program.as_deref(), Some("/usr/local/bin/python3"));
        assert_eq!(config.args, words(&["-u", "main.py", "--fast"]));
        assert_eq!(config.env["LANG"], "C.UTF-8");
        assert_eq!(config.env["KEEP"], "config");
        assert_eq!(config.manifest_passthrough["cwd"], "/app");

        // -a replaces Cmd, keeps Entrypoint's arguments.
        let mut config = Config {
            args: words(&["other.py"]),
            ..Config::default()
        };
        merge("img", &app, d.path(), &mut config).unwrap();
        assert_eq!(config.args, words(&["-u", "other.py"]));
    }

    #[test]
    fn the_configs_program_replaces_entrypoint_and_cmd() {
        let d = tempfile::tempdir().unwrap();
        exe(d.path(), "/usr/local/bin/prover");
        let app = Application {
            entrypoint: words(&["/usr/local/bin/other"]),
            cmd: words(&["--serve"]),
            env: words(&["RUST_LOG=info"]),
            working_dir: "/w".into(),
        };
        let mut config = Config {
            program: Some("prover".into()),
            args: words(&["--once"]),
            ..Config::default()
        };
        let program = merge("img", &app, d.path(), &mut config).unwrap();
        assert_eq!(program, Path::new("/usr/local/bin/prover"));
        assert_eq!(config.program.as_deref(), Some("/usr/local/bin/prover"));
        assert_eq!(config.args, words(&["--once"]));
        assert_eq!(config.env["RUST_LOG"], "info");
        assert_eq!(config.manifest_passthrough["cwd"], "/w");
    }

    #[test]
    fn cmd_only_relative_paths_and_failures() {
        let d = tempfile::tempdir().unwrap();
        exe(d.path(), "/srv/bin/prover");
        let app = Application {
            cmd: words(&["./bin/prover", "--serve"]),
            working_dir: "/srv".into(),
            ..Application::default()
        };
        let mut config = Config::default();
        assert_eq!(
            merge("img", &app, d.path(), &mut config).unwrap(),
            Path::new("/srv/bin/prover")
        );
        assert_eq!(config.args, words(&["--serve"]));
        // With only Cmd, -a replaces its arguments.
        let mut config = Config {
            args: words(&["--once"]),
            ..Config::default()
        };
        merge("img", &app, d.path(), &mut config).unwrap();
        assert_eq!(config.args, words(&["--once"]));

        let empty = Application::default();
        let e = merge("img", &empty, d.path(), &mut Config::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the container image img names no program (its config has no Entrypoint or Cmd): give PROGRAM, its path inside the image"
        );
        let missing = Application {
            entrypoint: words(&["prover"]),
            ..Application::default()
        };
        let e = merge("img", &missing, d.path(), &mut Config::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the program \"prover\" is not an executable file in any folder of the PATH of the container image img (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin); give PROGRAM, its path inside the image"
        );
    }
}
