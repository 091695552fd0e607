//! `stele bench exec`: one-shot `stele sandbox exec -- /bin/true`, whole
//! process (start-up, the state and log opened, policy loaded, the
//! sandbox's namespaces and file server, the command, the record durable,
//! exit), as a user runs it, on a fresh log and on logs that already hold
//! N entries. Prints wall time and peak RSS (of `stele`, or of a process it
//! started and waited for when that is larger, e.g. QEMU). The
//! first run is reported apart: it hashes the executable (the digest is
//! then cached in the state) and, on a log built elsewhere, scans the log
//! once for the exports it records (`runtime/src/isolation/exports.rs`;
//! every session's end keeps that index current afterwards).

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::bench_scratch::{list, median, ms, Scratch};

/// Arguments of `stele bench exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Measured runs per log size (after the first, which is reported apart).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Entries the audit log holds before the runs, comma-separated: one
    /// measurement per size.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub existing: Vec<u64>,
    /// The sandbox backend (`process` or `vm`).
    #[arg(long, default_value = "process")]
    pub backend: String,
    /// Print the figures as JSON (docs/json/bench-exec.schema.json).
    #[arg(long)]
    pub json: bool,
}

/// One run: wall time and peak RSS (the largest of `stele` and the processes
/// it waited for: the sandbox's, QEMU).
struct Run {
    wall: Duration,
    max_rss_kib: u64,
}

/// Run `stele bench exec`.
pub fn run(args: &ExecArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.runs > 0, "--runs: at least 1 run is needed");
    let mut sizes = Vec::new();
    for &existing in &args.existing {
        sizes.push(measure(args, existing)?);
    }
    if args.json {
        super::json::pretty(&super::json::ExecBench {
            backend: args.backend.clone(),
            runs: args.runs,
            sizes,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!(
        "stele bench exec: `stele sandbox exec -- /bin/true`, whole process ({} backend, real gate and audit log, fsync on)",
        args.backend
    );
    for s in &sizes {
        crate::outln!("  log holding {} entries before:", s.entries_before);
        crate::outln!(
            "    first run (the executable's digest and the log's export index not yet built): {:8.1} ms",
            s.first_ms
        );
        crate::outln!(
            "    then, {} runs: median {:6.1} ms, p90 {:6.1} ms, max {:6.1} ms (goal <= 60 ms)",
            s.wall_ms.len(),
            s.median_ms,
            s.p90_ms,
            s.wall_ms.last().copied().unwrap_or_default()
        );
        crate::outln!(
            "    peak RSS of stele: {} KiB (max over runs)",
            s.max_rss_kib
        );
        crate::outln!("    runs (ms): {}", s.runs_text);
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(args: &ExecArgs, existing: u64) -> anyhow::Result<super::json::ExecBenchSize> {
    let scratch = Scratch::new("exec", existing)?;
    let ws = scratch.dir().join("ws");
    std::fs::create_dir_all(&ws)?;
    let ws_text = ws.to_str().context("scratch path is not UTF-8")?;
    let cmd = || scratch.sandbox_exec(ws_text, &args.backend, &["/bin/true"]);
    let ticker = super::ticker::Ticker::start(&format!(
        "bench exec: {} runs on a log of {existing} entries",
        args.runs + 1
    ));
    let entries_before = scratch.log_size()?;
    let first = run_once(cmd())?;
    let mut runs = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        runs.push(run_once(cmd())?);
    }
    drop(ticker);
    let max_rss_kib = runs
        .iter()
        .chain([&first])
        .map(|r| r.max_rss_kib)
        .max()
        .unwrap_or(0);
    let mut walls: Vec<Duration> = runs.iter().map(|r| r.wall).collect();
    walls.sort();
    let p90 = walls
        .get((walls.len() * 9 / 10).min(walls.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Ok(super::json::ExecBenchSize {
        entries_before,
        first_ms: ms(first.wall),
        median_ms: ms(median(&walls)),
        p90_ms: ms(p90),
        wall_ms: walls.iter().map(|d| ms(*d)).collect(),
        max_rss_kib,
        runs_text: list(&walls),
    })
}

/// Run `cmd` to its end; its wall time and peak RSS (from `wait4`: the
/// largest of the child and the descendants it waited for, not the
/// benchmark's own).
fn run_once(mut cmd: Command) -> anyhow::Result<Run> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = cmd.spawn().context("starting stele sandbox exec")?;
    let stderr = child.stderr.take();
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    // Drain stderr on a thread so a chatty child cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for (std's `Child` is
    // never waited on after this), and both pointers are to live locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed();
    let err = reader.join().unwrap_or_default();
    anyhow::ensure!(
        rc == pid,
        "waiting for stele sandbox exec: {}",
        std::io::Error::last_os_error()
    );
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "stele sandbox exec -- /bin/true failed (wait status {status}): {err}"
    );
    Ok(Run {
        wall,
        max_rss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
    })
}
