//! `stele sandbox …`: check what this host enforces, run one command in the
//! sandbox exactly as the agent would, and measure spawn overhead.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stele_sandbox::exec::{ExecOutcome, ExecRequest, ExitStatus, Limits, Sandbox, Truncation};
use stele_sandbox::process::{NetworkMode, ProcessSandbox, ProcessSandboxConfig, WorkspaceMount};
use stele_sandbox::{
    FileCloseReport, FileRequest, Mediator, NetCloseReport, NetRequest, NetVerdict, Ticket, Verdict,
};

use super::setup::{self, NetworkChoice, OpenSession, SessionSpec};
use crate::gate::approval::approver_for;
use crate::gate::ApproveMode;
use crate::tools::exec::{exec_gated, GatedExec};
use stele_audit::Status;

/// Arguments of `stele sandbox`.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SandboxCommand,
}

/// `stele sandbox` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Report which sandbox layers are active on this host (by probing them).
    Check(CheckArgs),
    /// Run one command in the sandbox, through the policy gate.
    Exec(Box<ExecArgs>),
    /// Measure the process sandbox's spawn overhead against a plain spawn.
    Bench(BenchArgs),
}

/// Arguments of `stele sandbox check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `stele sandbox exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The granted workspace folder (appears as /workspace).
    #[arg(long)]
    pub workspace: PathBuf,
    /// Policy bundle folder [default: as for `stele run`: `policy` in the config,
    /// $XDG_CONFIG_HOME/stele/policy, /etc/stele/policy, else the built-in strict-default].
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The person the command runs for (as for `stele run`) [default: $USER, else $LOGNAME].
    #[arg(long)]
    pub user: Option<String>,
    /// Wall-clock timeout in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Working directory relative to the workspace.
    #[arg(long, default_value = "")]
    pub cwd: String,
    /// Print a JSON result on stdout instead of the command's output.
    #[arg(long)]
    pub json: bool,
    /// The sandbox's network [default: `network` in the config, else none].
    #[arg(long, value_enum)]
    pub network: Option<NetworkChoice>,
    /// What to do when policy asks a human [default: `approve` in the config,
    /// else prompt on a terminal and refuse without one, as `stele run`].
    #[arg(long, value_enum)]
    pub approve: Option<ApproveMode>,
    /// The sandbox backend [default: `backend` in the config, else process].
    #[arg(long, value_enum)]
    pub backend: Option<super::backend::BackendChoice>,
    /// When the micro-VM does not come up: refuse, or run in the process
    /// sandbox (warned and logged) [default: `vm_fallback` in the config, else none].
    #[arg(long, value_enum)]
    pub vm_fallback: Option<super::backend::VmFallback>,
    /// Audit database [default: $STATE/audit.db].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Signing key [default: $STATE/keys/log.key].
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Bytes the session's commands may write into the workspace, e.g.
    /// 512MiB, 4GiB or "unlimited" [default: `workspace_write_quota` in the
    /// config, else 4GiB].
    #[arg(long)]
    pub workspace_quota: Option<stele_sandbox::fs::WriteQuota>,
    /// Group limits (memory, processes, CPU) for this session.
    #[command(flatten)]
    pub limits: super::resources::LimitArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// How the benchmark presents the workspace.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchWorkspace {
    /// The mediated FUSE workspace (the real configuration).
    Mediated,
    /// A plain bind mount (isolates namespace/Landlock/seccomp cost).
    Plain,
}

/// Arguments of `stele sandbox bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Number of measured runs of each kind.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Workspace presentation.
    #[arg(long, value_enum, default_value_t = BenchWorkspace::Mediated)]
    pub workspace: BenchWorkspace,
    /// The sandbox's network [default: proxy with a mediated workspace (the
    /// agent's configuration), none with a plain one].
    #[arg(long, value_enum)]
    pub network: Option<NetworkChoice>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `stele sandbox`.
