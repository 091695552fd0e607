//! One session on its own thread: opened with the runtime's session
//! library on the server's log (the same checks, sandbox, gate and agent
//! as `stele run`), its progress and approvals sent to its pump.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use stele_protocol::SessionState;
use stele_protocol::UnattendedApprove;
use stele_runtime::agent::progress::{self, Decision, Progress};
use stele_runtime::agent::RunEnd;
use stele_runtime::gate::approval::{ApprovalEvent, Approver, FlagApprover, Observed};
use stele_runtime::provider::Message;
use stele_runtime::session::{self, BackendSpec, LogOwner, NetworkChoice, SessionSpec};
use tokio::sync::OwnedSemaphorePermit;

use super::approvals::WebApprover;
use super::events::{WorkerMsg, WorkerTx};
use crate::state::AppState;
use crate::store::SessionRecord;

/// What a session is started with (checked by the route).
#[derive(Debug, Clone)]
pub struct Job {
    /// Who it runs for (the authenticated principal).
    pub principal: String,
    /// The workspace's name.
    pub workspace: String,
    /// Its folder.
    pub path: PathBuf,
    /// The task.
    pub task: String,
    /// Model as PROVIDER:NAME.
    pub model: String,
    /// Most model turns.
    pub max_steps: Option<u32>,
    /// Set when a schedule started it (no one is watching).
    pub scheduled: Option<Scheduled>,
}

/// A session started by a schedule: which, for which due time, and how an
/// ask is treated with no one at the keyboard.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// The schedule's id.
    pub schedule: String,
    /// When the run was due (RFC 3339).
    pub due: String,
    /// Queue the ask for a person, or refuse it at once.
    pub approve: stele_protocol::UnattendedApprove,
}

/// Start `job` on a thread of its own; it holds `slot` until it ends.
pub fn spawn(
    state: Arc<AppState>,
    job: Job,
    tx: WorkerTx,
    slot: OwnedSemaphorePermit,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stele-session".into())
        .spawn(move || {
            let _slot = slot;
            if let Err(e) = run(&state, &job, &tx) {
                // Before the session started (nothing in the log but what
                // the runtime recorded of a refused start) or after.
                let why = format!("{e:#}");
                let _ = tx.send(WorkerMsg::Failed(why.clone()));
                let _ = tx.send(WorkerMsg::State(SessionState::Failed, Some(why)));
            }
        })
        .map(|_| ())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn run(state: &Arc<AppState>, job: &Job, tx: &WorkerTx) -> anyhow::Result<()> {
    let cfg = &state.config;
    let layers = stele_runtime::config::load()?;
    let (db, key) = (cfg.db(), cfg.key());
    let prepared = session::prepare(&SessionSpec {
        workspace: &job.path,
        policy: cfg.server.policy.as_deref(),
        user: Some(&job.principal),
        db: Some(&db),
        key: Some(&key),
        network: NetworkChoice::None,
        backend: BackendSpec {
            workspace_quota: stele_runtime::cli::backend::workspace_quota(&layers, None)?,
            resources: stele_runtime::cli::resources::resource_limits(&layers, &[])?,
            ..BackendSpec::process()
        },
        data: serde_json::Value::Null,
    })?;
    let model = session::model_for(&layers, &job.model)?;
    let mut record = session::model_record(&model, &job.model);
    record["approve"] = serde_json::json!("web");
    record["server_workspace"] = serde_json::json!(job.workspace);
    record["client"] = serde_json::json!({
        "kind": "server", "command": "serve", "version": env!("CARGO_PKG_VERSION"),
    });
    record[stele_runtime::gate::TASK_MEMBER] = serde_json::json!(job.task);
    if let Some(s) = &job.scheduled {
        // The record names the schedule: a reviewer sees an unattended run as one.
        record["schedule"] = serde_json::json!({
            "id": s.schedule, "due": s.due, "approve": s.approve,
        });
        record["approve"] = serde_json::json!(match s.approve {
            UnattendedApprove::Queue => "web",
            UnattendedApprove::Deny => "deny",
        });
    }
    let id_cell = Arc::new(OnceLock::new());
    let web = WebApprover {
        session: id_cell.clone(),
        requester: job.principal.clone(),
        members: state.bundle.members().users().map(str::to_string).collect(),
        deadline: Duration::from_secs(cfg.server.ask_deadline_secs),
        tx: tx.clone(),
        state: state.clone(),
    };
    // Questions and answers are events too, as `--json` prints them.
    let events = tx.clone();
    let inner: Box<dyn Approver> = match job.scheduled.as_ref().map(|s| s.approve) {
        None | Some(UnattendedApprove::Queue) => Box::new(web),
        // Refused at once, in the system's name: never approved for nobody.
        Some(UnattendedApprove::Deny) => Box::new(FlagApprover::new(
            stele_policy::ApprovalOutcome::Refused,
            "system",
            "unattended",
            "a scheduled run with approve mode deny: asks are refused at once",
        )),
    };
    let approver = Observed::new(inner, move |e: ApprovalEvent<'_>| {
        let d = match e {
            ApprovalEvent::Asked { shown } => Decision::Asked { shown },
            ApprovalEvent::Answered { shown, answer } => Decision::Answered {
                shown,
                outcome: answer.outcome,
                approver: &answer.approver,
                method: &answer.method,
            },
        };
        let _ = events.send(WorkerMsg::Event(progress::to_json(Progress::Decision(d))));
    });
    let open = prepared.start_on(
        state.log.clone(),
        LogOwner::Caller,
        record,
        Box::new(approver),
    )?;
    let id = open.gate.session_id().to_string();
    let _ = id_cell.set(id.clone());
    let t = now();
    let _ = tx.send(WorkerMsg::Started(SessionRecord {
        id: id.clone(),
        owner: job.principal.clone(),
        workspace: job.workspace.clone(),
        state: SessionState::Running,
        detail: None,
        created: t,
        updated: t,
    }));
    let _ = tx.send(WorkerMsg::Event(session::start_event(&open.gate, &open.db)));
    let events = tx.clone();
    let mut on = move |p: Progress<'_>| {
        let _ = events.send(WorkerMsg::Event(progress::to_json(p)));
    };
    let budget = session::budget(job.max_steps, 2_000_000, 3600);
    let messages = vec![Message::user_text(job.task.clone())];
    match session::drive(&open, &model, messages, Default::default(), budget, &mut on) {
        Ok(end) => {
            let _ = tx.send(WorkerMsg::Event(session::end_event(&open.gate, &end)));
            let (st, detail) = match &end {
                RunEnd::Paused(w) => (SessionState::Paused, w.clone()),
                other => (SessionState::Ended, other.name().to_string()),
            };
            session::conclude(open, &end)?;
            let _ = tx.send(WorkerMsg::State(st, Some(detail)));
            Ok(())
        }
        Err(e) => {
            if let Some(w) = session::abort(open, &e) {
                tracing::error!("session {id}: closing after an error: {w:#}");
            }
            Err(e)
        }
    }
}
