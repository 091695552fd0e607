//! `GET /api/v1/sessions/{id}/events`: the session's events as server-sent
//! events, each with `id:` = its number in the session. A client resumes
//! with `Last-Event-ID` (or `?after=N`): everything after it is replayed
//! from the store, then live events follow. A watcher that falls behind is
//! closed; it reconnects and replays. The stream ends when the session does.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt as _};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::sessions::permitted;
use crate::auth::Principal;
use crate::authz::ServerAction;
use crate::error::ApiError;
use crate::state::Shared;

/// `?after=N`: replay events after number N (as `Last-Event-ID`).
#[derive(Debug, Deserialize)]
pub struct After {
    after: Option<u64>,
}

fn last_event_id(headers: &HeaderMap, q: &After) -> Result<u64, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID: not an event number")),
        None => Ok(q.after.unwrap_or(0)),
    }
}

fn sse(n: u64, json: &str) -> Result<Event, Infallible> {
    Ok(Event::default().id(n.to_string()).data(json))
}

/// Stream a session's events.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/events", tag = "sessions",
    params(
        ("id" = String, Path, description = "The session's id"),
        ("after" = Option<u64>, Query, description = "Replay the events after this number"),
        ("Last-Event-ID" = Option<u64>, Header, description = "As `after`, sent by a reconnecting client"),
    ),
    security(("token" = []), ("cookie" = [])),
    responses((status = 200, description = "Server-sent events: `id:` the event's number, `data:` a SessionEvent", body = stele_protocol::SessionEvent, content_type = "text/event-stream")))]
pub async fn stream(
    State(state): State<Shared>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = last_event_id(&headers, &q)?;
    permitted(
        &state,
        &who,
        &id,
        ServerAction::SessionView,
        serde_json::json!({"events_after": after}),
    )
    .await?;
    // Watch first, then read what is stored: nothing falls between the two.
    let live = state.sessions.watch(&id);
    let stored = state.store.events_after(&id, after).await?;
    let last = stored.last().map_or(after, |(n, _)| *n);
    let replay = stream::iter(
        stored
            .into_iter()
            .map(|(n, json)| sse(n, &json))
            .collect::<Vec<_>>(),
    );
    let follow = stream::unfold((live, last), |(live, last)| async move {
        let mut rx = live?;
        loop {
            match rx.recv().await {
                Ok(e) if e.n <= last => continue,
                Ok(e) => {
                    let item = sse(e.n, &e.json);
                    return Some((item, (Some(rx), e.n)));
                }
                // Ended, or this watcher fell behind: close; a reconnect replays.
                Err(RecvError::Closed | RecvError::Lagged(_)) => return None,
            }
        }
    });
    Ok(Sse::new(replay.chain(follow)).keep_alive(KeepAlive::default()))
}
