//! `stele run`: one task, end to end, through the gate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use stele_attest::load_key_file;
use stele_audit::{AuditLog, LogOptions, Status};
use stele_policy::{Bundle, Network, SandboxBackend, SandboxFacts};
use stele_sandbox::process::{NetworkMode, ProcessSandbox, ProcessSandboxConfig};

use crate::agent::progress::{self, ProgressStyle};
use crate::agent::{Agent, Budget, RunEnd, DEFAULT_SYSTEM};
use crate::gate::approval::{approver_for, Approver};
use crate::gate::mediator::GateMediator;
use crate::gate::{ApproveMode, Gate, SessionInfo};
use crate::paths;
use crate::provider::{Message, ProviderConfig};
use crate::tools::ToolBox;

/// The sandbox's network for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkChoice {
    /// No way out at all (the default).
    None,
    /// Through stele's egress proxy; every connection is a `net.connect` decision.
    Proxy,
}

/// Arguments of `stele run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The folder the agent may work in.
    #[arg(long)]
    pub workspace: PathBuf,
    /// Policy bundle folder [default: ./policies/strict-default].
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The person the agent acts for (must be in the bundle's members file) [default: $USER].
    #[arg(long)]
    pub user: Option<String>,
    /// Model as PROVIDER:NAME, e.g. anthropic:claude-sonnet-4-5, openai:gpt-4.1, ollama:llama3, scripted:FILE.
    #[arg(long)]
    pub model: String,
    /// What to do when policy asks a human and there is no terminal.
    #[arg(long, value_enum, default_value_t = ApproveMode::Deny)]
    pub approve: ApproveMode,
    /// The sandbox's network.
    #[arg(long, value_enum, default_value_t = NetworkChoice::None)]
    pub network: NetworkChoice,
    /// Most model turns.
    #[arg(long, default_value_t = 40)]
    pub max_steps: u32,
    /// Most tokens (input + output) over the run.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_tokens: u64,
    /// Most wall-clock seconds.
    #[arg(long, default_value_t = 3600)]
    pub max_seconds: u64,
    /// Progress as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Audit database [default: $STATE/audit.db].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Signing key [default: $STATE/keys/log.key].
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The task.
    pub task: String,
}

/// The result of a finished run, for callers such as `stele demo`.
#[derive(Debug)]
pub struct RunReport {
    /// Session id.
    pub session: String,
    /// How it ended.
    pub end: RunEnd,
    /// The audit database.
    pub db: PathBuf,
}

/// Run `stele run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let approver = approver_for(args.approve, &principal(args.user.as_deref()));
    let report = run_task(&args, approver)?;
    Ok(match report.end {
        RunEnd::Answered(_) | RunEnd::Stopped(_) => ExitCode::SUCCESS,
        RunEnd::BudgetExhausted(_) | RunEnd::ModelDenied(_) => ExitCode::from(2),
        RunEnd::Paused(_) => ExitCode::from(75),
    })
}

fn principal(user: Option<&str>) -> String {
    user.map(str::to_string).or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "unknown".into())
}

