//! Which sessions are running, how many may, and how each is told to pause:
//! every worker has a [`Control`] (its pause signal, whether it is parked on
//! an approval, whether it is done), so that a shutdown can pause them all at
//! their next safe point and know when they have got there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use stele_runtime::session::PauseSignal;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};

use super::events::Numbered;

/// Events a slow watcher may fall behind by before it is dropped (it
/// reconnects and replays from the store).
pub const WATCH_BUFFER: usize = 1024;

/// How one session's worker is steered from outside.
#[derive(Debug, Default)]
pub struct Control {
    /// The session's id, once it is in the log.
    pub id: OnceLock<String>,
    /// Ask the run to pause at its next safe point.
    pub pause: PauseSignal,
    /// It waits for an answer to an approval (a safe point: nothing is in
    /// flight but the question, which the log keeps open).
    pub parked: AtomicBool,
    /// Its worker has finished (ended, paused, or failed).
    pub done: AtomicBool,
}

impl Control {
    /// Whether it is at a safe point or gone.
    pub fn settled(&self) -> bool {
        self.done.load(Ordering::SeqCst) || self.parked.load(Ordering::SeqCst)
    }
}

/// The running sessions.
#[derive(Debug)]
pub struct Manager {
    slots: Arc<Semaphore>,
    live: Mutex<HashMap<String, broadcast::Sender<Numbered>>>,
    workers: Mutex<HashMap<u64, Arc<Control>>>,
    next: AtomicU64,
    stopping: AtomicBool,
    /// Sessions run by remote workers (`[workers] run = "remote"`).
    pub remote: super::remote::runs::Runs,
    /// Held while a session is checked and resumed: one resumption at a time,
    /// so a session is never continued by two workers.
    pub resuming: tokio::sync::Mutex<()>,
}

impl Manager {
    /// At most `max` sessions at once.
    pub fn new(max: usize) -> Manager {
        Manager {
            slots: Arc::new(Semaphore::new(max)),
            live: Mutex::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            remote: Default::default(),
            resuming: tokio::sync::Mutex::new(()),
        }
    }

    /// A slot for one more session, if one is free and the server is not stopping.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.stopping() {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    /// The server is shutting down: no session starts or resumes any more.
    pub fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether the server is shutting down.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A new worker's control, registered until [`Manager::finished`].
    pub fn register(&self) -> (u64, Arc<Control>) {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let c = Arc::new(Control::default());
        self.workers_lock().insert(n, c.clone());
        (n, c)
    }

    /// Worker `n` has finished.
    pub fn finished(&self, n: u64) {
        if let Some(c) = self.workers_lock().remove(&n) {
            c.done.store(true, Ordering::SeqCst);
        }
    }

    /// The controls of every worker still registered.
    pub fn controls(&self) -> Vec<Arc<Control>> {
        self.workers_lock().values().cloned().collect()
    }

    /// The control of session `id`'s worker (in this process or remote), if it has one.
    pub fn control_of(&self, id: &str) -> Option<Arc<Control>> {
        let local = self
            .workers_lock()
            .values()
            .find(|c| c.id.get().is_some_and(|i| i == id))
            .cloned();
        local.or_else(|| self.remote.control_of(id))
    }

    /// `id` is running; its events go out on `tx`.
    pub fn go_live(&self, id: &str, tx: broadcast::Sender<Numbered>) {
        self.lock().insert(id.to_string(), tx);
    }

    /// `id` is no longer running.
    pub fn gone(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Whether `id`'s events are still being pumped.
    pub fn is_live(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Watch `id`'s events from now on (None: it is not running).
    pub fn watch(&self, id: &str) -> Option<broadcast::Receiver<Numbered>> {
        self.lock().get(id).map(broadcast::Sender::subscribe)
    }

    /// How many sessions are running.
    pub fn running(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Numbered>>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn workers_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Control>>> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
