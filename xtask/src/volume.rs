//! The `data-volume` case: a program reading and writing a separate data
//! volume.
//!
//! The host makes a raw TFS volume labelled [`LABEL`] from a folder holding
//! `hello.txt` with `nanoimg volume create`; the image's manifest mounts
//! that label at [`MOUNT_POINT`] and `nanoimg run --volume` attaches the
//! volume as a second disk. The guest prints the file it reads and writes
//! `from-guest.txt` next to it; after the boot `nanoimg extract` unpacks the
//! volume on the host and the written file must be there.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::expect;

/// Program name; `Program` in the config, so also `argv[0]`.
pub const PROGRAM: &str = "volume";

/// Volume label, used as the `Mounts` key (kept literally in the manifest).
pub const LABEL: &str = "appdata";

/// Where the guest finds the volume.
pub const MOUNT_POINT: &str = "/data";

/// Host folder (inside the work directory) the volume is made from.
const SOURCE_DIR: &str = "voldata";

/// The volume file (inside the work directory).
const VOLUME_FILE: &str = "data.vol";

/// Folder (inside the work directory) the volume is extracted into after
/// the boot.
const EXTRACT_DIR: &str = "extracted";

/// File the guest reads, relative to the volume root.
const READ_FILE: &str = "hello.txt";

/// Contents of the file the guest reads.
pub const READ_CONTENTS: &str = "hello from the volume\n";

/// File the guest writes, relative to the volume root.
const WRITTEN_FILE: &str = "from-guest.txt";

/// What the guest must write (one trailing newline allowed).
pub const EXPECTED_WRITTEN: &str = "written-by-guest";

/// The config passed to `nanoimg build -c`.
pub fn config() -> Value {
    json!({
        "Program": PROGRAM,
        "Mounts": { LABEL: MOUNT_POINT },
    })
}

/// The lines the guest must print on the console. The config has no `Args`
/// and no `Env`, so only `argv[0]` is certain among the echo lines.
pub fn expected_lines() -> Vec<String> {
    vec![
        format!(
            "volume-read:{}",
            READ_CONTENTS.strip_suffix('\n').unwrap_or(READ_CONTENTS)
        ),
        "volume-written".to_owned(),
        format!("argv[0]={PROGRAM}"),
        expect::DONE_MARKER.to_owned(),
    ]
}

/// The volume file of a run in `work_dir`.
pub fn volume_path(work_dir: &Path) -> PathBuf {
    work_dir.join(VOLUME_FILE)
}

/// Creates the source folder holding the file the guest reads, and removes
/// what an earlier run left (volume, extracted folder).
pub fn prepare_source(work_dir: &Path) -> Result<PathBuf> {
    let source = work_dir.join(SOURCE_DIR);
    fs::create_dir_all(&source)
        .with_context(|| format!("creating volume source folder {}", source.display()))?;
    let file = source.join(READ_FILE);
    fs::write(&file, READ_CONTENTS).with_context(|| format!("writing {}", file.display()))?;
    remove_if_present(&volume_path(work_dir))?;
    let extracted = work_dir.join(EXTRACT_DIR);
    match fs::remove_dir_all(&extracted) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("removing stale {}", extracted.display()))
        }
    }
    Ok(source)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing stale {}", path.display())),
    }
}

/// `nanoimg volume create <work>/voldata -o <work>/data.vol --label appdata`.
pub fn create_command(nanoimg: &Path, work_dir: &Path) -> Command {
    volume_create(
        nanoimg,
        work_dir,
        &work_dir.join(SOURCE_DIR),
        &volume_path(work_dir),
        LABEL,
    )
}

/// `nanoimg volume create <source> -o <volume> --label <label>`, run in `work_dir`.
pub fn volume_create(
    nanoimg: &Path,
    work_dir: &Path,
    source: &Path,
    volume: &Path,
    label: &str,
) -> Command {
    let mut command = Command::new(nanoimg);
    command
        .current_dir(work_dir)
        .args(["volume", "create"])
        .arg(source)
        .arg("-o")
        .arg(volume)
        .args(["--label", label])
        .stdin(Stdio::null());
    command
}

/// `nanoimg extract <work>/data.vol <work>/extracted`.
pub fn extract_command(nanoimg: &Path, work_dir: &Path) -> Command {
    let mut command = Command::new(nanoimg);
    command
        .current_dir(work_dir)
        .arg("extract")
        .arg(volume_path(work_dir))
        .arg(work_dir.join(EXTRACT_DIR))
        .stdin(Stdio::null());
    command
}

/// Checks the file the guest wrote, in the folder `nanoimg extract` made
/// from the volume; returns the problem, if any.
pub fn check_extracted(work_dir: &Path) -> Option<String> {
    let written = work_dir.join(EXTRACT_DIR).join(WRITTEN_FILE);
    let missing = format!(
        "{} is not in the extracted volume (the guest's write did not reach the volume)",
        written.display()
    );
    expect::check_file(&written, "", missing, EXPECTED_WRITTEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_line(command: &Command) -> Vec<String> {
        std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn config_mounts_the_label_at_data() {
        assert_eq!(
            config(),
            json!({"Program": "volume", "Mounts": {"appdata": "/data"}})
        );
    }

    #[test]
    fn expected_lines_cover_read_write_and_marker() {
        assert_eq!(
            expected_lines(),
            [
                "volume-read:hello from the volume",
                "volume-written",
                "argv[0]=volume",
                "HELLO-DONE",
            ]
        );
    }

    #[test]
    fn volume_create_and_extract_command_lines() {
        let work = Path::new("/w");
        let create = create_command(Path::new("/bin/nanoimg"), work);
        assert_eq!(
            command_line(&create),
            [
                "/bin/nanoimg",
                "volume",
                "create",
                "/w/voldata",
                "-o",
                "/w/data.vol",
                "--label",
                "appdata",
            ]
        );
        let extract = extract_command(Path::new("/bin/nanoimg"), work);
        assert_eq!(
            command_line(&extract),
            ["/bin/nanoimg", "extract", "/w/data.vol", "/w/extracted"]
        );
    }

    #[test]
    fn source_is_prepared_and_extracted_file_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = prepare_source(dir.path()).expect("prepare");
        assert_eq!(
            fs::read_to_string(source.join("hello.txt")).expect("hello.txt"),
            "hello from the volume\n"
        );

        let missing = check_extracted(dir.path()).expect("missing file accepted");
        assert!(
            missing.contains("is not in the extracted volume"),
            "{missing}"
        );

        let extracted = dir.path().join("extracted");
        fs::create_dir(&extracted).expect("mkdir");
        fs::write(extracted.join("from-guest.txt"), "nope").expect("write");
        let wrong = check_extracted(dir.path()).expect("wrong contents accepted");
        assert!(wrong.contains("\"nope\""), "{wrong}");

        fs::write(extracted.join("from-guest.txt"), "written-by-guest\n").expect("write");
        assert_eq!(check_extracted(dir.path()), None);
        fs::write(extracted.join("from-guest.txt"), "written-by-guest").expect("write");
        assert_eq!(check_extracted(dir.path()), None);

        // A second preparation removes the stale volume and extraction.
        fs::write(volume_path(dir.path()), b"old").expect("write");
        prepare_source(dir.path()).expect("prepare again");
        assert!(!extracted.exists());
        assert!(!volume_path(dir.path()).exists());
    }
}
