//! stele's sandbox: isolated execution of the agent's commands.
//!
//! Knows nothing of policy or the audit log; asks a [`Mediator`] before effects.

pub mod check;
pub mod error;
pub mod exec;
pub mod fs;
pub mod mediator;
pub mod process;
pub mod proxy;
pub mod resources;
pub mod tools;
pub mod vm;

pub use mediator::{
    ChangeOutcome, FileAccess, FileChangeReport, FileCloseReport, FileOp, FileRequest, Mediator,
    NetAttempt, NetAttemptKind, NetCloseReport, NetRequest, NetScheme, NetVerdict, Refusal,
    Requester, Ticket, Verdict,
};
