//! On a real FUSE mount: the root is asked about as ".", names policy cannot
//! see are refused and reported, every change of contents has a hash after
//! it (truncate, ftruncate, fallocate, copy_file_range), and the write
//! quota holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/fs_support/mod.rs"]
mod fs_support;

use std::fs;
use std::path::Path;
use std::process::Command;

use fs_support::{fuse_available, sha256, Mounted, Recorder};
use stele_sandbox::fs::WriteQuota;
use stele_sandbox::{ChangeOutcome, FileAccess, FileOp, RefusalRule};

fn run(dir: &Path, prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_root_is_asked_about_as_dot() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    fs::write(ws.path().join("a.txt"), "x").unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let said = run(&m.mountpoint, "ls", &["-a", "."]);
    assert!(said.contains("a.txt"), "{said}");
    assert!(
        rec.saw(FileAccess::List, "."),
        "the listing was asked as \".\""
    );
    assert!(!rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.path.is_empty()));
    // A policy that refuses "." refuses the listing.
    let rec = Recorder::new();
    rec.deny(Some(FileAccess::List), ".");
    let m = Mounted::new(ws.path(), rec.clone());
    let said = run(&m.mountpoint, "ls", &["-a", "."]);
    assert!(said.contains("Permission denied"), "{said}");
}

#[test]
fn names_policy_cannot_see_are_refused_and_reported() {
    if !fuse_available() {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let ws = tempfile::tempdir().unwrap();
    // Planted on the host: a name with an escape sequence, one not UTF-8.
    fs::write(ws.path().join("esc\u{1b}[2J"), "x").unwrap();
    fs::write(ws.path().join(std::ffi::OsStr::from_bytes(b"bad\xff")), "x").unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let said = run(
        &m.mountpoint,
        "python3",
        &[
            "-c",
            "import os\n\
             for n in [b'esc\\x1b[2J', b'bad\\xff', b'new\\x07bell', b'new\\xfe']:\n\
             \x20   for f in (lambda: open(n).read(), lambda: open(n, 'w').write('x')):\n\
             \x20       try:\n\
             \x20           f(); print(n, 'ok')\n\
             \x20       except OSError as e:\n\
             \x20           print(n, e.errno)",
        ],
    );
    assert!(!said.contains(" ok"), "{said}");
    assert!(!ws.path().join("new\u{7}bell").exists());
    let controls = rec.refused(RefusalRule::ControlCharacter);
    assert!(
        controls.iter().any(|(p, _)| p == "esc\\u{1b}[2J"),
        "{controls:?}"
    );
    assert!(
        controls.iter().any(|(p, _)| p == "new\\u{7}bell"),
        "{controls:?}"
    );
    let bytes = rec.refused(RefusalRule::NotUtf8);
    assert!(bytes.iter().any(|(p, _)| p == "bad\\xff"), "{bytes:?}");
    assert!(bytes.iter().any(|(p, _)| p == "new\\xfe"), "{bytes:?}");
    // None of them reached the mediator as a question.
    assert!(rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .all(|r| !r.path.contains('\u{1b}') && !r.path.contains('\u{7}')));
}

#[test]
fn every_change_of_contents_has_a_hash_after_it() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    fs::write(ws.path().join("t"), "0123456789").unwrap();
    fs::write(ws.path().join("z"), "gone soon").unwrap();
    fs::write(ws.path().join("src"), "copied by copy_file_range").unwrap();
    fs::write(ws.path().join("emptied"), "content").unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    // truncate(path): a one-shot change whose report carries the new hash.
    run(&m.mountpoint, "truncate", &["-s", "4", "t"]);
    run(&m.mountpoint, "truncate", &["-s", "0", "z"]);
    assert_eq!(fs::read(ws.path().join("t")).unwrap(), b"0123");
    let changes = rec.changes.lock().unwrap().clone();
    let hashed: Vec<[u8; 32]> = changes
        .iter()
        .filter(|c| c.op == FileOp::SetAttr && c.outcome == ChangeOutcome::Done)
        .filter_map(|c| c.sha256_after)
        .collect();
    assert!(hashed.contains(&sha256(b"0123")), "{changes:?}");
    assert!(hashed.contains(&sha256(b"")), "{changes:?}");
    // ftruncate and fallocate through a handle; copy_file_range into one.
    let said = run(
        &m.mountpoint,
        "python3",
        &[
            "-c",
            "import os\n\
             fd = os.open('h', os.O_CREAT|os.O_RDWR, 0o644)\n\
             os.write(fd, b'abcdef'); os.ftruncate(fd, 3); os.close(fd)\n\
             fd = os.open('fa', os.O_CREAT|os.O_RDWR, 0o644)\n\
             os.posix_fallocate(fd, 0, 4096); os.close(fd)\n\
             s = os.open('src', os.O_RDONLY); d = os.open('dst', os.O_CREAT|os.O_WRONLY, 0o644)\n\
             n = os.copy_file_range(s, d, 100); os.close(s); os.close(d)\n\
             print('copied', n)",
        ],
    );
    assert!(said.contains("copied 25"), "{said}");
    // Emptied by O_TRUNC, made by O_CREAT: changes, though nothing is written.
    run(&m.mountpoint, "sh", &["-c", "true > emptied; touch made"]);
    let wanted = [
        ("emptied", sha256(b"")),
        ("made", sha256(b"")),
        ("h", sha256(b"abc")),
        ("fa", sha256(&[0u8; 4096])),
        ("dst", sha256(b"copied by copy_file_range")),
    ];
    for (path, sha) in wanted {
        let closes = rec.closes_settled(path, 1);
        let changes = rec.changes.lock().unwrap().clone();
        let by_close = closes.iter().any(|c| c.sha256_after_write == Some(sha));
        let by_change = changes.iter().any(|c| c.sha256_after == Some(sha));
        assert!(by_close || by_change, "{path}: {closes:?} {changes:?}");
    }
}

