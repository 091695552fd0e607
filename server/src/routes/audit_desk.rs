//! The reviewer's desk: `GET /api/v1/audit/sessions` (the sessions a
//! reviewer may read, with their facts from the log and the filters a
//! reviewer asks — user, time, outcome, denials, approvals — paged) and
//! `GET /api/v1/audit/sessions/{id}/timeline` (one session's entries from
//! the log, paged by entry index, forwards or backwards, so a session of
//! 100,000 entries is never sent whole; a session that ran on workers is
//! read from their shipped logs, `audit_desk_shipped`). Both are recorded decisions; every
//! timeline page is an `audit.read` entry naming who read what, as `GET
//! entries` is.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use stele_audit::{Event, EventKind};
use stele_policy::ServerResource;
use stele_protocol::SessionState;
use stele_runtime::cli::entry_filter::{time_bound, Bound};

use super::audit::{actor, blocking, number};
use super::audit_facts::{facts_of, Glance};
use super::sessions::{summary, workspace_teams};
use super::{authorize, may};
use crate::auth::Principal;
use crate::authz::{self, ServerAction};
use crate::error::{ApiError, ServerError};
use crate::state::Shared;
use crate::store::SessionRecord;

/// Most sessions in one page of the list (and the default).
pub const MAX_SESSIONS: u64 = 100;
/// Most entries in one page of a timeline (and the default).
pub const MAX_TIMELINE: u64 = 500;
/// Entries scanned per store read while filling a timeline page.
const CHUNK: u64 = 4096;

const LIST_PARAMS: [&str; 7] = [
    "user",
    "since",
    "until",
    "outcome",
    "denials",
    "approvals",
    "from",
];

fn refuse_unknown(q: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(bad) => Err(ApiError::bad_request(format!(
            "{bad}: not a parameter of this endpoint (it takes {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `yes`/`no` for a has-… filter.
fn yes_no(q: &HashMap<String, String>, name: &str) -> Result<Option<bool>, ApiError> {
    match q.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some("yes") => Ok(Some(true)),
        Some("no") => Ok(Some(false)),
        Some(v) => Err(ApiError::bad_request(format!(
            "{name}: {v:?} is not yes or no"
        ))),
    }
}

fn page_limit(q: &HashMap<String, String>, most: u64) -> Result<u64, ApiError> {
    let limit = number(q, "limit")?.unwrap_or(most);
    if limit == 0 || limit > most {
        return Err(ApiError::bad_request(format!(
            "limit: give 1 to {most} per page"
        )));
    }
    Ok(limit)
}

/// A store time (unix seconds) as the log's `ts` text, to compare with bounds.
fn ts_of(unix: i64) -> String {
    let t = super::rfc3339(unix);
    format!("{}.000000Z", t.trim_end_matches('Z'))
}

/// `GET /api/v1/audit/sessions`.
#[utoipa::path(get, path = "/api/v1/audit/sessions", tag = "audit",
    params(
        ("user" = Option<String>, Query, description = "Only this owner's sessions"),
        ("since" = Option<String>, Query, description = "Started at or after (date or RFC 3339)"),
        ("until" = Option<String>, Query, description = "Started before (date or RFC 3339)"),
        ("outcome" = Option<String>, Query, description = "Only sessions in this state (ended, failed, paused, running, waiting_approval, starting)"),
        ("denials" = Option<String>, Query, description = "yes: only sessions the log shows a denial in; no: only those without"),
        ("approvals" = Option<String>, Query, description = "yes: only sessions with an approval entry; no: only those without"),
        ("from" = Option<u64>, Query, description = "Skip this many matching sessions (paging)"),
        ("limit" = Option<u64>, Query, description = "At most this many sessions"),
    ),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "The sessions the caller may read, newest first, with their facts from the log", body = serde_json::Value)))]
