//! Stamping a running session's log: with `[tsa] every_secs = N`, a thread
//! beside the session asks the TSA for a token on the newest checkpoint
//! every N seconds — only when the log has grown since the last token and
//! no token (from this or any other process on the same log) is younger
//! than N seconds, so the TSA is asked at most every N seconds per log. The
//! token is checked and stored exactly as at the session's end; a TSA that
//! fails is a warning, as there (the log's own guarantees do not depend on
//! it). Stops, without a last attempt, when dropped: the session's end
//! stamps its final checkpoint itself.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;

use stele_attest::NoteVerifier;

use super::{checkpoint_sizes, report, token_within, Timestamping};

/// The stamping thread of a running session.
pub struct PeriodicStamps {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PeriodicStamps {
    /// Start stamping the log at `db` (signed by `log_key`) if `t` says
    /// `every_secs`; none otherwise.
    pub fn start(
        t: &Timestamping,
        db: PathBuf,
        log_key: NoteVerifier,
    ) -> std::io::Result<Option<Self>> {
        let Some(every) = t.every() else {
            return Ok(None);
        };
        let t = t.clone();
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("stele-tsa".into())
            .spawn(move || loop {
                match rx.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    // Dropped (the session ends) or told to stop.
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let (newest, stamped) = checkpoint_sizes(&db);
                let grown = match (newest, stamped) {
                    (Some(n), Some(s)) => n > s,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if grown && !token_within(&db, every) {
                    report(&t.stamp_now(&db, &log_key).map(Some));
                }
            })?;
        Ok(Some(Self {
            stop: Some(tx),
            thread: Some(thread),
        }))
    }
}

impl Drop for PeriodicStamps {
    fn drop(&mut self) {
        // A request in flight finishes (bounded by `timeout_secs`): a token
        // the TSA has issued is stored, not lost half-way.
        drop(self.stop.take());
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}
