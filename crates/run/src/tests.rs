use super::*;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn strings(a: &[OsString]) -> Vec<String> {
    a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
}

/// ops's local shape, as `ops run` builds it (qemu/qemu_unix.go), with TCG, without its
/// virtio-balloon (Nanos cannot attach it under QEMU 10) and with `-no-reboot`.
#[test]
fn the_ops_profile_is_ops_runs_command_line() {
    let mut spec = RunSpec::new("/imgs/a,b.img", Profile::Ops);
    spec.ports = vec!["8080".parse().unwrap(), "2222:22".parse().unwrap()];
    spec.volumes = vec![PathBuf::from("/v/data.vol")];
    spec.shares = vec![Share {
        path: PathBuf::from("/host/ws"),
        tag: 0,
    }];
    spec.extra = vec![OsString::from("-s")];
    assert_eq!(
        strings(&args(&spec, Accel::Tcg)),
        [
            "-machine",
            "q35",
            "-device",
            "pcie-root-port,port=0x10,chassis=1,id=pci.1,bus=pcie.0,multifunction=on,addr=0x3",
            "-device",
            "pcie-root-port,port=0x11,chassis=2,id=pci.2,bus=pcie.0,addr=0x3.0x6",
            "-device",
            "pcie-root-port,port=0x12,chassis=3,id=pci.4,bus=pcie.0,addr=0x3.0x4",
            "-device",
            "virtio-scsi-pci,bus=pci.2,addr=0x0,id=scsi0",
            "-device",
            "scsi-hd,bus=scsi0.0,drive=hd0",
            "-vga",
            "none",
            "-device",
            "isa-debug-exit",
            "-m",
            "2048M",
            "-device",
            "virtio-rng-pci",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-drive",
            "file=/imgs/a,,b.img,format=raw,if=none,id=hd0",
            "-virtfs",
            "local,path=/host/ws,mount_tag=0,security_model=none,multidevs=remap,id=hd0",
            "-drive",
            "file=/v/data.vol,format=raw,if=none,id=hd2",
            "-device",
            "scsi-hd,bus=scsi0.0,drive=hd2",
            "-device",
            "virtio-net,bus=pci.4,addr=0x0,netdev=n0",
            "-netdev",
            "user,id=n0,hostfwd=tcp::8080-:8080,hostfwd=tcp::2222-:22",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-s",
        ]
    );
}

/// The Gevulot v1 node's command line (crates/node/src/vmm/qemu.rs), less its vsock and QMP
/// (which talk to the node), plus `-no-reboot`, with KVM.
#[test]
fn the_gevulot_profile_is_the_nodes_command_line() {
    let mut spec = RunSpec::new("/imgs/prover.img", Profile::Gevulot);
    spec.shares = vec![Share {
        path: PathBuf::from("/w/workspace"),
        tag: 0,
    }];
    spec.firmware = Some(PathBuf::from("/fw/OVMF.fd"));
    assert_eq!(
        strings(&args(&spec, Accel::Kvm)),
        [
            "-machine",
            "q35",
            "-device",
            "pcie-root-port,port=0x10,chassis=1,id=pci.1,bus=pcie.0,multifunction=on,addr=0x3",
            "-device",
            "pcie-root-port,port=0x11,chassis=2,id=pci.2,bus=pcie.0,addr=0x3.0x1",
            "-device",
            "pcie-root-port,port=0x12,chassis=3,id=pci.3,bus=pcie.0,addr=0x3.0x2",
            "-device",
            "virtio-scsi-pci,bus=pci.2,addr=0x0,id=scsi0",
            "-device",
            "scsi-hd,bus=scsi0.0,drive=hd0",
            "-vga",
            "none",
            "-device",
            "isa-debug-exit",
            "-smp",
            "2",
            "-m",
            "2048M",
            "-device",
            "virtio-rng-pci",
            "-accel",
            "kvm",
            "-cpu",
            "max",
            "-drive",
            "file=/imgs/prover.img,format=raw,if=none,id=hd0,readonly=on",
            "-virtfs",
            "local,path=/w/workspace,mount_tag=0,security_model=none,multidevs=remap,id=hd0",
            "-nic",
            "none",
            "-bios",
            "/fw/OVMF.fd",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
        ]
    );
}

