//! `stele run`: one task, end to end, through the gate.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use stele_audit::Status;

use super::setup::{self, principal, NetworkChoice, OpenSession, SessionSpec};
use crate::agent::progress::{self, ProgressStyle};
use crate::agent::{Agent, Budget, RunEnd, DEFAULT_SYSTEM};
use crate::gate::approval::{approver_for, default_mode, terminal_safe, Approver, Newlines};
use crate::gate::{ApproveMode, Gate};
use crate::provider::{Message, ProviderConfig};
use crate::tools::ToolBox;

/// Arguments of `stele run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The folder the agent may work in.
    #[arg(long)]
    pub workspace: PathBuf,
    /// Policy bundle folder [default: $XDG_CONFIG_HOME/stele/policy, /etc/stele/policy, else the built-in strict-default].
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The person the agent acts for (must be in the bundle's members file) [default: $USER].
    #[arg(long)]
    pub user: Option<String>,
    /// Model as PROVIDER:NAME, e.g. anthropic:claude-sonnet-4-5, openai:gpt-4.1, ollama:llama3,
    /// openai-compat:NAME, scripted:FILE. Its settings are the config file's [provider.PROVIDER]
    /// table: base_url, api_key_env, max_tokens, max_tokens_limit, stall_timeout_secs,
    /// request_timeout_secs, connect_timeout_secs, patience_secs (how long an outage is ridden
    /// out before the run pauses; default 300), initial_backoff_secs, max_backoff_secs,
    /// max_attempts, streaming, allow_plain_http. ANTHROPIC_BASE_URL / OPENAI_BASE_URL override
    /// the base URL unless the managed config pins it. See docs/providers.md.
    #[arg(long, verbatim_doc_comment)]
    pub model: Option<String>,
    /// How requests that policy asks a human about are answered [default: prompt
    /// on a terminal (stdin and stderr), else deny].
    #[arg(long, value_enum)]
    pub approve: Option<ApproveMode>,
    /// The sandbox backend [default: `backend` in the config, else process].
    #[arg(long, value_enum)]
    pub backend: Option<super::backend::BackendChoice>,
    /// When the micro-VM does not come up: refuse, or run in the process
    /// sandbox (warned and logged) [default: `vm_fallback` in the config, else none].
    #[arg(long, value_enum)]
    pub vm_fallback: Option<super::backend::VmFallback>,
    /// The micro-VM's boot timeout in seconds (from the config's `vm_boot_timeout_secs`).
    #[arg(skip)]
    pub vm_boot_timeout_secs: Option<u64>,
    /// Bytes the agent's commands may write into the workspace over the
    /// session, e.g. 512MiB, 4GiB or "unlimited" [default:
    /// `workspace_write_quota` in the config, else 4GiB].
    #[arg(long)]
    pub workspace_quota: Option<stele_sandbox::fs::WriteQuota>,
    /// Group limits (memory, processes, CPU) for this session.
    #[command(flatten)]
    pub limits: super::resources::LimitArgs,
    /// The sandbox's network [default: none].
    #[arg(long, value_enum)]
    pub network: Option<NetworkChoice>,
    /// Most model turns [default: 40].
    #[arg(long)]
    pub max_steps: Option<u32>,
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
    /// The task (for `chat`: an optional first message).
    #[arg(default_value = "")]
    pub task: String,
    /// Where the configuration came from (filled in from the config layers).
    #[arg(skip)]
    pub config: serde_json::Value,
    /// Which command runs the session (recorded in `session.start`).
    #[arg(skip)]
    pub client: Client,
}

/// The front end that opened a session, as `session.start` records it
/// (`client`): a reviewer reads whether a person typed a task at `stele
/// run`, talked in `stele chat`, or watched `stele demo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Client {
    /// `stele run`.
    #[default]
    Run,
    /// `stele chat`.
    Chat,
    /// `stele demo`.
    Demo,
}

