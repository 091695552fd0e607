//! Scheduled tasks inside `stele serve`: a task that wakes every
//! [`TICK`], starts each due run as a session of the schedule's owner
//! under the policy in force at that moment (`session.start` decided again
//! for the owner: an account removed or a permission revoked refuses the
//! run, recorded), and records every due run and what became of it. Runs
//! that fell due while the server was down are each recorded as missed at
//! start, then run once or skipped per the schedule's `catch_up`. A run due
//! while the schedule's previous run still runs is skipped and recorded (no
//! pile-up).

pub mod cron;
mod launch;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use stele_audit::Effect;
use stele_protocol::{CatchUp, RunOutcome};

use crate::error::ServerError;
use crate::record::ServerDecision;
use crate::routes::rfc3339;
use crate::state::Shared;
use crate::store::schedules::{RunRecord, ScheduleRecord};

pub use cron::{When, WhenError};

/// How often the scheduler looks for due runs (a 6-field expression can
/// fire every second).
pub const TICK: Duration = Duration::from_millis(250);

/// Most missed runs of one schedule recorded one by one at start; beyond
/// that one entry counts the rest (a per-second schedule down for a week
/// would otherwise write 600 000 entries).
pub const MAX_MISSED_RECORDED: u64 = 1000;

/// The server action of the scheduler's own entries (missed and skipped runs).
pub const RUN_ACTION: &str = "schedule.run";

/// Schedules whose run is in progress.
#[derive(Debug, Default, Clone)]
pub struct Busy(Arc<Mutex<HashSet<String>>>);

impl Busy {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Mark `schedule` busy; false when it already was.
    fn claim(&self, schedule: &str) -> bool {
        self.lock().insert(schedule.to_string())
    }

    /// `schedule`'s run has ended.
    fn release(&self, schedule: &str) {
        self.lock().remove(schedule);
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Record the runs missed while the server was down (and start the
/// catch-up runs), then start the scheduler on the current tokio runtime.
pub async fn start(state: Shared) -> Result<(), ServerError> {
    let busy = Busy::default();
    catch_up(&state, &busy).await?;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TICK).await;
            if let Err(e) = tick(&state, &busy).await {
                tracing::error!("scheduler: {e}");
            }
        }
    });
    Ok(())
}

fn when_of(s: &ScheduleRecord) -> Option<When> {
    match When::parse(&s.spec.cron, s.spec.timezone.as_deref()) {
        Ok(w) => Some(w),
        Err(e) => {
            // Checked at creation; only a hand-edited store gets here.
            tracing::error!("schedule {}: {e}; it does not run", s.id);
            None
        }
    }
}

/// Record each run of every schedule that fell due while the server was
/// down, then run once now or not per `catch_up`.
async fn catch_up(state: &Shared, busy: &Busy) -> Result<(), ServerError> {
    let now = now();
    for s in state.store.schedules().await? {
        let Some(first) = s.next_run.filter(|t| *t <= now) else {
            continue;
        };
        let Some(when) = when_of(&s) else { continue };
        let mut due = Some(first);
        let mut missed = 0u64;
        while let Some(t) = due.filter(|t| *t <= now) {
            if missed < MAX_MISSED_RECORDED {
                let detail = "due while the server was down".to_string();
                note(state, &s, t, RunOutcome::Missed, detail).await?;
            }
            missed += 1;
            due = when.next_after(t);
        }
        if missed > MAX_MISSED_RECORDED {
            let more = missed - MAX_MISSED_RECORDED;
            let detail = format!("{more} more runs were due while the server was down");
            note(state, &s, now, RunOutcome::Missed, detail).await?;
        }
        let moved = state
            .store
            .set_next_run(&s.id, when.next_after(now))
            .await?;
        match s.spec.catch_up {
            CatchUp::RunOnce if !moved => {}
            CatchUp::RunOnce => launch::run(state, busy, &s, now).await?,
            CatchUp::Skip => {}
        }
    }
    Ok(())
}

/// Start every run that is due now.
async fn tick(state: &Shared, busy: &Busy) -> Result<(), ServerError> {
    let now = now();
    for s in state.store.schedules().await? {
        let Some(due) = s.next_run.filter(|t| *t <= now) else {
            continue;
        };
        let Some(when) = when_of(&s) else { continue };
        // Moved on before the run starts: a failure to start is not retried
        // every tick. A schedule paused since it was read is not run.
        if !state
            .store
            .set_next_run(&s.id, when.next_after(now))
            .await?
        {
            continue;
        }
        launch::run(state, busy, &s, due).await?;
    }
    Ok(())
}

/// Record a run that did not start (missed, skipped): an entry, then its row.
async fn note(
    state: &Shared,
    s: &ScheduleRecord,
    due: i64,
    outcome: RunOutcome,
    detail: String,
) -> Result<(), ServerError> {
    let seq = state
        .record(ServerDecision {
            principal: s.owner.clone(),
            teams: Vec::new(),
            action: RUN_ACTION,
            effect: Effect::Deny,
            reason: format!("scheduled run of {} due {}: {detail}", s.id, rfc3339(due)),
            data: serde_json::json!({
                "schedule": s.id,
                "due": rfc3339(due),
                "outcome": outcome,
                "method": launch::METHOD,
            }),
        })
        .await?;
    state
        .store
        .add_run(RunRecord {
            schedule: s.id.clone(),
            due,
            at: now(),
            outcome,
            session: None,
            detail: Some(detail),
            audit_entry: Some(seq),
        })
        .await
}
