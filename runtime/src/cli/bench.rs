//! `stele bench gate`: the gate's own cost per tool call — policy decision,
//! durable intent, durable result — without the command itself.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_attest::Ed25519Signer;
use stele_audit::{AuditLog, LogOptions, Outcome, Status};
use stele_policy::{Action, ApprovalOutcome, Bundle, Resource, SandboxFacts};

use crate::gate::approval::FlagApprover;
use crate::gate::{ActionRequest, Authorization, Gate, SessionInfo};

/// Arguments of `stele bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub what: BenchWhat,
}

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// Gate overhead per tool call (decide + durable intent + durable result), one call at a time.
    Gate {
        /// Tool calls to measure.
        #[arg(long, default_value_t = 500)]
        calls: usize,
        /// Print the figures as JSON (docs/json/bench-gate.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// A whole tool call: from the model's last streamed event to the call's durable
    /// `tool.intent`, and to the sandboxed program's first instruction (p50, p99).
    ToolCall {
        /// Tool calls to measure (the first, which warms the sandbox up, is left out).
        #[arg(long, default_value_t = 100)]
        calls: usize,
        /// Print the figures as JSON (docs/json/bench-tool-call.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// A file-heavy command (read 10,000 small files, write 1,000) plainly and through
    /// `stele sandbox exec` with the real gate and log, interleaved; prints the ratio.
    Workload(super::bench_workload::WorkloadArgs),
    /// One-shot `stele sandbox exec -- /bin/true`, whole process, on a fresh log and on logs
    /// already holding N entries: wall time and peak RSS.
    Exec(super::bench_exec::ExecArgs),
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// Run `stele bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let (calls, json) = match args.what {
        BenchWhat::Gate { calls, json } => (calls, json),
        BenchWhat::ToolCall { calls, json } => return super::bench_tool_call::run(calls, json),
        BenchWhat::Workload(w) => return super::bench_workload::run(&w),
        BenchWhat::Exec(e) => return super::bench_exec::run(&e),
    };
    let dir = tempfile_dir()?;
    let ticker = super::ticker::Ticker::start(&format!("bench gate: {calls} tool calls"));
    let result = bench_gate(&dir, calls);
    drop(ticker);
    let _ = std::fs::remove_dir_all(&dir);
    let (p50, p99, decide) = result?;
    if json {
        super::json::pretty(&super::json::GateBench {
            calls,
            p50_ms: ms(p50),
            p99_ms: ms(p99),
            decide_p50_us: decide.as_secs_f64() * 1e6,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!("stele bench gate ({calls} tool calls, finance policy, one at a time)");
    crate::outln!(
        "  gate overhead per tool call: p50 {:.2} ms, p99 {:.2} ms",
        ms(p50),
        ms(p99)
    );
    crate::outln!(
        "  of which policy decision:    p50 {:.1} µs",
        decide.as_secs_f64() * 1e6
    );
    crate::outln!(
        "  (two durable appends per call: intent before, result after; each waits for fsync)"
    );
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("stele-bench-gate-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn bench_gate(
    dir: &std::path::Path,
    calls: usize,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let policy = dir.join("policy");
    super::demo::write_policy(&policy)?;
    let bundle = Arc::new(Bundle::load(&policy)?);
    let signer = Arc::new(Ed25519Signer::generate("bench.stele.invalid/gate")?);
    let log = Arc::new(AuditLog::create(
        &dir.join("audit.db"),
        signer,
        LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        },
    )?);
    let gate = Gate::start_session(
        log.clone(),
        bundle.clone(),
        SessionInfo {
            id: "bench".into(),
            principal: "alice".into(),
            teams: vec!["finance".into()],
        },
        Box::new(FlagApprover::new(
            ApprovalOutcome::Refused,
            "alice",
            "flag",
            "bench",
        )),
        SandboxFacts::default(),
        serde_json::json!({}),
    )?;
    let mut lat = Vec::with_capacity(calls);
    let mut dec = Vec::with_capacity(calls);
    for i in 0..calls + 20 {
        let req = ActionRequest::new(
            Action::ToolCall,
            Resource::Tool {
                name: "file_read".into(),
            },
        );
        let t = Instant::now();
        let Authorization::Permitted(p) = gate.authorize(req)? else {
            anyhow::bail!("the finance policy should permit file_read");
        };
        gate.complete(p, Outcome::status(Status::Ok), Vec::new(), None)?;
        let e = t.elapsed();
        let pr = stele_policy::Request::builder(
            "alice",
            Action::ToolCall,
            Resource::Tool {
                name: "file_read".into(),
            },
        )
        .session("bench")
        .build()?;
        let t2 = Instant::now();
        let _ = bundle.decide(&pr);
        let d = t2.elapsed();
        if i >= 20 {
            lat.push(e);
            dec.push(d);
        }
    }
    lat.sort();
    dec.sort();
    drop(gate);
    if let Ok(l) = Arc::try_unwrap(log) {
        l.close()?;
    }
    Ok((pct(&lat, 0.5), pct(&lat, 0.99), pct(&dec, 0.5)))
}
