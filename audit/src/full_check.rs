//! The full verification in the background: on its own read-only
//! connection, in one snapshot of the log (the writer keeps appending), the
//! same checks as `stele audit verify` plus SQLite's `quick_check`. The
//! result goes to the sequencer, which records a signed marker — or, if the
//! log was found altered, an `audit.alert` entry, and refuses every write
//! from then on.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::InterruptHandle;
use stele_attest::NoteVerifier;

use crate::leaf::parse_hash_b64;
use crate::sequencer::{FullResult, Msg};
use crate::store::Store;

/// A running background verification.
pub(crate) struct Background {
    thread: JoinHandle<()>,
    interrupt: Arc<Mutex<Option<InterruptHandle>>>,
    signal: mpsc::Sender<Signal>,
}

/// Told to the background thread while it waits to start.
enum Signal {
    Start,
    Cancel,
}

impl Background {
    /// Start it on the database at `path`.
    pub fn spawn(
        path: PathBuf,
        verifier: NoteVerifier,
        anchor: Option<String>,
        after: std::time::Duration,
        to: mpsc::Sender<Msg>,
    ) -> Option<Self> {
        let interrupt = Arc::new(Mutex::new(None));
        let slot = interrupt.clone();
        let (signal, signals) = mpsc::channel::<Signal>();
        let thread = std::thread::Builder::new()
            .name("stele-audit-full-check".into())
            .spawn(move || {
                match signals.recv_timeout(after) {
                    Ok(Signal::Start) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    // Closed before it was time to start.
                    Ok(Signal::Cancel) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let store = match Store::open(&path) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(
                            "background verification of {} could not start: {e}",
                            path.display()
                        );
                        return;
                    }
                };
                if let Ok(mut s) = slot.lock() {
                    *s = Some(store.conn().get_interrupt_handle());
                }
                let _ = store.conn().pragma_update(None, "mmap_size", 1i64 << 40);
                let res = match crate::startup::full(&store, &verifier, anchor.as_deref()) {
                    Ok(r) => match parse_hash_b64(&r.root) {
                        Some(root) => FullResult::Verified {
                            size: r.entries,
                            root,
                            at: crate::marker::now_secs(),
                        },
                        None => return,
                    },
                    // Unreadable (or interrupted at close): not a finding.
                    Err(crate::verify::VerifyFailure::Unreadable(e)) => {
                        tracing::warn!("background verification of {}: {e}", path.display());
                        return;
                    }
                    Err(crate::verify::VerifyFailure::Tampered { index, reason }) => {
                        FullResult::Altered { index, reason }
                    }
                };
                let _ = to.send(Msg::FullChecked(res));
            })
            .ok()?;
        Some(Self {
            thread,
            interrupt,
            signal,
        })
    }

    /// Stop it (the log is closing): its result no longer matters.
    pub fn cancel(self) {
        let _ = self.signal.send(Signal::Cancel);
        if let Ok(s) = self.interrupt.lock() {
            if let Some(h) = s.as_ref() {
                h.interrupt();
            }
        }
        let _ = self.thread.join();
    }

    /// Wait for it to finish (starting it now if it is still waiting).
    pub fn join(self) {
        let _ = self.signal.send(Signal::Start);
        let _ = self.thread.join();
    }
}
