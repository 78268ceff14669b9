//! Booting a Nanos image under QEMU the way its platform will.
//!
//! - [`args`] builds the QEMU command line of a [`RunSpec`]: [`Profile::Ops`] is `ops run`'s
//!   local shape (ops's `qemu/qemu_unix.go`: q35 with three PCIe root ports, the disk on
//!   virtio-scsi, `isa-debug-exit`, virtio-rng, user-mode networking with `hostfwd` ports,
//!   2 GiB); [`Profile::Gevulot`] is the Gevulot v1 node's command line
//!   (`crates/node/src/vmm/qemu.rs` `start_vm`: the disk read-only, no NIC, the workspace
//!   over 9p with mount tag 0, 2 vCPUs and 2048 MiB unless given).
//! - Two departures on every command line: `-no-reboot` (neither ops nor the node passes it):
//!   a guest that resets, as Nanos does on `reboot_on_exit` or a triple fault, ends the run
//!   instead of booting again and again until the timeout; and no virtio-balloon (ops passes
//!   `-device virtio-balloon`, but Nanos 0.1.55 cannot attach it under QEMU 10, on either
//!   machine, with ops's own command line as with nanoimg's: "vtbln failed to attach:
//!   (status:failed to find free MSI-X slot)" on every boot).
//! - An aarch64 image boots as ops's local run boots one (its non-x86 branch of
//!   `qemu/qemu_unix.go`): `qemu-system-aarch64 -machine virt -machine gic-version=2 -cpu max`,
//!   the kernel given with `-kernel` (taken out of the image's boot filesystem), the disk on
//!   virtio-blk-pci, `-semihosting` (with `debug_exit`, QEMU then exits with the program's
//!   code); a UEFI image boots through the AAVMF firmware instead, with `highmem=off` (AAVMF
//!   hangs after loading Nanos with more than 1 GiB of guest memory otherwise).
//! - [`find_qemu`] and [`find_ovmf`] find the emulator and the UEFI firmware, or say which
//!   Debian package provides them.
//! - [`initial_accel`], [`kvm_failed`] and [`kvm_stopped`] decide between KVM and TCG: KVM
//!   when `/dev/kvm` is usable, and TCG again when QEMU dies under KVM before the guest
//!   printed anything (as QEMU 7.2, and QEMU 10 with `-cpu max`, do on hosts where KVM
//!   cannot set the guest's MSR 0x10a), or says on its stderr that KVM stopped the guest and
//!   stays alive, paused (QEMU 10 on the same hosts with a CPU model without that MSR: "KVM
//!   internal error. Suberror: 1", "emulation failure"): that QEMU is killed.
//! - [`run`] starts QEMU with the serial console on stdout, stops it at a timeout or an
//!   interrupt, and [`Outcome`] tells the program's exit code when the image lets Nanos report
//!   it (`debug_exit` in the manifest makes the kernel write it to the `isa-debug-exit` port,
//!   `src/kernel/init.c`; QEMU then exits with `code << 1 | 1`).
//! - [`missing`] (`nanoimg run --missing-files`): the kernel's list of the files the program
//!   could not open, read from the console as it passes ([`run_scanning`]), and for each name
//!   where the build's target root has it and the config line that packs it.

mod image;
pub mod missing;
mod process;

pub use image::{extract_kernel, image_facts, ImageError, ImageFacts};
pub use nanoimg_elf::Arch;
pub use process::{run, run_scanning, Outcome, RunError, CONSOLE_HOLD};

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Which platform's command line to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `ops run` on a local machine.
    Ops,
    /// A Gevulot v1 node running a prover or verifier.
    Gevulot,
}

/// The accelerator QEMU runs the guest with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// A host port forwarded to the guest (ops's `-p`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortForward {
    pub host: u16,
    pub guest: u16,
}

impl std::str::FromStr for PortForward {
    type Err = String;

    /// `PORT` (the same on both sides, as ops's `-p`) or `HOST:GUEST`.
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{s:?} is not a port (PORT or HOST:GUEST, 1-65535)"))
        };
        match s.split_once(':') {
            Some((h, g)) => Ok(PortForward {
                host: port(h)?,
                guest: port(g)?,
            }),
            None => {
                let p = port(s)?;
                Ok(PortForward { host: p, guest: p })
            }
        }
    }
}

/// A host folder shared over 9p; Nanos mounts it where the manifest's `mounts` names `%TAG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub path: PathBuf,
    pub tag: u32,
}

