use super::*;

fn strings(a: &[OsString]) -> Vec<String> {
    a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
}

/// ops's local shape, as `ops run` builds it (qemu/qemu_unix.go), with TCG.
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
            "-device",
            "virtio-balloon",
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
            "-display",
            "none",
            "-serial",
            "stdio",
            "-s",
        ]
    );
}

/// The Gevulot v1 node's command line (crates/node/src/vmm/qemu.rs), less its vsock and QMP
/// (which talk to the node), with TCG.
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
            "-device",
            "virtio-balloon",
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
