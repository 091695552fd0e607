//! The file benchmark's workload run as a command of the process sandbox:
//! python3 (the system's, `/usr/bin/python3`) reads 10,000 small files and
//! writes 1,000 in `/workspace`, once with the workspace bind-mounted
//! (`WorkspaceMount::PlainBindForTestsOnly`: same namespaces, Landlock,
//! seccomp and limits, no mediation) and once served by the mediated file
//! system, with the backend's CPU placement (`CpuPlacement`). Needs what the
//! process sandbox needs (root here, Landlock, seccomp, /dev/fuse).
//!
//! Run: `cargo run --release -p stele-sandbox --example fs_bench_sandbox [-- ROUNDS] [--no-pin] [--fresh] [--dir PARENT]`
//! (options as for `fs_bench`; `--no-pin` is `CpuPlacement::Scheduler`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fs_support;
#[path = "fs_support/workload.rs"]
mod workload;

use std::sync::Arc;
use std::time::Duration;

use fs_support::Recorder;
use stele_sandbox::exec::{ExecRequest, ExitStatus, Sandbox};
use stele_sandbox::process::{
    CpuPlacement, NetworkMode, ProcessSandbox, ProcessSandboxConfig, WorkspaceMount,
};
use workload::{populate, READS, SCRIPT, WRITES};

/// CPU time of this process (the mediated workspace's server threads).
fn own_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    [ru.ru_utime, ru.ru_stime]
        .iter()
        .map(|tv| Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64))
        .sum()
}

#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
    read: Duration,
    write: Duration,
}

fn run(sb: &ProcessSandbox, out_dir: &str) -> Run {
    let argv = ["/usr/bin/python3", "-c", SCRIPT, "/workspace", out_dir]
        .map(String::from)
        .to_vec();
    let c0 = own_cpu();
    let o = sb.exec(ExecRequest::new("bench", argv)).unwrap();
    let server = own_cpu() - c0;
    assert_eq!(
        o.status,
        ExitStatus::Exit(0),
        "{}",
        String::from_utf8_lossy(&o.stderr.bytes)
    );
    let text = String::from_utf8(o.stdout.bytes).unwrap();
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    Run {
        wall: o.duration,
        cpu: o.usage.user_cpu + o.usage.system_cpu + server,
        read: Duration::from_micros(f[1]),
        write: Duration::from_micros(f[2]),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: needs root and /dev/fuse");
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(5)
        .max(1);
    let placement = if args.iter().any(|a| a == "--no-pin") {
        CpuPlacement::Scheduler
    } else {
        CpuPlacement::WithFileServer
    };
    let fresh = args.iter().any(|a| a == "--fresh");
    let parent = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let ws = tempfile::tempdir_in(&parent).unwrap();
    populate(ws.path());
    // The plain sandbox runs as the unprivileged host id: let it write.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let recorder = Arc::new(Recorder::with_recording(false));
    let mut cfg = ProcessSandboxConfig::new(ws.path(), recorder.clone());
    cfg.network = NetworkMode::LoopbackOnly;
    cfg.cpu = placement;
    let mediated = ProcessSandbox::new(cfg.clone()).unwrap();
    cfg.workspace_mount = WorkspaceMount::PlainBindForTestsOnly;
    let plain = ProcessSandbox::new(cfg).unwrap();

    let mut n = 0;
    let mut next = |sb: &ProcessSandbox| {
        n += 1;
        let dir = if fresh {
            format!("out-{n}")
        } else {
            "out".to_owned()
        };
        let r = run(sb, &dir);
        if !fresh {
            let _ = std::fs::remove_dir_all(ws.path().join("out"));
        }
        r
    };
    let _ = next(&plain);
    let _ = next(&mediated);
    let (mut p, mut m) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        p.push(next(&plain));
        m.push(next(&mediated));
    }
    let pick = |v: &[Run], f: fn(&Run) -> Duration| median(v.iter().map(f).collect());
    println!(
        "workload in the process sandbox: python3 reads {READS} small files, writes {WRITES} ({rounds} rounds, median; {placement:?}{}; under {})",
        if fresh { "; fresh output directories" } else { "" },
        parent.display()
    );
    for (name, v) in [("bind-mounted:", &p), ("mediated:    ", &m)] {
        println!(
            "{name} {:>8.1} ms wall {:>8.1} ms cpu  (read {:.1} ms, write {:.1} ms)",
            ms(pick(v, |r| r.wall)),
            ms(pick(v, |r| r.cpu)),
            ms(pick(v, |r| r.read)),
            ms(pick(v, |r| r.write)),
        );
    }
    let ratio = |f: fn(&Run) -> Duration| pick(&m, f).as_secs_f64() / pick(&p, f).as_secs_f64();
    println!(
        "ratio (wall) {:.2}, (cpu) {:.2}; phases: read {:.2}, write {:.2}",
        ratio(|r| r.wall),
        ratio(|r| r.cpu),
        ratio(|r| r.read),
        ratio(|r| r.write)
    );
}
