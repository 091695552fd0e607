//! The tool arguments policies see (`context.args`): a fixed typed subset,
//! and for MCP calls every scalar argument by name.

use std::collections::BTreeMap;

use crate::canonical::CanonicalPath;

/// One tool argument by name (`context.args.text`/`number`/`flag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// A string (`context.args.text`).
    Text(String),
    /// An integer (`context.args.number`).
    Number(i64),
    /// A boolean (`context.args.flag`).
    Flag(bool),
}

/// The typed subset of tool arguments visible to policies (`context.args`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolArgs {
    /// A canonical workspace path the tool acts on.
    pub path: Option<CanonicalPath>,
    /// A canonical host name the tool contacts.
    pub host: Option<String>,
    /// A port the tool contacts.
    pub port: Option<u16>,
    /// Size of the data written or requested.
    pub size_bytes: Option<u64>,
    /// Recursive operation (list, delete).
    pub recursive: Option<bool>,
    /// Overwrite an existing file.
    pub overwrite: Option<bool>,
    /// Arguments by name (MCP calls), as entity tags of `context.args.text`,
    /// `number` and `flag`. Names must be safe (the enforcement point's job).
    pub values: BTreeMap<String, ArgValue>,
    /// Absolute path arguments by name, normalised (`context.args.abs_path`).
    pub abs_paths: BTreeMap<String, String>,
}
