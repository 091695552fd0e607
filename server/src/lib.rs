//! `stele serve`: the team server. One more front end of the runtime, like
//! the CLI: sessions run headless in the server over its one audit log,
//! people authenticate with local accounts and API tokens, watch sessions
//! as server-sent events and answer approvals over the HTTP API. Every
//! server decision (authentication, login, view, approval) is an entry in
//! the log. See docs/server.md for what exists and what does not yet.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod admin;
pub mod admin_record;
pub mod assets;
pub mod auth;
pub mod authz;
pub mod config;
pub mod desktop;
pub mod error;
pub mod feed;
pub mod oidc;
pub mod openapi;
pub mod record;
pub mod routes;
pub mod scheduler;
pub mod security_headers;
pub mod serve;
pub mod sessions;
pub mod shipped;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod tls;
pub mod workspace_files;

pub use serve::{serve, serve_with, ServeOptions};
