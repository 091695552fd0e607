//! stele's runtime: the gate, the agent loop and the `stele` command line.
// Every printing path goes through `printing` (no panic on a closed pipe).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod agent;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod feed;
pub mod gate;
pub mod isolation;
pub mod mcp;
pub mod paths;
pub mod payloads;
pub mod policy_location;
pub mod principal;
pub mod printing;
pub mod provider;
pub mod recovery;
pub mod session;
pub mod session_move;
pub mod session_move_import;
pub mod session_resume;
pub mod telemetry;
pub mod terminal_safe;
pub mod timestamping;
pub mod tools;
pub mod witnessing;
