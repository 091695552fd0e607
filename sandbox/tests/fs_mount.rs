//! Real FUSE mounts of the mediated workspace, exercised with shell tools and
//! python3 as a sandboxed program would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/fs_support/mod.rs"]
mod fs_support;

use std::fs;
use std::process::{Command, Output};

use fs_support::{fuse_available, sha256, Mounted, Recorder};
use stele_sandbox::{FileAccess, FileOp};

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap()
}

fn py(code: &str) -> Output {
    run("python3", &["-c", code])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn allowed_reads_and_writes_work_with_shell_tools() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    fs::write(ws.path().join("a.txt"), b"hello from the host\n").unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());

    let out = run("cat", &[m.path("a.txt").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello from the host\n");

    let out = run(
        "cp",
        &[
            m.path("a.txt").to_str().unwrap(),
            m.path("b.txt").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(ws.path().join("b.txt")).unwrap(),
        b"hello from the host\n"
    );

    let code = format!(
        "open({:?}, 'w').write('written by python')",
        m.path("c.txt").to_str().unwrap()
    );
    let out = py(&code);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(ws.path().join("c.txt")).unwrap(),
        "written by python"
    );

    assert!(rec.saw(FileAccess::List, "a.txt"));
    assert!(rec.saw(FileAccess::Read, "a.txt"));
    assert!(rec.saw(FileAccess::Write, "b.txt"));
    assert!(rec.saw(FileAccess::Write, "c.txt"));
    let reqs = rec.requests.lock().unwrap().clone();
    assert!(reqs
        .iter()
        .any(|r| r.path == "c.txt" && r.op == FileOp::Create && r.requester.pid.is_some()));
}

#[test]
fn denied_paths_give_eacces_and_are_seen() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    fs::create_dir(ws.path().join("secret")).unwrap();
    fs::write(ws.path().join("secret/key.pem"), b"PRIVATE").unwrap();
    fs::write(ws.path().join("ro.txt"), b"read only").unwrap();
    let rec = Recorder::new();
    rec.deny(None, "secret");
    rec.deny(Some(FileAccess::Write), "ro.txt");
    let m = Mounted::new(ws.path(), rec.clone());

    let out = run("cat", &[m.path("secret/key.pem").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    assert!(rec.saw(FileAccess::List, "secret"));

    let code = format!(
        "import errno\ntry:\n    open({:?}, 'w').write('x')\nexcept OSError as e:\n    print(e.errno == errno.EACCES)",
        m.path("ro.txt").to_str().unwrap()
    );
    let out = py(&code);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "True",
        "{}",
        stderr(&out)
    );
    assert!(rec.saw(FileAccess::Write, "ro.txt"));
    assert_eq!(fs::read(ws.path().join("ro.txt")).unwrap(), b"read only");
    // Reading the same file is still allowed.
    let out = run("cat", &[m.path("ro.txt").to_str().unwrap()]);
    assert_eq!(out.stdout, b"read only");
}

#[test]
fn rename_unlink_mkdir_are_mediated_and_paths_follow_renames() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    fs::write(ws.path().join("a.txt"), b"A").unwrap();
    fs::write(ws.path().join("keep.txt"), b"K").unwrap();
    fs::write(ws.path().join("gone.txt"), b"G").unwrap();
    let rec = Recorder::new();
    rec.deny(Some(FileAccess::Delete), "keep.txt");
    let m = Mounted::new(ws.path(), rec.clone());

    assert!(run("mkdir", &[m.path("d").to_str().unwrap()])
        .status
        .success());
    assert!(rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.op == FileOp::Mkdir && r.access == FileAccess::Write && r.path == "d"));

    let out = run(
        "mv",
        &[
            m.path("a.txt").to_str().unwrap(),
            m.path("d/b.txt").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rec.saw(FileAccess::Delete, "a.txt"));
    assert!(rec.saw(FileAccess::Write, "d/b.txt"));
    assert_eq!(fs::read(ws.path().join("d/b.txt")).unwrap(), b"A");

    // Rename the directory; an inode looked up before must be named by its new path.
    let code = format!(
        "import os\nf = open({b:?})\nos.rename({d:?}, {e:?})\nopen({nb:?}).read()",
        b = m.path("d/b.txt").to_str().unwrap(),
        d = m.path("d").to_str().unwrap(),
        e = m.path("e").to_str().unwrap(),
        nb = m.path("e/b.txt").to_str().unwrap(),
    );
    rec.clear();
    let out = py(&code);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rec.saw(FileAccess::Delete, "d"));
    assert!(rec.saw(FileAccess::Write, "e"));
    assert!(
        rec.saw(FileAccess::Read, "e/b.txt"),
        "{:?}",
        rec.requests.lock().unwrap()
    );

    let out = run("rm", &[m.path("gone.txt").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.op == FileOp::Unlink && r.access == FileAccess::Delete && r.path == "gone.txt"));
    assert!(!ws.path().join("gone.txt").exists());

    let out = run("rm", &[m.path("keep.txt").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let out = run(
        "mv",
        &[
            m.path("keep.txt").to_str().unwrap(),
            m.path("moved.txt").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(ws.path().join("keep.txt").exists());
    assert!(!ws.path().join("moved.txt").exists());

    assert!(
        run("rmdir", &[m.path("e/nothing").to_str().unwrap()])
            .status
            .code()
            != Some(0)
    );
    fs::remove_file(ws.path().join("e/b.txt")).unwrap();
    assert!(run("rmdir", &[m.path("e").to_str().unwrap()])
        .status
        .success());
    assert!(rec
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.op == FileOp::Rmdir && r.path == "e"));
}

#[test]
fn close_reports_carry_byte_counts_and_sha256() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let original: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(ws.path().join("in.bin"), &original).unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());

    // Sequential write in chunks: incremental hash.
    let code = format!(
        "f = open({:?}, 'wb', buffering=0)\nfor i in range(25):\n    f.write(bytes([i]) * 4000)\nf.close()",
        m.path("seq.bin").to_str().unwrap()
    );
    let out = py(&code);
    assert!(out.status.success(), "{}", stderr(&out));
    let host = fs::read(ws.path().join("seq.bin")).unwrap();
    assert_eq!(host.len(), 100_000);
    let reports = rec.closes_settled("seq.bin", 1);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].bytes_written, 100_000);
    assert_eq!(reports[0].bytes_read, 0);
    assert_eq!(reports[0].sha256_after_write, Some(sha256(&host)));

    // Reading: bytes read equal the file, no hash.
    let out = run("cat", &[m.path("in.bin").to_str().unwrap()]);
    assert_eq!(out.stdout, original);
    let reports = rec.closes_settled("in.bin", 1);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].bytes_read, original.len() as u64);
    assert_eq!(reports[0].bytes_written, 0);
    assert_eq!(reports[0].sha256_after_write, None);

    // Overwrite in the middle of an existing file: re-hashed at close.
    let code = format!(
        "f = open({:?}, 'r+b', buffering=0)\nf.seek(1000)\nf.write(b'PATCHED')\nf.close()",
        m.path("in.bin").to_str().unwrap()
    );
    rec.clear();
    let out = py(&code);
    assert!(out.status.success(), "{}", stderr(&out));
    let host = fs::read(ws.path().join("in.bin")).unwrap();
    assert_eq!(&host[1000..1007], b"PATCHED");
    let reports = rec.closes_settled("in.bin", 2);
    // O_RDWR asks read and write: one report per ticket, same figures.
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_ne!(reports[0].ticket, reports[1].ticket);
    for r in &reports {
        assert_eq!(r.bytes_written, 7);
        assert_eq!(r.sha256_after_write, Some(sha256(&host)));
    }

    // Append to existing content: not covered by the running hash either.
    let code = format!(
        "open({:?}, 'ab').write(b'tail')",
        m.path("seq.bin").to_str().unwrap()
    );
    rec.clear();
    assert!(py(&code).status.success());
    let host = fs::read(ws.path().join("seq.bin")).unwrap();
    let reports = rec.closes_settled("seq.bin", 1);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].bytes_written, 4);
    assert_eq!(reports[0].sha256_after_write, Some(sha256(&host)));
}

