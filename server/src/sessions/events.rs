//! A session's events on their way out: the worker hands each to the
//! session's pump, which numbers it (1, 2, … per session: the SSE `id:`),
//! keeps it in the store for replay, and broadcasts it to live watchers.
//! The pump is the only writer of the session's rows, so their order is the
//! order things happened.

use std::sync::Arc;

use stele_protocol::{ApprovalState, SessionState};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::webhook;
use crate::state::AppState;
use crate::store::{ApprovalRecord, SessionRecord};

/// One numbered event, as its JSON text.
#[derive(Debug, Clone)]
pub struct Numbered {
    /// Its number in the session (the SSE id).
    pub n: u64,
    /// The event (a `stele_protocol::SessionEvent`).
    pub json: Arc<str>,
}

/// What a session's worker tells the server.
#[derive(Debug)]
pub enum WorkerMsg {
    /// The session started (it is in the log): index it.
    Started(SessionRecord),
    /// A session from the log was reopened: its events continue after
    /// those already kept (numbering goes on across restarts).
    Resumed(String),
    /// A queued session was claimed by a remote worker: its row exists
    /// already, and its events continue after any kept (an earlier claim's).
    Claimed(SessionRecord),
    /// The session could not start: why.
    Failed(String),
    /// A progress event.
    Event(serde_json::Value),
    /// The session's state changed.
    State(SessionState, Option<String>),
    /// An approval is waiting: queue it.
    Ask(ApprovalRecord),
    /// An approval was settled by the session itself (its deadline passed).
    Settled(String, ApprovalState),
}

/// The channel a worker sends on.
pub type WorkerTx = mpsc::UnboundedSender<WorkerMsg>;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Run the pump of one session until its worker is done. `started` hears
/// the session id once it is indexed, or why it did not start.
pub async fn pump(
    state: Arc<AppState>,
    mut rx: mpsc::UnboundedReceiver<WorkerMsg>,
    live: broadcast::Sender<Numbered>,
    started: oneshot::Sender<Result<String, String>>,
) {
    let mut started = Some(started);
    let mut id = String::new();
    let mut whose = (String::new(), String::new());
    let mut n = 0u64;
    while let Some(msg) = rx.recv().await {
        let done = match msg {
            WorkerMsg::Started(rec) => {
                id = rec.id.clone();
                whose = (rec.owner.clone(), rec.workspace.clone());
                state.sessions.go_live(&id, live.clone());
                let r = state.store.put_session(rec).await;
                if let Some(tx) = started.take() {
                    let _ = tx.send(r.map(|()| id.clone()).map_err(|e| e.to_string()));
                }
                Ok(())
            }
            WorkerMsg::Resumed(rid) => {
                id = rid;
                let r = match state.store.events_after(&id, 0).await {
                    Ok(kept) => {
                        n = kept.last().map_or(0, |(k, _)| *k);
                        state.sessions.go_live(&id, live.clone());
                        state
                            .store
                            .set_session_state(&id, SessionState::Running, None, now())
                            .await
                    }
                    Err(e) => Err(e),
                };
                if let Some(tx) = started.take() {
                    let _ = tx.send(r.map(|()| id.clone()).map_err(|e| e.to_string()));
                }
                Ok(())
            }
            WorkerMsg::Claimed(rec) => {
                id = rec.id.clone();
                whose = (rec.owner.clone(), rec.workspace.clone());
                let r = match state.store.events_after(&id, 0).await {
                    Ok(kept) => {
                        n = kept.last().map_or(0, |(k, _)| *k);
                        state.sessions.go_live(&id, live.clone());
                        state
                            .store
                            .set_session_state(&id, rec.state, rec.detail, now())
                            .await
                    }
                    Err(e) => Err(e),
                };
                if let Some(tx) = started.take() {
                    let _ = tx.send(r.map(|()| id.clone()).map_err(|e| e.to_string()));
                }
                Ok(())
            }
            WorkerMsg::Failed(why) => {
                if let Some(tx) = started.take() {
                    let _ = tx.send(Err(why));
                }
                Ok(())
            }
            WorkerMsg::Event(v) => {
                n += 1;
                let json: Arc<str> = Arc::from(v.to_string());
                let r = state.store.append_event(&id, n, &json).await;
                // No watcher is not an error.
                let _ = live.send(Numbered { n, json });
                r
            }
            WorkerMsg::State(s, detail) => {
                webhook::session_changed(&state, &id, &whose, s, detail.as_deref());
                state.store.set_session_state(&id, s, detail, now()).await
            }
            WorkerMsg::Ask(a) => {
                let notice = webhook::approval_requested(&state, &a);
                let r = state.store.add_approval(a).await;
                // Once it is queued, so the link in the notice finds it.
                if r.is_ok() {
                    state.webhooks.notify(notice);
                }
                match r {
                    Ok(()) => {
                        state
                            .store
                            .set_session_state(&id, SessionState::WaitingApproval, None, now())
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            WorkerMsg::Settled(approval, s) => state
                .store
                .settle_approval(&approval, s, None)
                .await
                .map(|_| ()),
        };
        if let Err(e) = done {
            // The log is the record; the store's copy is for watchers. Say so loudly.
            tracing::error!("session {id}: the server store failed: {e}");
        }
    }
    state.sessions.gone(&id);
}
