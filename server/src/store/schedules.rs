//! Scheduled tasks and their runs: what each schedule was created with
//! (its spec, as the API received it), when it is next due, and every due
//! run with what became of it (started, missed, skipped, refused, failed).

use async_trait::async_trait;
use stele_protocol::{NewSchedule, RunOutcome};

use crate::error::ServerError;

/// One schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// Its id.
    pub id: String,
    /// Whose sessions its runs are.
    pub owner: String,
    /// What it was created with (time zone filled in).
    pub spec: NewSchedule,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the next due run (None: the expression never fires
    /// again, or the schedule is paused).
    pub next_run: Option<i64>,
    /// Who paused it and when; a paused schedule does not run.
    pub paused: Option<Paused>,
}

/// A pause of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    /// Who paused it.
    pub by: String,
    /// Unix seconds.
    pub at: i64,
}

/// One due run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The schedule's id.
    pub schedule: String,
    /// Unix seconds when it was due.
    pub due: i64,
    /// Unix seconds when it was dealt with.
    pub at: i64,
    /// What became of it.
    pub outcome: RunOutcome,
    /// The session it started.
    pub session: Option<String>,
    /// Why, in words.
    pub detail: Option<String>,
    /// The audit entry recording it.
    pub audit_entry: Option<u64>,
}

/// Where schedules are kept (part of every [`super::Store`]).
#[async_trait]
pub trait ScheduleStore {
    /// Keep a new schedule.
    async fn add_schedule(&self, s: ScheduleRecord) -> Result<(), ServerError>;
    /// One schedule.
    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, ServerError>;
    /// Every schedule, oldest first.
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, ServerError>;
    /// Remove a schedule (its runs stay, as history); false when there was none.
    async fn delete_schedule(&self, id: &str) -> Result<bool, ServerError>;
    /// Set when a schedule is next due, unless it is paused (false then:
    /// the scheduler does not run a schedule paused under it).
    async fn set_next_run(&self, id: &str, next: Option<i64>) -> Result<bool, ServerError>;
    /// Pause (with who and when; no next run) or unpause (with the next
    /// run) a schedule; false when there is none.
    async fn set_paused(
        &self,
        id: &str,
        paused: Option<Paused>,
        next: Option<i64>,
    ) -> Result<bool, ServerError>;
    /// Record a due run.
    async fn add_run(&self, r: RunRecord) -> Result<(), ServerError>;
    /// The runs of a schedule, oldest first.
    async fn runs(&self, schedule: &str) -> Result<Vec<RunRecord>, ServerError>;
}