/// Set up a session (log, policy, sandbox, tools, model), run the task, end the session.
pub fn run_task(args: &RunArgs, approver: Box<dyn Approver>) -> anyhow::Result<RunReport> {
    let workspace = args
        .workspace
        .canonicalize()
        .with_context(|| format!("workspace {}", args.workspace.display()))?;
    anyhow::ensure!(workspace.is_dir(), "workspace {} is not a folder", workspace.display());
    let policy = args.policy.clone().unwrap_or_else(|| PathBuf::from("policies/strict-default"));
    let bundle = Arc::new(Bundle::load(&policy).with_context(|| format!("policy bundle {}", policy.display()))?);
    let user = principal(args.user.as_deref());
    let teams: Vec<String> = bundle.members().teams_of(&user).map(str::to_string).collect();
    let provider = ProviderConfig::from_spec(&args.model)?.build()?;
    let db = args.db.clone().unwrap_or_else(paths::default_db);
    let key = args.key.clone().unwrap_or_else(paths::default_key);
    let signer = Arc::new(load_key_file(&key).with_context(|| "the audit signing key (create one with `stele keys init`)")?);
    let log = Arc::new(AuditLog::open_or_create(&db, signer, LogOptions::default())?);
    let facts = SandboxFacts {
        backend: SandboxBackend::Process,
        network: match args.network {
            NetworkChoice::None => Network::Disabled,
            NetworkChoice::Proxy => Network::ViaProxy,
        },
    };
    let id = format!("s-{}", uuid::Uuid::new_v4().simple());
    let info = provider.describe();
    let gate = Arc::new(Gate::start_session(
        log.clone(),
        bundle,
        SessionInfo { id: id.clone(), principal: user, teams },
        approver,
        facts,
        serde_json::json!({
            "workspace": workspace.display().to_string(),
            "model": format!("{:?}:{}", info.kind, info.model).to_lowercase(),
            "network": format!("{:?}", args.network).to_lowercase(),
        }),
    )?);
    let style = if args.json { ProgressStyle::Json } else { ProgressStyle::Human };
    if style == ProgressStyle::Human {
        eprintln!("stele: session {id} (policy {}, log {})", gate.bundle().digest(), db.display());
    }
    let end = run_session(&gate, &workspace, args, provider, style);
    let end = match end {
        Ok(e) => e,
        Err(e) => {
            let _ = gate.end_session(Status::Error, Some(format!("{e:#}")));
            return Err(e);
        }
    };
    finish(&gate, &end, style)?;
    drop(gate);
    if let Ok(log) = Arc::try_unwrap(log) {
        log.close()?;
    }
    Ok(RunReport { session: id, end, db })
}

fn run_session(
    gate: &Arc<Gate>,
    workspace: &Path,
    args: &RunArgs,
    provider: Arc<dyn crate::provider::ModelProvider>,
    style: ProgressStyle,
) -> anyhow::Result<RunEnd> {
    let mediator: Arc<dyn stele_sandbox::Mediator> = Arc::new(GateMediator::new(gate.clone(), None));
    let mut cfg = ProcessSandboxConfig::new(workspace, mediator.clone());
    cfg.network = match args.network {
        NetworkChoice::None => NetworkMode::LoopbackOnly,
        NetworkChoice::Proxy => NetworkMode::EgressProxy,
    };
    let sandbox = Arc::new(ProcessSandbox::new(cfg).context("setting up the sandbox (stele never runs unsandboxed)")?);
    let tools = Arc::new(ToolBox::new(gate.clone(), workspace.to_path_buf(), sandbox, mediator)?);
    let agent = Agent { gate: gate.clone(), provider, tools, system: DEFAULT_SYSTEM.into(), max_tokens_per_turn: 4096 };
    let budget = Budget {
        max_steps: args.max_steps,
        max_tokens: args.max_tokens,
        max_time: Duration::from_secs(args.max_seconds),
    };
    let mut messages = vec![Message::user_text(args.task.clone())];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut on = |p: crate::agent::Progress<'_>| progress::print(style, p);
    Ok(rt.block_on(agent.run(&mut messages, budget, &mut on))?)
}

fn finish(gate: &Gate, end: &RunEnd, style: ProgressStyle) -> anyhow::Result<()> {
    let (status, text) = match end {
        RunEnd::Answered(a) => (Some(Status::Ok), a.clone()),
        RunEnd::Stopped(t) => (Some(Status::Ok), t.clone()),
        RunEnd::BudgetExhausted(w) => (Some(Status::Timeout), w.clone()),
        RunEnd::ModelDenied(w) => (Some(Status::Denied), w.clone()),
        // Paused: the session stays open so it can be resumed.
        RunEnd::Paused(w) => (None, w.clone()),
    };
    if let Some(s) = status {
        gate.end_session(s, Some(text.chars().take(500).collect()))?;
    }
    match style {
        ProgressStyle::Json => println!("{}", serde_json::json!({"event": "end", "session": gate.session_id(), "result": format!("{end:?}")})),
        ProgressStyle::Human => match end {
            RunEnd::Answered(a) | RunEnd::Stopped(a) => eprintln!("\n{a}"),
            RunEnd::BudgetExhausted(w) => eprintln!("stopped: {w}"),
            RunEnd::ModelDenied(w) => eprintln!("stopped: the model request was denied: {w}"),
            RunEnd::Paused(w) => eprintln!(
                "paused: {w}\nthe session is kept; continue later with `stele session resume {}`",
                gate.session_id()
            ),
        },
    }
    Ok(())
}