/// Everything that shapes one QEMU command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub image: PathBuf,
    pub profile: Profile,
    /// The image's architecture (its kernel's).
    pub arch: Arch,
    /// aarch64 without UEFI: the kernel QEMU loads (`-kernel`), taken from the image.
    pub kernel: Option<PathBuf>,
    /// QEMU's name for the image's container format (`raw`, `qcow2`, `vpc`, `vmdk`, `vhdx`).
    pub disk_format: &'static str,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// vCPUs (`-smp`); `None` leaves QEMU's default of one.
    pub smp: Option<u32>,
    /// Host ports forwarded to the guest (ops profile only: the Gevulot node has no NIC).
    pub ports: Vec<PortForward>,
    /// Data volumes attached as further disks.
    pub volumes: Vec<PathBuf>,
    /// Host folders shared over 9p.
    pub shares: Vec<Share>,
    /// UEFI firmware passed with `-bios` (OVMF, AAVMF); `None` boots through SeaBIOS
    /// (x86_64) or the `-kernel` (aarch64).
    pub firmware: Option<PathBuf>,
    /// Appended as given (`nanoimg run IMAGE -- ...`).
    pub extra: Vec<OsString>,
}

/// ops's default memory (`lepton/config.go`: `RunConfig.Memory = "2G"`), and the Gevulot
/// node's default (`ResourceRequest::default`: 2048 MiB).
pub const DEFAULT_MEMORY_MIB: u64 = 2048;
/// The Gevulot node's default vCPUs.
pub const GEVULOT_SMP: u32 = 2;

impl RunSpec {
    /// The defaults of `profile` for `image`, an x86_64 image.
    pub fn new(image: impl Into<PathBuf>, profile: Profile) -> RunSpec {
        RunSpec {
            image: image.into(),
            profile,
            arch: Arch::X86_64,
            kernel: None,
            disk_format: "raw",
            memory_mib: DEFAULT_MEMORY_MIB,
            smp: (profile == Profile::Gevulot).then_some(GEVULOT_SMP),
            ports: Vec::new(),
            volumes: Vec::new(),
            shares: Vec::new(),
            firmware: None,
            extra: Vec::new(),
        }
    }
}

/// QEMU option values separate sub-options with `,`; a literal comma is written `,,`.
pub fn escape_value(value: &OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn join(parts: &[&OsStr]) -> OsString {
    parts.iter().copied().collect()
}

fn drive(path: &Path, format: &str, id: &str, readonly: bool) -> OsString {
    let mut d = join(&["file=".as_ref(), &escape_value(path.as_os_str())]);
    d.push(format!(",format={format},if=none,id={id}"));
    if format == "vmdk" {
        // QEMU cannot write a stream-optimized VMDK in place ("Could not write to allocated
        // cluster for streamOptimized"): the guest's writes go to a temporary overlay.
        d.push(",snapshot=on");
    }
    if readonly {
        d.push(",readonly=on");
    }
    d
}

fn virtfs(share: &Share) -> OsString {
    let mut v = join(&[
        "local,path=".as_ref(),
        &escape_value(share.path.as_os_str()),
    ]);
    v.push(format!(
        ",mount_tag={tag},security_model=none,multidevs=remap,id=hd{tag}",
        tag = share.tag
    ));
    v
}

/// The QEMU arguments (without the program name) that boot `spec` with `accel`.
pub fn args(spec: &RunSpec, accel: Accel) -> Vec<OsString> {
    match spec.arch {
        Arch::X86_64 => args_x86_64(spec, accel),
        Arch::Aarch64 => args_aarch64(spec, accel),
    }
}

/// ops's local run of an aarch64 image (`qemu/qemu_unix.go`, its non-x86 branch), with the
/// Gevulot profile's read-only disk and missing NIC when asked for. Further disks go on
/// virtio-blk-pci too (ops puts them on a virtio-scsi bus the virt machine does not have).
fn args_aarch64(spec: &RunSpec, accel: Accel) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let gevulot = spec.profile == Profile::Gevulot;
    push(&mut a, &["-machine", "virt", "-machine", "gic-version=2"]);
    if spec.firmware.is_some() {
        push(&mut a, &["-machine", "highmem=off"]);
    }
    if let Some(k) = &spec.kernel {
        a.push("-kernel".into());
        a.push(k.clone().into_os_string());
    }
    a.push("-drive".into());
    a.push(drive(&spec.image, spec.disk_format, "hd0", gevulot));
    push(&mut a, &["-device", "virtio-blk-pci,drive=hd0"]);
    resources(&mut a, spec, accel);
    attachments(&mut a, spec, "virtio-blk-pci", "virtio-net-pci,netdev=n0");
    push(
        &mut a,
        &[
            "-semihosting",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
        ],
    );
    a.extend(spec.extra.iter().cloned());
    a
}

