//! Basic behaviour of the process sandbox: exit codes, stdio, environment,
//! identity, resource usage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use stele_sandbox::exec::{ExecRequest, ExitStatus, Sandbox};
use support::*;

#[test]
fn echo_and_exit_code() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let o = sh(&sb, "echo hello; echo oops >&2; exit 7");
    assert_eq!(o.status, ExitStatus::Exit(7), "stderr: {}", err(&o));
    assert_eq!(out(&o), "hello\n");
    assert_eq!(err(&o), "oops\n");
}

#[test]
fn identity_and_view() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let o = sh(&sb, "cat /proc/self/uid_map; echo pid=$$; hostname; ls /; pwd; grep Cap /proc/self/status; grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status");
    let s = out(&o);
    eprintln!("{s}\n{}", err(&o));
    assert_eq!(o.status, ExitStatus::Exit(0));
    let host_id = stele_sandbox::process::UNPRIVILEGED_ID.to_string();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(s.contains(&host_id), "uid map: {s}");
    }
    assert!(s.contains("pid=2"), "pid: {s}");
    assert!(s.contains("stele-sandbox"));
    assert!(s.contains("/workspace"));
    assert!(s.contains("CapEff:\t0000000000000000"));
    assert!(s.contains("NoNewPrivs:\t1"));
    assert!(s.contains("Seccomp:\t2"));
}

#[test]
fn stdin_env_and_usage() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    std::env::set_var("STELE_TEST_HOST_SECRET", "hunter2-host-secret");
    let mut req = ExecRequest::new("t", vec!["/bin/sh".into(), "-c".into(), "cat; env".into()]);
    req.stdin = b"from-stdin\n".to_vec();
    req.env.push(("FOO".into(), "bar".into()));
    req.limits = test_limits();
    let o = sb.exec(req).unwrap();
    let s = out(&o);
    assert!(s.starts_with("from-stdin\n"), "{s}");
    assert!(s.contains("FOO=bar"));
    assert!(s.contains("HTTPS_PROXY=http://127.0.0.1:3128"));
    assert!(s.contains("npm_config_https_proxy=http://127.0.0.1:3128"));
    assert!(!s.contains("hunter2-host-secret"), "host env leaked: {s}");
    assert!(o.duration.as_nanos() > 0);
}

#[test]
fn missing_program_is_a_typed_error() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let r = sb.exec(ExecRequest::new("t", vec!["no-such-program-xyz".into()]));
    match r {
        Err(stele_sandbox::error::SandboxError::Spawn { program, .. }) => {
            assert_eq!(program, "no-such-program-xyz")
        }
        other => panic!("expected Spawn error, got {other:?}"),
    }
}

#[test]
fn refuses_to_start_without_a_required_layer() {
    let ws = workspace();
    let mut cfg = stele_sandbox::process::ProcessSandboxConfig::new(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
    );
    // No kernel offers this ABI: the sandbox must refuse, naming the layer.
    cfg.landlock_min_abi = 200;
    match stele_sandbox::process::ProcessSandbox::new(cfg) {
        Err(stele_sandbox::error::SandboxError::LayerUnavailable { layer, .. }) => {
            assert_eq!(layer, stele_sandbox::error::Layer::Landlock)
        }
        other => panic!("expected LayerUnavailable, got {other:?}"),
    }
}

#[test]
fn bad_requests_are_rejected() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let mut req = ExecRequest::new("t", vec!["/bin/true".into()]);
    req.cwd = "../..".into();
    assert!(matches!(
        sb.exec(req),
        Err(stele_sandbox::error::SandboxError::InvalidRequest(_))
    ));
    let mut req = ExecRequest::new("t", vec!["/bin/true".into()]);
    req.env.push(("HTTPS_PROXY".into(), "http://evil".into()));
    assert!(matches!(
        sb.exec(req),
        Err(stele_sandbox::error::SandboxError::InvalidRequest(_))
    ));
    assert!(sb.exec(ExecRequest::new("t", vec![])).is_err());
}

#[test]
fn many_sandboxes_in_parallel() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = std::sync::Arc::new(plain(ws.path(), Recorder::new(Rule::AllowFiles)));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let sb = sb.clone();
            std::thread::spawn(move || {
                for j in 0..5 {
                    let o = sh(&sb, &format!("echo {i}-{j}"));
                    assert_eq!(out(&o), format!("{i}-{j}\n"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn missing_cwd_is_a_typed_setup_error() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let mut req = ExecRequest::new("t", vec!["/bin/true".into()]);
    req.cwd = "does/not/exist".into();
    match sb.exec(req) {
        Err(stele_sandbox::error::SandboxError::Setup { step, source }) => {
            assert_eq!(step, stele_sandbox::error::SetupStep::Chdir);
            assert_eq!(source.raw_os_error(), Some(2));
        }
        other => panic!("expected a Chdir set-up error, got {other:?}"),
    }
    std::fs::create_dir(ws.path().join("sub")).unwrap();
    let mut req = ExecRequest::new("t", vec!["/bin/pwd".into()]);
    req.cwd = "sub".into();
    assert_eq!(out(&sb.exec(req).unwrap()), "/workspace/sub\n");
}
