//! stele's sandbox: isolated execution of the agent's commands.
//!
//! Knows nothing of policy or the audit log; asks a [`Mediator`] before effects.

pub mod check;
pub mod error;
pub mod exec;
mod file_refusal;
pub mod fs;
pub mod mediator;
pub mod process;
pub mod proxy;
pub mod resources;
pub mod tools;
pub mod vm;

pub use file_refusal::{printable_path, FileRefusal, RefusalRule};
pub use mediator::{
    policy_path, ChangeOutcome, FileAccess, FileChangeReport, FileCloseReport, FileOp, FileRequest,
    Mediator, NetAttempt, NetAttemptKind, NetCloseReport, NetRequest, NetScheme, NetVerdict,
    Refusal, Requester, Ticket, Verdict, ROOT_PATH,
};
