//! The QEMU command line, built without starting anything.

use super::*;

fn spec(accel: Accel, virtiofs: bool) -> QemuSpec {
    QemuSpec {
        accel,
        memory_mib: 256,
        kernel: PathBuf::from("/host/images/k/vmlinuz"),
        initrd: PathBuf::from("/host/images/k/agents/x.cpio"),
        rootfs: PathBuf::from("/host/images/k/rootfs.ext4"),
        run_dir: PathBuf::from("/host/run/vm-1"),
        virtiofs,
        id: jail::Identity {
            uid: 65534,
            gid: 65534,
        },
    }
}

/// The value following `flag` (the first occurrence).
fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing from {args:?}"));
    &args[i + 1]
}

/// Every value following `flag`.
fn all_after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn microvm_without_defaults_user_config_or_network() {
    for accel in [Accel::Tcg, Accel::Kvm] {
        let args = spec(accel, true).args();
        assert!(after(&args, "-M").starts_with("microvm,"), "{args:?}");
        assert_eq!(after(&args, "-accel"), accel.name());
        assert!(args.iter().any(|a| a == "-nodefaults"));
        assert!(args.iter().any(|a| a == "-no-user-config"));
        assert_eq!(after(&args, "-display"), "none");
        let sandbox = after(&args, "-sandbox");
        assert!(sandbox.starts_with("on,"), "{sandbox}");
        for deny in [
            "obsolete=deny",
            "elevateprivileges=deny",
            "spawn=deny",
            "resourcecontrol=deny",
        ] {
            assert!(sandbox.split(',').any(|o| o == deny), "{deny}: {sandbox}");
        }
        // No network: no NIC, netdev or user-mode stack of any kind.
        for flag in ["-net", "-netdev", "-nic"] {
            assert!(!args.iter().any(|a| a == flag), "{flag} in {args:?}");
        }
        for device in all_after(&args, "-device") {
            assert!(!device.contains("net"), "network device {device}");
        }
        // The root is read-only; QEMU sees only its jail's paths.
        assert!(all_after(&args, "-drive")
            .iter()
            .all(|d| d.contains("readonly=on")));
        assert_eq!(after(&args, "-kernel"), JAIL_KERNEL);
        assert_eq!(after(&args, "-initrd"), JAIL_INITRD);
        assert!(!args.iter().any(|a| a.contains("/host/")), "{args:?}");
    }
}

#[test]
fn tcg_gets_a_tsc_frequency_and_no_guest_aslr() {
    let tcg = spec(Accel::Tcg, true);
    let cmdline = after(&tcg.args(), "-append").to_owned();
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let khz = words
        .iter()
        .find_map(|w| w.strip_prefix("tsc_early_khz="))
        .unwrap_or_else(|| panic!("no tsc_early_khz in {cmdline}"));
    assert!(khz.parse::<u64>().unwrap() > 100_000, "{khz}");
    assert!(words.contains(&crate::vm::guest::ASLR_OFF));
    assert!(!tcg.guest_aslr());
    assert!(!tcg.args().iter().any(|a| a == "-cpu"));

    let kvm = spec(Accel::Kvm, true);
    let cmdline = after(&kvm.args(), "-append").to_owned();
    assert!(!cmdline.contains("tsc_early_khz"), "{cmdline}");
    assert!(!cmdline.contains(crate::vm::guest::ASLR_OFF), "{cmdline}");
    assert!(kvm.guest_aslr());
    assert_eq!(after(&kvm.args(), "-cpu"), "host,-arch-capabilities");
}

#[test]
fn the_workspace_device_only_when_asked() {
    let with = spec(Accel::Tcg, true).args();
    assert!(after(&with, "-append").contains("stele.ws=1"));
    assert!(all_after(&with, "-device")
        .iter()
        .any(|d| d.starts_with("vhost-user-fs-device,") && d.contains("tag=stele-ws")));
    let without = spec(Accel::Tcg, false).args();
    assert!(!after(&without, "-append").contains("stele.ws"));
    assert!(!all_after(&without, "-device")
        .iter()
        .any(|d| d.contains("vhost-user-fs")));
    // The agent's port is always there, under the protocol's name.
    assert!(all_after(&without, "-device")
        .iter()
        .any(|d| d.starts_with("virtserialport,") && d.ends_with("name=stele")));
}
