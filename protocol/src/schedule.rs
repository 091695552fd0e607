//! Scheduled tasks (`/api/v1/schedules`, `stele schedule`): a cron
//! expression in a time zone, and the task each run starts as a session of
//! the schedule's owner.

use serde::{Deserialize, Serialize};

/// What happens to a run missed while the server was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Record the missed runs and wait for the next one.
    #[default]
    Skip,
    /// Record the missed runs, then run once now for all of them.
    RunOnce,
}

/// How an unattended run treats a step that policy says needs approval.
/// Nothing is approved for nobody: both refuse unless a person answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UnattendedApprove {
    /// The ask waits in the approvals queue until its deadline, then is refused.
    #[default]
    Queue,
    /// The ask is refused at once.
    Deny,
}

/// `POST /api/v1/schedules`: a new schedule, owned by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// A cron expression: 5 fields (minute hour day-of-month month
    /// day-of-week) or 6 with seconds first.
    pub cron: String,
    /// IANA time zone the expression is read in [default: UTC].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The workspace's name (`[workspace.NAME]` in the server's configuration).
    pub workspace: String,
    /// The task each run starts.
    pub task: String,
    /// Model as PROVIDER:NAME [default: the server's `model`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Most model turns per run [default: as for a session].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// How an ask in an unattended run is treated [default: queue].
    #[serde(default)]
    pub approve: UnattendedApprove,
    /// What happens to runs missed while the server was down [default: skip].
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// A schedule, as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    /// Its id.
    pub id: String,
    /// Whose sessions its runs are.
    pub owner: String,
    /// What it was created with (the time zone filled in).
    #[serde(flatten)]
    pub spec: NewSchedule,
    /// Created (RFC 3339).
    pub created: String,
    /// The next run (RFC 3339), if there is one (none while paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// Who paused it and when; a paused schedule does not run until unpaused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<SchedulePaused>,
}

/// A schedule's pause (`POST /api/v1/schedules/{id}/pause`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchedulePaused {
    /// Who paused it.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// `GET /api/v1/schedules`: the schedules the caller may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleList {
    /// The schedules.
    pub schedules: Vec<Schedule>,
}

/// What became of one due run of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// A session started (its id is in the run).
    Started,
    /// The run was due while the server was down.
    Missed,
    /// The previous run of the schedule was still running: this one was skipped.
    SkippedBusy,
    /// Policy at run time refused the owner `session.start` (or the owner
    /// or workspace is gone).
    Refused,
    /// The session could not start (the detail says why).
    Failed,
}

/// One due run of a schedule and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleRun {
    /// When it was due (RFC 3339).
    pub due: String,
    /// When the server dealt with it (RFC 3339).
    pub at: String,
    /// What became of it.
    pub outcome: RunOutcome,
    /// The session it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Why, in words (refusals, failures, skips).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The audit entry that records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_entry: Option<u64>,
}

/// `GET /api/v1/schedules/{id}/runs`: a schedule's runs, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleRunList {
    /// The runs.
    pub runs: Vec<ScheduleRun>,
}
