//! The log's ordering state, shared by the sequencer thread and callers
//! that need only their entry's place in the sequence.
//!
//! A released entry (a read inside the sandbox, see `crate::sequencer`) is
//! ordered on its caller's own thread: the caller takes the lock, builds the
//! entry after whatever is pending (index, leaf hash, tree), learns its
//! place and goes on. The sequencer writes the pending batch soon after
//! (within its linger, or at once when a durable entry comes), under the
//! same lock. There is no thread hand-off per read: the caller neither
//! wakes the sequencer and waits for it to be scheduled nor waits for its
//! answer — the costs that dominated a file-heavy command on a busy machine.
//!
//! A durable entry from a blocking caller that is alone in appending one
//! ([`Shared::commit_if_alone`]) is ordered, written and flushed on the
//! caller's thread too: it takes the
//! lock, orders its entry after whatever is pending, commits the batch,
//! lets go of the lock and flushes the WAL (unless a flush that started
//! after its commit already did) before it returns. Nothing it answers is
//! less durable than through the sequencer and the syncer; it only skips
//! the two thread hand-offs, which cost a write in the workspace more than
//! its `fdatasync` on a busy machine. Callers that come together go through
//! the sequencer instead, which commits them in one transaction with one
//! signed checkpoint (committing each on its own thread would serialise
//! them one transaction apiece).
//!
//! Order is the same as if the sequencer had ordered it: whatever a caller
//! sends after its released entry is ordered when the sequencer next takes
//! the lock, after it. What a lost released entry means is unchanged too:
//! the batch is marked released, and if it cannot be written the log
//! refuses every later append.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::durability::Syncer;
use crate::error::AuditError;
use crate::sequencer::{Msg, ReplyTo};
use crate::writer::{Prepared, Receipt, Sequenced, Work, Writer};

/// What [`Shared::commit_if_alone`] did.
pub(crate) enum Direct {
    /// Committed on the caller's thread: the receipt once durable, or why not.
    Done(Result<Receipt, AuditError>),
    /// Other callers are appending: send it to the sequencer.
    Busy(Work),
}

/// A blocking durable append under way (see [`Shared::commit_if_alone`]).
pub(crate) struct DurableCaller<'a>(&'a AtomicUsize);

impl Drop for DurableCaller<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AtomicOrdering::AcqRel);
    }
}

/// Entries ordered (and their released callers answered) but not yet
/// written, and the callers waiting for each one's durability.
pub(crate) struct Batch {
    pub(crate) prepared: Prepared,
    pub(crate) waiting: Vec<Option<ReplyTo>>,
}

/// The writer and the batch it has ordered but not written.
pub(crate) struct Ordered {
    /// `None` once the sequencer has stopped (the connection is closed).
    pub(crate) writer: Option<Writer>,
    pub(crate) pending: Option<Batch>,
    /// When a caller last ordered an entry (heartbeats fill silences only).
    pub(crate) last_append: Instant,
}

/// The lock callers and the sequencer order entries under.
pub(crate) struct Shared {
    state: Mutex<Ordered>,
    /// Blocking durable appends under way.
    durable_callers: AtomicUsize,
    max_batch: usize,
    /// Makes commits durable (`crate::durability`).
    pub(crate) syncer: Syncer,
}

impl Shared {
    pub(crate) fn new(writer: Writer, max_batch: usize) -> Self {
        let syncer = Syncer::start(&writer.path, &writer.conn);
        Self {
            state: Mutex::new(Ordered {
                writer: Some(writer),
                pending: None,
                last_append: Instant::now(),
            }),
            max_batch: max_batch.max(1),
            durable_callers: AtomicUsize::new(0),
            syncer,
        }
    }

    /// Commit `work` on the caller's thread ([`Shared::commit_blocking`])
    /// when no other blocking durable append is under way; otherwise hand
    /// it back, for the sequencer to commit with the others. The caller
    /// counts as under way until the returned guard is dropped (after its
    /// answer came back, whichever way it went).
    pub(crate) fn commit_if_alone(&self, work: Work) -> (Direct, DurableCaller<'_>) {
        let before = self.durable_callers.fetch_add(1, AtomicOrdering::AcqRel);
        let guard = DurableCaller(&self.durable_callers);
        if before == 0 {
            (Direct::Done(self.commit_blocking(work)), guard)
        } else {
            (Direct::Busy(work), guard)
        }
    }

