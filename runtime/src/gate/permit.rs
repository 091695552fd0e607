//! The `Permit`: proof, as a value, that an action was decided, approved
//! where needed, and its intent durably logged. Only the gate creates one;
//! every function that acts takes one.

use stele_audit::merkle::Hash;
use stele_audit::EventKind;

/// Permission to carry out one action. Not `Clone`: one permit, one action.
#[derive(Debug)]
pub struct Permit {
    pub(super) intent_seq: u64,
    pub(super) intent_leaf: Hash,
    pub(super) result_kind: Option<EventKind>,
}

impl Permit {
    /// Index of the intent entry in the audit log.
    pub fn intent_seq(&self) -> u64 {
        self.intent_seq
    }

    /// Leaf hash of the intent entry.
    pub fn intent_leaf(&self) -> Hash {
        self.intent_leaf
    }
}