impl Client {
    /// The record: `{"kind": "cli", "command": …, "version": …}`.
    pub fn record(self) -> serde_json::Value {
        let command = match self {
            Client::Run => "run",
            Client::Chat => "chat",
            Client::Demo => "demo",
        };
        serde_json::json!({
            "kind": "cli",
            "command": command,
            "version": env!("CARGO_PKG_VERSION"),
        })
    }
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
pub fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.task.trim().is_empty(),
        "give the task as the last argument"
    );
    apply_config(&mut args)?;
    // Unset by flag and config: ask on a terminal, else refuse ("no-terminal").
    let approver = approver_for(
        args.approve.unwrap_or(ApproveMode::Prompt),
        &principal(args.user.as_deref())?,
    );
    let report = run_task(&args, approver)?;
    Ok(exit_code(&report.end))
}

/// Exit status of a run: 0 done, 2 budget or model denied, 4 the model or its provider
/// declined (`refusal`, `content_filter`), 75 paused (resumable).
pub(crate) fn exit_code(end: &RunEnd) -> ExitCode {
    match end {
        RunEnd::Answered(_) | RunEnd::Stopped(_) => ExitCode::SUCCESS,
        RunEnd::BudgetExhausted(_) | RunEnd::ModelDenied(_) => ExitCode::from(2),
        RunEnd::Refused { .. } => ExitCode::from(4),
        RunEnd::Paused(_) => ExitCode::from(75),
    }
}

/// The model of a session: its provider and output-token limits.
pub(crate) struct Model {
    /// The provider.
    pub provider: Arc<dyn crate::provider::ModelProvider>,
    /// Output tokens per reply.
    pub max_tokens: u32,
    /// The most a reply may be given after one was cut by the limit.
    pub max_tokens_limit: u32,
    /// Where the base URL came from (`default`, `user`, `managed`, an environment variable).
    pub base_url_source: String,
}

/// The provider for `spec`, configured by the layers' `[provider.NAME]` tables and the
/// base-URL environment variable (which a managed `base_url` pins).
pub(crate) fn model_for(layers: &crate::config::Layers, spec: &str) -> anyhow::Result<Model> {
    use crate::provider::settings::BaseUrlSource;
    let name = spec.split_once(':').map(|(p, _)| p).unwrap_or(spec);
    let (managed, user) = layers.provider_settings(name);
    let (cfg, source) = ProviderConfig::configure(spec, managed, user)?;
    let provider = cfg.build()?;
    Ok(Model {
        provider,
        max_tokens: cfg.max_tokens,
        max_tokens_limit: cfg.max_tokens_limit,
        base_url_source: match source {
            BaseUrlSource::Default => "default".into(),
            BaseUrlSource::User => "user".into(),
            BaseUrlSource::Managed(p) => format!("managed {}", p.display()),
            BaseUrlSource::Environment(v) => v.to_string(),
        },
    })
}

/// Fill unset arguments from the configuration layers (managed values win).
pub(crate) fn apply_config(args: &mut RunArgs) -> anyhow::Result<()> {
    let layers = crate::config::load()?;
    args.policy = layers.pick("policy", args.policy.take(), |c| c.policy.clone())?;
    args.model = layers.pick("model", args.model.take(), |c| c.model.clone())?;
    args.approve = layers.pick("approve", args.approve, |c| c.approve)?;
    args.network = layers.pick("network", args.network, |c| c.network)?;
    args.db = layers.pick("db", args.db.take(), |c| c.db.clone())?;
    args.key = layers.pick("key", args.key.take(), |c| c.key.clone())?;
    args.max_steps = layers.pick("max_steps", args.max_steps, |c| c.max_steps)?;
    args.backend = layers.pick("backend", args.backend, |c| c.backend)?;
    args.vm_fallback = layers.pick("vm_fallback", args.vm_fallback, |c| c.vm_fallback)?;
    args.vm_boot_timeout_secs =
        layers.pick("vm_boot_timeout_secs", None, |c| c.vm_boot_timeout_secs)?;
    args.workspace_quota = Some(super::backend::workspace_quota(
        &layers,
        args.workspace_quota,
    )?);
    args.config = layers.provenance();
    Ok(())
}

