//! The server's view of sessions running on remote workers: for each
//! claimed job its claim, lease, message numbering, control (pause
//! requests from the API), the questions it waits on and the answers passed
//! on; and the workers seen. Kept in memory: a worker talks to one server.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::sequence::Sequencer;
use super::wire::WorkerInfo;
use crate::sessions::approvals::{Candidate, Verdict};
use crate::sessions::events::WorkerTx;
use crate::sessions::manager::Control;
use crate::store::jobs::Lease;

/// One claimed session.
pub struct Run {
    /// The claim.
    pub lease: Lease,
    /// The session.
    pub session: String,
    /// When the lease runs out (unix seconds).
    pub lease_until: i64,
    /// Its messages' numbering.
    pub seq: Sequencer,
    /// Its pump.
    pub tx: WorkerTx,
    /// Pause requests from the API.
    pub control: Arc<Control>,
    /// It reached for an effect (a tool call).
    pub effects: bool,
    /// It said it started.
    pub started: bool,
    /// Questions it waits on: answers offered in the API arrive here.
    pub asks: HashMap<String, std_mpsc::Receiver<Candidate>>,
    /// Answers passed on, waiting for the session's verdict.
    pub replies: HashMap<String, tokio::sync::oneshot::Sender<Verdict>>,
}

type Ended = Box<dyn FnOnce() + Send>;

/// Every remote run and worker this server knows.
#[derive(Default)]
pub struct Runs {
    runs: Mutex<HashMap<i64, Run>>,
    workers: Mutex<BTreeMap<String, WorkerInfo>>,
    ended: Mutex<HashMap<String, Ended>>,
    /// The lease reaper runs (started with the first remote session).
    pub reaper: std::sync::OnceLock<()>,
}

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runs")
            .field("runs", &lock(&self.runs).len())
            .field("workers", &lock(&self.workers).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Runs {
    /// Call `ended` once session `id` has finished (or will never run).
    pub fn on_end(&self, id: &str, ended: impl FnOnce() + Send + 'static) {
        lock(&self.ended).insert(id.to_string(), Box::new(ended));
    }

    /// Session `id` has finished: its `ended` runs.
    pub fn end(&self, id: &str) {
        let f = lock(&self.ended).remove(id);
        if let Some(f) = f {
            f();
        }
    }

    /// A claimed job starts running.
    pub fn insert(&self, run: Run) {
        lock(&self.runs).insert(run.lease.job, run);
    }

    /// Work on job `job`'s run, if it is this claim's (`attempt`); None otherwise.
    pub fn with<R>(&self, job: i64, attempt: i64, f: impl FnOnce(&mut Run) -> R) -> Option<R> {
        let mut runs = lock(&self.runs);
        match runs.get_mut(&job) {
            Some(r) if r.lease.attempt == attempt => Some(f(r)),
            _ => None,
        }
    }

    /// Take job `job`'s run out, if it is this claim's.
    pub fn take(&self, job: i64, attempt: i64) -> Option<Run> {
        let mut runs = lock(&self.runs);
        match runs.get(&job) {
            Some(r) if r.lease.attempt == attempt => runs.remove(&job),
            _ => None,
        }
    }

    /// Take out every run whose lease ran out by `now`.
    pub fn expired(&self, now: i64) -> Vec<Run> {
        let mut runs = lock(&self.runs);
        let gone: Vec<i64> = runs
            .values()
            .filter(|r| r.lease_until <= now)
            .map(|r| r.lease.job)
            .collect();
        gone.iter().filter_map(|j| runs.remove(j)).collect()
    }

    /// The control of session `id`, when a worker runs it.
    pub fn control_of(&self, id: &str) -> Option<Arc<Control>> {
        lock(&self.runs)
            .values()
            .find(|r| r.session == id)
            .map(|r| r.control.clone())
    }

    /// Whether a worker runs session `id`.
    pub fn runs(&self, id: &str) -> bool {
        lock(&self.runs).values().any(|r| r.session == id)
    }

    /// A worker was heard from: known from its first claim on.
    pub fn seen(&self, name: &str, verifier: Option<&str>, account: &str, now: i64) {
        let mut w = lock(&self.workers);
        let e = w.entry(name.to_string()).or_insert_with(|| WorkerInfo {
            name: name.to_string(),
            verifier: String::new(),
            account: account.to_string(),
            first_seen: now,
            last_seen: now,
            sessions: Vec::new(),
        });
        e.last_seen = now;
        if let Some(v) = verifier {
            e.verifier = v.to_string();
        }
    }

    /// The workers seen, with the sessions each runs now.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        let runs = lock(&self.runs);
        lock(&self.workers)
            .values()
            .map(|w| {
                let mut w = w.clone();
                w.sessions = runs
                    .values()
                    .filter(|r| r.lease.worker == w.name)
                    .map(|r| r.session.clone())
                    .collect();
                w
            })
            .collect()
    }
}
