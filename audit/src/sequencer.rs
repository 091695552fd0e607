//! The sequencer thread: the one owner of the write connection. It takes
//! the first request, drains whatever else is queued (group commit), commits
//! them in one transaction with one signed checkpoint and only then answers.
//! It also appends heartbeats when idle and records the background full
//! verification's result.
//!
//! **External synchrony.** A caller that only needs its entry's place in the
//! sequence (a read inside the sandbox, which takes effect only when what
//! was read leaves it) orders it itself, on its own thread, under the lock
//! it shares with the sequencer (`crate::ordering`), and goes on before it
//! is written; the sequencer writes that pending batch within
//! [`RELEASED_LINGER`] or with the next durable entry. Every other caller
//! is answered only once its commit is durable (`crate::durability`):
//! because the log is one ordered sequence, that flush covers every
//! released entry before it. If a batch with released entries cannot be
//! written, the log refuses every further write, so nothing ordered after a
//! lost entry can take effect.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::durability::Syncer;
use crate::error::AuditError;
use crate::event::{Actor, Event, EventKind};
use crate::marker::{Finding, FullCheck, VerifiedThrough, FULL_CHECK, VERIFIED_THROUGH};
use crate::merkle::Hash;
use crate::ordering::{order, Batch, Shared};
use crate::writer::{Receipt, Work, Writer};

/// Where an answer goes: to a caller waiting for durability.
pub(crate) enum ReplyTo {
    /// Once durable.
    Async(oneshot::Sender<Result<Receipt, AuditError>>),
    /// Once durable.
    Blocking(mpsc::SyncSender<Result<Receipt, AuditError>>),
}