fn push(a: &mut Vec<OsString>, items: &[&str]) {
    a.extend(items.iter().map(OsString::from));
}

/// vCPUs, memory, the RNG device, the accelerator and CPU (both machines). ops adds
/// `-device virtio-balloon` here (both machines), which Nanos fails to attach under QEMU 10
/// ("failed to find free MSI-X slot"); it is left out.
fn resources(a: &mut Vec<OsString>, spec: &RunSpec, accel: Accel) {
    if let Some(n) = spec.smp {
        push(a, &["-smp", &n.to_string()]);
    }
    push(a, &["-m", &format!("{}M", spec.memory_mib)]);
    push(a, &["-device", "virtio-rng-pci"]);
    push(a, &["-accel", accel.name(), "-cpu", "max"]);
}

/// The 9p shares, further disks (`volume_device`, given `drive=ID`), the network (`nic`, or
/// none for the Gevulot profile) and the firmware (both machines).
fn attachments(a: &mut Vec<OsString>, spec: &RunSpec, volume_device: &str, nic: &str) {
    for share in &spec.shares {
        a.push("-virtfs".into());
        a.push(virtfs(share));
    }
    for (i, volume) in spec.volumes.iter().enumerate() {
        let id = format!("hd{}", i + 1 + spec.shares.len());
        a.push("-drive".into());
        a.push(drive(volume, "raw", &id, false));
        a.push("-device".into());
        a.push(format!("{volume_device},drive={id}").into());
    }
    if spec.profile == Profile::Gevulot {
        push(a, &["-nic", "none"]);
    } else {
        push(a, &["-device", nic, "-netdev", &user_netdev(&spec.ports)]);
    }
    if let Some(fw) = &spec.firmware {
        a.push("-bios".into());
        a.push(fw.clone().into_os_string());
    }
}

fn user_netdev(ports: &[PortForward]) -> String {
    let mut netdev = String::from("user,id=n0");
    for p in ports {
        netdev.push_str(&format!(",hostfwd=tcp::{}-:{}", p.host, p.guest));
    }
    netdev
}

fn args_x86_64(spec: &RunSpec, accel: Accel) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let gevulot = spec.profile == Profile::Gevulot;
    push(&mut a, &["-machine", "q35"]);
    // The node's three PCIe root ports (ops uses the same ports; its third is pci.4 at 0x3.0x4,
    // where the node has pci.3 at 0x3.0x2).
    push(
        &mut a,
        &[
            "-device",
            "pcie-root-port,port=0x10,chassis=1,id=pci.1,bus=pcie.0,multifunction=on,addr=0x3",
            "-device",
            if gevulot {
                "pcie-root-port,port=0x11,chassis=2,id=pci.2,bus=pcie.0,addr=0x3.0x1"
            } else {
                "pcie-root-port,port=0x11,chassis=2,id=pci.2,bus=pcie.0,addr=0x3.0x6"
            },
            "-device",
            if gevulot {
                "pcie-root-port,port=0x12,chassis=3,id=pci.3,bus=pcie.0,addr=0x3.0x2"
            } else {
                "pcie-root-port,port=0x12,chassis=3,id=pci.4,bus=pcie.0,addr=0x3.0x4"
            },
            "-device",
            "virtio-scsi-pci,bus=pci.2,addr=0x0,id=scsi0",
            "-device",
            "scsi-hd,bus=scsi0.0,drive=hd0",
            "-vga",
            "none",
            "-device",
            "isa-debug-exit",
        ],
    );
    resources(&mut a, spec, accel);
    a.push("-drive".into());
    a.push(drive(&spec.image, spec.disk_format, "hd0", gevulot));
    // ops's user-mode network: virtio-net on the third root port, forwards on the netdev.
    attachments(
        &mut a,
        spec,
        "scsi-hd,bus=scsi0.0",
        "virtio-net,bus=pci.4,addr=0x0,netdev=n0",
    );
    // A reset ends the run (ops and the node pass no -no-reboot; QEMU would boot again).
    push(
        &mut a,
        &["-no-reboot", "-display", "none", "-serial", "stdio"],
    );
    a.extend(spec.extra.iter().cloned());
    a
}

