//! stele's audit log: every action is durably recorded, in a form nobody can
//! alter without detection, before it happens.
//!
//! - [`AuditLog`]: create/open (with the start-up integrity check) and append
//!   through one group-committing sequencer; each acknowledged append is
//!   fsynced and covered by a signed C2SP checkpoint.
//! - [`leaf`]: the RFC 8785 canonical leaf; [`event`]: what callers append.
//! - [`merkle`]: RFC 6962 tree, proofs and their verification.
//! - [`verify`]: full re-derivation of a log; [`proof`]: portable inclusion proofs.

#[cfg(feature = "store")]
pub mod archive;
#[cfg(feature = "store")]
mod archive_boundary;
pub mod archive_keys;
#[cfg(feature = "store")]
pub mod bench;
pub mod canonical;
pub mod check;
pub mod checkpoints;
pub mod clock;
#[cfg(feature = "store")]
pub mod commit_watch;
pub mod cpu_time;
#[cfg(feature = "store")]
mod durability;
mod erasure_check;
pub mod error;
pub mod event;
pub mod export;
#[cfg(feature = "store")]
mod full_check;
pub mod holds;
pub mod incremental;
pub mod keys;
pub mod leaf;
pub mod leaf_view;
#[cfg(feature = "store")]
pub mod log;
#[cfg(feature = "store")]
mod log_open;
#[cfg(feature = "store")]
mod marker;
pub mod memory_tree;
pub mod merkle;
#[cfg(feature = "store")]
mod ordering;
pub mod payload;
pub mod proof;
pub mod retention;
#[cfg(feature = "store")]
pub mod retention_plan;
pub mod rules;
#[cfg(feature = "store")]
pub mod schema;
#[cfg(feature = "store")]
mod sequencer;
pub mod session_chain;
#[cfg(feature = "store")]
mod startup;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "tsa")]
pub mod tsa;
#[cfg(feature = "store")]
pub mod verify;
#[cfg(feature = "witness")]
pub mod witness;
#[cfg(feature = "store")]
mod writer;
#[cfg(feature = "store")]
mod writer_lock;

#[cfg(feature = "store")]
pub use commit_watch::CommitWatch;
#[cfg(feature = "store")]
#[cfg(feature = "store")]
pub use durability::sync_wal;
pub use error::AuditError;
pub use event::{
    Actor, DecisionRecord, Disclosure, Effect, Event, EventKind, Outcome, PayloadInput, PayloadRef,
    Refs, Status, Target,
};
#[cfg(feature = "store")]
pub use log::{AuditLog, FullVerification, LogOptions};
#[cfg(feature = "store")]
pub use store::Store;
#[cfg(feature = "store")]
pub use writer::erasure::ExpiryRequest;
#[cfg(feature = "store")]
pub use writer::{Receipt, Sequenced};
