//! Entries of a session that a worker wrote after the session had
//! continued on another worker from its log (docs/server.md "Workers:
//! failover"): shipped once the stopped worker is back, they are stored
//! like any entry, and flagged — an `audit.alert` (`check` = `failover`) in
//! the server's log naming the session, the log and the entries — because
//! they happened, or were recorded, outside the session's continuation (a
//! worker that was only cut off, or the recovery of a killed one closing
//! the intents it left open).

use std::collections::BTreeMap;

use stele_audit::event::Actor;
use stele_audit::{Event, EventKind};

use crate::state::AppState;
use crate::store::shipping::ShippedEntry;

/// Most entry indexes named in one alert.
const NAMED: usize = 20;

/// Flag the entries among `entries` (just stored for log `origin` of
/// worker `worker`, which now holds `size` entries) that come after their session continued elsewhere
/// from that log. Failures to check are logged, never refuse the batch:
/// it is stored already.
pub async fn flag(
    state: &AppState,
    origin: &str,
    worker: &str,
    size: i64,
    entries: &[ShippedEntry],
) {
    let mut by_session: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for e in entries {
        if let Some(s) = &e.session {
            by_session.entry(s).or_default().push(e.seq);
        }
    }
    for (session, seqs) in by_session {
        let from = match state.store.continued_from(session, origin).await {
            Ok(Some(last)) => last,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!("session {session}: checking for entries after its failover: {e}");
                continue;
            }
        };
        let late: Vec<i64> = seqs.into_iter().filter(|s| *s > from).collect();
        if late.is_empty() {
            continue;
        }
        let shown: Vec<String> = late.iter().take(NAMED).map(i64::to_string).collect();
        let reason = format!(
            "worker {worker} wrote {} entr{} of session {session} in log {origin} after the \
             session had continued on another worker from its entry {from}: {}{}",
            late.len(),
            if late.len() == 1 { "y" } else { "ies" },
            shown.join(", "),
            if late.len() > NAMED { ", …" } else { "" }
        );
        tracing::warn!("{reason}");
        // The members every `audit.alert` has (audit-format §3): the
        // session, log and entries are in the reason; `index` is the first
        // late entry, `size` what the server now holds of that log.
        let data = serde_json::json!({
            "check": "failover",
            "reason": reason,
            "index": late[0],
            "size": size,
        });
        let ev = Event::new(EventKind::AuditAlert, Actor::system()).with_data(data);
        if let Err(e) = state.log.append(ev).await {
            tracing::error!("recording late entries of session {session}: {e}");
        }
    }
}
