//! Sessions run headless in the server: each on a worker thread of its own
//! (the runtime's session library, over the server's one audit log), its
//! progress events numbered, kept for replay and broadcast to watchers, its
//! approvals answered through the API.

pub mod approvals;
pub mod events;
pub mod launch;
pub mod manager;
pub mod remote;
pub mod restart;
pub mod run;
pub mod webhook;
pub mod webhook_delivery;
pub mod withdraw;
pub mod worker;