/// Build the model provider and open the session for `args`.
pub(crate) fn open_for(
    args: &RunArgs,
    approver: Box<dyn Approver>,
) -> anyhow::Result<(OpenSession, Model)> {
    let spec = args.model.as_deref().ok_or_else(|| {
        anyhow::anyhow!("no model: give --model PROVIDER:NAME or set `model` in the config")
    })?;
    let model = model_for(&crate::config::load()?, spec)?;
    let info = model.provider.describe();
    let session = setup::open(
        SessionSpec {
            workspace: &args.workspace,
            policy: args.policy.as_deref(),
            user: args.user.as_deref(),
            db: args.db.as_deref(),
            key: args.key.as_deref(),
            network: args.network.unwrap_or(NetworkChoice::None),
            backend: super::backend::BackendSpec {
                requested: args
                    .backend
                    .unwrap_or(super::backend::BackendChoice::Process),
                fallback: args.vm_fallback.unwrap_or_default(),
                vm_boot_timeout: args.vm_boot_timeout_secs.map(Duration::from_secs),
                workspace_quota: args.workspace_quota.unwrap_or_default(),
                resources: super::resources::resource_limits(
                    &crate::config::load()?,
                    &args.limits.limits,
                )?,
            },
            data: serde_json::json!({
                "config": args.config,
                "model": format!("{:?}:{}", info.kind, info.model).to_lowercase(),
                "model_spec": args.model,
                "model_base_url": info.base_url,
                "model_base_url_source": model.base_url_source,
                "approve": format!("{:?}", args.approve.unwrap_or_else(default_mode)).to_lowercase(),
                "client": args.client.record(),
                // Committed as the session's `task` payload (redactable), not kept here.
                (crate::gate::TASK_MEMBER): args.task,
            }),
        },
        progress::observe(approver, style_of(args)),
    )?;
    Ok((session, model))
}

/// How progress is printed for `args` (`--json` or a person).
fn style_of(args: &RunArgs) -> ProgressStyle {
    if args.json {
        ProgressStyle::Json
    } else {
        ProgressStyle::Human
    }
}

/// Set up a session (log, policy, sandbox, tools, model), run the task, end the session.
pub fn run_task(args: &RunArgs, approver: Box<dyn Approver>) -> anyhow::Result<RunReport> {
    let (session, model) = open_for(args, approver)?;
    let gate = session.gate.clone();
    let style = style_of(args);
    if style == ProgressStyle::Human {
        crate::errln!(
            "stele: session {} (policy {}, log {})",
            gate.session_id(),
            gate.bundle().digest(),
            crate::terminal_safe::path(&session.db)
        );
    }
    let budget = Budget {
        max_steps: args.max_steps.unwrap_or(40),
        max_tokens: args.max_tokens,
        max_time: Duration::from_secs(args.max_seconds),
    };
    let messages = vec![Message::user_text(args.task.clone())];
    let end = match drive(
        &session,
        &model,
        messages,
        Default::default(),
        budget,
        style,
    ) {
        Ok(e) => e,
        Err(e) => {
            session.release_sandbox();
            let _ = gate.end_session(Status::Error, Some(format!("{e:#}")));
            drop(gate);
            // Closing also sends the final checkpoint to the witnesses.
            if let Err(w) = session.close() {
                crate::errln!(
                    "stele: {}",
                    terminal_safe(&format!("{w:#}"), Newlines::Escape)
                );
            }
            return Err(e);
        }
    };
    // The VM stops (and the guest's last closes are logged) inside the session.
    session.release_sandbox();
    finish(&gate, &end, style)?;
    if !matches!(end, RunEnd::Paused(_)) {
        session.attest()?;
    }
    let id = gate.session_id().to_string();
    drop(gate);
    let db = session.db.clone();
    session.close()?;
    Ok(RunReport {
        session: id,
        end,
        db,
    })
}

