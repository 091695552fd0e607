//! A group commit in two steps: [`Writer::prepare`] validates each item and
//! gives it its place in the one sequence (index, leaf hash, tree); then
//! [`Writer::write_prepared`] inserts the batch and the signed checkpoint in
//! one transaction. Between the two the sequencer may release callers that
//! need only their place in the sequence (external synchrony, see
//! `crate::sequencer`).

use std::sync::Arc;

use super::{Built, Receipt, Undo, Work, Writer};
use crate::error::AuditError;
use crate::merkle::Hash;

/// An entry that has its place in the log's one sequence but is not yet
/// known to be durable: everything appended after it is ordered after it,
/// and any later durable append makes it durable too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequenced {
    /// Index of the entry.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
}

/// A batch built and validated, not yet written.
pub(crate) struct Prepared {
    built: Vec<Result<Built, AuditError>>,
    undo: Undo,
    release: Release,
}

impl Prepared {
    /// Item `i`'s place in the sequence, or why it was rejected (the
    /// error moves out: the item's later result is for no one).
    pub(crate) fn take_sequenced(&mut self, i: usize) -> Option<Result<Sequenced, AuditError>> {
        let b = self.built.get_mut(i)?;
        Some(match b {
            Ok(b) => Ok(Sequenced {
                seq: b.seq,
                leaf_hash: b.hash,
            }),
            Err(e) => Err(std::mem::replace(e, AuditError::Stopped(None))),
        })
    }

    /// How many items it holds.
    pub(crate) fn len(&self) -> usize {
        self.built.len()
    }

    /// Note that a caller was told an item's place before the write.
    pub(crate) fn mark_released(&mut self) {
        self.release = Release::Released;
    }
}

/// Whether callers were told an entry's place before its batch was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// No: a failed write can be undone and the indexes used again.
    NoneReleased,
    /// Yes: an index was handed out, so a failed write cannot be undone
    /// (the log would reuse an index someone holds); the log refuses every
    /// further write instead, and nothing after the lost entries can take
    /// effect.
    Released,
}

impl Writer {
    /// Commit a batch in one transaction with one signed checkpoint. Returns
    /// one result per item, in order; a storage failure fails them all and
    /// leaves the in-memory state as it was.
    pub fn commit_batch(&mut self, batch: Vec<Work>) -> Vec<Result<Receipt, AuditError>> {
        let n = batch.len();
        let (p, start) = self.prepare(batch);
        let mut all = self.write_prepared(p);
        // The clock entries the writer added around them answer no one.
        all.drain(start..(start + n).min(all.len())).collect()
    }

    /// Validate each item and give it its place in the sequence (in
    /// memory); returns the index of the first item (clock entries may
    /// come before it, see [`Writer::prepare_more`]).
    pub(crate) fn prepare(&mut self, batch: Vec<Work>) -> (Prepared, usize) {
        let undo = Undo {
            frontier: self.frontier.clone(),
            last_hash: self.last_hash,
            last_ts: self.last_ts.clone(),
            watch: self.watch.clone(),
            ..Undo::default()
        };
        let mut p = Prepared {
            built: Vec::with_capacity(batch.len()),
            undo,
            release: Release::NoneReleased,
        };
        let start = self.prepare_more(&mut p, batch);
        (p, start)
    }

    /// Order more items after those of `p`, in the same transaction to
    /// come (payloads made earlier in it can be referred to); returns the
    /// index in `p` of the first new item. The clock is read once for
    /// them: a `clock.step` it calls for goes before them, a
    /// `clock.state` after them (`crate::clock`); those entries answer
    /// no caller.
    pub(crate) fn prepare_more(&mut self, p: &mut Prepared, batch: Vec<Work>) -> usize {
        if let Some(why) = &self.refused {
            let start = p.built.len();
            p.built
                .extend(batch.iter().map(|_| Err(AuditError::Refused(why.clone()))));
            return start;
        }
        let (before, after) = self.read_clock();
        self.build_own(p, before);
        let start = p.built.len();
        for w in batch {
            let b = self.build(w, &mut p.undo);
            p.built.push(b);
        }
        self.build_own(p, after);
        start
    }

    /// Build entries the writer adds itself (they never fail unless the
    /// format rules were broken, which is logged).
    fn build_own(&mut self, p: &mut Prepared, events: Vec<crate::event::Event>) {
        for ev in events {
            let kind = ev.kind;
            match self.build(Work::Append(Box::new(ev)), &mut p.undo) {
                Ok(b) => p.built.push(Ok(b)),
                Err(e) => tracing::error!("could not build the writer's own {kind} entry: {e}"),
            }
        }
    }

    /// Write a prepared batch and its signed checkpoint in one transaction.
    pub(crate) fn write_prepared(&mut self, p: Prepared) -> Vec<Result<Receipt, AuditError>> {
        let Prepared {
            built,
            undo,
            release,
        } = p;
        if !built.iter().any(Result::is_ok) {
            return built
                .into_iter()
                .map(|b| b.map(|_| unreachable_receipt()))
                .collect();
        }
        match self.write(&built) {
            Ok(note) => {
                self.latest_checkpoint = note.clone();
                let size = self.frontier.size();
                self.committed.publish(size);
                built
                    .into_iter()
                    .map(|b| {
                        b.map(|b| Receipt {
                            seq: b.seq,
                            leaf_hash: b.hash,
                            size,
                            checkpoint: note.clone(),
                        })
                    })
                    .collect()
            }
            Err(e) => {
                let msg = e.to_string();
                match release {
                    Release::NoneReleased => self.rollback_state(undo),
                    Release::Released => {
                        tracing::error!(
                            "audit log {}: entries already given their place could not be written ({msg}); refusing every further write",
                            self.path.display()
                        );
                        self.refused = Some(format!(
                            "entries it had already ordered could not be written: {msg}"
                        ));
                    }
                }
                let mut out = Vec::with_capacity(built.len());
                let mut first = Some(e);
                for b in built {
                    out.push(match b {
                        Err(own) => Err(own),
                        Ok(_) => Err(first
                            .take()
                            .unwrap_or_else(|| AuditError::Stopped(Some(msg.clone())))),
                    });
                }
                out
            }
        }
    }

    fn rollback_state(&mut self, undo: Undo) {
        self.frontier = undo.frontier;
        self.last_hash = undo.last_hash;
        self.last_ts = undo.last_ts;
        self.watch = undo.watch;
        for (id, old) in undo.sessions.into_iter().rev() {
            match old {
                Some(s) => self.sessions.insert(id, s),
                None => self.sessions.remove(&id),
            };
        }
        for seq in undo.intents_added {
            self.open_intents.remove(&seq);
        }
        for (seq, v) in undo.intents_removed {
            self.open_intents.insert(seq, v);
        }
        if let Some(holds) = undo.holds {
            self.holds = holds;
        }
    }
}

fn unreachable_receipt() -> Receipt {
    Receipt {
        seq: 0,
        leaf_hash: [0; 32],
        size: 0,
        checkpoint: Arc::from(""),
    }
}
