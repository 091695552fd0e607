//! The owned, serialisable types every front end of stele shares: the
//! events of a running session (what `stele run --json` prints, one per
//! line, and what `stele serve` streams as server-sent events), an
//! approval's request and answer, the HTTP API's bodies and its errors as
//! RFC 9457 problem details. Only serde here: no runtime, no I/O.
//!
//! Field names are the ones `--json` has always printed; the session id is
//! in the first event (`start`) and the last (`end`).
#![forbid(unsafe_code)]

mod api;
mod approval;
mod event;
mod problem;
mod schedule;

pub use api::{
    LoginRequest, LoginResponse, SessionList, SessionState, SessionSummary, StartSession,
    StartedSession,
};
pub use approval::{ApprovalAnswer, ApprovalList, ApprovalOutcome, ApprovalRequest, ApprovalState};
pub use event::{DecisionEvent, SessionEvent, StopAction, ToolStatus};
pub use problem::{Problem, PROBLEM_JSON};
pub use schedule::{
    CatchUp, NewSchedule, RunOutcome, Schedule, ScheduleList, SchedulePaused, ScheduleRun,
    ScheduleRunList, UnattendedApprove,
};
