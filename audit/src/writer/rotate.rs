//! Key rotation and revocation on the sequencer thread.
//!
//! A rotation is one commit holding only the `key.rotation` entry: its
//! checkpoint (at the boundary, the entry's index + 1) is signed by the old
//! key and by the new one and kept in `checkpoints`; the new key schedule
//! is written to `meta` in the same transaction; only once that commit
//! succeeds does the new key sign. If it fails, nothing changed.

use std::sync::Arc;

use stele_attest::Signer;

use super::{Receipt, Work, Writer};
use crate::error::AuditError;
use crate::event::{Actor, Event, EventKind};
use crate::keys::{RevocationData, RotationData};

/// The `meta` row holding the key schedule (JSON).
pub(crate) const KEYS_META: &str = "keys";

/// A change of the log's keys.
pub(crate) enum KeyChange {
    /// Sign with `new` from the next commit on.
    Rotate {
        new: Arc<dyn Signer>,
        reason: String,
        actor: Actor,
    },
    /// Record that a former key is not to be trusted from `from_size` on.
    Revoke {
        key: String,
        from_size: u64,
        reason: String,
        actor: Actor,
    },
}

impl Writer {
    /// Carry out a key change (see the module docs).
    pub(crate) fn change_keys(&mut self, change: KeyChange) -> Result<Receipt, AuditError> {
        match change {
            KeyChange::Rotate { new, reason, actor } => self.rotate(new, reason, actor),
            KeyChange::Revoke {
                key,
                from_size,
                reason,
                actor,
            } => {
                let d = RevocationData {
                    key,
                    from_size,
                    reason,
                };
                let ev = Event::new(EventKind::KeyRevocation, actor).with_data(
                    serde_json::to_value(&d).map_err(|e| AuditError::Invalid(e.to_string()))?,
                );
                // The same rules a verifier applies, before anything is written.
                self.check_revocation(&d).map_err(AuditError::Invalid)?;
                self.commit_batch(vec![Work::Keys(Box::new(ev))])
                    .pop()
                    .unwrap_or(Err(AuditError::Stopped(None)))
            }
        }
    }

    fn check_revocation(&self, d: &RevocationData) -> Result<(), String> {
        if d.key == self.keys.current() {
            return Err(
                "the log's current key cannot be revoked: rotate to a new key first".into(),
            );
        }
        if !self.keys.ranges().iter().any(|r| r.key == d.key) {
            return Err(format!("{} was never a key of this log", d.key));
        }
        let size = self.frontier.size();
        if d.from_size == 0 || d.from_size > size + 1 {
            return Err(format!("the revocation's size must be 1 to {}", size + 1));
        }
        if d.reason.trim().is_empty() {
            return Err("a revocation needs a reason".into());
        }
        Ok(())
    }

    fn rotate(
        &mut self,
        new: Arc<dyn Signer>,
        reason: String,
        actor: Actor,
    ) -> Result<Receipt, AuditError> {
        if let Some(why) = &self.refused {
            return Err(AuditError::Invalid(format!(
                "the log refuses writes: {why}"
            )));
        }
        if new.name() != self.origin {
            return Err(AuditError::Invalid(format!(
                "the new key is named {:?}; a key of this log must be named {:?} (its origin)",
                new.name(),
                self.origin
            )));
        }
        let new_key = new.verifier().to_string();
        if new_key == self.keys.current() {
            return Err(AuditError::Invalid(
                "the new key is the log's current key".into(),
            ));
        }
        if reason.trim().is_empty() {
            return Err(AuditError::Invalid("a rotation needs a reason".into()));
        }
        let boundary = self.frontier.size() + 1;
        let d = RotationData {
            old: self.keys.current().to_string(),
            new: new_key.clone(),
            from_size: boundary,
            reason,
        };
        let ev = Event::new(EventKind::KeyRotation, actor)
            .with_data(serde_json::to_value(&d).map_err(|e| AuditError::Invalid(e.to_string()))?);
        let mut next = self.keys.clone();
        next.rotate(&new_key, boundary);
        let schedule =
            serde_json::to_string(&next).map_err(|e| AuditError::Invalid(e.to_string()))?;
        // Markers are signed by the current key; the new key re-signs them
        // when they are next written.
        self.pending_meta.push((KEYS_META, schedule));
        self.co_signer = Some(new.clone());
        let r = self
            .commit_batch(vec![Work::Keys(Box::new(ev))])
            .pop()
            .unwrap_or(Err(AuditError::Stopped(None)));
        self.co_signer = None;
        match &r {
            Ok(receipt) if receipt.size == boundary => {
                self.signer = new;
                self.keys = next;
            }
            Ok(receipt) => {
                // Cannot happen (the batch held one entry): refuse rather
                // than sign on under an unclear schedule.
                self.refused = Some(format!(
                    "a key rotation committed at size {} instead of {boundary}",
                    receipt.size
                ));
            }
            Err(_) => self.pending_meta.retain(|(k, _)| *k != KEYS_META),
        }
        r
    }
}
