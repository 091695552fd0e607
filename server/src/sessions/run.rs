//! Running one session with the runtime's session library, wherever it
//! runs: in `stele serve` (on the server's log) or in `stele worker` (on
//! the worker's own log). A [`Host`] says which log, key and policy, and
//! where approvals are waited on; the rest — the checks, sandbox, gate,
//! agent, progress events and pausing — is the same code for both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stele_audit::AuditLog;
use stele_protocol::{SessionState, UnattendedApprove};
use stele_runtime::agent::progress::{self, Decision, Progress};
use stele_runtime::agent::RunEnd;
use stele_runtime::gate::approval::{ApprovalEvent, Approver, FlagApprover, Observed};
use stele_runtime::provider::Message;
use stele_runtime::session::{
    self, BackendSpec, Conversation, LogOwner, NetworkChoice, OpenSession, SessionSpec,
};

use super::approvals::{Pending, WebApprover};
use super::events::{WorkerMsg, WorkerTx};
use super::manager::Control;
use super::worker::Job;
use crate::store::SessionRecord;

/// Where a session runs: its log and the files and rules it is opened with.
#[derive(Clone)]
pub struct Host {
    /// The log every session of this process writes.
    pub log: Arc<AuditLog>,
    /// The audit database of that log.
    pub db: PathBuf,
    /// Its signing key.
    pub key: PathBuf,
    /// That key, loaded.
    pub signer: Arc<dyn stele_attest::Signer>,
    /// The policy bundle [default: stele's search order].
    pub policy: Option<PathBuf>,
    /// Who may answer approvals (the bundle's members).
    pub members: Vec<String>,
    /// How long an ask waits.
    pub ask_deadline: Duration,
    /// Where asks wait for their answers.
    pub pending: Arc<Pending>,
    /// The command named in the session's `client` record (`serve`, `worker`).
    pub command: &'static str,
}

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The approver of a session run for `requester`: questions go to the
/// approvals queue (or, in a scheduled run under approve mode deny, are
/// refused at once), and every question and answer is an event too.
pub(crate) fn approver(
    host: &Host,
    requester: &str,
    unattended: Option<UnattendedApprove>,
    tx: &WorkerTx,
    control: &Arc<Control>,
) -> Box<dyn session::Approver> {
    let web = WebApprover {
        control: control.clone(),
        requester: requester.to_string(),
        members: host.members.clone(),
        deadline: host.ask_deadline,
        tx: tx.clone(),
        pending: host.pending.clone(),
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
        let d = Decision::from(e);
        let _ = events.send(WorkerMsg::Event(progress::to_json(Progress::Decision(d))));
    }))
}

pub(crate) fn backend(layers: &stele_runtime::config::Layers) -> anyhow::Result<BackendSpec> {
    Ok(BackendSpec {
        workspace_quota: stele_runtime::cli::backend::workspace_quota(layers, None)?,
        resources: stele_runtime::cli::resources::resource_limits(layers, &[])?,
        ..BackendSpec::process()
    })
}

/// Open `job` as a new session on `host` (under `id` when the server named
/// it already) and run it until it ends or pauses.
pub fn run_new(
    host: &Host,
    job: &Job,
    id: Option<String>,
    tx: &WorkerTx,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
    let layers = stele_runtime::config::load()?;
    let mut prepared = session::prepare(&SessionSpec {
        workspace: &job.path,
        policy: host.policy.as_deref(),
        user: Some(&job.principal),
        db: Some(&host.db),
        key: Some(&host.key),
        network: NetworkChoice::None,
        backend: backend(&layers)?,
        data: serde_json::Value::Null,
    })?;
    if let Some(id) = id {
        prepared = prepared.with_session_id(id);
    }
    let model = session::model_for(&layers, &job.model)?;
    let mut record = session::model_record(&model, &job.model);
    record["approve"] = serde_json::json!("web");
    record["server_workspace"] = serde_json::json!(job.workspace);
    record["client"] = serde_json::json!({
        "kind": "server", "command": host.command, "version": env!("CARGO_PKG_VERSION"),
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
        host.log.clone(),
        LogOwner::Caller,
        record,
        approver(host, &job.principal, unattended, tx, control),
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

/// Run an open session until it ends or pauses, then close it (the log stays open).
pub(crate) fn run_open(
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