#[test]
fn memory_smp_and_ports_follow_the_options() {
    let mut spec = RunSpec::new("i", Profile::Ops);
    assert_eq!(spec.smp, None);
    spec.memory_mib = 512;
    spec.smp = Some(4);
    let a = strings(&args(&spec, Accel::Tcg));
    let at = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
    assert_eq!((at("-m"), at("-smp")), ("512M".into(), "4".into()));
    assert_eq!(at("-netdev"), "user,id=n0");
    assert_eq!(RunSpec::new("i", Profile::Gevulot).smp, Some(2));
    assert!("0".parse::<PortForward>().is_err());
    assert!("x:1".parse::<PortForward>().is_err());
    assert!("70000".parse::<PortForward>().is_err());
    assert_eq!(
        "80:8080".parse::<PortForward>(),
        Ok(PortForward {
            host: 80,
            guest: 8080
        })
    );
}

#[test]
fn kvm_is_used_when_it_can_be_and_tcg_otherwise() {
    assert_eq!(initial_accel(None, KvmDevice::Usable), (Accel::Kvm, None));
    let (a, why) = initial_accel(None, KvmDevice::Missing);
    assert_eq!((a, why), (Accel::Tcg, Some("this host has no /dev/kvm")));
    let (a, why) = initial_accel(None, KvmDevice::NoAccess);
    assert!(a == Accel::Tcg && why.unwrap().contains("kvm group"));
    assert_eq!(
        initial_accel(Some(Accel::Kvm), KvmDevice::Missing),
        (Accel::Kvm, None)
    );
    assert_eq!(
        initial_accel(Some(Accel::Tcg), KvmDevice::Usable),
        (Accel::Tcg, None)
    );
}

/// What QEMU 7.2 printed on this project's build machines, where KVM exists but cannot run
/// the guest.
const MSR_ABORT: &str = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n\
qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";

#[test]
fn a_kvm_failure_before_the_guest_printed_falls_back_to_tcg() {
    assert_eq!(
        kvm_failed(false, false, MSR_ABORT),
        Some("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69")
    );
    assert!(kvm_failed(
        false,
        false,
        "Could not access KVM kernel module: No such file"
    )
    .is_some());
    // Not after the guest ran (a retry would run the program twice), not on success, and
    // not for failures that have nothing to do with KVM.
    assert_eq!(kvm_failed(false, true, MSR_ABORT), None);
    assert_eq!(kvm_failed(true, false, MSR_ABORT), None);
    assert_eq!(
        kvm_failed(
            false,
            false,
            "qemu-system-x86_64: -drive file=x: Could not open 'x'"
        ),
        None
    );
}

/// What QEMU 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1) printed on this project's build
/// machines with `-cpu max` (ARCH_CAPABILITIES is the MSR 0x10a), where KVM exists but
/// cannot run the guest: it still aborts.
const MSR_ABORT_QEMU_10: &str = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069\n\
qemu-system-x86_64: target/i386/kvm/kvm.c:3849: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";

/// What the same QEMU 10 printed there, on its stderr (its stdout, the serial console, stayed
/// empty), once the MSR was left out (`-cpu max,-arch-capabilities`): about 9 s after it
/// started, KVM could not emulate an `xgetbv` of Nanos's, and QEMU stayed alive, paused.
const KVM_INTERNAL_ERROR: &str = "KVM internal error. Suberror: 1
extra data[0]: 0x0000000000000001
extra data[1]: 0xc883c689d0010f0f
extra data[2]: 0x4102ce83cc558906
extra data[3]: 0x0000000000001000
extra data[4]: 0x0000000000000000
extra data[5]: 0x0000000000000000
extra data[6]: 0x0000000000000000
extra data[7]: 0x0000000000000000
emulation failure
RAX=0000000080010013 RBX=0000000000150ea0 RCX=0000000000000000 RDX=00000000001506a0
RSI=0000000000000000 RDI=0000000000000007 RBP=ffffc0000019ffc8 RSP=ffffc0000019ff88
RIP=fffffffff89c3253 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
Code=48 0d 02 00 01 00 0f 22 c0 80 3d d1 53 05 00 00 74 3a 31 c9 <0f> 01 d0 89 c6 83 c8 06
";

