//! When the gate lets its caller go on: after the entry is durable, or as
//! soon as it has its place in the log (external synchrony).
//!
//! Invariant 1 is about effects: nothing may *take effect* before its record
//! is durable. A read, a lookup or a listing inside the sandbox takes effect
//! only when what was read leaves the sandbox — and everything that lets
//! information out (a workspace change on the host, a connection, a
//! command's result reaching the agent, a model request, an approval shown
//! to a person) waits for durability of its own entry, which covers every
//! entry ordered before it. So reads are decided synchronously (policy
//! still says no before the open returns) and appended without waiting for
//! the disk. See SECURITY.md, "Durability".

use stele_audit::{Event, Outcome, Sequenced};
use stele_policy::Action;

use super::{Gate, GateError, Permit};

/// How long the gate's caller waits for an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Until the entry is durable: the action takes effect outside the
    /// sandbox, or its result leaves it.
    Durable,
    /// Until the entry has its place in the sequence: the action takes
    /// effect only inside the sandbox.
    Released,
}

impl Durability {
    /// What an action's intent or decision needs.
    pub fn of(action: Action) -> Self {
        match action {
            Action::FileRead | Action::FileList => Durability::Released,
            Action::FileWrite
            | Action::FileDelete
            | Action::Exec
            | Action::NetConnect
            | Action::ModelRequest
            | Action::ToolCall
            | Action::McpCall
            | Action::McpList => Durability::Durable,
        }
    }
}

impl Gate {
    /// Append `ev`, waiting as `d` says.
    pub(super) fn append(&self, ev: Event, d: Durability) -> Result<Sequenced, GateError> {
        Ok(match d {
            Durability::Durable => {
                let r = self.log.append_blocking(ev)?;
                Sequenced {
                    seq: r.seq,
                    leaf_hash: r.leaf_hash,
                }
            }
            Durability::Released => self.log.append_released_blocking(ev)?,
        })
    }

    /// Record the result of a handle that was used inside the sandbox (a
    /// file's close: bytes, hash after write) without waiting for the disk:
    /// the effect has happened already and nothing leaves with the record.
    pub fn complete_released(
        &self,
        permit: Permit,
        outcome: Outcome,
        data: Option<serde_json::Value>,
    ) -> Result<Option<Sequenced>, GateError> {
        let Some(ev) = self.result_event(permit, outcome, super::Bodies::default(), data) else {
            return Ok(None);
        };
        Ok(Some(self.append(ev, Durability::Released)?))
    }
}
