//! CPU placement of the mediated workspace: the process sandbox runs its
//! commands on the CPU of its workspace's file server (unless told not to),
//! so every FUSE round trip stays on one CPU.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use stele_sandbox::exec::ExitStatus;
use stele_sandbox::process::{CpuPlacement, ProcessSandbox, ProcessSandboxConfig};
use support::*;

/// The `Cpus_allowed_list` a command in `sb` sees for itself.
fn allowed_in(sb: &ProcessSandbox) -> String {
    let o = sh(sb, "grep Cpus_allowed_list /proc/self/status");
    assert_eq!(o.status, ExitStatus::Exit(0), "{}", err(&o));
    out(&o)
        .trim()
        .trim_start_matches("Cpus_allowed_list:")
        .trim()
        .to_owned()
}

/// The `Cpus_allowed_list` of this process's file-server threads.
fn server_cpus() -> Vec<String> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.starts_with("stele-fuse") {
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            let list = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_owned();
            found.push(list);
        }
    }
    found
}

#[test]
fn commands_share_the_file_servers_cpu_unless_told_otherwise() {
    if !facilities_ok(true) {
        return;
    }
    let all = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Cpus_allowed_list:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap();

    let ws = workspace();
    let rec = Recorder::new(Rule::AllowFiles);
    let placed = mediated(ws.path(), rec.clone());
    let inside = allowed_in(&placed);
    assert!(!inside.contains(['-', ',']), "one CPU: {inside}");
    assert!(
        server_cpus().contains(&inside),
        "the server runs there too: {:?} vs {inside}",
        server_cpus()
    );
    drop(placed);

    let mut cfg = ProcessSandboxConfig::new(ws.path(), rec);
    cfg.cpu = CpuPlacement::Scheduler;
    let free = ProcessSandbox::new(cfg).unwrap();
    assert_eq!(allowed_in(&free), all);
}