#[test]
fn qemu_10_saying_kvm_stopped_the_guest_is_a_kvm_failure() {
    let found: Vec<&str> = KVM_INTERNAL_ERROR
        .lines()
        .filter(|l| kvm_stopped(l))
        .collect();
    assert_eq!(found, ["KVM internal error. Suberror: 1"]);
    assert_eq!(
        kvm_reason(found[0], KVM_INTERNAL_ERROR),
        "KVM internal error. Suberror: 1, emulation failure"
    );
    // Other suberrors, and a failed VM entry, leave QEMU paused just the same.
    assert!(kvm_stopped("KVM internal error. Suberror: 3"));
    assert_eq!(
        kvm_reason(
            "KVM internal error. Suberror: 3",
            "KVM internal error. Suberror: 3\nextra data[0]: 0x1\nRAX=0\n"
        ),
        "KVM internal error. Suberror: 3"
    );
    assert!(kvm_stopped("KVM: entry failed, hardware error 0x80000021"));
    // An abort is seen by its exit instead; QEMU's other complaints are not KVM's.
    assert!(!MSR_ABORT_QEMU_10.lines().any(kvm_stopped));
    assert!(!kvm_stopped(
        "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]"
    ));
    // QEMU 10's abort still falls back as QEMU 7.2's did.
    assert_eq!(
        kvm_failed(false, false, MSR_ABORT_QEMU_10),
        Some("qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069")
    );
}

/// A stand-in QEMU in a folder of its own (removed on drop), and buffers for the console and
/// stderr of [`process::run_from`].
struct FakeQemu {
    dir: PathBuf,
    qemu: PathBuf,
}

impl FakeQemu {
    /// `script` is a shell script's body; `@DIR@` in it is the folder.
    fn new(name: &str, script: &str) -> FakeQemu {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("nanoimg-run-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kvm-internal-error.txt"), KVM_INTERNAL_ERROR).unwrap();
        let qemu = dir.join(QEMU);
        let body = script.replace("@DIR@", dir.to_str().unwrap());
        std::fs::write(&qemu, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeQemu { dir, qemu }
    }

    /// Runs it as `run` would with a usable /dev/kvm: the outcome, the notes, the console, the
    /// stderr shown.
    fn run(
        &self,
        forced: Option<Accel>,
        hold: Duration,
        console: Arc<Mutex<dyn Write + Send>>,
    ) -> (Outcome, Vec<String>, String) {
        let err = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sinks = process::Sinks {
            out: console,
            err: err.clone(),
        };
        let watch = process::Watch {
            hold,
            // Far more than any run here needs; a QEMU not stopped would time out instead.
            timeout: Some(Duration::from_secs(600)),
        };
        let mut notes = Vec::new();
        let spec = RunSpec::new(self.dir.join("image.img"), Profile::Ops);
        let outcome = process::run_from(
            &self.qemu,
            &spec,
            forced.unwrap_or(Accel::Kvm),
            forced,
            watch,
            false,
            &sinks,
            &mut |n| notes.push(n),
        )
        .unwrap();
        let err = String::from_utf8(err.lock().unwrap().clone()).unwrap();
        (outcome, notes, err)
    }

