//! The sequencer thread: the one owner of the write connection. It takes
//! the first request, drains whatever else is queued (group commit), commits
//! them in one transaction with one signed checkpoint and only then answers.
//! It also appends heartbeats when idle and records the background full
//! verification's result.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::AuditError;
use crate::event::{Actor, Event, EventKind};
use crate::marker::{Finding, FullCheck, VerifiedThrough, FULL_CHECK, VERIFIED_THROUGH};
use crate::merkle::Hash;
use crate::writer::{Receipt, Work, Writer};

/// Where an answer goes.
pub(crate) enum ReplyTo {
    Async(oneshot::Sender<Result<Receipt, AuditError>>),
    Blocking(mpsc::SyncSender<Result<Receipt, AuditError>>),
}

impl ReplyTo {
    fn send(self, r: Result<Receipt, AuditError>) {
        // A caller that stopped waiting is not an error of the log.
        match self {
            ReplyTo::Async(tx) => drop(tx.send(r)),
            ReplyTo::Blocking(tx) => drop(tx.send(r)),
        }
    }
}

/// What the background full verification found.
pub(crate) enum FullResult {
    /// The log up to `size` verified, with this root, at unix time `at`.
    Verified { size: u64, root: Hash, at: u64 },
    /// It was found altered.
    Altered { index: Option<u64>, reason: String },
}

/// A message to the sequencer.
pub(crate) enum Msg {
    Work(Work, ReplyTo),
    Close(ReplyTo),
    FullChecked(FullResult),
    /// Answered once everything sent before it was handled.
    Sync(mpsc::SyncSender<()>),
}

/// The sequencer's loop; returns when the log is closed or every sender is
/// gone.
pub(crate) fn run(
    mut w: Writer,
    rx: mpsc::Receiver<Msg>,
    heartbeat: Option<Duration>,
    max_batch: usize,
    actor: Actor,
) {
    loop {
        let first = match heartbeat {
            Some(d) => match rx.recv_timeout(d) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            },
        };
        let mut works = Vec::new();
        let mut replies: Vec<Option<ReplyTo>> = Vec::new();
        let mut close = None;
        let mut after = Vec::new();
        match first {
            None => {
                let secs = heartbeat.map(|d| d.as_secs()).unwrap_or(0);
                let hb = Event::new(EventKind::Heartbeat, actor.clone())
                    .with_data(serde_json::json!({ "interval_s": secs }));
                works.push(Work::Append(Box::new(hb)));
                replies.push(None);
            }
            Some(m) => {
                let mut next = Some(m);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Work(wk, r) => {
                            works.push(wk);
                            replies.push(Some(r));
                        }
                        Msg::Close(r) => {
                            close = Some(r);
                            break;
                        }
                        other => after.push(other),
                    }
                    if works.len() < max_batch {
                        next = rx.try_recv().ok();
                    }
                }
            }
        }
        if !works.is_empty() {
            for (r, res) in replies.into_iter().zip(w.commit_batch(works)) {
                if let Some(r) = r {
                    r.send(res);
                }
            }
        }
        for m in after {
            match m {
                Msg::FullChecked(res) => full_checked(&mut w, res, &actor),
                Msg::Sync(tx) => drop(tx.send(())),
                Msg::Work(..) | Msg::Close(_) => {}
            }
        }
        if let Some(r) = close {
            let ev = Event::new(EventKind::LogClose, actor.clone());
            let res = w
                .commit_batch(vec![Work::Append(Box::new(ev))])
                .pop()
                .unwrap_or(Err(AuditError::Stopped(None)));
            r.send(res);
            return;
        }
    }
}

/// Record the background full verification's result: signed markers when
/// it verified; an alert entry and refusal when it found the log altered.
fn full_checked(w: &mut Writer, res: FullResult, actor: &Actor) {
    match res {
        FullResult::Verified { size, root, at } => {
            let full = FullCheck {
                size,
                root,
                at,
                finding: Finding::Verified,
            };
            let marks = full.sign(w.signer.as_ref()).and_then(|f| {
                let vt = VerifiedThrough { size, root }.sign(w.signer.as_ref())?;
                Ok((f, vt))
            });
            match marks {
                Ok((f, vt)) => {
                    w.pending_meta.push((FULL_CHECK, f));
                    // Never move the start-up marker backwards.
                    if size >= w.verified_size {
                        w.pending_meta.push((VERIFIED_THROUGH, vt));
                        w.verified_size = size;
                    }
                    if let Err(e) = w.flush_meta() {
                        tracing::error!(
                            "could not record the full verification of the audit log: {e}"
                        );
                    }
                }
                Err(e) => tracing::error!("could not sign the full verification marker: {e}"),
            }
        }
        FullResult::Altered { index, reason } => {
            tracing::error!(
                "AUDIT LOG ALTERED: the full verification of {} found {}{reason}; refusing every further write",
                w.path.display(),
                index.map(|i| format!("index {i}: ")).unwrap_or_default()
            );
            if let Err(e) = w.record_alteration("full", index, &reason, actor.clone()) {
                tracing::error!("could not record the audit alert: {e}");
            }
        }
    }
}