pub fn run(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SandboxCommand::Check(a) => super::sandbox_check::check(a),
        SandboxCommand::Exec(a) => match exec(*a) {
            // The command's own exit codes pass through; stele's own
            // failures are 125 (as for env(1), timeout(1)), unless they have
            // a code of their own (69 no sandbox here, 78 not set up).
            Err(e) if super::exit::code_of(&e) == super::exit::FAILURE => {
                crate::errln!(
                    "stele: error: {}",
                    crate::terminal_safe::line(&format!("{e:#}"))
                );
                Ok(ExitCode::from(super::exit::EXEC_FAILED))
            }
            other => other,
        },
        SandboxCommand::Bench(a) => bench(a),
    }
}

/// Host variables passed through to the sandbox (everything else is scrubbed).
const PASS_ENV: [&str; 4] = ["TERM", "LANG", "LC_ALL", "TZ"];

fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    // The same defaults as `stele run`: flags, then the configuration.
    let user = setup::principal(args.user.as_deref())?;
    let layers = crate::config::load()?;
    let policy = layers.pick("policy", args.policy.clone(), |c| c.policy.clone())?;
    let network = layers
        .pick("network", args.network, |c| c.network)?
        .unwrap_or(NetworkChoice::None);
    let approve = layers
        .pick("approve", args.approve, |c| c.approve)?
        .unwrap_or(ApproveMode::Prompt);
    let db = layers.pick("db", args.db.clone(), |c| c.db.clone())?;
    let key = layers.pick("key", args.key.clone(), |c| c.key.clone())?;
    let backend = super::backend::BackendSpec {
        requested: layers
            .pick("backend", args.backend, |c| c.backend)?
            .unwrap_or(super::backend::BackendChoice::Process),
        fallback: layers
            .pick("vm_fallback", args.vm_fallback, |c| c.vm_fallback)?
            .unwrap_or_default(),
        vm_boot_timeout: layers
            .pick("vm_boot_timeout_secs", None, |c| c.vm_boot_timeout_secs)?
            .map(Duration::from_secs),
        workspace_quota: super::backend::workspace_quota(&layers, args.workspace_quota)?,
        resources: super::resources::resource_limits(&layers, &args.limits.limits)?,
        root: super::backend::sandbox_root(&layers)?,
    };
    let session = setup::open(
        SessionSpec {
            workspace: &args.workspace,
            policy: policy.as_deref(),
            user: Some(&user),
            db: db.as_deref(),
            key: key.as_deref(),
            network,
            backend,
            data: json!({ "command": "sandbox exec" }),
        },
        super::ticker::quiet_while_asking(approver_for(approve, &user)),
    )?;
    let result = exec_in(&session, &args);
    session.release_sandbox();
    let status = match &result {
        Ok(_) => Status::Ok,
        Err(_) => Status::Error,
    };
    session.gate.end_session(status, None)?;
    session.attest()?;
    session.close()?;
    result
}

fn exec_in(session: &OpenSession, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let (sandbox, _mediator) = session.sandbox()?;
    let mut stdin = Vec::new();
    if !std::io::stdin().is_terminal() {
        std::io::stdin().read_to_end(&mut stdin)?;
    }
    let mut req = ExecRequest::new(format!("cli-{}", std::process::id()), args.command.clone());
    req.cwd = args.cwd.clone();
    req.stdin = stdin;
    req.env = PASS_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    req.limits = Limits {
        wall_time: Duration::from_secs(args.timeout),
        ..Limits::default()
    };
    let ticker = super::ticker::Ticker::start(&format!(
        "{} running in the sandbox",
        args.command
            .first()
            .map(String::as_str)
            .unwrap_or("command")
    ));
    let gated = exec_gated(
        &session.gate,
        sandbox.as_ref(),
        req,
        json!({ "cwd": args.cwd }),
    );
    drop(ticker);
    let outcome = match gated? {
        GatedExec::Ran(o) => *o,
        GatedExec::Denied(d) => {
            crate::errln!(
                "stele sandbox: denied: {} (audit entry {})",
                crate::terminal_safe::line(&d.reason),
                d.seq
            );
            return Ok(ExitCode::from(super::exit::EXEC_DENIED));
        }
        GatedExec::Failed(msg) => anyhow::bail!("{}", crate::terminal_safe::line(&msg)),
    };
    if args.json {
        super::json::pretty(&outcome_json(&outcome))?;
    } else {
        relay(&mut std::io::stdout(), &outcome.stdout.bytes)?;
        relay(&mut std::io::stderr(), &outcome.stderr.bytes)?;
        crate::errln!("{}", summary(&outcome));
    }
    let code = u8::try_from(outcome.status.code().clamp(0, 255)).unwrap_or(1);
    Ok(ExitCode::from(code))
}

