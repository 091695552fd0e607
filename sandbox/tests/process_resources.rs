//! Group limits of the process backend (cgroups): memory, processes and
//! CPU bound a command's *whole* process tree and a session's commands
//! together, a timed-out command's whole group is killed, no process
//! outlives its command, and every command reports what its group used.
//!
//! The reproduction of issue 12 item 7 (three processes of 1.5 GiB each
//! ran at 4.6 GiB resident under a per-process limit) is run scaled down:
//! three processes of 300 MiB under a 512 MiB command limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use stele_sandbox::check::LayerReport;
use stele_sandbox::error::{Layer, SandboxError};
use stele_sandbox::exec::{ExecOutcome, ExecRequest, ExitStatus, Limits, Sandbox};
use stele_sandbox::process::{ProcessSandbox, ProcessSandboxConfig, WorkspaceMount};
use stele_sandbox::resources::{
    CgroupRequirement, GroupLimits, GroupUsage, LimitHit, MilliCpus, ResourceLimits,
};
use stele_sandbox::FileAccess;
use support::*;

/// The facilities, and cgroups usable by stele here (loudly skipped if not).
fn ready() -> bool {
    if !facilities_ok(false) {
        return false;
    }
    match &LayerReport::probe().cgroup.usable {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIPPED: needs usable cgroups ({why})");
            false
        }
    }
}

fn limits(command: GroupLimits, session: GroupLimits) -> ResourceLimits {
    ResourceLimits {
        command,
        session,
        ..ResourceLimits::default()
    }
}

fn group(o: &ExecOutcome) -> GroupUsage {
    o.usage.group.expect("the command ran in its own cgroup")
}

fn python(sb: &ProcessSandbox, code: &str, l: Limits) -> ExecOutcome {
    let mut req = ExecRequest::new(
        "py",
        vec!["/usr/bin/python3".into(), "-c".into(), code.into()],
    );
    req.limits = l;
    sb.exec(req).expect("exec")
}

/// Busy for `secs` of wall-clock time, then print the CPU time used.
fn busy(secs: f64) -> String {
    format!(
        "import time\nt = time.monotonic()\nwhile time.monotonic() - t < {secs}: pass\nprint(time.process_time())"
    )
}

#[test]
fn memory_is_limited_for_the_whole_command_not_per_process() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let command = GroupLimits {
        memory_bytes: Some(512 << 20),
        ..GroupLimits::COMMAND_DEFAULT
    };
    let sb = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        limits(command, GroupLimits::SESSION_DEFAULT),
    );
    // Each process is far below its own address-space limit (2 GiB).
    let o = sh_with(
        &sb,
        "for i in 1 2 3; do python3 -c 'import time; x = b\"x\" * (300 << 20); print(\"held\", flush=True); time.sleep(3)' & done; wait; echo done",
        test_limits(),
    );
    let g = group(&o);
    assert!(g.oom_kills >= 1, "no process was killed: {g:?} {}", err(&o));
    assert!(g.limits_hit().contains(&LimitHit::Memory), "{g:?}");
    let peak = g.memory_peak_bytes.expect("peak memory is accounted");
    assert!(
        peak <= 512 << 20,
        "the three processes held {peak} bytes together, over the 512 MiB limit"
    );
    assert!(
        peak >= 300 << 20,
        "peak {peak}: the allocations did not run"
    );
    assert_eq!(g.limits.and_then(|l| l.memory_bytes), Some(512 << 20));
}

#[test]
fn peak_memory_is_of_the_whole_tree() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let sb = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        ResourceLimits::default(),
    );
    let o = sh_with(
        &sb,
        "for i in 1 2 3; do python3 -c 'import time; x = b\"x\" * (60 << 20); time.sleep(1.5)' & done; wait",
        test_limits(),
    );
    assert_eq!(o.status, ExitStatus::Exit(0), "{}", err(&o));
    let g = group(&o);
    let peak = g.memory_peak_bytes.unwrap();
    // Three processes of 60 MiB at once; the largest single one is ~70 MiB.
    assert!(peak >= 180 << 20, "group peak {peak}");
    assert!(o.usage.max_rss_bytes < 120 << 20, "{:?}", o.usage);
    assert!(peak > o.usage.max_rss_bytes * 2);
    assert!(g.limits_hit().is_empty(), "{g:?}");
    assert!(g.processes_peak.is_none_or(|p| p >= 4), "{g:?}");
}

