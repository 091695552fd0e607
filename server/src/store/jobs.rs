//! A job queue several servers (and, later, workers) share: a job is
//! enqueued with a kind and a JSON payload, claimed by one worker for a
//! lease, kept alive by heartbeats, and completed or failed. A lease that
//! runs out makes the job claimable again (its worker is presumed dead).
//! A claim is one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so
//! no two claimers ever hold the same job at once.
//!
//! Times are unix seconds given by the caller, as elsewhere in the store.
//! Every operation on a claimed job names its [`Lease`]: the worker and the
//! attempt number, so a worker whose lease ran out and was claimed again
//! (by another worker, or by itself) can no longer touch it.

use async_trait::async_trait;

use crate::error::ServerError;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// Claimed; its lease runs until `lease_until`.
    Running,
    /// Completed by its worker.
    Done,
    /// Failed by its worker (not retried).
    Failed,
}

impl JobState {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    /// Parse a stored name; anything unknown counts as failed (never as
    /// claimable, never as done).
    pub fn parse(s: &str) -> JobState {
        match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            _ => JobState::Failed,
        }
    }
}

/// Who holds a claimed job, and which claim of it this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job's id.
    pub job: i64,
    /// The worker that claimed it.
    pub worker: String,
    /// Which claim (1 for the first; each reclaim after an expired lease adds one).
    pub attempt: i64,
}

/// A job a worker has claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The claim: quote it to heartbeat, complete or fail the job.
    pub lease: Lease,
    /// What kind of work it is.
    pub kind: String,
    /// The work, as enqueued.
    pub payload: serde_json::Value,
    /// Unix seconds when the lease runs out unless renewed.
    pub lease_until: i64,
}

/// A job as the queue holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Its id.
    pub id: i64,
    /// What kind of work it is.
    pub kind: String,
    /// The work, as enqueued.
    pub payload: serde_json::Value,
    /// Where it stands.
    pub state: JobState,
    /// The worker holding (or that last held) it.
    pub worker: Option<String>,
    /// Claims so far.
    pub attempts: i64,
    /// Unix seconds when the current lease runs out.
    pub lease_until: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The job queue (part of every [`super::Store`]).
#[async_trait]
pub trait JobStore {
    /// Queue a job; its id.
    async fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        now: i64,
    ) -> Result<i64, ServerError>;
    /// Claim the oldest claimable job (queued, or running on a lease that
    /// ran out by `now`) for `worker` until `now + lease_secs`; None when
    /// there is none.
    async fn claim(
        &self,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<Option<ClaimedJob>, ServerError>;
    /// Renew the lease until `now + lease_secs`; None when the lease is no
    /// longer this claim's (the job was claimed again after it ran out, or
    /// is finished): the worker must stop working on it. A lease that ran
    /// out but was not claimed again is still this claim's (the attempt
    /// number fences off every later claim).
    async fn heartbeat(
        &self,
        lease: &Lease,
        lease_secs: i64,
        now: i64,
    ) -> Result<Option<i64>, ServerError>;
    /// The job is done; false when the lease is no longer this claim's.
    async fn complete(&self, lease: &Lease, now: i64) -> Result<bool, ServerError>;
    /// The job failed (`error` says why; it is not retried); false when the
    /// lease is no longer this claim's.
    async fn fail(&self, lease: &Lease, error: &str, now: i64) -> Result<bool, ServerError>;
    /// One job.
    async fn job(&self, id: i64) -> Result<Option<JobRecord>, ServerError>;
}