/// A sandboxed program's output: byte for byte into a pipe or a file; on
/// a terminal, escaped (line feeds kept), so that it can neither drive the
/// terminal nor pass for stele's own lines.
fn relay(out: &mut (impl Write + IsTerminal), bytes: &[u8]) -> std::io::Result<()> {
    let r = relay_bytes(out, bytes);
    match r {
        // The reader stopped reading (`| head`): its choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

fn relay_bytes(out: &mut (impl Write + IsTerminal), bytes: &[u8]) -> std::io::Result<()> {
    if out.is_terminal() {
        let shown = crate::terminal_safe::bytes(bytes, crate::terminal_safe::Newlines::Keep);
        out.write_all(shown.as_bytes())?;
        if !shown.is_empty() && !shown.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        Ok(())
    } else {
        out.write_all(bytes)
    }
}

fn status_text(s: ExitStatus) -> String {
    match s {
        ExitStatus::Exit(c) => format!("exit {c}"),
        ExitStatus::Signal(n) => format!("killed by signal {n}"),
        ExitStatus::TimedOut => "timed out (killed)".into(),
    }
}

fn trunc_text(name: &str, t: Truncation) -> Option<String> {
    match t {
        Truncation::Complete => None,
        Truncation::Truncated { total_bytes } => {
            Some(format!("{name} truncated ({total_bytes} bytes written)"))
        }
    }
}

fn summary(o: &ExecOutcome) -> String {
    let mut parts = vec![
        status_text(o.status),
        format!("{:.1} ms", o.duration.as_secs_f64() * 1e3),
        format!(
            "cpu {:.1}+{:.1} ms",
            o.usage.user_cpu.as_secs_f64() * 1e3,
            o.usage.system_cpu.as_secs_f64() * 1e3
        ),
        format!("max rss {} KiB", o.usage.max_rss_bytes / 1024),
    ];
    if let Some(g) = o.usage.group {
        if let Some(peak) = g.memory_peak_bytes {
            parts.push(format!("group peak {} KiB", peak / 1024));
        }
        if let Some(p) = g.processes_peak {
            parts.push(format!("{p} processes at most"));
        }
        let hit: Vec<&str> = g.limits_hit().iter().map(|h| h.name()).collect();
        if !hit.is_empty() {
            parts.push(format!("LIMITS REACHED: {}", hit.join(", ")));
        }
    }
    parts.extend(trunc_text("stdout", o.stdout.truncation));
    parts.extend(trunc_text("stderr", o.stderr.truncation));
    format!("stele sandbox: {}", parts.join(", "))
}

fn outcome_json(o: &ExecOutcome) -> super::json::ExecReport {
    let trunc = |t: Truncation| match t {
        Truncation::Complete => None,
        Truncation::Truncated { total_bytes } => Some(total_bytes),
    };
    super::json::ExecReport {
        id: o.id.clone(),
        status: status_text(o.status),
        exit_code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout.bytes).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr.bytes).into_owned(),
        stdout_truncated_total: trunc(o.stdout.truncation),
        stderr_truncated_total: trunc(o.stderr.truncation),
        user_cpu_ms: o.usage.user_cpu.as_secs_f64() * 1e3,
        system_cpu_ms: o.usage.system_cpu.as_secs_f64() * 1e3,
        max_rss_bytes: o.usage.max_rss_bytes,
        resources: o.usage.group.map(|g| g.to_json()),
        session_resources: o.usage.session.map(|s| s.to_json()),
        duration_ms: o.duration.as_secs_f64() * 1e3,
    }
}

/// The benchmark's own mediator: allows the scratch workspace, no network.
#[derive(Debug, Default)]
struct BenchMediator {
    next: AtomicU64,
}

