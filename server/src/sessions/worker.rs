//! One session on its own thread: opened with the runtime's session
//! library on the server's log (the same checks, sandbox, gate and agent
//! as `stele run`), or reopened from the log to continue (the runtime's
//! recovery and conversation rebuild: nothing is re-run), its progress and
//! approvals sent to its pump, pausing when its [`Control`] asks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stele_protocol::{SessionState, UnattendedApprove};
use tokio::sync::OwnedSemaphorePermit;

use super::events::{WorkerMsg, WorkerTx};
use super::manager::Control;
use super::run::{run_new, Host};
use crate::state::AppState;

/// What a session is started with (checked by the route); a remote
/// worker receives it as its job's payload.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// Who it runs for (the authenticated principal).
    pub principal: String,
    /// The workspace's name.
    pub workspace: String,
    /// Its folder.
    #[schema(value_type = String)]
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
                Work::New(job) => run_new(&host(&state), job, None, &tx, &control),
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

/// The server as a [`Host`]: its one log, key and policy.
pub fn host(state: &Arc<AppState>) -> Host {
    let cfg = &state.config;
    Host {
        log: state.log.clone(),
        db: cfg.db(),
        key: cfg.key(),
        signer: state.signer.0.clone(),
        policy: cfg.server.policy.clone(),
        members: state.bundle.members().users().map(str::to_string).collect(),
        ask_deadline: Duration::from_secs(cfg.server.ask_deadline_secs),
        pending: state.pending.clone(),
        command: "serve",
    }
}

fn run_resume(
    state: &Arc<AppState>,
    id: &str,
    tx: &WorkerTx,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
    let model = state.config.server.model.clone();
    super::run_continue::resume_on(&host(state), id, model.as_deref(), tx, control)
}
