//! Sessions run headless in the server: each on a worker thread of its own
//! (the runtime's session library, over the server's one audit log), its
//! progress events numbered, kept for replay and broadcast to watchers, its
//! approvals answered through the API. With `[workers] run = "remote"` a
//! new session is queued instead and run by a `stele worker` on its own log
//! ([`remote`]), with the same session code ([`run`]).

pub mod approvals;
pub mod events;
pub mod launch;
pub mod manager;
pub mod remote;
pub mod restart;
pub mod run;
pub mod run_continue;
pub mod webhook;
pub mod webhook_delivery;
pub mod withdraw;
pub mod worker;