/// `arg` quoted for a POSIX shell (left bare when that is safe).
pub fn shell_quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if safe {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The emulator for x86_64 guests.
pub const QEMU: &str = "qemu-system-x86_64";

/// The emulator for `arch` guests, and the Debian package that has it.
pub fn qemu_for(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::X86_64 => (QEMU, "qemu-system-x86"),
        Arch::Aarch64 => ("qemu-system-aarch64", "qemu-system-arm"),
    }
}

/// Finds the emulator for `arch` guests ([`qemu_for`]) in `path` (a `PATH` value).
pub fn find_qemu(path: Option<&OsStr>, arch: Arch) -> Result<PathBuf, RunError> {
    use std::os::unix::fs::PermissionsExt;
    let (name, package) = qemu_for(arch);
    std::env::split_paths(path.unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or(RunError::NoQemu {
            qemu: name,
            package,
        })
}

/// Where distributions put the aarch64 UEFI firmware (AAVMF) in a form `-bios` takes:
/// Debian and Ubuntu (`qemu-efi-aarch64`), Fedora and Arch (`edk2-aarch64`), QEMU's own share
/// folder.
pub const AAVMF_CANDIDATES: [&str; 4] = [
    "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
    "/usr/share/edk2/aarch64/QEMU_EFI.fd",
    "/usr/share/edk2-armvirt/aarch64/QEMU_EFI.fd",
    "/usr/share/qemu/edk2-aarch64-code.fd",
];

/// The UEFI firmware candidates for `arch` and the Debian package that has them.
pub fn firmware_for(arch: Arch) -> (&'static [&'static str], &'static str) {
    match arch {
        Arch::X86_64 => (&OVMF_CANDIDATES, "ovmf"),
        Arch::Aarch64 => (&AAVMF_CANDIDATES, "qemu-efi-aarch64"),
    }
}

/// Where distributions put an OVMF image that works with `-bios`: Debian and Ubuntu
/// (`ovmf`), Fedora (`edk2-ovmf`), Arch (`edk2-ovmf`), and QEMU's own share folder.
pub const OVMF_CANDIDATES: [&str; 8] = [
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/OVMF/OVMF.fd",
    "/usr/share/OVMF/OVMF_CODE.fd",
    "/usr/share/edk2/ovmf/OVMF_CODE.fd",
    "/usr/share/edk2/x64/OVMF.fd",
    "/usr/share/edk2-ovmf/x64/OVMF.fd",
    "/usr/share/edk2/x64/OVMF.4m.fd",
    "/usr/share/qemu/OVMF.fd",
];

/// The UEFI firmware for `arch` (OVMF, AAVMF): `explicit` (which must exist), else the first
/// of `candidates` (see [`firmware_for`]).
pub fn find_ovmf(
    explicit: Option<&Path>,
    candidates: &[&str],
    arch: Arch,
) -> Result<PathBuf, RunError> {
    let (known, package) = firmware_for(arch);
    match explicit {
        Some(p) if p.is_file() => Ok(p.to_path_buf()),
        Some(p) => Err(RunError::NoFirmwareFile {
            path: p.to_path_buf(),
            name: match arch {
                Arch::X86_64 => "OVMF",
                Arch::Aarch64 => "AAVMF",
            },
            package,
            example: known[0],
        }),
        None => candidates
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| RunError::NoOvmf {
                looked: candidates.join(", "),
                package,
            }),
    }
}

/// What this host offers for KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmDevice {
    /// `/dev/kvm` is there and readable and writable.
    Usable,
    /// `/dev/kvm` is there but this user may not open it.
    NoAccess,
    /// No `/dev/kvm`.
    Missing,
}

/// Looks at `/dev/kvm`.
pub fn kvm_device() -> KvmDevice {
    let path = c"/dev/kvm";
    // SAFETY: access reads a NUL-terminated path and has no other effect.
    if unsafe { libc::access(path.as_ptr(), libc::R_OK | libc::W_OK) } == 0 {
        KvmDevice::Usable
    } else if Path::new("/dev/kvm").exists() {
        KvmDevice::NoAccess
    } else {
        KvmDevice::Missing
    }
}