/// Fork until refused; print how many processes the namespace then held.
const FORK_BOMB: &str = "import os, time\nn = 0\ntry:\n    while n < 2000:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('refused', e.errno)\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))";

fn procs(o: &ExecOutcome) -> u64 {
    out(o)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
}

/// Per-process rlimits far above the group limits, so the group is what binds.
fn loose_rlimits() -> Limits {
    let mut l = test_limits();
    l.processes = 20_000;
    l.wall_time = Duration::from_secs(30);
    l
}

#[test]
fn fork_bomb_is_bounded_by_the_command_group() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let command = GroupLimits {
        processes: Some(40),
        ..GroupLimits::COMMAND_DEFAULT
    };
    let sb = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        limits(command, GroupLimits::SESSION_DEFAULT),
    );
    let t = Instant::now();
    let o = python(&sb, FORK_BOMB, loose_rlimits());
    assert!(out(&o).contains("refused 11"), "{} {}", out(&o), err(&o));
    assert!(procs(&o) <= 40, "{} processes ran", procs(&o));
    let g = group(&o);
    assert!(g.process_limit_events >= 1, "{g:?}");
    assert!(g.limits_hit().contains(&LimitHit::Processes), "{g:?}");
    assert!(g.processes_peak.is_none_or(|p| p <= 40), "{g:?}");
    // Everything it forked died with it.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    // The recursive shell form ends (at the latest at its deadline).
    let mut l = loose_rlimits();
    l.wall_time = Duration::from_secs(2);
    let o = sh_with(&sb, "b() { b | b & }; b; sleep 5", l);
    assert!(
        matches!(o.status, ExitStatus::TimedOut | ExitStatus::Exit(_)),
        "{:?}",
        o.status
    );
    assert!(group(&o).processes_peak.is_none_or(|p| p <= 40));
}

#[test]
fn the_session_limit_binds_across_its_commands() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let session = GroupLimits {
        processes: Some(30),
        ..GroupLimits::SESSION_DEFAULT
    };
    let command = GroupLimits {
        processes: Some(200),
        ..GroupLimits::COMMAND_DEFAULT
    };
    let sb = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        limits(command, session),
    );
    let o = python(&sb, FORK_BOMB, loose_rlimits());
    assert!(out(&o).contains("refused 11"), "{} {}", out(&o), err(&o));
    assert!(
        procs(&o) <= 30,
        "{} processes ran under a session limit of 30",
        procs(&o)
    );
    let s = o.usage.session.expect("session usage");
    assert!(s.process_limit_events >= 1, "{s:?}");
    assert!(s.limits_hit().contains(&LimitHit::Processes));
    // The session is not wedged: its next command runs.
    let o = sh(&sb, "echo ok");
    assert_eq!(out(&o), "ok\n");
}

#[test]
fn concurrent_commands_share_the_session_memory_limit() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let session = GroupLimits {
        memory_bytes: Some(400 << 20),
        ..GroupLimits::SESSION_DEFAULT
    };
    let command = GroupLimits {
        memory_bytes: Some(1 << 30),
        ..GroupLimits::COMMAND_DEFAULT
    };
    let sb = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        limits(command, session),
    );
    let code = "import time; x = b'x' * (250 << 20); time.sleep(3); print('kept')";
    let outs: Vec<ExecOutcome> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| python(&sb, code, test_limits())))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let killed: u64 = outs.iter().map(|o| group(o).oom_kills).sum();
    assert!(
        killed >= 1,
        "two commands held 500 MiB under a 400 MiB session limit"
    );
    let kept = outs.iter().filter(|o| out(o).contains("kept")).count();
    assert!(kept <= 1, "both kept their memory");
    let s = sb.session_usage().unwrap();
    assert!(s.oom_kills >= 1, "{s:?}");
    assert!(s.memory_peak_bytes.unwrap() <= 400 << 20, "{s:?}");
}

