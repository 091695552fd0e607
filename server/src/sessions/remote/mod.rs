//! Sessions run by remote workers (`[workers] run = "remote"`): the server
//! queues a new session as a `session.run` job; a `stele worker` claims it,
//! runs it on its own log with the same session code as the server
//! ([`super::run`]), streams its messages back numbered (so a retried batch
//! is never taken twice), heartbeats to keep its lease and hear of pauses
//! and approval answers, and reports how it finished. Who claimed what and
//! how far each claim has come live in the store, so any server sharing it
//! takes a worker's calls ([`claims`], [`ingest`]).

pub mod agent;
pub mod claims;
pub mod client;
pub mod continuation;
pub mod enqueue;
pub mod ingest;
pub mod log_wire;
pub mod runs;
pub mod sequence;
mod ship_bodies;
pub mod shipper;
pub mod wire;

/// The job kind of a session run remotely.
pub const KIND: &str = "session.run";