impl ReplyTo {
    pub(crate) fn send(self, r: Result<Receipt, AuditError>) {
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
    /// Answered once everything sent before it is written and durable.
    Sync(ReplyTo),
    /// Rotate or revoke a key, after everything sent before it.
    Keys(crate::writer::KeyChange, ReplyTo),
    /// A caller ordered a released entry into an empty (or full) pending
    /// batch: write it within the linger (at once if full).
    Nudge,
}

/// The sequencer's loop; returns when the log is closed or every sender is
/// gone, with the writer taken out of `shared` (its connection closed).
pub(crate) fn run(
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Msg>,
    heartbeat: Option<Duration>,
    actor: Actor,
) {
    run_with(&shared, &rx, heartbeat, &actor, &shared.syncer);
    // Every durable reply is answered before the connection closes.
    shared.syncer.finish();
    drop(shared.lock().writer.take());
}

/// How long entries that were released may wait in memory for company
/// before they are written anyway (reads arrive one at a time; writing
/// each alone cost a transaction and a signature apiece).
pub(crate) const RELEASED_LINGER: Duration = Duration::from_millis(2);

fn run_with(
    shared: &Shared,
    rx: &mpsc::Receiver<Msg>,
    heartbeat: Option<Duration>,
    actor: &Actor,
    syncer: &Syncer,
) {
    let max_batch = shared.max_batch();
    loop {
        let wait = {
            let g = shared.lock();
            match g.pending {
                Some(_) => Some(RELEASED_LINGER),
                // Callers append without a message: a heartbeat is due a
                // whole interval after the last of their entries.
                None => heartbeat.map(|d| d.saturating_sub(g.last_append.elapsed())),
            }
        };
        let first = match wait {
            Some(d) => match rx.recv_timeout(d) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        let mut works = Vec::new();
        let mut replies: Vec<Option<ReplyTo>> = Vec::new();
        let mut close = None;
        let mut after = Vec::new();
        // Whether something in this round must be written now.
        let mut write_now = false;
        let mut heartbeat_due = false;
        match first {
            None => heartbeat_due = true,
            Some(m) => {
                let mut next = Some(m);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Work(wk, r) => {
                            write_now = true;
                            works.push(wk);
                            replies.push(Some(r));
                        }
                        Msg::Close(r) => {
                            close = Some(r);
                            break;
                        }
                        Msg::Nudge => {}
                        other => after.push(other),
                    }
                    if works.len() < max_batch {
                        next = rx.try_recv().ok();
                    }
                }
            }
        }
        write_now |= close.is_some() || !after.is_empty();
        let mut g = shared.lock();
        let crate::ordering::Ordered {
            writer,
            pending,
            last_append,
        } = &mut *g;
        let Some(w) = writer.as_mut() else { return };
        if heartbeat_due {
            // Released entries lingered long enough: write them. Otherwise
            // nothing came for a heartbeat's interval (unless a caller
            // appended meanwhile).
            if let Some(b) = pending.take() {
                write(w, b, syncer);
                continue;
            }
            // The lingering batch may have been written by a caller
            // meanwhile; then no heartbeat is due unless the interval passed.
            let Some(interval) = heartbeat.filter(|d| last_append.elapsed() >= *d) else {
                continue;
            };
            let secs = interval.as_secs();
            let hb = Event::new(EventKind::Heartbeat, actor.clone())
                .with_data(serde_json::json!({ "interval_s": secs }));
            works.push(Work::Append(Box::new(hb)));
            replies.push(None);
            write_now = true;
        }
        if !works.is_empty() {
            *last_append = std::time::Instant::now();
        }
        if let (None, Some(why)) = (&w.refused, syncer.failure()) {
            w.refused = Some(format!("it could not make entries durable: {why}"));
        }
        if !works.is_empty() {
            *pending = Some(order(w, pending.take(), works, replies));
        }
        let full = pending
            .as_ref()
            .is_some_and(|b| b.prepared.len() >= max_batch);
        if write_now || full {
            if let Some(b) = pending.take() {
                write(w, b, syncer);
            }
        }
        for m in after {
            match m {
                Msg::FullChecked(res) => full_checked(w, res, actor),
                Msg::Sync(r) => {
                    let head = Receipt {
                        seq: w.frontier.size().saturating_sub(1),
                        leaf_hash: w.last_hash.unwrap_or_default(),
                        size: w.frontier.size(),
                        checkpoint: w.latest_checkpoint.clone(),
                    };
                    syncer.submit(vec![(r, Ok(head))]);
                }
                Msg::Keys(change, r) => {
                    let res = w.change_keys(change);
                    syncer.submit(vec![(r, res)]);
                }
                Msg::Work(..) | Msg::Close(_) | Msg::Nudge => {}
            }
        }
        if let Some(r) = close {
            let ev = Event::new(EventKind::LogClose, actor.clone());
            let res = w
                .commit_batch(vec![Work::Append(Box::new(ev))])
                .pop()
                .unwrap_or(Err(AuditError::Stopped(None)));
            syncer.submit(vec![(r, res)]);
            // No caller orders anything after the close.
            drop(writer.take());
            return;
        }
    }
    // Every sender is gone: what was ordered is still written.
    let mut g = shared.lock();
    let crate::ordering::Ordered {
        writer, pending, ..
    } = &mut *g;
    if let (Some(w), Some(b)) = (writer.as_mut(), pending.take()) {
        write(w, b, syncer);
    }
}

/// Write an ordered batch and hand the callers waiting for durability to
/// the syncer (rejections are answered at once).
fn write(w: &mut Writer, b: Batch, syncer: &Syncer) {
    let Batch { prepared, waiting } = b;
    let results = w.write_prepared(prepared);
    let mut durable = Vec::new();
    for (r, res) in waiting.into_iter().zip(results) {
        match (r, res) {
            (None, _) => {}
            (Some(r), Err(e)) => r.send(Err(e)),
            (Some(r), Ok(receipt)) => durable.push((r, Ok(receipt))),
        }
    }
    syncer.submit(durable);
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
            // The alert and the tampered marker are kept even if power fails next.
            if let Err(e) = crate::durability::sync_wal(&w.path) {
                tracing::error!("could not flush the audit alert: {e}");
            }
        }
    }
}
