//! MCP integrations: servers configured in TOML (`[mcp.NAME]`), started by
//! stele on the host or, opted in, each in its own process sandbox
//! (`[mcp.NAME.sandbox]`: its own grants and allowed hosts, every
//! connection decided and logged), with their own environment (credentials
//! never enter the agent's sandbox, the model's context or the log), their
//! tools filtered by
//! policy (`mcp.list` per server and per tool) and every call decided
//! (`mcp.call`) and logged as an intent/result pair. See `docs/mcp.md`.

pub mod args;
pub mod client;
pub mod config;
pub mod net;
pub mod registry;
pub mod sandbox_config;
pub mod sandboxed;
pub mod server;
pub mod stderr;

pub use client::McpError;
pub use config::{McpServerConfig, ServerSpec};
pub use registry::{McpRegistry, OfferedTool};
