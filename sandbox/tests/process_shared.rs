//! One file server and one proxy per sandbox, shared by its commands: every
//! access is still attributed to the command that made it, and a command's
//! handles and connections are closed in the mediator before `exec` returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::sync::Arc;

use stele_sandbox::exec::{ExecRequest, ExitStatus, Sandbox};
use stele_sandbox::process::ProcessSandbox;
use stele_sandbox::{FileAccess, FileRequest};
use support::*;

fn run(sb: &ProcessSandbox, id: &str, argv: &[&str]) -> stele_sandbox::exec::ExecOutcome {
    let mut req = ExecRequest::new(id, argv.iter().map(|a| a.to_string()).collect());
    req.limits = test_limits();
    sb.exec(req).expect("exec")
}

fn requests_for(rec: &Recorder, path: &str) -> Vec<FileRequest> {
    rec.files
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == path)
        .cloned()
        .collect()
}

#[test]
fn sequential_commands_are_told_apart() {
    if !facilities_ok(true) {
        return;
    }
    let ws = workspace();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    for id in ["first", "second", "third"] {
        let o = run(
            &sb,
            id,
            &["/bin/sh", "-c", &format!("echo {id} > {id}.txt")],
        );
        assert_eq!(o.status, ExitStatus::Exit(0), "{}", err(&o));
        // The close report is in before exec returned.
        let closes = rec.closes.lock().unwrap().clone();
        assert!(
            closes.iter().any(|c| c.path == format!("{id}.txt")),
            "{closes:?}"
        );
    }
    for id in ["first", "second", "third"] {
        let reqs = requests_for(&rec, &format!("{id}.txt"));
        assert!(!reqs.is_empty());
        for r in reqs {
            assert_eq!(r.requester.exec_id.as_deref(), Some(id), "{r:?}");
            assert!(r.requester.pid.is_some(), "{r:?}");
        }
    }
}

#[test]
fn concurrent_commands_are_told_apart() {
    if !facilities_ok(true) {
        return;
    }
    let ws = workspace();
    for i in 0..4 {
        std::fs::write(ws.path().join(format!("in{i}.txt")), "data\n").unwrap();
    }
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = Arc::new(mediated(ws.path(), rec.clone()));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let sb = sb.clone();
            std::thread::spawn(move || {
                // Several reads each, overlapping with the other commands.
                let script = format!("for n in 1 2 3 4 5; do cat in{i}.txt > /dev/null; done");
                let o = run(&sb, &format!("cmd-{i}"), &["/bin/sh", "-c", &script]);
                assert_eq!(o.status, ExitStatus::Exit(0), "{}", err(&o));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for i in 0..4 {
        let reqs: Vec<_> = requests_for(&rec, &format!("in{i}.txt"))
            .into_iter()
            .filter(|r| r.access == FileAccess::Read)
            .collect();
        assert!(!reqs.is_empty());
        for r in reqs {
            assert_eq!(
                r.requester.exec_id.as_deref(),
                Some(format!("cmd-{i}").as_str()),
                "{r:?}"
            );
        }
    }
}

#[test]
fn handles_left_open_are_closed_before_exec_returns() {
    if !facilities_ok(true) {
        return;
    }
    let ws = workspace();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    // A background process keeps the file open; init kills it when the
    // command's shell exits.
    let o = run(
        &sb,
        "holder",
        &[
            "/bin/sh",
            "-c",
            "(exec 3>held.txt; echo hi >&3; sleep 30) & sleep 0.3",
        ],
    );
    assert_eq!(o.status, ExitStatus::Exit(0), "{}", err(&o));
    let closes = rec.closes.lock().unwrap().clone();
    let held: Vec<_> = closes.iter().filter(|c| c.path == "held.txt").collect();
    assert_eq!(held.len(), 1, "{closes:?}");
    assert_eq!(held[0].bytes_written, 3);
    assert!(held[0].sha256_after_write.is_some());
}

#[test]
fn terminal_queries_never_reach_the_file_server() {
    if !facilities_ok(true) || !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED: needs /usr/bin/python3");
        return;
    }
    let ws = workspace();
    std::fs::write(ws.path().join("a.txt"), "x").unwrap();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec);
    let o = run(
        &sb,
        "tty",
        &[
            "/usr/bin/python3",
            "-c",
            "f = open('a.txt'); print(f.isatty(), f.read())",
        ],
    );
    assert_eq!(out(&o), "False x\n", "{}", err(&o));
    let counts = sb.workspace_request_counts();
    assert!(
        counts.iter().any(|(op, n)| op == "Open" && *n > 0),
        "{counts:?}"
    );
    assert!(
        !counts.iter().any(|(op, n)| op == "Ioctl" && *n > 0),
        "{counts:?}"
    );
}

#[test]
fn proxy_connections_are_attributed_per_command() {
    if !facilities_ok(true) || !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED: needs /usr/bin/python3");
        return;
    }
    let ws = workspace();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated(ws.path(), rec.clone());
    let code = r#"
import socket
s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
s.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
print(s.recv(200).split(b"\r\n")[0].decode())
"#;
    for id in ["net-a", "net-b", "net-c"] {
        let o = run(&sb, id, &["/usr/bin/python3", "-c", code]);
        assert!(out(&o).contains("403"), "{} {}", out(&o), err(&o));
    }
    let ids: Vec<_> = rec
        .nets
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.requester.exec_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["net-a", "net-b", "net-c"]);
}