#[test]
fn symlinks_are_not_followed_out_of_the_workspace() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", ws.path().join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc", ws.path().join("rel")).unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());

    // The server hands symlinks to the kernel as symlinks; it never follows them itself.
    let meta = fs::symlink_metadata(m.path("abs")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(
        fs::read_link(m.path("rel")).unwrap().to_str().unwrap(),
        "../../../../../../etc"
    );

    // A process whose root *is* the workspace (as in the sandbox) resolves
    // both links inside it: /etc/hostname is looked up in the workspace.
    let code = format!(
        "import os\nos.chroot({:?})\nos.chdir('/')\nfor p in ['/abs/hostname', 'rel/hostname', '../../etc/hostname']:\n    try:\n        open(p).read(); print('ESCAPED', p)\n    except OSError as e:\n        print('blocked', e.errno)",
        m.mountpoint.to_str().unwrap()
    );
    let out = py(&code);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout.contains("ESCAPED"), "{stdout}");
    assert_eq!(stdout.matches("blocked").count(), 3, "{stdout}");
    // The resolution came back to the file server as a lookup of "etc" in the workspace.
    assert!(rec.saw(FileAccess::List, "etc"));
}

#[test]
fn handles_still_open_at_stop_are_reported() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let code = format!(
        "import sys, time\nf = open({:?}, 'wb', buffering=0)\nf.write(b'abc')\nprint('ready', flush=True)\ntime.sleep(30)",
        m.path("held.bin").to_str().unwrap()
    );
    let mut child = Command::new("python3")
        .args(["-c", &code])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    assert!(rec.closes_for("held.bin").is_empty());
    drop(m); // lazy unmount (busy) + stop
    let _ = child.kill();
    let _ = child.wait();
    let reports = rec.closes_for("held.bin");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].bytes_written, 3);
    assert_eq!(reports[0].sha256_after_write, Some(sha256(b"abc")));
}

#[test]
fn large_files_stream_through_with_correct_reports() {
    if !fuse_available() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    // 9 MiB + a bit of pseudo-random data: several maximum-size requests each way.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..9 * 1024 * 1024 + 12_345)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(ws.path().join("big.in"), &data).unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());

    let out = run(
        "cp",
        &[
            m.path("big.in").to_str().unwrap(),
            m.path("big.out").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let copied = fs::read(ws.path().join("big.out")).unwrap();
    assert!(copied == data, "copy differs");

    let r = rec.closes_settled("big.in", 1);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].bytes_read, data.len() as u64);
    let w = rec.closes_settled("big.out", 1);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].bytes_written, data.len() as u64);
    assert_eq!(w[0].sha256_after_write, Some(sha256(&data)));
}
