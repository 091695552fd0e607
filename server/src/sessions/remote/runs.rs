//! What one server keeps in memory about remote runs, beside the store:
//! for each claim a worker's calls reached here, the channels that live
//! only in this process (live watchers, pause requests from this server's
//! API, approval answers offered here and passed on). The store
//! (`store/remote.rs`) holds the truth — who claimed what, message
//! numbering, effects — so this is a cache: lost on restart, rebuilt on the
//! next call, and absent on servers the worker never called.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use crate::sessions::approvals::{Candidate, Verdict};
use crate::sessions::events::Numbered;
use crate::sessions::manager::Control;
use crate::store::jobs::Lease;

/// One claimed session's channels on this server.
pub struct Local {
    /// The claim.
    pub lease: Lease,
    /// The session.
    pub session: String,
    /// Its live watchers on this server.
    pub live: broadcast::Sender<Numbered>,
    /// Pause requests from this server's API.
    pub control: Arc<Control>,
    /// Questions it waits on: answers offered in this server's API arrive here.
    pub asks: HashMap<String, std_mpsc::Receiver<Candidate>>,
    /// Answers passed on, waiting for the session's verdict.
    pub replies: HashMap<String, tokio::sync::oneshot::Sender<Verdict>>,
}

type Ended = Box<dyn FnOnce() + Send>;

/// The remote runs this server has channels for.
#[derive(Default)]
pub struct Runs {
    runs: Mutex<HashMap<i64, Local>>,
    ended: Mutex<HashMap<String, Ended>>,
    /// The lease reaper runs (started with the first remote session or claim).
    pub reaper: std::sync::OnceLock<()>,
}

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runs")
            .field("runs", &lock(&self.runs).len())
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

    /// Session `id` has finished: its `ended` runs (on the server that queued it).
    pub fn end(&self, id: &str) {
        let f = lock(&self.ended).remove(id);
        if let Some(f) = f {
            f();
        }
    }

    /// The claims this server has channels for.
    pub fn leases(&self) -> Vec<Lease> {
        lock(&self.runs).values().map(|r| r.lease.clone()).collect()
    }

    /// The sessions whose `ended` waits here (queued by this server).
    pub fn waiting(&self) -> Vec<String> {
        lock(&self.ended).keys().cloned().collect()
    }

    /// Keep a claim's channels (replacing an earlier claim's of the same job).
    pub fn insert(&self, run: Local) {
        lock(&self.runs).insert(run.lease.job, run);
    }

    /// Whether this server has channels for the claim `lease`.
    pub fn has(&self, lease: &Lease) -> bool {
        lock(&self.runs)
            .get(&lease.job)
            .is_some_and(|r| &r.lease == lease)
    }

    /// Work on the channels of the claim `lease`; None when this server has none.
    pub fn with<R>(&self, lease: &Lease, f: impl FnOnce(&mut Local) -> R) -> Option<R> {
        let mut runs = lock(&self.runs);
        match runs.get_mut(&lease.job) {
            Some(r) if &r.lease == lease => Some(f(r)),
            _ => None,
        }
    }

    /// Take out the channels of job `job` (any claim).
    pub fn take(&self, job: i64) -> Option<Local> {
        lock(&self.runs).remove(&job)
    }

    /// The control of session `id`, when a worker runs it and called here.
    pub fn control_of(&self, id: &str) -> Option<Arc<Control>> {
        lock(&self.runs)
            .values()
            .find(|r| r.session == id)
            .map(|r| r.control.clone())
    }
}
