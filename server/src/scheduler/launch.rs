//! One due run: skip it if the previous run still runs, decide
//! `session.start` for the owner under the policy in force now (recorded),
//! and start the session as the API does, naming the schedule.

use stele_policy::ServerResource;
use stele_protocol::RunOutcome;

use super::{note, now, Busy};
use crate::authz::{self, ServerAction};
use crate::error::ServerError;
use crate::record::{Deciders, ServerDecision};
use crate::routes::rfc3339;
use crate::sessions::launch::{launch_then, LaunchError};
use crate::sessions::worker::{Job, Scheduled, Work};
use crate::state::Shared;
use crate::store::schedules::{RunRecord, ScheduleRecord};

/// How the scheduler "authenticates" the owner in its decisions.
pub const METHOD: &str = "schedule";

async fn record_run(
    state: &Shared,
    s: &ScheduleRecord,
    due: i64,
    outcome: RunOutcome,
    session: Option<String>,
    detail: Option<String>,
    entry: Option<u64>,
) -> Result<(), ServerError> {
    state
        .store
        .add_run(RunRecord {
            schedule: s.id.clone(),
            due,
            at: now(),
            outcome,
            session,
            detail,
            audit_entry: entry,
        })
        .await
}

/// Deal with the run of `s` due at `due`.
pub async fn run(
    state: &Shared,
    busy: &Busy,
    s: &ScheduleRecord,
    due: i64,
) -> Result<(), ServerError> {
    if !busy.claim(&s.id) {
        let detail = "the previous run of this schedule was still running".to_string();
        return note(state, s, due, RunOutcome::SkippedBusy, detail).await;
    }
    let started = start(state, busy, s, due).await;
    if !matches!(started, Ok(true)) {
        busy.release(&s.id);
    }
    started.map(|_| ())
}

/// The decision and the start; true when a session is on its way (it
/// releases the schedule when it ends).
async fn start(
    state: &Shared,
    busy: &Busy,
    s: &ScheduleRecord,
    due: i64,
) -> Result<bool, ServerError> {
    let data = serde_json::json!({
        "schedule": s.id, "due": rfc3339(due), "method": METHOD,
        "workspace": s.spec.workspace,
    });
    let user = state.store.user(&s.owner).await?;
    let ws = state.config.workspace.get(&s.spec.workspace).cloned();
    let (user, ws) = match (user, ws) {
        (Some(u), Some(w)) => (u, w),
        (user, ws) => {
            let why = match (user, ws) {
                (None, _) => format!("the owner {:?} has no account any more", s.owner),
                _ => format!(
                    "the workspace {:?} is not configured any more",
                    s.spec.workspace
                ),
            };
            let seq = state
                .record(ServerDecision {
                    principal: s.owner.clone(),
                    teams: Vec::new(),
                    action: ServerAction::SessionStart.as_str(),
                    effect: stele_audit::Effect::Deny,
                    reason: format!("scheduled run of {}: {why}", s.id),
                    data,
                })
                .await?;
            let refused = RunOutcome::Refused;
            record_run(state, s, due, refused, None, Some(why), Some(seq)).await?;
            return Ok(false);
        }
    };
    // The policy in force now, not when the schedule was made.
    let on = ServerResource::Workspace {
        name: s.spec.workspace.clone(),
        teams: ws.teams.clone(),
    };
    let decided = authz::decide(&state.bundle, &user, METHOD, ServerAction::SessionStart, on);
    let allowed = decided.allowed();
    let seq = state
        .record_decided(
            ServerDecision {
                principal: user.name.clone(),
                teams: user.teams.clone(),
                action: ServerAction::SessionStart.as_str(),
                effect: if allowed {
                    stele_audit::Effect::Allow
                } else {
                    stele_audit::Effect::Deny
                },
                reason: decided.reason.clone(),
                data,
            },
            Deciders {
                layer: decided.decision.layer.map(|l| l.to_string()),
                policies: decided.policies(),
            },
        )
        .await?;
    let failed = |why: String| {
        record_run(
            state,
            s,
            due,
            RunOutcome::Failed,
            None,
            Some(why),
            Some(seq),
        )
    };
    if !allowed {
        let why = Some(decided.reason);
        record_run(state, s, due, RunOutcome::Refused, None, why, Some(seq)).await?;
        return Ok(false);
    }
    let Some(model) = s
        .spec
        .model
        .clone()
        .or_else(|| state.config.server.model.clone())
    else {
        failed("no model: the schedule names none and the server has no default".into()).await?;
        return Ok(false);
    };
    let job = Job {
        principal: user.name.clone(),
        workspace: s.spec.workspace.clone(),
        path: ws.path.clone(),
        task: s.spec.task.clone(),
        model,
        max_steps: s.spec.max_steps,
        scheduled: Some(Scheduled {
            schedule: s.id.clone(),
            due: rfc3339(due),
            approve: s.spec.approve,
        }),
    };
    // Started the way the API starts a session, waited for in a task of its
    // own so other schedules go on; the schedule is free again once the
    // session's pump has ended (it finished, or never started).
    let (state, s, busy) = (state.clone(), s.clone(), busy.clone());
    tokio::spawn(async move {
        let id = s.id.clone();
        let released = busy.clone();
        let r = launch_then(&state, Work::New(job), move || released.release(&id)).await;
        let (outcome, session, detail) = match r {
            Ok(id) => (RunOutcome::Started, Some(id), None),
            Err(LaunchError::NoSlot) => (
                RunOutcome::Failed,
                None,
                Some(format!(
                    "the server runs its most sessions at once ({}), or is stopping",
                    state.config.server.max_sessions
                )),
            ),
            Err(e) => (
                RunOutcome::Failed,
                None,
                Some(format!("did not start: {e}")),
            ),
        };
        if let Err(e) = record_run(&state, &s, due, outcome, session, detail, Some(seq)).await {
            tracing::error!("schedule {}: recording its run: {e}", s.id);
        }
    });
    Ok(true)
}
