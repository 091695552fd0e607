//! A session as a library call, shared by every front end (`stele run`,
//! `stele chat`, `stele session resume`, `stele serve`): check what it
//! names ([`prepare`]), open it on a log ([`Prepared::start`] opens the
//! log for itself, [`Prepared::start_on`] uses one the caller holds, as the
//! server does for all its sessions), build its model ([`model_for`]), run
//! the agent from a conversation ([`drive`]), and end it ([`conclude`]).
//! Front ends only choose how progress is shown (a callback) and how
//! approvals are answered (an [`Approver`]).

use std::sync::Arc;

use stele_audit::Status;

pub use crate::agent::PauseSignal;
use crate::agent::{Agent, Budget, Progress, RunEnd, DEFAULT_SYSTEM};
use crate::gate::Gate;
use crate::provider::{Message, ProviderConfig};
use crate::tools::ToolBox;

pub use crate::cli::backend::{BackendChoice, BackendSpec, VmFallback};
pub use crate::cli::setup::{
    open_log, prepare, LogOwner, NetworkChoice, OpenSession, OpenedLog, Prepared, SessionSpec,
};
pub use crate::gate::approval::Approver;

/// The model of a session: its provider and output-token limits.
pub struct Model {
    /// The provider.
    pub provider: Arc<dyn crate::provider::ModelProvider>,
    /// Output tokens per reply.
    pub max_tokens: u32,
    /// The most a reply may be given after one was cut by the limit.
    pub max_tokens_limit: u32,
    /// Where the base URL came from (`default`, `user`, `managed`, an environment variable).
    pub base_url_source: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("max_tokens", &self.max_tokens)
            .field("base_url_source", &self.base_url_source)
            .finish_non_exhaustive()
    }
}

/// The provider for `spec`, configured by the layers' `[provider.NAME]` tables and the
/// base-URL environment variable (which a managed `base_url` pins).
pub fn model_for(layers: &crate::config::Layers, spec: &str) -> anyhow::Result<Model> {
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

/// What `session.start` records about the model: which one, from where.
pub fn model_record(model: &Model, spec: &str) -> serde_json::Value {
    let info = model.provider.describe();
    serde_json::json!({
        "model": format!("{:?}:{}", info.kind, info.model).to_lowercase(),
        "model_spec": spec,
        "model_base_url": info.base_url,
        "model_base_url_source": model.base_url_source,
    })
}

/// The agent of an open session: its sandbox, tools and model; `large` are the large values
/// of the session already in the log (a resumed session's).
pub fn agent_for(
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
        pause: PauseSignal::default(),
    })
}

/// Run the agent in an open session from `messages` until it ends, each
/// progress event handed to `on`. It runs on a runtime of its own, on the
/// calling thread (a CLI's main thread, a server's session worker).
pub fn drive(
    session: &OpenSession,
    model: &Model,
    messages: Vec<Message>,
    large: crate::payloads::LargeValues,
    budget: Budget,
    on: &mut (dyn FnMut(Progress<'_>) + Send),
) -> anyhow::Result<RunEnd> {
    drive_pausable(
        session,
        model,
        Conversation { messages, large },
        budget,
        PauseSignal::default(),
        on,
    )
}

/// Where a run starts from: its messages and the large values already in the log.
#[derive(Debug, Default)]
pub struct Conversation {
    /// The messages (a new task, or a conversation rebuilt from the log).
    pub messages: Vec<Message>,
    /// Large values already in the log.
    pub large: crate::payloads::LargeValues,
}

/// [`drive`], pausing at the next safe point once `pause` is requested (the
/// run ends [`RunEnd::Paused`]).
pub fn drive_pausable(
    session: &OpenSession,
    model: &Model,
    from: Conversation,
    budget: Budget,
    pause: PauseSignal,
    on: &mut (dyn FnMut(Progress<'_>) + Send),
) -> anyhow::Result<RunEnd> {
    let Conversation {
        mut messages,
        large,
    } = from;
    let mut agent = agent_for(session, model, large)?;
    agent.pause = pause;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let end = rt.block_on(agent.run(&mut messages, budget, on));
    // MCP servers stop with the run, inside the session (each stop logged).
    agent.tools.shutdown()?;
    Ok(end?)
}

/// How a run's end is recorded in `session.end`: its status and text, or
/// nothing for a pause (the session stays open, resumable).
pub fn end_status(end: &RunEnd) -> Option<(Status, String)> {
    match end {
        RunEnd::Answered(a) => Some((Status::Ok, a.clone())),
        RunEnd::Stopped(t) => Some((Status::Ok, t.clone())),
        RunEnd::BudgetExhausted(w) => Some((Status::Timeout, w.clone())),
        RunEnd::ModelDenied(w) => Some((Status::Denied, w.clone())),
        RunEnd::Refused { .. } => Some((Status::Denied, end.detail())),
        RunEnd::Paused(_) => None,
    }
}

/// Record the end of a run in the log (`session.end`, unless it paused).
pub fn record_end(gate: &Gate, end: &RunEnd) -> anyhow::Result<()> {
    if let Some((status, text)) = end_status(end) {
        gate.end_session(status, Some(text.chars().take(500).collect()))?;
    }
    Ok(())
}

/// The `end` event of a run, as `--json` prints it and the server streams it.
pub fn end_event(gate: &Gate, end: &RunEnd) -> serde_json::Value {
    serde_json::json!({
        "event": "end", "session": gate.session_id(), "outcome": end.name(),
        "detail": end.detail(), "resumable": matches!(end, RunEnd::Paused(_)),
    })
}

/// The `start` event of a session, as `--json` prints it and the server streams it.
pub fn start_event(gate: &Gate, db: &std::path::Path) -> serde_json::Value {
    serde_json::json!({
        "event": "start",
        "session": gate.session_id(),
        "principal": gate.actor().principal,
        "policy": gate.bundle().digest().to_string(),
        "log": db.display().to_string(),
    })
}

/// Finish a session whose run ended: the sandbox goes first (a VM's last
/// closes are logged inside the session), then `session.end`, the
/// attestation (not for a pause: the session continues later), and the
/// close (which closes the log only if the session owns it).
pub fn conclude(session: OpenSession, end: &RunEnd) -> anyhow::Result<()> {
    session.release_sandbox();
    record_end(&session.gate, end)?;
    if !matches!(end, RunEnd::Paused(_)) {
        session.attest()?;
    }
    session.close()
}

/// End a session whose run failed: release the sandbox, end the session as
/// an error, close it; the error of closing, if any, is returned beside `e`.
pub fn abort(session: OpenSession, e: &anyhow::Error) -> Option<anyhow::Error> {
    session.release_sandbox();
    let _ = session
        .gate
        .end_session(Status::Error, Some(format!("{e:#}")));
    session.close().err()
}

/// Budget of a run with the CLI's defaults: 40 steps unless given.
pub fn budget(max_steps: Option<u32>, max_tokens: u64, max_seconds: u64) -> Budget {
    Budget {
        max_steps: max_steps.unwrap_or(40),
        max_tokens,
        max_time: std::time::Duration::from_secs(max_seconds),
    }
}
