//! What the servers share about sessions run by remote workers
//! (`sessions/remote`): the workers registered (each name bound to the
//! account whose token registered it, and its log key), and for each claim
//! its owner and progress (the next message number it expects, the events
//! kept, whether it reached for an effect). Kept in the store, not in one
//! server's memory, so a worker's calls may land on any server sharing the
//! store, and a server restarted mid-session takes up where it was.

use async_trait::async_trait;

use crate::error::ServerError;
use crate::store::jobs::Lease;

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    /// Its name.
    pub name: String,
    /// The account whose token registered it (only that account may use the name).
    pub account: String,
    /// Its log's verifier key (empty until it says).
    pub verifier: String,
    /// Unix seconds when first heard from.
    pub first_seen: i64,
    /// Unix seconds when last heard from.
    pub last_seen: i64,
}

/// How a registration went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// The name is (now) this account's.
    Yes(WorkerRecord),
    /// The name is another account's: the registration changed nothing.
    OtherAccount(String),
}

/// How far a claim's messages have come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The next message number expected (1 before any).
    pub next_msg: i64,
    /// The number of the last event kept for the session (0: none).
    pub events: i64,
    /// It reached for an effect (a tool call).
    pub effects: bool,
    /// It said it started.
    pub started: bool,
}

/// One claim of a session by a remote worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRun {
    /// The claim (job, worker name, attempt).
    pub lease: Lease,
    /// The session.
    pub session: String,
    /// The account whose worker token claimed it: only it may act on it.
    pub account: String,
    /// The claiming worker's log key.
    pub verifier: String,
    /// How far it has come.
    pub progress: Progress,
}

/// Why an open claim needs the reaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its job is still this claim's, but the lease ran out.
    Expired,
    /// Its job finished, or was claimed again: the row is left over.
    Superseded,
}

/// The remote runs' shared state (part of every [`super::Store`]).
#[async_trait]
pub trait RemoteStore {
    /// Worker `name` is heard from on behalf of `account` (with its log key,
    /// on a claim). A name is bound to the first account that registers it.
    async fn register_worker(
        &self,
        name: &str,
        account: &str,
        verifier: Option<&str>,
        now: i64,
    ) -> Result<Registered, ServerError>;
    /// The workers registered, by name.
    async fn workers(&self) -> Result<Vec<WorkerRecord>, ServerError>;
    /// A claim starts (replacing any earlier claim's row of the same job).
    async fn open_run(&self, run: &RemoteRun) -> Result<(), ServerError>;
    /// Job `job`'s current claim, if one is open.
    async fn remote_run(&self, job: i64) -> Result<Option<RemoteRun>, ServerError>;
    /// Every open claim, by job.
    async fn remote_runs(&self) -> Result<Vec<RemoteRun>, ServerError>;
    /// The open claims whose lease ran out by `now`, or whose job is no
    /// longer theirs (one query, for the reaper).
    async fn stale_runs(&self, now: i64) -> Result<Vec<(RemoteRun, Standing)>, ServerError>;
    /// Move the claim `lease` from `from` (its message number expected) to
    /// `to`; false when it is not at `from` any more (another call moved
    /// it first) or is not this claim's.
    async fn advance_run(
        &self,
        lease: &Lease,
        from: i64,
        to: Progress,
    ) -> Result<bool, ServerError>;
    /// Close the claim `lease`; false when it was not open (another server
    /// closed it first).
    async fn close_run(&self, lease: &Lease) -> Result<bool, ServerError>;
}
