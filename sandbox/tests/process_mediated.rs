//! The process sandbox with its real configuration: the workspace served by
//! the mediated file system and the network through the egress proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use stele_sandbox::exec::ExitStatus;
use stele_sandbox::FileAccess;
use support::*;

#[test]
fn workspace_reads_and_writes_go_through_the_mediator() {
    if !facilities_ok(true) {
        return;
    }
    let ws = workspace();
    std::fs::write(ws.path().join("in.txt"), "host data\n").unwrap();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    let o = sh(&sb, "cat in.txt && echo made > out.txt && mkdir d && ls");
    assert_eq!(o.status, ExitStatus::Exit(0), "{}", err(&o));
    assert!(out(&o).contains("host data"));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out.txt")).unwrap(),
        "made\n"
    );
    assert!(
        rec.asked(FileAccess::Read).contains(&"in.txt".to_string()),
        "{:?}",
        rec.files.lock().unwrap()
    );
    assert!(rec
        .asked(FileAccess::Write)
        .contains(&"out.txt".to_string()));
    let closes = rec.closes.lock().unwrap().clone();
    assert!(
        closes
            .iter()
            .any(|c| c.path == "out.txt" && c.bytes_written == 5 && c.sha256_after_write.is_some()),
        "{closes:?}"
    );
}

#[test]
fn denied_workspace_access_fails_with_eacces() {
    if !facilities_ok(true) {
        return;
    }
    let ws = workspace();
    std::fs::write(ws.path().join("in.txt"), "host data\n").unwrap();
    let rec = Recorder::new(Rule::ReadOnly);
    let sb = mediated(ws.path(), rec.clone());
    let o = sh(&sb, "cat in.txt; echo x > new.txt; echo rc=$?");
    assert!(out(&o).contains("host data"), "{} {}", out(&o), err(&o));
    assert!(
        out(&o).contains("rc=1") || out(&o).contains("rc=2"),
        "{}",
        out(&o)
    );
    assert!(err(&o).contains("Permission denied"), "{}", err(&o));
    assert!(!ws.path().join("new.txt").exists());
    assert!(rec
        .asked(FileAccess::Write)
        .contains(&"new.txt".to_string()));
}

#[test]
fn egress_goes_only_through_the_mediated_proxy() {
    if !facilities_ok(true) || !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED: needs /usr/bin/python3");
        return;
    }
    let ws = workspace();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    let code = r#"
import os, socket
s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
s.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
print("proxy:", s.recv(200).split(b"\r\n")[0].decode())
l = socket.socket(); l.bind(("127.0.0.1", 8080)); l.listen()
try:
    socket.create_connection(("127.0.0.1", 8080), timeout=2); print("LOCAL-CONNECT-ALLOWED")
except OSError as e:
    print("local connect blocked", e.errno)
print(os.environ["HTTPS_PROXY"])
"#;
    let mut req = stele_sandbox::exec::ExecRequest::new(
        "net",
        vec!["/usr/bin/python3".into(), "-c".into(), code.into()],
    );
    req.limits = test_limits();
    let o = stele_sandbox::exec::Sandbox::exec(&sb, req).unwrap();
    let s = out(&o);
    assert!(s.contains("proxy: HTTP/1.1 403"), "{s} {}", err(&o));
    assert!(s.contains("local connect blocked 13"), "{s}");
    assert!(s.contains("http://127.0.0.1:3128"));
    let nets = rec.nets.lock().unwrap().clone();
    assert_eq!(nets.len(), 1, "{nets:?}");
    assert_eq!((nets[0].host.as_str(), nets[0].port), ("example.com", 443));
    assert_eq!(nets[0].requester.exec_id.as_deref(), Some("net"));
}

#[test]
fn sandbox_user_owns_stele_users_workspace_files() {
    if !facilities_ok(true) {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let ws = workspace(); // 0700, owned by stele's user
    std::fs::write(ws.path().join("notes.txt"), "v1\n").unwrap();
    std::fs::set_permissions(
        ws.path().join("notes.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec);
    let o = sh(
        &sb,
        "echo v2 >> notes.txt && mkdir -p out && echo new > out/made.txt && stat -c '%u %a' notes.txt out/made.txt",
    );
    assert_eq!(o.status, ExitStatus::Exit(0), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("notes.txt")).unwrap(),
        "v1\nv2\n"
    );
    let made = std::fs::metadata(ws.path().join("out/made.txt")).unwrap();
    // Created on the host as the workspace's owner (here stele's user),
    // with the sandbox's umask (022) and the workspace's (027).
    let owner = std::fs::metadata(ws.path()).unwrap();
    assert_eq!((made.uid(), made.gid()), (owner.uid(), owner.gid()));
    assert_eq!(made.mode() & 0o777, 0o640, "{}", out(&o));
    assert!(
        out(&o).starts_with("0 644\n0 640\n"),
        "inside, the files are the sandbox user's: {}",
        out(&o)
    );
}
