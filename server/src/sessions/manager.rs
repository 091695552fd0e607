//! Which sessions are running, and how many may.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};

use super::events::Numbered;

/// Events a slow watcher may fall behind by before it is dropped (it
/// reconnects and replays from the store).
pub const WATCH_BUFFER: usize = 1024;

/// The running sessions.
#[derive(Debug)]
pub struct Manager {
    slots: Arc<Semaphore>,
    live: Mutex<HashMap<String, broadcast::Sender<Numbered>>>,
}

impl Manager {
    /// At most `max` sessions at once.
    pub fn new(max: usize) -> Manager {
        Manager {
            slots: Arc::new(Semaphore::new(max)),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more session, if one is free.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// `id` is running; its events go out on `tx`.
    pub fn go_live(&self, id: &str, tx: broadcast::Sender<Numbered>) {
        self.lock().insert(id.to_string(), tx);
    }

    /// `id` is no longer running.
    pub fn gone(&self, id: &str) {
        self.lock().remove(id);
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
}
