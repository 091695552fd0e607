//! Threads that run one command after another. Under TCG creating a thread
//! (stack mapping, guard page, TLS) costs about a millisecond of each
//! command's round trip, so a thread that finished a command waits for
//! the next one instead of exiting; as many exist as commands ever ran at
//! once.

use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, PoisonError};

/// A unit of work for a worker.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Idle workers, each reachable through its own channel.
static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

/// Run `job` on an idle worker, or on a new one.
pub(crate) fn run(job: Job) -> std::io::Result<()> {
    let mut job = job;
    loop {
        let idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match idle {
            Some(worker) => match worker.send(job) {
                Ok(()) => return Ok(()),
                // That worker is gone; try the next.
                Err(mpsc::SendError(j)) => job = j,
            },
            None => break,
        }
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("exec-worker".into())
        .spawn(move || {
            let mut next = Some(job);
            while let Some(job) = next.take() {
                job();
                IDLE.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(tx.clone());
                next = rx.recv().ok();
            }
        })
        .map(drop)
}
