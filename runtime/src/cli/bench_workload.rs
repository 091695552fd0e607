//! `stele bench workload`: a file-heavy command measured as a user runs it —
//! plain, and through `stele sandbox exec` with the real gate, policy and
//! audit log (fsync on) — interleaved, so both see the same machine load.
//!
//! The workload reads every small file under `in/` and writes `--writes`
//! files under `out/` (the shape of `sandbox/examples/fs_bench.rs`, but
//! through the whole product). With `--existing N` the log already holds N
//! entries before the first run, signed by the scratch state's own key.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::bench_scratch::{list, median, ms, Scratch};

/// Arguments of `stele bench workload`.
#[derive(Debug, clap::Args)]
pub struct WorkloadArgs {
    /// Small files the command reads.
    #[arg(long, default_value_t = 10_000)]
    pub files: usize,
    /// Files the command writes.
    #[arg(long, default_value_t = 1_000)]
    pub writes: usize,
    /// Measured runs of each (after one warm-up run of each).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Entries the audit log holds before the first run.
    #[arg(long, default_value_t = 0)]
    pub existing: u64,
    /// The sandbox backend (`process` or `vm`).
    #[arg(long, default_value = "process")]
    pub backend: String,
    /// Print the figures as JSON (docs/json/bench-workload.schema.json).
    #[arg(long)]
    pub json: bool,
}

/// The command both ways run: read all of `in/`, write `out/`.
const WORK_PY: &str = r#"import os, sys
root, writes = sys.argv[1], int(sys.argv[2])
n = 0
for d in sorted(os.listdir(os.path.join(root, "in"))):
    p = os.path.join(root, "in", d)
    for f in os.listdir(p):
        with open(os.path.join(p, f), "rb") as fh:
            n += len(fh.read())
out = os.path.join(root, "out")
for i in range(writes):
    with open(os.path.join(out, f"o{i}.txt"), "w") as fh:
        fh.write(str(i) * 50)
print(n)
"#;

/// Run `stele bench workload`.
pub fn run(args: &WorkloadArgs) -> anyhow::Result<ExitCode> {
    let scratch = Scratch::new("workload", args.existing)?;
    let ws = scratch.dir().join("ws");
    make_workspace(&ws, args.files)?;
    let writes = args.writes.to_string();
    let ws_text = ws.to_str().context("scratch path is not UTF-8")?;
    let script = ws.join("work.py");
    let script_text = script.to_str().context("scratch path is not UTF-8")?;
    let plain = || -> anyhow::Result<Duration> {
        clear_out(&ws)?;
        let t = Instant::now();
        let o = Command::new("python3")
            .args([script_text, ws_text, &writes])
            .stdin(Stdio::null())
            .output()?;
        let d = t.elapsed();
        anyhow::ensure!(
            o.status.success(),
            "plain python3: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(d)
    };
    let boxed = || -> anyhow::Result<Duration> {
        clear_out(&ws)?;
        let t = Instant::now();
        let o = scratch
            .sandbox_exec(
                ws_text,
                &args.backend,
                &["python3", "/workspace/work.py", "/workspace", &writes],
            )
            .output()?;
        let d = t.elapsed();
        anyhow::ensure!(
            o.status.success(),
            "stele sandbox exec: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(d)
    };
    let ticker = super::ticker::Ticker::start(&format!(
        "bench workload: {} runs each, plain and through stele",
        args.runs + 1
    ));
    let entries_before = scratch.log_size()?;
    let mut p = Vec::new();
    let mut s = Vec::new();
    for i in 0..=args.runs {
        let a = plain()?;
        let b = boxed()?;
        // The first run of each warms caches up and is left out.
        if i > 0 {
            p.push(a);
            s.push(b);
        }
    }
    drop(ticker);
    let entries_after = scratch.log_size()?;
    p.sort();
    s.sort();
    let (pm, sm) = (median(&p), median(&s));
    let per_run = (entries_after - entries_before) / (args.runs as u64 + 1);
    let ratio = ms(sm) / ms(pm).max(1e-3);
    if args.json {
        super::json::pretty(&super::json::WorkloadBench {
            files: args.files,
            writes: args.writes,
            backend: args.backend.clone(),
            runs: args.runs,
            entries_before,
            entries_per_run: per_run,
            plain_ms: p.iter().map(|d| ms(*d)).collect(),
            stele_ms: s.iter().map(|d| ms(*d)).collect(),
            ratio,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!(
        "stele bench workload: read {} files, write {} ({} backend, real gate and audit log, fsync on)",
        args.files,
        args.writes,
        args.backend
    );
    crate::outln!("  log before the first run: {entries_before} entries; each run adds {per_run}");
    crate::outln!(
        "  plain python3:        median {:8.1} ms  (runs: {})",
        ms(pm),
        list(&p)
    );
    crate::outln!(
        "  stele sandbox exec:   median {:8.1} ms  (runs: {})",
        ms(sm),
        list(&s)
    );
    crate::outln!("  ratio (median):       {ratio:.2}x   (goal <= 2.0x)");
    Ok(ExitCode::SUCCESS)
}

fn make_workspace(ws: &Path, files: usize) -> anyhow::Result<()> {
    for i in 0..files {
        let d = ws.join("in").join((i / 1000).to_string());
        if i % 1000 == 0 {
            std::fs::create_dir_all(&d)?;
        }
        std::fs::write(
            d.join(format!("f{i}.txt")),
            format!("{}{i}", "x".repeat(200)),
        )?;
    }
    std::fs::create_dir_all(ws.join("in"))?;
    std::fs::create_dir_all(ws.join("out"))?;
    std::fs::write(ws.join("work.py"), WORK_PY)?;
    Ok(())
}

fn clear_out(ws: &Path) -> anyhow::Result<()> {
    let out: PathBuf = ws.join("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    Ok(())
}