#[test]
fn consecutive_commands_are_accounted_to_the_session() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let sb = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        ResourceLimits::default(),
    );
    let before = sb.session_usage().unwrap();
    let a = python(&sb, &busy(0.4), test_limits());
    let b = python(&sb, &busy(0.4), test_limits());
    let (ga, gb) = (group(&a), group(&b));
    let cpu = |g: &GroupUsage| g.cpu_user + g.cpu_system;
    // Each command's group saw its own CPU time (busy ≥ some of 0.4 s).
    assert!(cpu(&ga) >= Duration::from_millis(50), "{ga:?}");
    assert!(cpu(&gb) >= Duration::from_millis(50), "{gb:?}");
    // The session's counters hold both.
    let s = b.usage.session.unwrap().since(&before);
    assert!(
        cpu(&s) + Duration::from_millis(20) >= cpu(&ga) + cpu(&gb),
        "session {:?} < {:?} + {:?}",
        cpu(&s),
        cpu(&ga),
        cpu(&gb)
    );
    // The second command's group started empty: its figures are its own.
    assert!(cpu(&gb) < cpu(&ga) + cpu(&gb));
    assert!(gb.memory_peak_bytes.unwrap() < 256 << 20);
}

#[test]
fn cpu_limit_throttles_a_hog() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let command = GroupLimits {
        cpu: Some(MilliCpus(200)),
        ..GroupLimits::COMMAND_DEFAULT
    };
    let sb = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        limits(command, GroupLimits::SESSION_DEFAULT),
    );
    let o = python(&sb, &busy(1.5), test_limits());
    assert_eq!(o.status, ExitStatus::Exit(0), "{}", err(&o));
    let g = group(&o);
    let used = g.cpu_user + g.cpu_system;
    // 0.2 CPU for 1.5 s (plus start-up and the quota's granularity).
    assert!(used <= Duration::from_millis(550), "used {used:?}: {g:?}");
    assert!(g.cpu_throttled_periods > 0, "{g:?}");
    assert!(g.limits_hit().contains(&LimitHit::Cpu));
    // Without a CPU limit (the default) the hog is accounted, not throttled.
    let free = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        ResourceLimits::default(),
    );
    let o = python(&free, &busy(0.5), test_limits());
    let g = group(&o);
    assert_eq!(g.cpu_throttled_periods, 0);
    assert!(
        g.cpu_user + g.cpu_system >= Duration::from_millis(50),
        "{g:?}"
    );
}

fn populated(dir: &Path) -> bool {
    let ev = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
    ev.lines().any(|l| l == "populated 1")
}

#[test]
fn a_timed_out_command_is_killed_as_a_whole_group() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let sb = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        ResourceLimits::default(),
    );
    let mut l = test_limits();
    l.wall_time = Duration::from_secs(1);
    l.kill_grace = Duration::from_millis(300);
    // Processes in new sessions and double-forked, all ignoring SIGTERM.
    let o = sh_with(
        &sb,
        "trap '' TERM; setsid sh -c \"trap '' TERM; while :; do sleep 0.1; done\" & \
         (sh -c \"trap '' TERM; while :; do :; done\" &) ; while :; do sleep 0.1; done",
        l,
    );
    assert_eq!(o.status, ExitStatus::TimedOut);
    let g = group(&o);
    assert!(g.processes_peak.is_none_or(|p| p >= 4), "{g:?}");
    let dir = sb.session_cgroup().unwrap();
    assert!(!populated(dir), "a process of the command outlived it");
}