/// The agent of an open session: its sandbox, tools and model; `large` are the large values
/// of the session already in the log (a resumed session's).
pub(crate) fn agent_for(
    session: &OpenSession,
    model: &Model,
    large: crate::payloads::LargeValues,
) -> anyhow::Result<Agent> {
    let gate = &session.gate;
    let (sandbox, _) = session.sandbox()?;
    let mut mcp = crate::mcp::config::servers(&crate::config::load()?, &gate.actor().teams)?;
    // No sandboxed server may be granted the log, its key, the state
    // folder, the configuration or a policy folder (the same locations no
    // workspace may hold).
    let protected: Vec<std::path::PathBuf> =
        crate::isolation::locations::stele_locations(&session.db, &session.key)
            .into_iter()
            .map(|l| l.path)
            .chain([gate.bundle().root().to_path_buf()])
            .collect();
    for sb in mcp.iter_mut().filter_map(|s| s.sandbox.as_mut()) {
        sb.protected.clone_from(&protected);
    }
    let tools = Arc::new(
        ToolBox::new(gate.clone(), session.workspace.clone(), sandbox)?
            .with_mcp(Arc::new(crate::mcp::McpRegistry::new(mcp)?)),
    );
    Ok(Agent {
        gate: gate.clone(),
        provider: model.provider.clone(),
        tools,
        system: DEFAULT_SYSTEM.into(),
        max_tokens_per_turn: model.max_tokens,
        max_tokens_limit: model.max_tokens_limit,
        large: Arc::new(std::sync::Mutex::new(large)),
    })
}

/// Run the agent in an open session from `messages` until it ends.
pub(crate) fn drive(
    session: &OpenSession,
    model: &Model,
    mut messages: Vec<Message>,
    large: crate::payloads::LargeValues,
    budget: Budget,
    style: ProgressStyle,
) -> anyhow::Result<RunEnd> {
    let agent = agent_for(session, model, large)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut on = |p: crate::agent::Progress<'_>| progress::print(style, p);
    let end = rt.block_on(agent.run(&mut messages, budget, &mut on));
    progress::end_retry_line();
    // MCP servers stop with the run, inside the session (each stop logged).
    agent.tools.shutdown()?;
    Ok(end?)
}

pub(crate) fn finish(gate: &Gate, end: &RunEnd, style: ProgressStyle) -> anyhow::Result<()> {
    let (status, text) = match end {
        RunEnd::Answered(a) => (Some(Status::Ok), a.clone()),
        RunEnd::Stopped(t) => (Some(Status::Ok), t.clone()),
        RunEnd::BudgetExhausted(w) => (Some(Status::Timeout), w.clone()),
        RunEnd::ModelDenied(w) => (Some(Status::Denied), w.clone()),
        RunEnd::Refused { .. } => (Some(Status::Denied), end.detail()),
        // Paused: the session stays open so it can be resumed.
        RunEnd::Paused(w) => (None, w.clone()),
    };
    if let Some(s) = status {
        gate.end_session(s, Some(text.chars().take(500).collect()))?;
    }
    match style {
        ProgressStyle::Json => crate::outln!(
            "{}",
            crate::terminal_safe::json_line(&serde_json::json!({
                "event": "end", "session": gate.session_id(), "outcome": end.name(),
                "detail": end.detail(), "resumable": matches!(end, RunEnd::Paused(_)),
                "result": format!("{end:?}"),
            }))
        ),
        ProgressStyle::Human => match end {
            // The model's words, shown escaped: they cannot drive the terminal.
            RunEnd::Answered(a) | RunEnd::Stopped(a) => {
                crate::errln!("\n{}", terminal_safe(a, Newlines::Keep))
            }
            RunEnd::BudgetExhausted(w) => {
                crate::errln!("stopped: {}", terminal_safe(w, Newlines::Keep))
            }
            RunEnd::ModelDenied(w) => crate::errln!(
                "stopped: the model request was denied: {}",
                terminal_safe(w, Newlines::Keep)
            ),
            RunEnd::Refused { .. } => {
                crate::errln!("stopped: {}", terminal_safe(&end.detail(), Newlines::Keep))
            }
            RunEnd::Paused(w) => crate::errln!(
                "paused: {}\nthe session is kept; continue later with `stele session resume {}`",
                terminal_safe(w, Newlines::Keep),
                gate.session_id()
            ),
        },
    }
    Ok(())
}