impl Mediator for BenchMediator {
    fn file_access(&self, _req: &FileRequest) -> Verdict {
        Verdict::Allow(Ticket(self.next.fetch_add(1, Ordering::Relaxed)))
    }
    fn file_closed(&self, _report: &FileCloseReport) {}
    fn net_connect(&self, _req: &NetRequest) -> NetVerdict {
        NetVerdict::Deny("benchmark".into())
    }
    fn net_closed(&self, _report: &NetCloseReport) {}
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Time `a` and `b` alternately (so both see the same machine load), after
/// a few warm-up runs; returns both samples sorted.
fn time_interleaved(
    runs: usize,
    mut a: impl FnMut() -> anyhow::Result<()>,
    mut b: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    for _ in 0..5 {
        a()?;
        b()?;
    }
    let (mut ta, mut tb) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let t = Instant::now();
        a()?;
        ta.push(t.elapsed());
        let t = Instant::now();
        b()?;
        tb.push(t.elapsed());
    }
    ta.sort();
    tb.sort();
    Ok((ta, tb))
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let scratch = std::env::temp_dir().join(format!("stele-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = bench_in(&args, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn bench_in(args: &BenchArgs, scratch: &Path) -> anyhow::Result<ExitCode> {
    let mut cfg = ProcessSandboxConfig::new(scratch, Arc::new(BenchMediator::default()));
    if let BenchWorkspace::Plain = args.workspace {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o777))?;
        cfg.workspace_mount = WorkspaceMount::PlainBindForTestsOnly;
    }
    let network = args.network.unwrap_or(match args.workspace {
        BenchWorkspace::Mediated => NetworkChoice::Proxy,
        BenchWorkspace::Plain => NetworkChoice::None,
    });
    cfg.network = match network {
        NetworkChoice::Proxy => NetworkMode::EgressProxy,
        NetworkChoice::None => NetworkMode::LoopbackOnly,
    };
    let sandbox = ProcessSandbox::new(cfg)?;
    let (plain, boxed) = time_interleaved(
        args.runs,
        || {
            let st = std::process::Command::new("/usr/bin/true").status()?;
            anyhow::ensure!(st.success(), "plain true failed");
            Ok(())
        },
        || {
            let o = sandbox.exec(ExecRequest::new("bench", vec!["/usr/bin/true".into()]))?;
            anyhow::ensure!(
                o.status == ExitStatus::Exit(0),
                "sandboxed true: {:?}",
                o.status
            );
            Ok(())
        },
    )?;
    let (pm, pp) = (percentile(&plain, 0.5), percentile(&plain, 0.99));
    let (sm, sp) = (percentile(&boxed, 0.5), percentile(&boxed, 0.99));
    let overhead = ms(sm) - ms(pm);
    if args.json {
        super::json::pretty(&super::json::SpawnBench {
            runs: args.runs,
            workspace: match args.workspace {
                BenchWorkspace::Mediated => "mediated",
                BenchWorkspace::Plain => "plain",
            }
            .into(),
            network: match network {
                NetworkChoice::None => "none",
                NetworkChoice::Proxy => "proxy",
            }
            .into(),
            plain_median_ms: ms(pm),
            plain_p99_ms: ms(pp),
            sandbox_median_ms: ms(sm),
            sandbox_p99_ms: ms(sp),
            overhead_median_ms: overhead,
        })?;
    } else {
        crate::outln!(
            "spawn of /usr/bin/true, {} interleaved runs each ({:?} workspace, network {:?})",
            args.runs,
            args.workspace,
            network
        );
        crate::outln!(
            "plain spawn       median {:7.3} ms   p99 {:7.3} ms",
            ms(pm),
            ms(pp)
        );
        crate::outln!(
            "process sandbox   median {:7.3} ms   p99 {:7.3} ms",
            ms(sm),
            ms(sp)
        );
        crate::outln!("overhead (median) {overhead:7.3} ms   (goal <= 3 ms)");
        let counts = sandbox.workspace_request_counts();
        if !counts.is_empty() {
            let total_runs = (args.runs + 5) as u64;
            let per_run: Vec<String> = counts
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(op, n)| format!("{op} {:.2}", *n as f64 / total_runs as f64))
                .collect();
            crate::outln!("workspace FUSE requests per spawn: {}", per_run.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
