//! Whether a prefix of the log is sealed (docs/audit-format.md §9): the one
//! rule the writer applies in the archive's transaction and the archive
//! procedure applies before it writes a bundle.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::AuditError;
use crate::holds::{EntryAttrs, HoldBook};
use crate::leaf_view::LeafView;
use crate::payload::commit_text;

/// Refuse, naming why, unless nothing crosses `n`: no session or intent
/// begun below it is open or goes on past it, no entry from `n` on
/// refers to a payload stored below it, and no legal hold in force was
/// placed below it or covers an entry below it.
pub(crate) fn check_boundary(
    conn: &Connection,
    path: &Path,
    n: u64,
    size: u64,
    open_intents: impl IntoIterator<Item = u64>,
    book: &HoldBook,
) -> Result<(), AuditError> {
    let e = AuditError::sqlite(path);
    let straddling: Option<(String, i64, i64)> = conn
        .query_row(
            "SELECT id, ended, last FROM sessions WHERE first < ?1 AND (ended = 0 OR last >= ?1) ORDER BY first LIMIT 1",
            [n as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(&e)?;
    if let Some((id, ended, last)) = straddling {
        let how = if ended == 0 {
            "is still open".to_string()
        } else {
            format!("goes on to entry {last}")
        };
        return Err(AuditError::Invalid(format!(
            "cannot archive below {n}: session {id} began before it and {how} (choose a boundary no session straddles)"
        )));
    }
    if let Some(i) = open_intents.into_iter().filter(|i| *i < n).min() {
        return Err(AuditError::Invalid(format!(
            "cannot archive below {n}: intent {i} has no result yet"
        )));
    }
    // Shared payloads: an entry from `n` on naming a body stored below.
    let mut st = conn
        .prepare("SELECT seq, leaf FROM entries WHERE seq >= ?1 AND seq < ?2 ORDER BY seq")
        .map_err(&e)?;
    let mut rows = st.query(params![n as i64, size as i64]).map_err(&e)?;
    let mut below = conn
        .prepare("SELECT seq FROM payloads WHERE cmt = ?1 AND seq < ?2")
        .map_err(&e)?;
    while let Some(r) = rows.next().map_err(&e)? {
        let seq: i64 = r.get(0).map_err(&e)?;
        let leaf: Vec<u8> = r.get(1).map_err(&e)?;
        let commits: Vec<String> = match LeafView::scan(&leaf) {
            Some(v) => v.commits().map(|c| c.to_string()).collect(),
            None => crate::leaf::Leaf::parse_canonical(&leaf)
                .map_err(|x| AuditError::Integrity {
                    index: seq as u64,
                    reason: x.to_string(),
                })?
                .payload
                .into_iter()
                .map(|p| p.commit)
                .collect(),
        };
        for c in commits {
            let Some(h) = crate::payload::parse_commit(&c) else {
                continue;
            };
            let made: Option<i64> = below
                .query_row(params![&h[..], n as i64], |r| r.get(0))
                .optional()
                .map_err(&e)?;
            if let Some(m) = made {
                return Err(AuditError::Invalid(format!(
                    "cannot archive below {n}: entry {seq} refers to payload {} made by entry {m} (a shared payload would cross the boundary)",
                    commit_text(&h)
                )));
            }
        }
    }
    drop(rows);
    drop(st);
    drop(below);
    // Legal holds: none in force placed below `n` (its record would
    // leave the live log), none covering an entry below `n`.
    if let Some(h) = book.holds.values().find(|h| h.id < n && h.active_at(size)) {
        return Err(AuditError::Held(format!(
            "cannot archive below {n}: legal hold {} ({}: {}) is in force and was placed below it",
            h.id, h.scope, h.reason
        )));
    }
    if book.any_active_at(size) {
        let mut st = conn
            .prepare("SELECT seq, leaf FROM entries WHERE seq < ?1 ORDER BY seq")
            .map_err(&e)?;
        let mut rows = st.query([n as i64]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let seq: i64 = r.get(0).map_err(&e)?;
            let leaf = r
                .get_ref(1)
                .map_err(&e)?
                .as_blob()
                .map_err(|x| e(x.into()))?;
            let attrs = EntryAttrs::of_leaf(leaf).map_err(|reason| AuditError::Integrity {
                index: seq as u64,
                reason,
            })?;
            if let Some(h) = book.holding_at(size, &attrs) {
                return Err(AuditError::Held(format!(
                    "cannot archive below {n}: entry {seq} is under legal hold {} ({}: {})",
                    h.id, h.scope, h.reason
                )));
            }
        }
    }
    Ok(())
}