#[test]
fn the_write_quota_holds_and_is_reported() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let rec = Recorder::new();
    let m = Mounted::with(ws.path(), rec.clone(), |fs| {
        fs.with_write_quota(WriteQuota::Bytes(1 << 20))
    });
    let said = run(
        &m.mountpoint,
        "python3",
        &[
            "-c",
            "import errno, os\n\
             def attempt(name, f):\n\
             \x20   try:\n\
             \x20       f(); print(name, 'ok')\n\
             \x20   except OSError as e:\n\
             \x20       print(name, errno.errorcode[e.errno])\n\
             fd = os.open('big', os.O_CREAT|os.O_WRONLY, 0o644)\n\
             chunk = b'x' * 65536\n\
             n = 0\n\
             try:\n\
             \x20   for i in range(64):\n\
             \x20       os.write(fd, chunk); n += 1\n\
             except OSError as e:\n\
             \x20   print('wrote', n, 'chunks then', errno.errorcode[e.errno])\n\
             attempt('again', lambda: os.write(fd, chunk))\n\
             os.close(fd)\n\
             attempt('truncate', lambda: os.truncate('big', 10 << 20))\n\
             fd2 = os.open('fal', os.O_CREAT|os.O_RDWR, 0o644)\n\
             attempt('fallocate', lambda: os.posix_fallocate(fd2, 0, 10 << 20))\n\
             os.close(fd2)\n\
             attempt('shrink', lambda: os.truncate('big', 1000))",
        ],
    );
    assert!(said.contains("wrote 16 chunks then EDQUOT"), "{said}");
    assert!(said.contains("again EDQUOT"), "{said}");
    assert!(said.contains("truncate EDQUOT"), "{said}");
    assert!(said.contains("fallocate EDQUOT"), "{said}");
    // Shrinking costs nothing.
    assert!(said.contains("shrink ok"), "{said}");
    assert_eq!(fs::metadata(ws.path().join("big")).unwrap().len(), 1000);
    let usage = m.layer().write_usage();
    assert_eq!(usage.bytes_written, 1 << 20);
    assert_eq!(usage.quota, WriteQuota::Bytes(1 << 20));
    assert!(usage.refused_writes >= 4, "{usage:?}");
    // Reported once per handle (the two refused writes on `big` are one),
    // and once for each refused truncate and fallocate.
    let refused = rec.refused(RefusalRule::WriteQuota);
    assert_eq!(
        refused.iter().filter(|(p, _)| p == "big").count(),
        2,
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|(p, d)| p == "fal" && d.contains("1048576 of 1048576")),
        "{refused:?}"
    );
}