/// The accelerator to start with, and why TCG when it is TCG by default. `forced` is
/// `--accel`; without it, KVM when `/dev/kvm` is usable (and [`kvm_failed`] may still send
/// the run back to TCG).
pub fn initial_accel(forced: Option<Accel>, device: KvmDevice) -> (Accel, Option<&'static str>) {
    match (forced, device) {
        (Some(a), _) => (a, None),
        (None, KvmDevice::Usable) => (Accel::Kvm, None),
        (None, KvmDevice::NoAccess) => (
            Accel::Tcg,
            Some("/dev/kvm is not readable and writable by this user (add it to the kvm group)"),
        ),
        (None, KvmDevice::Missing) => (Accel::Tcg, Some("this host has no /dev/kvm")),
    }
}

/// The architecture of the machine nanoimg runs on, if Nanos runs on it.
pub fn host_arch() -> Option<Arch> {
    if cfg!(target_arch = "x86_64") {
        Some(Arch::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(Arch::Aarch64)
    } else {
        None
    }
}

/// [`initial_accel`] for a guest of `arch`: a guest of another architecture than the host's
/// runs under TCG (KVM runs only the host's own).
pub fn accel_for(
    forced: Option<Accel>,
    arch: Arch,
    device: KvmDevice,
) -> (Accel, Option<&'static str>) {
    match (forced, host_arch() == Some(arch)) {
        (None, false) => (
            Accel::Tcg,
            Some("the guest's architecture is not this host's, which KVM cannot run"),
        ),
        _ => initial_accel(forced, device),
    }
}

/// The line of QEMU's stderr that says KVM stopped the guest while QEMU goes on living
/// (paused, for a monitor that `nanoimg run` does not give it): "KVM internal error.
/// Suberror: 1" (QEMU 10 on hosts whose KVM cannot emulate an instruction of the guest's,
/// followed by "emulation failure" and a register dump), or "KVM: entry failed, hardware
/// error" (the CPU refused to enter the guest). QEMU prints them on its stderr, not on the
/// serial console (stdout; checked with QEMU 10.0.2's internal error), so only stderr is
/// watched and a guest printing these words is not taken for them.
pub fn kvm_stopped(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("kvm internal error") || l.contains("kvm: entry failed")
}

/// The one line that says why the KVM attempt was given up, for the note: `line` (from
/// [`kvm_stopped`] or [`kvm_failed`]) and, when the next line of `stderr` is QEMU's
/// "emulation failure", that too.
pub fn kvm_reason(line: &str, stderr: &str) -> String {
    let line = line.trim();
    let mut lines = stderr.lines().map(str::trim);
    let next = lines
        .position(|l| l == line)
        .and_then(|_| lines.find(|l| !l.to_ascii_lowercase().starts_with("extra data")));
    match next {
        Some(n) if n.eq_ignore_ascii_case("emulation failure") => format!("{line}, {n}"),
        _ => line.to_string(),
    }
}

/// Whether a QEMU that ended with `success == false` under KVM, before the guest printed
/// anything, failed because of KVM (so the same boot under TCG is worth a try): its stderr
/// names KVM, as in "failed to set MSR 0x10a" or "Could not access KVM kernel module".
/// Returns the line that says so.
pub fn kvm_failed(success: bool, console_written: bool, stderr: &str) -> Option<&str> {
    if success || console_written {
        return None;
    }
    stderr.lines().find(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("failed to set msr") || l.contains("kvm")
    })
}

/// How the guest's end is read from QEMU's exit status. `debug_exit` says whether the image's
/// manifest has `debug_exit`; `qemu_said` is QEMU's own stderr. On x86_64 Nanos writes the
/// code to `isa-debug-exit` (QEMU exits with `code << 1 | 1`); on aarch64 it makes a
/// semihosting exit call (QEMU exits with the code itself).
pub fn outcome(status: Option<i32>, debug_exit: bool, qemu_said: &str, arch: Arch) -> Outcome {
    let complained = qemu_said
        .lines()
        .any(|l| l.starts_with(QEMU) || l.starts_with("qemu-system"));
    if arch == Arch::Aarch64 {
        return match status {
            Some(s) if debug_exit && !(s == 1 && complained) => Outcome::Exited(s),
            Some(0) => Outcome::PoweredOff,
            Some(s) => Outcome::QemuFailed(Some(s)),
            None => Outcome::QemuFailed(None),
        };
    }
    match status {
        Some(0) => Outcome::PoweredOff,
        Some(s) if debug_exit && s % 2 == 1 && !(s == 1 && complained) => Outcome::Exited(s >> 1),
        Some(s) => Outcome::QemuFailed(Some(s)),
        None => Outcome::QemuFailed(None),
    }
}

#[cfg(test)]
mod tests;
