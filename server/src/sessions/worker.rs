//! One session on its own thread: opened with the runtime's session
//! library on the server's log (the same checks, sandbox, gate and agent
//! as `stele run`), or reopened from the log to continue (the runtime's
//! recovery and conversation rebuild: nothing is re-run), its progress and
//! approvals sent to its pump, pausing when its [`Control`] asks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stele_protocol::{SessionState, UnattendedApprove};
use stele_runtime::agent::progress::{self, Decision, Progress};
use stele_runtime::agent::RunEnd;
use stele_runtime::gate::approval::{ApprovalEvent, Approver, FlagApprover, Observed};
use stele_runtime::provider::Message;
use stele_runtime::session::{
    self, BackendSpec, Conversation, LogOwner, NetworkChoice, OpenSession, SessionSpec,
};
use stele_runtime::session_resume::{self, LogAt};
use tokio::sync::OwnedSemaphorePermit;

use super::approvals::WebApprover;
use super::events::{WorkerMsg, WorkerTx};
use super::manager::Control;
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
    pub approve: UnattendedApprove,
}

/// What a worker does.
#[derive(Debug, Clone)]
pub enum Work {
    /// Start a new session.
    New(Job),
    /// Continue the unfinished session with this id from the log.
    Resume(String),
}

/// Start `work` on a thread of its own, steered by `control` (registered
/// as worker `n`); it holds `slot` until it ends.
pub fn spawn(
    state: Arc<AppState>,
    work: Work,
    tx: WorkerTx,
    slot: OwnedSemaphorePermit,
    (n, control): (u64, Arc<Control>),
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stele-session".into())
        .spawn(move || {
            let _slot = slot;
            let r = match &work {
                Work::New(job) => run_new(&state, job, &tx, &control),
                Work::Resume(id) => run_resume(&state, id, &tx, &control),
            };
            if let Err(e) = r {
                // Before the session started or resumed (the starter hears
                // why), or after (its row says so).
                let why = format!("{e:#}");
                let _ = tx.send(WorkerMsg::Failed(why.clone()));
                if control.id.get().is_some() {
                    let _ = tx.send(WorkerMsg::State(SessionState::Failed, Some(why)));
                }
            }
            state.sessions.finished(n);
        })
        .map(|_| ())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The approver of a session run for `requester`: questions go to the
/// approvals queue (or, in a scheduled run under approve mode deny, are
/// refused at once), and every question and answer is an event too.
fn approver(
    state: &Arc<AppState>,
    requester: &str,
    unattended: Option<UnattendedApprove>,
    tx: &WorkerTx,
    control: &Arc<Control>,
) -> Box<dyn session::Approver> {
    let web = WebApprover {
        control: control.clone(),
        requester: requester.to_string(),
        members: state.bundle.members().users().map(str::to_string).collect(),
        deadline: Duration::from_secs(state.config.server.ask_deadline_secs),
        tx: tx.clone(),
        state: state.clone(),
    };
    let inner: Box<dyn Approver> = match unattended {
        None | Some(UnattendedApprove::Queue) => Box::new(web),
        // Refused at once, in the system's name: never approved for nobody.
        Some(UnattendedApprove::Deny) => Box::new(FlagApprover::new(
            stele_policy::ApprovalOutcome::Refused,
            "system",
            "unattended",
            "a scheduled run with approve mode deny: asks are refused at once",
        )),
    };
    let events = tx.clone();
    Box::new(Observed::new(inner, move |e: ApprovalEvent<'_>| {
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
    }))
}

fn backend(layers: &stele_runtime::config::Layers) -> anyhow::Result<BackendSpec> {
    Ok(BackendSpec {
        workspace_quota: stele_runtime::cli::backend::workspace_quota(layers, None)?,
        resources: stele_runtime::cli::resources::resource_limits(layers, &[])?,
        ..BackendSpec::process()
    })
}

fn run_new(
    state: &Arc<AppState>,
    job: &Job,
    tx: &WorkerTx,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
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
        backend: backend(&layers)?,
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
    let unattended = job.scheduled.as_ref().map(|s| s.approve);
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
    let open = prepared.start_on(
        state.log.clone(),
        LogOwner::Caller,
        record,
        approver(state, &job.principal, unattended, tx, control),
    )?;
    let id = open.gate.session_id().to_string();
    let _ = control.id.set(id.clone());
    let t = now();
    let _ = tx.send(WorkerMsg::Started(SessionRecord {
        id,
        owner: job.principal.clone(),
        workspace: job.workspace.clone(),
        state: SessionState::Running,
        detail: None,
        created: t,
        updated: t,
    }));
    let from = Conversation {
        messages: vec![Message::user_text(job.task.clone())],
        large: Default::default(),
    };
    run_open(open, &model, from, job.max_steps, tx, control)
}

fn run_resume(
    state: &Arc<AppState>,
    id: &str,
    tx: &WorkerTx,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
    let cfg = &state.config;
    let layers = stele_runtime::config::load()?;
    let rec = session_resume::recorded(&state.log, id)?;
    let spec = rec
        .model_spec
        .clone()
        .or_else(|| cfg.server.model.clone())
        .ok_or_else(|| anyhow::anyhow!("session {id} names no model and the server has none"))?;
    let model = session::model_for(&layers, &spec)?;
    let at = LogAt {
        log: state.log.clone(),
        db: cfg.db(),
        key: cfg.key(),
        signer: state.signer.0.clone(),
    };
    // The id is known before the session reopens: an ask of the resumed
    // run is queued under it.
    let _ = control.id.set(id.to_string());
    let reopened = session_resume::reopen(
        &at,
        &rec,
        backend(&layers)?,
        approver(state, &rec.principal, unattended_of(&rec), tx, control),
    )?;
    let _ = tx.send(WorkerMsg::Resumed(id.to_string()));
    run_open(reopened.session, &model, reopened.from, None, tx, control)
}

/// How a resumed session answers asks: as its start record says (a
/// scheduled run under approve mode deny stays so after a restart).
fn unattended_of(rec: &session_resume::Recorded) -> Option<UnattendedApprove> {
    match rec.approve.as_deref() {
        Some("deny") => Some(UnattendedApprove::Deny),
        _ => None,
    }
}

/// Run an open session until it ends or pauses, then close it (the log stays open).
fn run_open(
    open: OpenSession,
    model: &session::Model,
    from: Conversation,
    max_steps: Option<u32>,
    tx: &WorkerTx,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
    let id = open.gate.session_id().to_string();
    let _ = tx.send(WorkerMsg::Event(session::start_event(&open.gate, &open.db)));
    let events = tx.clone();
    let mut on = move |p: Progress<'_>| {
        // A provider outage is ridden out with backoff: the session says so.
        if let Progress::Retry {
            attempt,
            wait,
            reason,
            elapsed,
            patience,
        } = &p
        {
            let detail = format!(
                "the model provider is unavailable (attempt {attempt} failed: {reason}); \
                 retrying in {:.1} s, {} s of {} s patience used",
                wait.as_secs_f64(),
                elapsed.as_secs(),
                patience.as_secs()
            );
            let _ = events.send(WorkerMsg::State(SessionState::Running, Some(detail)));
        }
        let _ = events.send(WorkerMsg::Event(progress::to_json(p)));
    };
    let budget = session::budget(max_steps, 2_000_000, 3600);
    match session::drive_pausable(&open, model, from, budget, control.pause.clone(), &mut on) {
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
