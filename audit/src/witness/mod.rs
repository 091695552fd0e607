//! Witnesses (C2SP tlog-witness, <https://c2sp.org/tlog-witness>).
//!
//! - [`protocol`]: the `add-checkpoint` request body, shared by both sides;
//! - [`state`]: the witness's newest checkpoint per log, persisted atomically;
//! - [`server`]: the HTTP witness (`stele witness serve`);
//! - [`publish`]: sending the log's checkpoints to witnesses and storing
//!   their cosignatures; a witness that has seen a larger tree than ours
//!   means this database was rolled back, and publishing fails closed.

pub mod protocol;
pub mod publish;
pub mod server;
pub mod state;

pub use protocol::AddCheckpoint;
pub use publish::{
    publish_to_witness, publish_to_witnesses, store_cosignature, Cosigned, PublishError,
    PublishReport, WitnessTarget,
};
pub use server::{serve, Witness, WitnessOutcome};