    /// The process id the KVM attempt wrote to `@DIR@/kvm.pid`, and whether that process is
    /// gone.
    fn kvm_attempt_gone(&self) -> bool {
        let pid: i32 = std::fs::read_to_string(self.dir.join("kvm.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }
}

impl Drop for FakeQemu {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The KVM attempt prints its KVM internal error and sleeps forever (as QEMU 10 stays alive,
/// paused); TCG boots.
const STOPS_UNDER_KVM: &str = r#"case "$*" in
  *"-accel kvm"*)
    echo $$ > @DIR@/kvm.pid
    echo 'early line of the KVM boot'
    cat @DIR@/kvm-internal-error.txt >&2
    exec sleep 100000 ;;
  *) echo 'booted with TCG' ;;
esac"#;

const NOTE: &str = "KVM cannot run this guest here (KVM internal error. Suberror: 1, emulation failure); booting with TCG instead (slower; --accel tcg skips the attempt)";

fn buffer() -> Arc<Mutex<Vec<u8>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn text(b: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8(b.lock().unwrap().clone()).unwrap()
}

/// The fallback does not wait for QEMU to die: the paused QEMU is killed and reaped, and the
/// run boots again with TCG, long before the run's timeout (600 s); what the KVM attempt
/// printed, still held back, is dropped, so the console shows the boot once.
#[test]
fn a_qemu_paused_by_a_kvm_internal_error_is_killed_and_tcg_boots() {
    let fake = FakeQemu::new("paused", STOPS_UNDER_KVM);
    let console = buffer();
    let started = std::time::Instant::now();
    let (outcome, notes, err) = fake.run(None, Duration::from_secs(3600), console.clone());
    assert!(started.elapsed() < Duration::from_secs(300));
    assert_eq!(outcome, Outcome::PoweredOff);
    assert_eq!(notes, [NOTE]);
    assert_eq!(text(&console), "booted with TCG\n");
    // QEMU's register dump was only the failed attempt's.
    assert_eq!(err, "");
    assert!(fake.kvm_attempt_gone());
}

/// When the console output of the KVM attempt was shown already (after `CONSOLE_HOLD`), the
/// TCG boot starts on a line of its own and the note says where.
#[test]
fn console_output_shown_before_kvm_stopped_the_guest_is_said_to_be_the_kvm_boots() {
    // The console goes to a file the script reads: it fails only once its line is shown.
    let fake = FakeQemu::new(
        "shown",
        r#"case "$*" in
  *"-accel kvm"*)
    echo $$ > @DIR@/kvm.pid
    printf 'partial line of the KVM boot'
    while ! grep -q 'partial line' @DIR@/console.txt; do sleep 0.05; done
    cat @DIR@/kvm-internal-error.txt >&2
    exec sleep 100000 ;;
  *) echo 'booted with TCG' ;;
esac"#,
    );
    let path = fake.dir.join("console.txt");
    let file = std::fs::File::create(&path).unwrap();
    let (outcome, notes, err) = fake.run(None, Duration::ZERO, Arc::new(Mutex::new(file)));
    assert_eq!(outcome, Outcome::PoweredOff);
    assert_eq!(
        notes,
        [format!("{NOTE}; the console output above came from the stopped KVM boot, the TCG boot's follows")]
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "partial line of the KVM boot\nbooted with TCG\n"
    );
    assert_eq!(err, "");
    assert!(fake.kvm_attempt_gone());
}

/// With `--accel kvm` there is nothing to fall back to: the paused QEMU is killed all the
/// same (instead of waiting for the timeout), QEMU's messages are shown, and it failed.
#[test]
fn forced_kvm_that_stops_the_guest_fails_without_waiting() {
    let fake = FakeQemu::new("forced", STOPS_UNDER_KVM);
    let console = buffer();
    let (outcome, notes, err) = fake.run(Some(Accel::Kvm), CONSOLE_HOLD, console.clone());
    assert_eq!(outcome, Outcome::QemuFailed(None));
    assert_eq!(
        notes,
        ["KVM stopped the guest (KVM internal error. Suberror: 1, emulation failure) and QEMU waited, paused, so it was stopped (--accel tcg boots with TCG)"]
    );
    assert_eq!(text(&console), "early line of the KVM boot\n");
    assert_eq!(err, KVM_INTERNAL_ERROR);
    assert!(fake.kvm_attempt_gone());
}

/// The QEMU that aborts (7.2 and 10 with `-cpu max` there) falls back as before; a KVM that
/// works shows its console (held back for `CONSOLE_HOLD` at most) and QEMU's warnings.
#[test]
fn an_aborting_qemu_falls_back_and_a_working_kvm_is_shown() {
    let fake = FakeQemu::new(
        "abort",
        r#"case "$*" in
  *"-accel kvm"*) echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069' >&2; kill -ABRT $$ ;;
  *) echo 'booted with TCG' ;;
esac"#,
    );
    let console = buffer();
    let (outcome, notes, err) = fake.run(None, CONSOLE_HOLD, console.clone());
    assert_eq!(outcome, Outcome::PoweredOff);
    assert_eq!(
        notes,
        ["KVM cannot run this guest here (qemu-system-x86_64: error: failed to set MSR 0x10a to 0xc000069); booting with TCG instead (slower; --accel tcg skips the attempt)"]
    );
    assert_eq!(text(&console), "booted with TCG\n");
    assert_eq!(err, "");

    let fake = FakeQemu::new(
        "works",
        "echo 'qemu-system-x86_64: warning: a warning' >&2; echo 'booted with KVM'; echo 'bye'",
    );
    let console = buffer();
    let (outcome, notes, err) = fake.run(None, Duration::from_secs(3600), console.clone());
    assert_eq!(outcome, Outcome::PoweredOff);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(text(&console), "booted with KVM\nbye\n");
    assert_eq!(err, "qemu-system-x86_64: warning: a warning\n");
}

