//! stele's audit log: every action is durably recorded, in a form nobody can
//! alter without detection, before it happens.
//!
//! - [`AuditLog`]: create/open (with the start-up integrity check) and append
//!   through one group-committing sequencer; each acknowledged append is
//!   fsynced and covered by a signed C2SP checkpoint.
//! - [`leaf`]: the RFC 8785 canonical leaf; [`event`]: what callers append.
//! - [`merkle`]: RFC 6962 tree, proofs and their verification.
//! - [`verify`]: full re-derivation of a log; [`proof`]: portable inclusion proofs.

pub mod bench;
pub mod error;
pub mod event;
pub mod leaf;
pub mod log;
pub mod memory_tree;
pub mod merkle;
pub mod payload;
pub mod proof;
pub mod schema;
mod startup;
pub mod store;
pub mod verify;
mod writer;

pub use error::AuditError;
pub use event::{
    Actor, DecisionRecord, Disclosure, Effect, Event, EventKind, Outcome, PayloadInput, Refs, Status, Target,
};
pub use log::{AuditLog, LogOptions};
pub use store::Store;
pub use writer::Receipt;