pub async fn sessions(
    State(state): State<Shared>,
    who: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut known = LIST_PARAMS.to_vec();
    known.push("limit");
    refuse_unknown(&q, &known)?;
    let bound = |name: &str, b: Bound| -> Result<Option<String>, ApiError> {
        q.get(name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                time_bound(v, b)
                    .map_err(|e| ApiError::bad_request(format!("{name}: {}", e.message)))
            })
            .transpose()
    };
    let since = bound("since", Bound::Since)?;
    let until = bound("until", Bound::Until)?;
    let outcome: Option<SessionState> = match q.get("outcome").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(serde_json::from_value(serde_json::json!(v)).map_err(|_| {
            ApiError::bad_request(format!(
                "outcome: {v:?} is not a session state (starting, running, waiting_approval, ended, paused, failed)"
            ))
        })?),
    };
    let user = q.get("user").filter(|v| !v.is_empty()).cloned();
    let denials = yes_no(&q, "denials")?;
    let approvals = yes_no(&q, "approvals")?;
    let from = number(&q, "from")?.unwrap_or(0);
    let limit = page_limit(&q, MAX_SESSIONS)?;

    // Cheap filters first (the store's row), then the reader's right to
    // read each session's record (a forbid hides it), then the log's facts.
    let all = state.store.sessions().await?;
    let (readable, hidden): (Vec<SessionRecord>, Vec<SessionRecord>) =
        all.into_iter().partition(|s| {
            let teams = workspace_teams(&state, &s.workspace);
            may(
                &state,
                &who,
                ServerAction::AuditRead,
                authz::session(&s.id, &s.owner, &s.workspace, &teams),
            )
        });
    let candidates: Vec<SessionRecord> = readable
        .into_iter()
        .filter(|s| user.as_ref().is_none_or(|u| &s.owner == u))
        .filter(|s| outcome.is_none_or(|o| s.state == o))
        .filter(|s| since.as_ref().is_none_or(|b| ts_of(s.created) >= *b))
        .filter(|s| until.as_ref().is_none_or(|b| ts_of(s.created) < *b))
        .collect();
    // A session that ran on workers is counted from their shipped logs.
    let ids: Vec<String> = candidates.iter().map(|s| s.id.clone()).collect();
    let shipped = state.store.shipped_session_counts(&ids).await?;
    let log = state.log.clone();
    let (page, more) = blocking(move || -> Result<_, ServerError> {
        let store = log.store()?;
        let mut page = Vec::new();
        let mut skipped = 0u64;
        let mut more = false;
        for s in candidates {
            let mut f = facts_of(&store, &s.id)?;
            if let (0, Some(c)) = (f.entries, shipped.get(&s.id)) {
                f.entries = c.entries;
                f.denials = c.denials;
                f.approvals = c.approvals;
            }
            if denials.is_some_and(|want| want != (f.denials > 0))
                || approvals.is_some_and(|want| want != (f.approvals > 0))
            {
                continue;
            }
            if skipped < from {
                skipped += 1;
                continue;
            }
            if page.len() as u64 == limit {
                more = true;
                break;
            }
            page.push((s, f));
        }
        Ok((page, more))
    })
    .await??;
    let shown: Vec<&str> = page.iter().map(|(s, _)| s.id.as_str()).collect();
    let mut what = serde_json::json!({
        "command": "api audit sessions",
        "sessions": shown,
        "hidden": hidden.len(),
    });
    for k in LIST_PARAMS {
        if let Some(v) = q.get(k) {
            what[k] = serde_json::json!(v);
        }
    }
    authorize(
        &state,
        &who,
        ServerAction::SessionList,
        ServerResource::Server,
        what,
    )
    .await?;
    let sessions: Vec<serde_json::Value> = page
        .into_iter()
        .map(|(s, f)| {
            let mut v = serde_json::to_value(summary(s)).unwrap_or_default();
            v["entries"] = serde_json::json!(f.entries);
            v["first"] = serde_json::json!(f.first);
            v["last"] = serde_json::json!(f.last);
            v["denials"] = serde_json::json!(f.denials);
            v["approvals"] = serde_json::json!(f.approvals);
            v
        })
        .collect();
    let next = more.then(|| from + sessions.len() as u64);
    Ok(Json(
        serde_json::json!({"sessions": sessions, "next": next}),
    ))
}

/// Which way a timeline page runs from its cursor.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// Entries at or after `from`, oldest first.
    Forward(u64),
    /// The newest entries below `before`, oldest first.
    Backward(u64),
}

/// `GET /api/v1/audit/sessions/{id}/timeline`.
#[utoipa::path(get, path = "/api/v1/audit/sessions/{id}/timeline", tag = "audit",
    params(
        ("id" = String, Path, description = "The session's id"),
        ("from" = Option<u64>, Query, description = "The page starts at this entry index (the default: the session's first)"),
        ("before" = Option<u64>, Query, description = "The page is the session's last entries below this index (the end: one past `last`)"),
        ("limit" = Option<u64>, Query, description = "At most this many entries (1 to 500)"),
    ),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "A page of the session's entries from the log, each with its index; `prev`/`next` are the cursors of the pages around it", body = serde_json::Value)))]