    /// Order `work` after everything ordered so far, write it with them
    /// and make it durable, all on the caller's thread; the receipt once it
    /// is durable.
    pub(crate) fn commit_blocking(&self, work: Work) -> Result<Receipt, AuditError> {
        let res = {
            let mut g = self.lock();
            let Ordered {
                writer,
                pending,
                last_append,
            } = &mut *g;
            let w = writer.as_mut().ok_or(AuditError::Stopped(None))?;
            *last_append = Instant::now();
            if let (None, Some(why)) = (&w.refused, self.syncer.failure()) {
                w.refused = Some(format!("it could not make entries durable: {why}"));
            }
            let (b, start) = start_or_extend(w, pending.take(), vec![work]);
            let Batch { prepared, waiting } = b;
            let mut results = w.write_prepared(prepared);
            // Callers the sequencer ordered into the batch (none today:
            // it writes their batches at once) wait for the syncer.
            let mut others = Vec::new();
            for (i, (r, res)) in waiting.into_iter().zip(results.iter_mut()).enumerate() {
                if let (Some(r), false) = (r, i == start) {
                    let taken = std::mem::replace(res, Err(AuditError::Stopped(None)));
                    match taken {
                        Ok(receipt) => others.push((r, Ok(receipt))),
                        Err(e) => r.send(Err(e)),
                    }
                }
            }
            self.syncer.submit(others);
            if start < results.len() {
                results.swap_remove(start)
            } else {
                Err(AuditError::Stopped(None))
            }
        };
        let receipt = res?;
        self.syncer.flush_through(receipt.size)?;
        Ok(receipt)
    }

    /// Most entries written together.
    pub(crate) fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Ordered> {
        // A panic while ordering leaves nothing half-done that matters more
        // than refusing: the writer's own checks still apply.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Order `work` after everything ordered so far, on the caller's
    /// thread, and return its place; tell the sequencer (without waiting
    /// for it) when a batch starts or is full, so that it writes the batch
    /// within its linger.
    pub(crate) fn order_released(
        &self,
        work: Work,
        nudge: &mpsc::Sender<Msg>,
    ) -> Result<Sequenced, AuditError> {
        let (res, started, full) = {
            let mut g = self.lock();
            let Ordered {
                writer,
                pending,
                last_append,
            } = &mut *g;
            let w = writer.as_mut().ok_or(AuditError::Stopped(None))?;
            *last_append = Instant::now();
            let started = pending.is_none();
            let (b, res) = order_one(w, pending.take(), work);
            let full = b.prepared.len() >= self.max_batch;
            *pending = Some(b);
            (res, started, full)
        };
        if started || full {
            nudge
                .send(Msg::Nudge)
                .map_err(|_| AuditError::Stopped(None))?;
        }
        res
    }
}

/// Order one released item after `pending`: its place (or why it was
/// rejected) and the batch it joined.
fn order_one(
    w: &mut Writer,
    pending: Option<Batch>,
    work: Work,
) -> (Batch, Result<Sequenced, AuditError>) {
    let (mut b, start) = start_or_extend(w, pending, vec![work]);
    let res = b
        .prepared
        .take_sequenced(start)
        .unwrap_or(Err(AuditError::Stopped(None)));
    if res.is_ok() {
        b.prepared.mark_released();
    }
    b.waiting.resize_with(b.prepared.len(), || None);
    (b, res)
}

/// Give `works` their places after whatever is pending; the batch and the
/// index in it of the first of them (clock entries may come before).
fn start_or_extend(w: &mut Writer, pending: Option<Batch>, works: Vec<Work>) -> (Batch, usize) {
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
    (b, start)
}

/// Give `works` (sent to the sequencer, whose callers wait for
/// durability) their places after whatever is pending.
pub(crate) fn order(
    w: &mut Writer,
    pending: Option<Batch>,
    works: Vec<Work>,
    replies: Vec<Option<ReplyTo>>,
) -> Batch {
    let (mut b, _) = start_or_extend(w, pending, works);
    b.waiting.extend(replies);
    // Nor do the clock entries after them.
    b.waiting.resize_with(b.prepared.len(), || None);
    b
}