/// ops's local run of an arm64 image (qemu/qemu_unix.go, its non-x86 branch): virt with
/// GICv2, `-kernel`, the disk on virtio-blk-pci, `-semihosting`.
#[test]
fn an_aarch64_image_runs_in_ops_shape_with_its_kernel() {
    let mut spec = RunSpec::new("/imgs/a.img", Profile::Ops);
    spec.arch = Arch::Aarch64;
    spec.kernel = Some(PathBuf::from("/cache/kernels/kernel-ab.img"));
    spec.ports = vec!["8080".parse().unwrap()];
    spec.volumes = vec![PathBuf::from("/v/data.vol")];
    spec.shares = vec![Share {
        path: PathBuf::from("/host/ws"),
        tag: 0,
    }];
    assert_eq!(
        strings(&args(&spec, Accel::Tcg)),
        [
            "-machine",
            "virt",
            "-machine",
            "gic-version=2",
            "-kernel",
            "/cache/kernels/kernel-ab.img",
            "-drive",
            "file=/imgs/a.img,format=raw,if=none,id=hd0",
            "-device",
            "virtio-blk-pci,drive=hd0",
            "-m",
            "2048M",
            "-device",
            "virtio-rng-pci",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-virtfs",
            "local,path=/host/ws,mount_tag=0,security_model=none,multidevs=remap,id=hd0",
            "-drive",
            "file=/v/data.vol,format=raw,if=none,id=hd2",
            "-device",
            "virtio-blk-pci,drive=hd2",
            "-device",
            "virtio-net-pci,netdev=n0",
            "-netdev",
            "user,id=n0,hostfwd=tcp::8080-:8080",
            "-semihosting",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
        ]
    );
    // Through UEFI: the firmware instead of -kernel, and no high memory (AAVMF hangs
    // after loading Nanos with it).
    spec.kernel = None;
    spec.firmware = Some(PathBuf::from("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"));
    let a = strings(&args(&spec, Accel::Tcg));
    assert_eq!(
        a[..6],
        [
            "-machine",
            "virt",
            "-machine",
            "gic-version=2",
            "-machine",
            "highmem=off"
        ]
    );
    assert!(!a.contains(&"-kernel".to_string()));
    let bios = a.iter().position(|x| x == "-bios").unwrap();
    assert_eq!(a[bios + 1], "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd");
    // A foreign guest never starts under KVM.
    if host_arch() == Some(Arch::X86_64) {
        assert_eq!(
            accel_for(None, Arch::Aarch64, KvmDevice::Usable).0,
            Accel::Tcg
        );
        assert_eq!(
            accel_for(None, Arch::X86_64, KvmDevice::Usable).0,
            Accel::Kvm
        );
    }
}

