//! Booting an image under QEMU with a timeout and capturing its console.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How often a running QEMU is polled for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How a boot ended.
#[derive(Debug)]
pub enum BootEnd {
    /// QEMU exited by itself (Nanos powers the VM off when the program ends).
    Exited(ExitStatus),
    /// QEMU was still running at the deadline and was killed.
    TimedOut,
}

/// The outcome of one boot.
#[derive(Debug)]
pub struct Boot {
    pub end: BootEnd,
    /// Everything QEMU wrote to stdout (the serial console) and stderr.
    pub console: String,
    pub elapsed: Duration,
    /// The QEMU invocation, for failure reports.
    pub command_line: String,
}

/// Per-case additions to the common QEMU command line of [`args`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BootOptions {
    /// Firmware image passed with `-bios` (e.g. OVMF for a UEFI boot);
    /// `None` boots QEMU's default SeaBIOS.
    pub bios: Option<PathBuf>,
    /// Attach the disk read-only (`readonly=on` on its `-drive`), as the
    /// Gevulot node does.
    pub readonly_disk: bool,
    /// Arguments appended after the common ones, e.g. `-virtfs ...` for a
    /// 9p share or `-nic none`.
    pub extra_args: Vec<OsString>,
}

/// QEMU arguments for booting `image` the way Gevulot runs images: q35
/// machine, the disk on virtio-scsi, serial console on stdio, TCG only (never
/// KVM, so results do not depend on the host), plus the case's `options`:
/// `-bios FIRMWARE` right after the common options, then its extra
/// arguments.
///
/// `-nodefaults` is deliberately absent: it would remove the serial port too.
pub fn args(image: &Path, options: &BootOptions) -> Vec<OsString> {
    let mut drive = OsString::from("file=");
    drive.push(escape_option_value(image.as_os_str()));
    drive.push(",format=raw,if=none,id=hd0");
    if options.readonly_disk {
        drive.push(",readonly=on");
    }

    let mut args: Vec<OsString> = [
        "-machine",
        "q35",
        "-cpu",
        "max",
        "-accel",
        "tcg",
        "-m",
        "1G",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-drive",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(drive);
    args.extend(
        [
            "-device",
            "virtio-scsi-pci,id=scsi0",
            "-device",
            "scsi-hd,bus=scsi0.0,drive=hd0",
        ]
        .iter()
        .map(OsString::from),
    );
    if let Some(bios) = &options.bios {
        args.push(OsString::from("-bios"));
        args.push(bios.clone().into_os_string());
    }
    args.extend(options.extra_args.iter().cloned());
    args
}

/// The `-virtfs` value sharing host folder `path` over 9p under `mount_tag`,
/// with the options the Gevulot node uses (no uid/gid mapping, inode
/// remapping across host devices).
pub fn virtfs_value(path: &Path, mount_tag: &str, id: &str) -> OsString {
    let mut value = OsString::from("local,path=");
    value.push(escape_option_value(path.as_os_str()));
    value.push(format!(
        ",mount_tag={mount_tag},security_model=none,multidevs=remap,id={id}"
    ));
    value
}

/// QEMU option values separate sub-options with `,`; a literal comma is
/// written `,,`.
pub fn escape_option_value(value: &std::ffi::OsStr) -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let mut escaped = Vec::with_capacity(value.len());
        for &byte in value.as_bytes() {
            escaped.push(byte);
            if byte == b',' {
                escaped.push(b',');
            }
        }
        OsString::from_vec(escaped)
    }
    #[cfg(not(unix))]
    {
        OsString::from(value.to_string_lossy().replace(',', ",,"))
    }
}

/// Boots `image` with `qemu`, writing stdout and stderr to `log_path`, and
/// kills QEMU if it has not exited after `timeout`.
pub fn boot(
    qemu: &Path,
    image: &Path,
    options: &BootOptions,
    log_path: &Path,
    timeout: Duration,
) -> Result<Boot> {
    let log = File::create(log_path)
        .with_context(|| format!("creating console log {}", log_path.display()))?;
    let log_for_stderr = log
        .try_clone()
        .with_context(|| format!("duplicating handle of {}", log_path.display()))?;

    let mut command = Command::new(qemu);
    command
        .args(args(image, options))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr);

    let command_line = format!("{command:?}");
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;

    let end = loop {
        if let Some(status) = child.try_wait().context("waiting for qemu-system-x86_64")? {
            break BootEnd::Exited(status);
        }
        if started.elapsed() >= timeout {
            // The child may exit between try_wait and kill; the kill error
            // is irrelevant then, and wait() below reaps it either way.
            let _ = child.kill();
            child
                .wait()
                .context("reaping qemu-system-x86_64 after the timeout")?;
            break BootEnd::TimedOut;
        }
        thread::sleep(POLL_INTERVAL);
    };
    let elapsed = started.elapsed();

    let bytes = fs::read(log_path)
        .with_context(|| format!("reading console log {}", log_path.display()))?;
    Ok(Boot {
        end,
        console: String::from_utf8_lossy(&bytes).into_owned(),
        elapsed,
        command_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_path_commas_are_escaped() {
        let args = args(Path::new("images/a,b/x.img"), &BootOptions::default());
        assert!(args.contains(&OsString::from(
            "file=images/a,,b/x.img,format=raw,if=none,id=hd0"
        )));
    }

    #[test]
    fn never_uses_kvm_or_nodefaults() {
        let args = args(Path::new("x.img"), &BootOptions::default());
        let joined: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(joined.windows(2).any(|w| w == ["-accel", "tcg"]));
        assert!(!joined.iter().any(|a| a.contains("kvm")));
        assert!(!joined.iter().any(|a| a == "-nodefaults"));
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn default_disk_is_writable_and_nothing_is_appended() {
        let args = strings(&args(Path::new("x.img"), &BootOptions::default()));
        assert!(!args.iter().any(|a| a.contains("readonly")));
        assert_eq!(
            args.last().map(String::as_str),
            Some("scsi-hd,bus=scsi0.0,drive=hd0")
        );
    }

    #[test]
    fn readonly_disk_and_extra_args() {
        let options = BootOptions {
            readonly_disk: true,
            extra_args: vec!["-nic".into(), "none".into()],
            ..BootOptions::default()
        };
        let args = strings(&args(Path::new("x.img"), &options));
        assert!(args.contains(&"file=x.img,format=raw,if=none,id=hd0,readonly=on".to_owned()));
        assert!(args.ends_with(&["-nic".to_owned(), "none".to_owned()]));
    }

    #[test]
    fn bios_comes_before_the_extra_args() {
        let options = BootOptions {
            bios: Some(PathBuf::from("/fw/OVMF.fd")),
            extra_args: vec!["-nic".into(), "none".into()],
            ..BootOptions::default()
        };
        let with_bios = strings(&args(Path::new("x.img"), &options));
        assert!(with_bios.ends_with(&[
            "scsi-hd,bus=scsi0.0,drive=hd0".to_owned(),
            "-bios".to_owned(),
            "/fw/OVMF.fd".to_owned(),
            "-nic".to_owned(),
            "none".to_owned(),
        ]));
        let default = strings(&args(Path::new("x.img"), &BootOptions::default()));
        assert!(!default.iter().any(|a| a == "-bios"));
    }

    #[test]
    fn virtfs_value_escapes_the_path() {
        assert_eq!(
            virtfs_value(Path::new("/w,x/workspace"), "0", "hd1"),
            OsString::from(
                "local,path=/w,,x/workspace,mount_tag=0,security_model=none,multidevs=remap,id=hd1"
            )
        );
    }
}
