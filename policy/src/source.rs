//! Parsing `.cedar` files into policies that remember where they came from:
//! id (from `@id`), file, line and annotations. Cedar's own error spans are
//! turned into `file:line:column`.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{Policy, PolicyId, PolicySet, ValidationMode, Validator};
use miette::Diagnostic;

use crate::error::{Location, PolicyError};

/// One policy of a bundle, with provenance.
#[derive(Debug, Clone)]
pub(crate) struct SourcePolicy {
    /// The policy, re-identified by its `@id`.
    pub policy: Policy,
    /// Its `@id`.
    pub id: String,
    /// Where it starts (the first annotation).
    pub location: Location,
    /// All annotations (`@id` included), sorted by key.
    pub annotations: BTreeMap<String, String>,
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(col_start..).map_or(0, |s| s.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

/// The location of the first labelled span of a Cedar diagnostic, if any.
fn diag_location(file: &str, text: &str, d: &dyn Diagnostic) -> Location {
    let first = d.labels().and_then(|mut l| l.next());
    match first {
        Some(label) => {
            let (l, c) = line_col(text, label.offset());
            Location::at(file, l, c)
        }
        None => Location::file(file),
    }
}

/// Parse and strictly validate one `.cedar` file. `file` is the
/// bundle-relative path used in messages.
pub(crate) fn parse_file(
    file: &str,
    text: &str,
    validator: &Validator,
) -> Result<Vec<SourcePolicy>, PolicyError> {
    // Before Cedar's (recursive) parser sees anything.
    crate::depth::check(file, text, crate::depth::Syntax::Cedar)?;
    let pset = PolicySet::from_str(text).map_err(|e| {
        let location = diag_location(file, text, &e);
        PolicyError::Syntax {
            location,
            message: e.to_string(),
        }
    })?;
    if let Some(t) = pset.templates().next() {
        return Err(PolicyError::Layout {
            location: locate(file, text, 0, &t.to_string()).0,
            message: "policy templates (with ?principal/?resource slots) are not supported".into(),
        });
    }
    // Cedar names parsed policies policy0, policy1… in source order.
    let mut parsed: Vec<(usize, &Policy)> = pset
        .policies()
        .map(|p| {
            let n = p
                .id()
                .to_string()
                .strip_prefix("policy")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            (n, p)
        })
        .collect();
    parsed.sort_by_key(|(n, _)| *n);

    let mut out = Vec::with_capacity(parsed.len());
    let mut cursor = 0;
    let mut renamed = PolicySet::new();
    for (_, p) in parsed {
        let src = p.to_cedar().unwrap_or_default();
        let (location, next) = locate(file, text, cursor, &src);
        cursor = next;
        let id = match p.annotation("id") {
            Some(id) => id.to_owned(),
            None => {
                return Err(PolicyError::PolicyId {
                    location,
                    message: "policy has no @id(\"…\") annotation; every policy needs a stable id \
                              so decisions and audit records can name it"
                        .into(),
                })
            }
        };
        if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PolicyError::PolicyId {
                location,
                message: format!("policy id `{id}` must be non-empty without spaces"),
            });
        }
        if let Some(prev) = out.iter().find(|q: &&SourcePolicy| q.id == id) {
            return Err(PolicyError::DuplicatePolicyId {
                location,
                id,
                first: prev.location.clone(),
            });
        }
        let policy = p.new_id(PolicyId::new(&id));
        renamed
            .add(policy.clone())
            .map_err(|e| PolicyError::Internal(e.to_string()))?;
        let annotations = p
            .annotations()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        out.push(SourcePolicy {
            policy,
            id,
            location,
            annotations,
        });
    }

    let result = validator.validate(&renamed, ValidationMode::Strict);
    let first_problem = result
        .validation_errors()
        .map(|e| {
            (
                e.policy_id().to_string(),
                e.to_string(),
                diag_location(file, text, e),
            )
        })
        .chain(result.validation_warnings().map(|w| {
            (
                w.policy_id().to_string(),
                w.to_string(),
                diag_location(file, text, w),
            )
        }))
        .next();
    if let Some((policy, message, mut location)) = first_problem {
        if location.line.is_none() {
            if let Some(p) = out.iter().find(|p| p.id == policy) {
                location = p.location.clone();
            }
        }
        return Err(PolicyError::Schema {
            location,
            policy,
            message,
        });
    }
    Ok(out)
}

/// Find `snippet` in `text` at or after `from`; returns its location and the
/// offset just past it. Falls back to the whole file if not found.
fn locate(file: &str, text: &str, from: usize, snippet: &str) -> (Location, usize) {
    let found = if snippet.is_empty() {
        None
    } else {
        text.get(from..).and_then(|rest| rest.find(snippet))
    };
    match found {
        Some(i) => {
            let at = from + i;
            let (l, c) = line_col(text, at);
            (Location::at(file, l, c), at + snippet.len())
        }
        None => (Location::file(file), from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "ab\ncd\nef";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 4), (2, 2));
        assert_eq!(line_col(t, 6), (3, 1));
    }
}
