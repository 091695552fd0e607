//! The stele Cedar schema. The runtime builds every request against this
//! one schema; a bundle carries a copy (`schema.cedarschema`) so that
//! authors' tools see it too, and the copy must match exactly.

use cedar_policy::Schema;

use crate::error::{Location, PolicyError};
use crate::layout::SCHEMA_FILE;

/// The stele schema, in Cedar schema syntax.
pub const STELE_SCHEMA: &str = include_str!("../schema/stele.cedarschema");

/// Version of [`STELE_SCHEMA`], recorded in every decision.
pub const SCHEMA_VERSION: &str = "stele-7";

/// Parse the built-in schema.
pub(crate) fn stele_schema() -> Result<Schema, PolicyError> {
    let (schema, mut warnings) = Schema::from_cedarschema_str(STELE_SCHEMA)
        .map_err(|e| PolicyError::Internal(format!("built-in schema: {e}")))?;
    if let Some(w) = warnings.next() {
        return Err(PolicyError::Internal(format!(
            "built-in schema warning: {w}"
        )));
    }
    Ok(schema)
}

fn normalise(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

/// Check a bundle's schema file against the built-in schema. Line endings
/// and trailing whitespace are ignored; anything else must match, and the
/// first differing line is reported.
pub(crate) fn check_bundle_schema(text: Option<&str>) -> Result<(), PolicyError> {
    let Some(text) = text else {
        return Err(PolicyError::SchemaFile {
            location: Location::file(SCHEMA_FILE),
            message: "missing; copy it from `stele policy schema`".into(),
        });
    };
    let ours = normalise(STELE_SCHEMA);
    if normalise(text) == ours {
        return Ok(());
    }
    // It differs. Parse it (bounded first: Cedar's schema parser recurses)
    // so a broken file gets Cedar's message, not just "differs".
    crate::depth::check(SCHEMA_FILE, text, crate::depth::Syntax::CedarSchema)?;
    if let Err(e) = Schema::from_cedarschema_str(text) {
        return Err(PolicyError::SchemaFile {
            location: Location::file(SCHEMA_FILE),
            message: format!("does not parse: {e}"),
        });
    }
    if !text.contains("action \"session.start\"") {
        return Err(PolicyError::SchemaFile {
            location: Location::file(SCHEMA_FILE),
            message: format!(
                "is an older stele schema, without the server's actions; {SCHEMA_VERSION} adds \
                 `entity Role`, `User in [Team, Role]`, the entities Session, Workspace, AuditLog \
                 and Server, and the actions {}: replace the file with `stele policy schema`, \
                 then grant the server's actions to roles (see policies/README.md); a bundle \
                 that grants none lets the server do nothing (deny by default)",
                crate::server_action::ServerAction::ALL
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let theirs = normalise(text);
    let n = ours.len().max(theirs.len());
    for i in 0..n {
        if ours.get(i) != theirs.get(i) {
            let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
            return Err(PolicyError::SchemaFile {
                location: Location::at(SCHEMA_FILE, line, 1),
                message: format!(
                    "differs from the stele schema {SCHEMA_VERSION} (expected `{}`); \
                     the runtime only speaks this schema: copy it from `stele policy schema`",
                    ours.get(i).copied().unwrap_or("<end of file>")
                ),
            });
        }
    }
    Ok(())
}