#[test]
fn no_process_outlives_its_command() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let rec = Recorder::new(Rule::AllowFiles);
    let sb = mediated_with(ws.path(), rec.clone(), ResourceLimits::default());
    let o = sh(
        &sb,
        "(setsid sh -c 'sleep 1; echo late > late-setsid.txt' &) ; \
         (sh -c 'sleep 1; echo late > late-double.txt' &) & \
         nohup sh -c 'sleep 1; echo late > late-nohup.txt' >/dev/null 2>&1 & \
         echo started",
    );
    assert_eq!(out(&o), "started\n");
    assert!(!populated(sb.session_cgroup().unwrap()));
    std::thread::sleep(Duration::from_secs(2));
    for f in ["late-setsid.txt", "late-double.txt", "late-nohup.txt"] {
        assert!(
            !ws.path().join(f).exists(),
            "{f} was written after the command ended"
        );
    }
    assert!(
        !rec.asked(FileAccess::Write)
            .iter()
            .any(|p| p.starts_with("late")),
        "a leftover process reached the file server: {:?}",
        rec.asked(FileAccess::Write)
    );
}

#[test]
fn unusable_cgroups_refuse_unless_allowed() {
    if !ready() {
        return;
    }
    let ws = workspace();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = |requirement| {
        let mut cfg = ProcessSandboxConfig::new(ws.path(), Recorder::new(Rule::AllowFiles));
        cfg.workspace_mount = WorkspaceMount::PlainBindForTestsOnly;
        cfg.network = stele_sandbox::process::NetworkMode::LoopbackOnly;
        // A parent that cannot be made: `cgroup.procs` is a file.
        cfg.resources.cgroup_parent = Some("cgroup.procs/stele".into());
        cfg.resources.requirement = requirement;
        cfg
    };
    match ProcessSandbox::new(config(CgroupRequirement::Required)) {
        Err(SandboxError::LayerUnavailable { layer, detail }) => {
            assert_eq!(layer, Layer::Cgroup);
            assert!(detail.contains("cgroup.procs"), "{detail}");
            assert!(detail.contains("optional"), "{detail}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let sb = ProcessSandbox::new(config(CgroupRequirement::AllowWithout)).unwrap();
    let o = sh(&sb, "echo ran");
    assert_eq!(out(&o), "ran\n");
    assert_eq!(o.usage.group, None);
    let j = sb.resources_json();
    assert!(j.get("cgroups").is_none(), "{j}");
    assert!(
        j["without_cgroups"]
            .as_str()
            .unwrap()
            .contains("cgroup.procs"),
        "{j}"
    );
    assert!(j["allowed_by"].as_str().is_some(), "{j}");
    let with = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        ResourceLimits::default(),
    );
    let j = with.resources_json();
    assert!(j["cgroups"].is_string(), "{j}");
    assert_eq!(
        j["command_limits"]["memory_bytes"],
        serde_json::json!(4u64 << 30)
    );
}

#[test]
fn a_command_does_not_inherit_the_previous_ones_figures() {
    if !ready() {
        return;
    }
    let ws = workspace();
    let command = GroupLimits {
        memory_bytes: Some(256 << 20),
        ..GroupLimits::COMMAND_DEFAULT
    };
    let sb = plain_with(
        ws.path(),
        Recorder::new(Rule::AllowFiles),
        limits(command, GroupLimits::SESSION_DEFAULT),
    );
    for round in 0..3 {
        let hog = python(&sb, "x = b'x' * (400 << 20)", test_limits());
        let g = group(&hog);
        assert!(g.oom_kills >= 1, "round {round}: {g:?}");
        // Let the group it ran in be reset and handed out again.
        std::thread::sleep(Duration::from_millis(300));
        let quiet = sh(&sb, "echo quiet");
        assert_eq!(out(&quiet), "quiet\n");
        let g = group(&quiet);
        assert_eq!(g.oom_kills, 0, "round {round}: {g:?}");
        assert_eq!(g.memory_limit_events, 0, "round {round}: {g:?}");
        assert!(
            g.memory_peak_bytes.unwrap() < 64 << 20,
            "round {round}: {g:?}"
        );
        assert!(g.limits_hit().is_empty(), "round {round}: {g:?}");
    }
}
