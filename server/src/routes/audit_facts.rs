//! What the log says of one session, for the reviewer's list: its entries,
//! denials and approval entries, counted by reading the session's range of
//! the log, and kept per log and session until the session has a newer
//! entry (entries never change).

use crate::error::ServerError;

/// Entries scanned per store read.
const CHUNK: u64 = 4096;

/// What the log says of one session (counted from its entries).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Facts {
    pub entries: u64,
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub denials: u64,
    pub approvals: u64,
}

/// The fields of an entry the desk sorts by, read without the full leaf
/// check (these are counts for a listing; verification is its own route).
#[derive(serde::Deserialize)]
pub(super) struct Glance<'a> {
    #[serde(borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    pub session: Option<GlanceSession<'a>>,
    #[serde(borrow, default)]
    pub decision: Option<GlanceDecision<'a>>,
}

#[derive(serde::Deserialize)]
pub(super) struct GlanceSession<'a> {
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
}

#[derive(serde::Deserialize)]
pub(super) struct GlanceDecision<'a> {
    #[serde(borrow)]
    pub effect: std::borrow::Cow<'a, str>,
}

/// Count session `id`'s entries, denials and approval entries by reading
/// the log from the session's first entry to its last, in order (one
/// sequential read: cheaper than a lookup per entry through the index).
pub(super) fn facts_of(store: &stele_audit::Store, id: &str) -> Result<Facts, ServerError> {
    let mut f = Facts::default();
    let Some(row) = store.session_row(id)? else {
        return Ok(f);
    };
    f.first = row.first;
    f.last = row.last;
    let (Some(lo), Some(hi)) = (row.first, row.last) else {
        return Ok(f);
    };
    // Entries are never changed: the counts up to the same last entry of
    // the same log stay true (a session that grows has a new last entry).
    let key = (store.path().to_path_buf(), id.to_string());
    if let Some(known) = counted().lock().ok().and_then(|c| c.get(&key).copied()) {
        if known.last == row.last {
            return Ok(known);
        }
    }
    let end = hi.saturating_add(1);
    let mut at = lo;
    while at < end {
        let stop = at.saturating_add(CHUNK).min(end);
        store.for_each_entry(at, stop, |seq, bytes, _| {
            let g: Glance<'_> = serde_json::from_slice(bytes).map_err(|e| {
                stele_audit::AuditError::Invalid(format!("entry {seq} is not a leaf: {e}"))
            })?;
            if g.session.as_ref().is_none_or(|s| s.id != id) {
                return Ok(());
            }
            f.entries += 1;
            if g.decision.as_ref().is_some_and(|d| d.effect == "deny") {
                f.denials += 1;
            }
            if g.kind.starts_with("approval.") {
                f.approvals += 1;
            }
            Ok(())
        })?;
        at = stop;
    }
    if let Ok(mut c) = counted().lock() {
        if c.len() >= COUNTED_MOST {
            c.clear();
        }
        c.insert(key, f);
    }
    Ok(f)
}

/// Most sessions whose counts are kept (then the memory starts again).
const COUNTED_MOST: usize = 10_000;

type Counted = std::collections::HashMap<(std::path::PathBuf, String), Facts>;

/// The counts already read, by log and session.
fn counted() -> &'static std::sync::Mutex<Counted> {
    static COUNTED: std::sync::OnceLock<std::sync::Mutex<Counted>> = std::sync::OnceLock::new();
    COUNTED.get_or_init(Default::default)
}
