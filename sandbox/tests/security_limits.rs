//! Security battery, part 2: resource exhaustion is bounded (fork bomb,
//! filling /tmp or the disk, ignoring SIGTERM, flooding output).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use stele_sandbox::exec::{ExitStatus, Truncation};
use support::*;

#[test]
fn fork_bomb_is_bounded_by_nproc() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let mut limits = test_limits();
    limits.processes = 24;
    limits.wall_time = Duration::from_secs(10);
    let t = Instant::now();
    // Fork until the kernel refuses, counting how far it got.
    let mut req = stele_sandbox::exec::ExecRequest::new(
        "bomb",
        vec![
            "/usr/bin/python3".into(),
            "-c".into(),
            "import os, time\nn = 0\ntry:\n    while n < 500:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('refused', e.errno)\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))".into(),
        ],
    );
    req.limits = limits.clone();
    let o = stele_sandbox::exec::Sandbox::exec(&sb, req).unwrap();
    assert!(out(&o).contains("refused 11"), "{} {}", out(&o), err(&o));
    let s = out(&o);
    let procs: u64 = s
        .lines()
        .last()
        .unwrap_or("999")
        .trim()
        .parse()
        .unwrap_or(999);
    assert!(
        procs <= limits.processes + 2,
        "{procs} processes ran: {s} {}",
        err(&o)
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    // And the recursive form terminates at the deadline at the latest.
    limits.wall_time = Duration::from_secs(2);
    let o = sh_with(&sb, "b() { b | b & }; b; sleep 5", limits);
    assert!(
        matches!(o.status, ExitStatus::TimedOut | ExitStatus::Exit(_)),
        "{:?}",
        o.status
    );
}

#[test]
fn filling_tmp_and_workspace_is_bounded() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let mut limits = test_limits();
    limits.tmp_bytes = 4 << 20;
    limits.file_size_bytes = 2 << 20;
    let o = sh_with(
        &sb,
        "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; \
         wc -c < /tmp/fill; df -k /tmp | tail -1",
        limits.clone(),
    );
    let s = out(&o);
    let size: u64 = s
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(size <= 4 << 20, "/tmp grew to {size}: {s}");
    let o = sh_with(
        &sb,
        "dd if=/dev/zero of=/workspace/fill bs=1M count=64 2>&1; echo rc=$?",
        limits,
    );
    let host = std::fs::metadata(ws.path().join("fill"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        host <= 2 << 20,
        "workspace file grew to {host}: {}",
        out(&o)
    );
    assert!(!out(&o).contains("rc=0"), "{}", out(&o));
}

#[test]
fn sigterm_ignoring_process_is_killed_at_the_deadline() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let mut limits = test_limits();
    limits.wall_time = Duration::from_secs(1);
    limits.kill_grace = Duration::from_millis(300);
    let t = Instant::now();
    let o = sh_with(
        &sb,
        "trap '' TERM; (trap '' TERM; while :; do :; done) & while :; do sleep 0.1; done",
        limits,
    );
    let took = t.elapsed();
    assert_eq!(o.status, ExitStatus::TimedOut);
    assert!(took >= Duration::from_secs(1), "{took:?}");
    // Only "killed" against "never ends" (a loaded machine is slow, not wrong).
    assert!(took < Duration::from_secs(60), "{took:?}");
}

#[test]
fn output_flood_is_capped_and_recorded() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let limits = test_limits();
    let cap = limits.output_bytes;
    let o = sh_with(
        &sb,
        "head -c 20000000 /dev/zero; head -c 3000000 /dev/zero >&2",
        limits,
    );
    assert_eq!(o.status, ExitStatus::Exit(0));
    assert_eq!(o.stdout.bytes.len(), cap);
    assert_eq!(
        o.stdout.truncation,
        Truncation::Truncated {
            total_bytes: 20_000_000
        }
    );
    assert_eq!(
        o.stderr.truncation,
        Truncation::Truncated {
            total_bytes: 3_000_000
        }
    );
    let o = sh(&sb, "echo small");
    assert_eq!(o.stdout.truncation, Truncation::Complete);
}

#[test]
fn cpu_and_memory_limits_apply() {
    if !facilities_ok(false) {
        return;
    }
    let ws = workspace();
    let sb = plain(ws.path(), Recorder::new(Rule::AllowFiles));
    let mut limits = test_limits();
    limits.cpu_seconds = 1;
    // Far above the CPU limit: on a busy machine one CPU second takes
    // many wall seconds, and the wall limit must not end it first.
    limits.wall_time = Duration::from_secs(300);
    let o = sh_with(&sb, "while :; do :; done", limits);
    assert!(
        matches!(o.status, ExitStatus::Signal(libc_sigxcpu) if libc_sigxcpu == 24 || libc_sigxcpu == 9),
        "{:?}",
        o.status
    );
    // rusage is tick-sampled while RLIMIT_CPU uses precise runtime: allow slack.
    assert!(o.usage.user_cpu + o.usage.system_cpu >= Duration::from_millis(500));
}