pub async fn timeline(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    refuse_unknown(&q, &["from", "before", "limit"])?;
    let limit = page_limit(&q, MAX_TIMELINE)?;
    let dir = match (number(&q, "from")?, number(&q, "before")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "from, before: give one cursor, not both",
            ))
        }
        (_, Some(b)) => Direction::Backward(b),
        (f, None) => Direction::Forward(f.unwrap_or(0)),
    };
    let Some(s) = state.store.session(&id).await? else {
        return Err(ApiError::not_found(format!(
            "no session {id:?} on this server"
        )));
    };
    let teams = workspace_teams(&state, &s.workspace);
    let mut what = serde_json::json!({"session": id, "limit": limit});
    match dir {
        Direction::Forward(f) => what["from"] = serde_json::json!(f),
        Direction::Backward(b) => what["before"] = serde_json::json!(b),
    }
    authorize(
        &state,
        &who,
        ServerAction::AuditRead,
        authz::session(&s.id, &s.owner, &s.workspace, &teams),
        what.clone(),
    )
    .await?;
    // The read itself, before anything is read (as `GET entries`).
    what["command"] = serde_json::json!("api timeline");
    what["method"] = serde_json::json!(who.method);
    let ev = Event::new(EventKind::AuditRead, actor(&who)).with_data(what);
    let log = state.log.clone();
    let read_entry = blocking(move || log.append_blocking(ev))
        .await?
        .map_err(ServerError::from)?
        .seq;
    // A session that ran on workers: its entries are in their shipped logs.
    if !super::shipped_export::in_server_log(&state, &id).await? {
        let (from, before) = match dir {
            Direction::Forward(f) => (Some(f), None),
            Direction::Backward(b) => (None, Some(b)),
        };
        let mut v = super::audit_desk_shipped::page(&state, &id, from, before, limit).await?;
        v["read_entry"] = serde_json::json!(read_entry);
        return Ok(Json(v));
    }
    let log = state.log.clone();
    let sid = id.clone();
    let page = blocking(move || read_page(&log, &sid, dir, limit)).await??;
    let vkey = state.log.verifier().to_string();
    Ok(Json(serde_json::json!({
        "session": id,
        "entries": page.entries,
        "total": page.total,
        "first": page.first,
        "last": page.last,
        "prev": page.prev,
        "next": page.next,
        "read_entry": read_entry,
        "verifier": vkey,
        "command": super::audit_evidence::verify_command(&format!("stele-session-{id}.tar"), &vkey),
    })))
}

struct Page {
    entries: Vec<serde_json::Value>,
    total: u64,
    first: Option<u64>,
    last: Option<u64>,
    prev: Option<u64>,
    next: Option<u64>,
}

/// One page of session `id`'s entries, found inside the session's range
/// of the log (its first to its last entry) and checked to be the
/// session's by each leaf itself (the index by session is derived data).
fn read_page(
    log: &stele_audit::AuditLog,
    id: &str,
    dir: Direction,
    limit: u64,
) -> Result<Page, ServerError> {
    let store = log.store()?;
    let row = store.session_row(id)?;
    let (first, last, total) = match &row {
        // `n` is the position of the newest entry, counted from 0.
        Some(r) => (r.first, r.last, r.n.saturating_add(1)),
        None => (None, None, 0),
    };
    let (Some(lo), Some(hi)) = (first, last) else {
        return Ok(Page {
            entries: Vec::new(),
            total,
            first,
            last,
            prev: None,
            next: None,
        });
    };
    let end = hi.saturating_add(1);
    // Matching entries as their bytes: only the page's are parsed.
    let mut found: Vec<(u64, Vec<u8>)> = Vec::new();
    let take = |seq: u64, bytes: &[u8], out: &mut Vec<(u64, Vec<u8>)>| {
        let g: Glance<'_> = serde_json::from_slice(bytes).map_err(|e| {
            stele_audit::AuditError::Invalid(format!("entry {seq} is not a leaf: {e}"))
        })?;
        if g.session.as_ref().is_some_and(|l| l.id == id) {
            out.push((seq, bytes.to_vec()));
        }
        Ok::<(), stele_audit::AuditError>(())
    };
    match dir {
        Direction::Forward(from) => {
            let mut at = from.max(lo);
            while at < end && (found.len() as u64) <= limit {
                let stop = at.saturating_add(CHUNK).min(end);
                store.for_each_entry(at, stop, |seq, bytes, _| {
                    if (found.len() as u64) <= limit {
                        take(seq, bytes, &mut found)?;
                    }
                    Ok(())
                })?;
                at = stop;
            }
        }
        Direction::Backward(before) => {
            let mut at = before.min(end);
            // One more than the page, to know whether there is a page before.
            while at > lo && (found.len() as u64) <= limit {
                let start = at.saturating_sub(CHUNK).max(lo);
                let mut chunk = Vec::new();
                store.for_each_entry(start, at, |seq, bytes, _| take(seq, bytes, &mut chunk))?;
                chunk.append(&mut found);
                found = chunk;
                at = start;
            }
            let extra = found.len().saturating_sub(limit as usize + 1);
            found.drain(..extra);
        }
    }
    let (entries, prev, next) = match dir {
        Direction::Forward(_) => {
            let next = if found.len() as u64 > limit {
                found.pop().map(|(seq, _)| seq)
            } else {
                None
            };
            let prev = found
                .first()
                .and_then(|(seq, _)| (*seq > lo).then_some(*seq));
            (found, prev, next)
        }
        Direction::Backward(_) => {
            let prev = if found.len() as u64 > limit {
                found.remove(0);
                found.first().map(|(seq, _)| *seq)
            } else {
                None
            };
            let next = found
                .last()
                .and_then(|(seq, _)| (*seq < hi).then(|| seq + 1));
            (found, prev, next)
        }
    };
    let mut page = Vec::with_capacity(entries.len());
    for (seq, bytes) in entries {
        let leaf: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            stele_audit::AuditError::Invalid(format!("entry {seq} is not JSON: {e}"))
        })?;
        page.push(serde_json::json!({"index": seq, "leaf": leaf}));
    }
    Ok(Page {
        entries: page,
        total,
        first,
        last,
        prev,
        next,
    })
}

#[cfg(test)]
#[path = "audit_desk_tests.rs"]
mod tests;