#[test]
fn the_exit_status_tells_the_programs_code_only_with_debug_exit() {
    let x86 = |s, d, said| outcome(s, d, said, Arch::X86_64);
    assert_eq!(x86(Some(0), true, ""), Outcome::PoweredOff);
    assert_eq!(x86(Some(0), false, ""), Outcome::PoweredOff);
    // isa-debug-exit: QEMU exits with code << 1 | 1.
    assert_eq!(x86(Some(7), true, ""), Outcome::Exited(3));
    assert_eq!(x86(Some(1), true, ""), Outcome::Exited(0));
    assert_eq!(x86(Some(7), false, ""), Outcome::QemuFailed(Some(7)));
    // QEMU's own failure (exit 1 with a complaint) is not "the program exited 0".
    assert_eq!(
        x86(
            Some(1),
            true,
            "qemu-system-x86_64: -drive x: Could not open\n"
        ),
        Outcome::QemuFailed(Some(1))
    );
    assert_eq!(x86(None, true, ""), Outcome::QemuFailed(None));
    // aarch64: a semihosting exit, QEMU exits with the code itself.
    let arm = |s, d, said| outcome(s, d, said, Arch::Aarch64);
    assert_eq!(arm(Some(3), true, ""), Outcome::Exited(3));
    assert_eq!(arm(Some(0), true, ""), Outcome::Exited(0));
    assert_eq!(arm(Some(0), false, ""), Outcome::PoweredOff);
    assert_eq!(arm(Some(3), false, ""), Outcome::QemuFailed(Some(3)));
    assert_eq!(
        arm(
            Some(1),
            true,
            "qemu-system-aarch64: -drive x: Could not open\n"
        ),
        Outcome::QemuFailed(Some(1))
    );
}

#[test]
fn arguments_are_quoted_for_the_shell_only_when_needed() {
    let q = |s: &str| shell_quote(OsStr::new(s));
    assert_eq!(q("-device"), "-device");
    assert_eq!(q("file=/a/b.img,format=raw"), "file=/a/b.img,format=raw");
    assert_eq!(q("/my images/x.img"), "'/my images/x.img'");
    assert_eq!(q("it's"), r"'it'\''s'");
    assert_eq!(q(""), "''");
}

#[test]
fn qemu_and_firmware_are_found_or_named_with_their_package() {
    let d = std::env::temp_dir().join(format!("nanoimg-run-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let e = find_qemu(Some(d.as_os_str()), Arch::X86_64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Debian package qemu-system-x86"), "{e}");
    let e = find_qemu(Some(d.as_os_str()), Arch::Aarch64)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("qemu-system-aarch64 not found") && e.contains("package qemu-system-arm"),
        "{e}"
    );
    let fake = d.join(QEMU);
    std::fs::write(&fake, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths([Path::new("/nonexistent"), &d]).unwrap();
    assert_eq!(find_qemu(Some(&path), Arch::X86_64).unwrap(), fake);

    let e = find_ovmf(None, &["/nonexistent/OVMF.fd"], Arch::X86_64)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Debian package ovmf") && e.contains("/nonexistent/OVMF.fd"),
        "{e}"
    );
    let e = find_ovmf(None, &["/nonexistent/QEMU_EFI.fd"], Arch::Aarch64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Debian package qemu-efi-aarch64"), "{e}");
    let e = find_ovmf(Some(&d.join("nope.fd")), &[], Arch::X86_64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.fd does not exist"), "{e}");
    let fw = d.join("OVMF.fd");
    std::fs::write(&fw, b"fw").unwrap();
    assert_eq!(
        find_ovmf(None, &["/nonexistent", fw.to_str().unwrap()], Arch::X86_64).unwrap(),
        fw
    );
    std::fs::remove_dir_all(&d).unwrap();
}
