//! What the workspace may hold, on a real FUSE mount driven by root on the
//! host (as a micro-VM guest's root drives the same layer): no setuid or
//! setgid bits, no sticky files, no device nodes, no extended attributes,
//! no change of owner, new files given to the workspace's owner with a sane
//! mode — each refusal reported to the mediator. Checked with `stat` on the
//! host side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/fs_support/mod.rs"]
mod fs_support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use fs_support::{fuse_available, Mounted, Recorder};
use stele_sandbox::RefusalRule;

fn sh(dir: &Path, script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn py(dir: &Path, code: &str) -> String {
    let o = Command::new("python3")
        .arg("-c")
        .arg(code)
        .current_dir(dir)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A workspace owned by another user (uid/gid 12345/12346) than the server.
fn foreign_workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(ws.path(), Some(12345), Some(12346)).unwrap();
    ws
}

#[test]
fn setuid_setgid_and_sticky_files_cannot_be_made() {
    if !fuse_available() {
        return;
    }
    let ws = foreign_workspace();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    // The reproduction: a setuid copy of id, and a setgid world-writable folder.
    let o = sh(
        &m.mountpoint,
        "umask 022; cp /usr/bin/id ./myid; chmod 4755 ./myid; echo chmod=$?; \
         mkdir -m 2777 d; echo mkdir=$?; chmod 2755 myid; echo sgid=$?; \
         chmod 6755 myid; echo both=$?; chmod 1755 myid; echo sticky=$?; \
         chmod u+s myid; echo plus=$?; chmod 755 myid; echo plain=$?",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    for k in ["chmod", "sgid", "both", "sticky", "plus"] {
        assert!(out.contains(&format!("{k}=1")), "{k}: {out}");
    }
    assert!(out.contains("plain=0"), "{out}");
    assert_eq!(mode(&ws.path().join("myid")), 0o755);
    assert_eq!(
        mode(&ws.path().join("d")) & 0o7000,
        0,
        "{:o}",
        mode(&ws.path().join("d"))
    );
    // Modes asked at creation lose their special bits (and get the umask).
    let said = py(
        &m.mountpoint,
        "import os, stat\n\
         os.close(os.open('f4755', os.O_CREAT|os.O_WRONLY, 0o4755))\n\
         os.mkdir('d2777', 0o2777)\n\
         os.mknod('n6755', stat.S_IFREG|0o6755)\n\
         os.mkdir('t1777', 0o1777)\n\
         print('made')",
    );
    assert!(said.contains("made"), "{said}");
    assert_eq!(mode(&ws.path().join("f4755")), 0o750);
    assert_eq!(mode(&ws.path().join("d2777")), 0o750);
    assert_eq!(mode(&ws.path().join("n6755")), 0o750);
    // Sticky directories restrict, and stay allowed.
    assert_eq!(mode(&ws.path().join("t1777")), 0o1750);
    let refused = rec.refused(RefusalRule::PrivilegedMode);
    assert!(
        refused.iter().any(|(p, d)| p == "myid" && d == "mode 4755"),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|(p, d)| p == "d" && d.contains("2")),
        "{refused:?}"
    );
}

#[test]
fn new_files_belong_to_the_workspace_owner_with_umask_027() {
    if !fuse_available() {
        return;
    }
    let ws = foreign_workspace();
    // A host-made setgid folder of another group: its group is inherited
    // (the host's own rule), its setgid bit by sub-folders only.
    fs::create_dir(ws.path().join("shared")).unwrap();
    std::os::unix::fs::chown(ws.path().join("shared"), Some(12345), Some(4242)).unwrap();
    fs::set_permissions(ws.path().join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let o = sh(
        &m.mountpoint,
        "umask 0; echo x > file; mkdir dir; ln -s file link; mkfifo fifo; \
         python3 -c \"open('py','w').write('x')\"; echo y > shared/in; mkdir shared/sub",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (name, want) in [
        ("file", 0o640),
        ("dir", 0o750),
        ("fifo", 0o640),
        ("py", 0o640),
    ] {
        let meta = fs::symlink_metadata(ws.path().join(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (12345, 12346), "{name}");
        assert_eq!(meta.mode() & 0o7777, want, "{name}: {:o}", meta.mode());
    }
    let link = fs::symlink_metadata(ws.path().join("link")).unwrap();
    assert_eq!((link.uid(), link.gid()), (12345, 12346));
    let inner = fs::metadata(ws.path().join("shared/in")).unwrap();
    assert_eq!((inner.uid(), inner.gid()), (12345, 4242));
    assert_eq!(inner.mode() & 0o7000, 0);
    let sub = fs::metadata(ws.path().join("shared/sub")).unwrap();
    assert_eq!((sub.uid(), sub.gid()), (12345, 4242));
}

#[test]
fn ownership_changes_are_refused_unless_they_change_nothing() {
    if !fuse_available() {
        return;
    }
    let ws = foreign_workspace();
    fs::write(ws.path().join("f"), "x").unwrap();
    std::os::unix::fs::chown(ws.path().join("f"), Some(12345), Some(12346)).unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let o = sh(
        &m.mountpoint,
        "chown 0 f; echo root=$?; chown 65534:65534 f; echo nobody=$?; chgrp 0 f; echo grp=$?; \
         chown 12345:12346 f; echo same=$?",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    for k in ["root", "nobody", "grp"] {
        assert!(out.contains(&format!("{k}=1")), "{k}: {out}");
    }
    assert!(out.contains("same=0"), "{out}");
    let meta = fs::metadata(ws.path().join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (12345, 12346));
    assert!(rec.refused(RefusalRule::Ownership).len() >= 3);
}

#[test]
fn device_nodes_and_whiteouts_are_refused() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    fs::write(ws.path().join("a"), "x").unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let o = sh(
        &m.mountpoint,
        "mknod mem c 1 1; echo chr=$?; mknod disk b 8 0; echo blk=$?; mkfifo ok; echo fifo=$?",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("chr=1") && out.contains("blk=1") && out.contains("fifo=0"),
        "{out}"
    );
    assert!(!ws.path().join("mem").exists() && !ws.path().join("disk").exists());
    // renameat2(RENAME_WHITEOUT) leaves a 0/0 character device behind.
    let said = py(
        &m.mountpoint,
        "import ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.renameat2(-100, b'a', -100, b'b', 4)\n\
         print('rc', r, os.strerror(ctypes.get_errno()))",
    );
    assert!(said.contains("rc -1"), "{said}");
    assert!(ws.path().join("a").exists() && !ws.path().join("b").exists());
    let refused = rec.refused(RefusalRule::DeviceNode);
    assert!(
        refused
            .iter()
            .any(|(p, d)| p == "mem" && d == "a character device"),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|(p, d)| p == "disk" && d == "a block device"),
        "{refused:?}"
    );
    assert!(refused.iter().any(|(p, _)| p == "a"), "{refused:?}");
}

#[test]
fn extended_attributes_cannot_be_set_or_removed() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    fs::write(ws.path().join("f"), "x").unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let said = py(
        &m.mountpoint,
        "import errno, os\n\
         cap = bytes.fromhex('0100000200200000000000000000000000000000')\n\
         import struct\n\
         acl = struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in [(1, 7, 0xffffffff), (2, 7, 0), (4, 7, 0xffffffff), (0x10, 7, 0xffffffff), (0x20, 4, 0xffffffff)])\n\
         for name, value in [('security.capability', cap), ('system.posix_acl_access', acl), ('user.note', b'x'), ('trusted.x', b'x')]:\n\
         \x20   try:\n\
         \x20       os.setxattr('f', name, value)\n\
         \x20       print(name, 'set')\n\
         \x20   except OSError as e:\n\
         \x20       print(name, errno.errorcode[e.errno])\n\
         try:\n\
         \x20   os.removexattr('f', 'user.note')\n\
         except OSError as e:\n\
         \x20   print('remove', errno.errorcode[e.errno])",
    );
    assert!(!said.contains(" set"), "{said}");
    // (ENOTSUP is EOPNOTSUPP on Linux.)
    assert!(said.contains("security.capability ENOTSUP"), "{said}");
    assert!(said.contains("system.posix_acl_access ENOTSUP"), "{said}");
    assert!(said.contains("user.note ENOTSUP"), "{said}");
    assert!(said.contains("remove ENOTSUP"), "{said}");
    // Nothing reached the host file.
    let host = Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(ws.path().join("f"))
        .output();
    if let Ok(h) = host {
        assert!(String::from_utf8_lossy(&h.stdout).trim().is_empty());
    }
    let refused = rec.refused(RefusalRule::ExtendedAttribute);
    assert!(
        refused
            .iter()
            .any(|(p, d)| p == "f" && d == "setxattr security.capability"),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|(_, d)| d == "removexattr user.note"),
        "{refused:?}"
    );
}

#[test]
fn a_setuid_file_loses_its_bits_when_written_or_truncated() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    for name in ["w", "t", "o"] {
        fs::copy("/usr/bin/id", ws.path().join(name)).unwrap();
        fs::set_permissions(ws.path().join(name), fs::Permissions::from_mode(0o6755)).unwrap();
    }
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let o = sh(
        &m.mountpoint,
        "printf 'X' | dd of=w bs=1 seek=100 conv=notrunc 2>/dev/null; truncate -s 10 t; : > o",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["w", "t", "o"] {
        assert_eq!(mode(&ws.path().join(name)), 0o755, "{name}");
    }
    // Only reading leaves it as it was (not the sandbox's to change).
    fs::copy("/usr/bin/id", ws.path().join("r")).unwrap();
    fs::set_permissions(ws.path().join("r"), fs::Permissions::from_mode(0o4755)).unwrap();
    assert!(sh(&m.mountpoint, "cat r > /dev/null").status.success());
    assert_eq!(mode(&ws.path().join("r")), 0o4755);
}

#[test]
fn a_setuid_file_cannot_be_linked_or_moved_to_a_new_name() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    fs::create_dir(ws.path().join("private")).unwrap();
    fs::create_dir(ws.path().join("public")).unwrap();
    fs::copy("/usr/bin/id", ws.path().join("private/tool")).unwrap();
    fs::set_permissions(
        ws.path().join("private/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let o = sh(
        &m.mountpoint,
        "ln private/tool public/tool; echo ln=$?; mv private/tool public/tool; echo mv=$?; \
         cp private/tool public/copy; echo cp=$?",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ln=1") && out.contains("mv=1"), "{out}");
    // A copy is a new file of the sandbox's: without the bits.
    assert!(out.contains("cp=0"), "{out}");
    assert!(!ws.path().join("public/tool").exists());
    assert_eq!(mode(&ws.path().join("private/tool")), 0o4755);
    assert_eq!(mode(&ws.path().join("public/copy")) & 0o7000, 0);
    let refused = rec.refused(RefusalRule::PrivilegedMode);
    assert_eq!(
        refused.iter().filter(|(p, _)| p == "private/tool").count(),
        2,
        "{refused:?}"
    );
}
