//! The sequencer thread: the one owner of the write connection. It takes
//! the first request, drains whatever else is queued (group commit), commits
//! them in one transaction with one signed checkpoint and only then answers.
//! It also appends heartbeats when idle and records the background full
//! verification's result.
//!
//! **External synchrony.** A caller that only needs its entry's place in the
//! sequence (a read inside the sandbox, which takes effect only when what
//! was read leaves it) is answered as soon as the batch is ordered, before
//! it is written ([`ReplyTo::Released`]). Every other caller is answered only
//! once its commit is durable (`crate::durability`): because the log is one
//! ordered sequence, that flush covers every released entry before it. If a
//! batch with released entries cannot be written, the log refuses every
//! further write, so nothing ordered after a lost entry can take effect.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::durability::Syncer;
use crate::error::AuditError;
use crate::event::{Actor, Event, EventKind};
use crate::marker::{Finding, FullCheck, VerifiedThrough, FULL_CHECK, VERIFIED_THROUGH};
use crate::merkle::Hash;
use crate::writer::{Prepared, Receipt, Sequenced, Work, Writer};

/// Where an answer goes.
pub(crate) enum ReplyTo {
    /// Once durable.
    Async(oneshot::Sender<Result<Receipt, AuditError>>),
    /// Once durable.
    Blocking(mpsc::SyncSender<Result<Receipt, AuditError>>),
    /// Once ordered, before it is durable.
    Released(mpsc::SyncSender<Result<Sequenced, AuditError>>),
    /// Once ordered, before it is durable.
    ReleasedAsync(oneshot::Sender<Result<Sequenced, AuditError>>),
}

impl ReplyTo {
    pub(crate) fn send(self, r: Result<Receipt, AuditError>) {
        // A caller that stopped waiting is not an error of the log.
        match self {
            ReplyTo::Async(tx) => drop(tx.send(r)),
            ReplyTo::Blocking(tx) => drop(tx.send(r)),
            ReplyTo::Released(tx) => drop(tx.send(r.map(|r| Sequenced {
                seq: r.seq,
                leaf_hash: r.leaf_hash,
            }))),
            ReplyTo::ReleasedAsync(tx) => drop(tx.send(r.map(|r| Sequenced {
                seq: r.seq,
                leaf_hash: r.leaf_hash,
            }))),
        }
    }

    fn released(&self) -> bool {
        matches!(self, ReplyTo::Released(_) | ReplyTo::ReleasedAsync(_))
    }

    fn send_sequenced(self, r: Result<Sequenced, AuditError>) {
        match self {
            ReplyTo::Released(tx) => drop(tx.send(r)),
            ReplyTo::ReleasedAsync(tx) => drop(tx.send(r)),
            // Not asked for: callers that wait for durability get their receipt later.
            ReplyTo::Async(_) | ReplyTo::Blocking(_) => {}
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
    let syncer = Syncer::start(&w.path, &w.conn);
    run_with(&mut w, &rx, heartbeat, max_batch, &actor, &syncer);
    // Every durable reply is answered before the connection closes.
    syncer.finish();
}

/// How long entries that were released may wait in memory for company
/// before they are written anyway (reads arrive one at a time; writing
/// each alone cost a transaction and a signature apiece).
const RELEASED_LINGER: Duration = Duration::from_millis(2);

/// Entries ordered (and their released callers answered) but not yet
/// written, and the callers waiting for each one's durability.
struct Batch {
    prepared: Prepared,
    waiting: Vec<Option<ReplyTo>>,
}

fn run_with(
    w: &mut Writer,
    rx: &mpsc::Receiver<Msg>,
    heartbeat: Option<Duration>,
    max_batch: usize,
    actor: &Actor,
    syncer: &Syncer,
) {
    let mut pending: Option<Batch> = None;
    loop {
        let wait = match pending {
            Some(_) => Some(RELEASED_LINGER),
            None => heartbeat,
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
        match first {
            None => {
                if let Some(b) = pending.take() {
                    write(w, b, syncer);
                    continue;
                }
                let secs = heartbeat.map(|d| d.as_secs()).unwrap_or(0);
                let hb = Event::new(EventKind::Heartbeat, actor.clone())
                    .with_data(serde_json::json!({ "interval_s": secs }));
                works.push(Work::Append(Box::new(hb)));
                replies.push(None);
                write_now = true;
            }
            Some(m) => {
                let mut next = Some(m);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Work(wk, r) => {
                            write_now |= !r.released();
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
        write_now |= close.is_some() || !after.is_empty();
        if let (None, Some(why)) = (&w.refused, syncer.failure()) {
            w.refused = Some(format!("it could not make entries durable: {why}"));
        }
        if !works.is_empty() {
            let b = order(w, pending.take(), works, replies);
            if write_now || b.prepared.len() >= max_batch {
                write(w, b, syncer);
            } else {
                pending = Some(b);
            }
        } else if write_now {
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
                Msg::Work(..) | Msg::Close(_) => {}
            }
        }
        if let Some(r) = close {
            let ev = Event::new(EventKind::LogClose, actor.clone());
            let res = w
                .commit_batch(vec![Work::Append(Box::new(ev))])
                .pop()
                .unwrap_or(Err(AuditError::Stopped(None)));
            syncer.submit(vec![(r, res)]);
            return;
        }
    }
    // Every sender is gone: what was ordered is still written.
    if let Some(b) = pending.take() {
        write(w, b, syncer);
    }
}

/// Give `works` their places after whatever is pending, and answer the
/// callers that need only that.
fn order(
    w: &mut Writer,
    pending: Option<Batch>,
    works: Vec<Work>,
    replies: Vec<Option<ReplyTo>>,
) -> Batch {
    let (mut b, start) = match pending {
        Some(mut b) => {
            let start = w.prepare_more(&mut b.prepared, works);
            (b, start)
        }
        None => {
            let (prepared, start) = w.prepare(works);
            (
                Batch {
                    prepared,
                    waiting: Vec::new(),
                },
                start,
            )
        }
    };
    // Clock entries the writer put before the items wait for no one.
    b.waiting.resize_with(start, || None);
    for (i, r) in replies.into_iter().enumerate() {
        match r {
            Some(r) if r.released() => {
                if let Some(s) = b.prepared.take_sequenced(start + i) {
                    if s.is_ok() {
                        b.prepared.mark_released();
                    }
                    r.send_sequenced(s);
                }
                b.waiting.push(None);
            }
            other => b.waiting.push(other),
        }
    }
    // Nor those after them.
    b.waiting.resize_with(b.prepared.len(), || None);
    b
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
