//! The timeline of a session that ran on workers (`GET
//! /api/v1/audit/sessions/{id}/timeline` when the session is not in this
//! server's log): its entries from every shipped log that holds them —
//! each log it ran in, and a stopped worker's entries written after the
//! session continued elsewhere — in time order, each with its log
//! (`origin`) and its index there. The cursors (`from`, `before`) count
//! positions in that order, since the indexes of several logs do not make
//! one order.

use crate::error::ApiError;
use crate::shipped::session_bundle;
use crate::state::Shared;

/// One page of the shipped entries of session `id`: `from` (the first
/// position, oldest first) or `before` (the newest below it), at most
/// `limit`.
pub(super) async fn page(
    state: &Shared,
    id: &str,
    from: Option<u64>,
    before: Option<u64>,
    limit: u64,
) -> Result<serde_json::Value, ApiError> {
    // Read once: the page, and the newest slice's key for the export.
    let slices = session_bundle::slices(state, id).await?;
    let mut all = Vec::new();
    for s in &slices {
        for e in &s.entries {
            all.push((e.ts.clone(), s.origin.clone(), e.clone()));
        }
    }
    all.sort_by(|a, b| (&a.0, &a.1, a.2.seq).cmp(&(&b.0, &b.1, b.2.seq)));
    let total = all.len() as u64;
    let (lo, hi) = match before {
        Some(b) => (b.min(total).saturating_sub(limit), b.min(total)),
        None => {
            let f = from.unwrap_or(0).min(total);
            (f, f.saturating_add(limit).min(total))
        }
    };
    let mut entries = Vec::new();
    for (pos, (_, origin, e)) in all.iter().enumerate().take(hi as usize).skip(lo as usize) {
        let leaf: serde_json::Value = serde_json::from_slice(&e.leaf).map_err(|x| {
            ApiError::from(crate::error::ServerError::Shipped(format!(
                "{origin}: shipped entry {} is not JSON: {x}",
                e.seq
            )))
        })?;
        entries.push(serde_json::json!({
            "position": pos, "origin": origin, "index": e.seq, "leaf": leaf,
        }));
    }
    let verifier = match session_bundle::newest(slices)? {
        Some(s) => state
            .store
            .shipped_log(&s.origin)
            .await?
            .map(|l| l.verifier),
        None => None,
    };
    Ok(serde_json::json!({
        "session": id,
        "entries": entries,
        "total": total,
        "prev": (lo > 0).then_some(lo),
        "next": (hi < total).then_some(hi),
        "origins": all.iter().map(|x| x.1.clone()).collect::<std::collections::BTreeSet<_>>(),
        "verifier": verifier,
        "export_key": state.signer.0.verifier().to_string(),
    }))
}
