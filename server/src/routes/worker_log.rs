//! Workers ship their logs here (docs/server.md "Workers: shipping"):
//! `POST /api/v1/worker/log/size` says where the next batch starts and
//! which witness key cosigns; `POST /api/v1/worker/log` takes a batch.
//!
//! A batch is checked before anything of it is stored: the origin must be
//! the log of a worker of the caller's account (its key is the one the
//! worker's claims registered, and must name the origin; once shipped, the
//! key held for the origin), the key not revoked, `from` the size held
//! (409 naming it otherwise), every leaf as the verifiers check it, and the
//! root at the batch's end the one the log's checkpoint signs
//! ([`stele_audit::incremental`]), and every payload body it carries listed
//! by one of its leaves and matching that commitment
//! ([`crate::shipped::bodies`]). A batch that fails is refused (422
//! naming the index or commitment and the reason), recorded in the server's log as an
//! `audit.alert` (`check` = `shipping`) and logged as an error; nothing of
//! it is stored. An accepted one is stored by a compare-and-set on the
//! origin's size, with its bodies and the tree nodes its leaves completed,
//! and its checkpoint cosigned with the server's witness key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_attest::cosignature::{cosign, CosignatureVerifier};
use stele_attest::NoteVerifier;
use stele_audit::incremental::{check_batch, AcceptedEntry, BatchFailure, ShippedState};
use stele_audit::{Actor, Event, EventKind};

use super::Body;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::sessions::remote::claims::refuse;
use crate::sessions::remote::log_wire::{LogSize, LogSizeRequest, ShipRequest, Shipped};
use crate::sessions::run::now;
use crate::shipped::bodies::{check_bodies, BodyRefusal};
use crate::state::{AppState, Shared};
use crate::store::shipping::{Appended, ShippedEntry, ShippedLog, ShippedNode, ShippedParts};

/// Most leaves in one batch.
pub const MAX_LEAVES: usize = 4096;

/// Largest request body of a batch (its leaves and payload bodies in
/// base64, in JSON): the largest batch a worker makes
/// ([`crate::sessions::remote::shipper::BATCH_BYTES`] of leaves and bodies,
/// a third more in base64) with room to spare, and a lone leaf whose bodies
/// go over that cap; the shipper leaves out bodies that would not fit
/// here. Over it: 413 naming this limit.
pub const MAX_BODY: usize = 24 << 20;

/// The witness key's verifier form.
fn witness(state: &AppState) -> String {
    CosignatureVerifier::of(state.witness.0.as_ref()).to_string()
}

/// Where shipping starts for an origin, and the server's witness key.
#[utoipa::path(post, path = "/api/v1/worker/log/size", tag = "worker",
    request_body = LogSizeRequest,
    security(("token" = [])),
    responses(
        (status = 200, description = "Entries held of the origin, and the witness key", body = LogSize),
        (status = 403, description = "The log is another account's worker's",
            body = stele_protocol::Problem, content_type = "application/problem+json")))]
pub async fn size(
    State(state): State<Shared>,
    who: Principal,
    Body(req): Body<LogSizeRequest>,
) -> Result<Json<LogSize>, ApiError> {
    let held = state.store.shipped_log(&req.origin).await?;
    // Another account's worker learns nothing of this log, not even its size.
    if held.as_ref().is_some_and(|h| h.account != who.user.name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("log {} belongs to another account's worker", req.origin),
        ));
    }
    Ok(Json(LogSize {
        size: held.map_or(0, |h| h.size.max(0) as u64),
        witness: witness(&state),
    }))
}

/// A batch of a worker's log.
#[utoipa::path(post, path = "/api/v1/worker/log", tag = "worker",
    request_body = ShipRequest,
    security(("token" = [])),
    responses(
        (status = 200, description = "Stored; the server's cosignature of the checkpoint", body = Shipped),
        (status = 409, description = "`from` is not the size held: the detail names it",
            body = stele_protocol::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The request body is over the batch limit (the detail names it)",
            body = stele_protocol::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Refused: it does not verify, a body is not listed by its leaves or does not match its commitment, or its key is unknown or revoked (recorded)",
            body = stele_protocol::Problem, content_type = "application/problem+json")))]
pub async fn ship(
    State(state): State<Shared>,
    who: Principal,
    ShipBody(req): ShipBody,
) -> Result<Json<Shipped>, ApiError> {
    let account = who.user.name.clone();
    let held = state.store.shipped_log(&req.origin).await?;
    let held_size = held.as_ref().map_or(0, |h| h.size.max(0) as u64);
    let refused = |index: Option<u64>, reason: String| BatchRefusal {
        index,
        reason,
        held: held_size,
    };
    // Whose log it is, and its key.
    let worker = state
        .store
        .workers()
        .await?
        .into_iter()
        .find(|w| w.name == req.worker);
    let Some(worker) = worker else {
        let r = refused(
            None,
            format!("unknown worker {:?}: it has claimed nothing", req.worker),
        );
        return Err(alarm(&state, &who, &req, r).await);
    };
    if worker.account != account || held.as_ref().is_some_and(|h| h.account != account) {
        let reason = format!(
            "log {} of worker {} belongs to account {}; account {account} may not ship it",
            req.origin,
            req.worker,
            held.as_ref()
                .map_or(worker.account.as_str(), |h| h.account.as_str())
        );
        return Err(refuse(&state, &who, "log", reason).await);
    }
    if let Some(at) = held.as_ref().and_then(|h| h.revoked_at) {
        let r = refused(
            None,
            format!("the key of log {} was revoked at {at}", req.origin),
        );
        return Err(alarm(&state, &who, &req, r).await);
    }
    let verifier = match &held {
        Some(h) if !h.verifier.is_empty() => h.verifier.clone(),
        _ => worker.verifier.clone(),
    };
    let key = match NoteVerifier::parse(&verifier) {
        Ok(k) if k.name() == req.origin => k,
        Ok(k) => {
            let r = refused(
                None,
                format!(
                    "unknown origin {}: worker {}'s registered key is of log {}",
                    req.origin,
                    req.worker,
                    k.name()
                ),
            );
            return Err(alarm(&state, &who, &req, r).await);
        }
        Err(e) => {
            let r = refused(None, format!("worker {}'s registered key: {e}", req.worker));
            return Err(alarm(&state, &who, &req, r).await);
        }
    };
    if req.from != held_size {
        return Err(expected(&req.origin, held_size));
    }
    if req.leaves.len() > MAX_LEAVES {
        return Err(ApiError::bad_request(format!(
            "leaves: {} in one batch, at most {MAX_LEAVES}",
            req.leaves.len()
        )));
    }
    let mut leaves = Vec::with_capacity(req.leaves.len());
    for (i, l) in req.leaves.iter().enumerate() {
        leaves.push(B64.decode(l).map_err(|e| {
            ApiError::bad_request(format!("leaves[{i}]: not standard base64: {e}"))
        })?);
    }
    let prior = state_of(held.as_ref()).map_err(|reason| {
        tracing::error!("shipped log {}: {reason}", req.origin);
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, reason)
    })?;
    let (origin, note) = (req.origin.clone(), req.checkpoint.clone());
    let checked =
        tokio::task::spawn_blocking(move || check_batch(&origin, &key, &prior, &leaves, &note))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let batch = match checked {
        Ok(b) => b,
        Err(BatchFailure { index, reason }) => {
            return Err(alarm(&state, &who, &req, refused(index, reason)).await)
        }
    };
    let payloads = match check_bodies(&batch.entries, &req.payloads) {
        Ok(p) => p,
        Err(BodyRefusal::Malformed(m)) => return Err(ApiError::bad_request(m)),
        Err(BodyRefusal::Refused(reason)) => {
            return Err(alarm(&state, &who, &req, refused(None, reason)).await)
        }
    };
    let parts = ShippedParts {
        payloads,
        nodes: batch
            .nodes
            .iter()
            .map(|n| ShippedNode {
                level: n.level,
                index: n.index,
                hash: n.hash,
            })
            .collect(),
        erased: batch.erased.iter().map(|(c, _)| c.to_vec()).collect(),
    };
    let t = now();
    let to = ShippedLog {
        origin: req.origin.clone(),
        // The key after this batch: a rotation it ended with is followed.
        verifier: batch.key.clone(),
        account,
        worker: req.worker.clone(),
        size: batch.state.size as i64,
        root: batch.root.to_vec(),
        frontier: batch.state.frontier.concat(),
        last_hash: batch.state.last_hash.map(|h| h.to_vec()),
        last_time: batch.state.last_time.clone(),
        checkpoint: req.checkpoint.clone(),
        updated: t,
        revoked_at: None,
    };
    let entries: Vec<ShippedEntry> = batch.entries.into_iter().map(stored).collect();
    match state
        .store
        .append_shipped(held_size as i64, &to, &entries, &parts)
        .await?
    {
        Appended::Yes => {}
        Appended::Moved(n) => return Err(expected(&req.origin, n.max(0) as u64)),
        Appended::Revoked => {
            let r = refused(None, format!("the key of log {} was revoked", req.origin));
            return Err(alarm(&state, &who, &req, r).await);
        }
    }
    crate::shipped::late_entries::flag(&state, &req.origin, &req.worker, to.size, &entries).await;
    let line = cosign(state.witness.0.as_ref(), &batch.body, t.max(0) as u64)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cosigning: {e}")))?
        .line();
    tracing::info!(
        "worker {}: log {} shipped to {} (+{})",
        req.worker,
        req.origin,
        to.size,
        entries.len()
    );
    Ok(Json(Shipped {
        size: to.size as u64,
        witness: witness(&state),
        cosignature: line,
    }))
}

/// 409: the batch does not start where the server stands.
fn expected(origin: &str, size: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!("log {origin}: the server holds {size} entries; ship from {size}"),
    )
}

/// The held state as the incremental verifier takes it.
fn state_of(held: Option<&ShippedLog>) -> Result<ShippedState, String> {
    let Some(h) = held else {
        return Ok(ShippedState::default());
    };
    let hash = |b: &[u8]| <[u8; 32]>::try_from(b).ok();
    let frontier: Option<Vec<[u8; 32]>> = h.frontier.chunks(32).map(hash).collect();
    let last_hash = match &h.last_hash {
        Some(b) => Some(hash(b).ok_or("the held last leaf hash is not 32 bytes")?),
        None => None,
    };
    Ok(ShippedState {
        size: h.size.max(0) as u64,
        frontier: frontier.ok_or("the held frontier is not whole 32-byte hashes")?,
        last_hash,
        last_time: h.last_time.clone(),
    })
}

/// An accepted entry as the store keeps it.
fn stored(e: AcceptedEntry) -> ShippedEntry {
    ShippedEntry {
        seq: e.seq as i64,
        leaf: e.leaf,
        ts: e.ts,
        session: e.session,
        principal: e.principal,
        teams: format!(",{},", e.teams.join(",")).replace(",,", ","),
        kind: e.kind.as_str().to_string(),
        effect: e.effect,
        path: e.path,
        leaf_hash: e.hash,
    }
}

/// A batch's JSON body; over [`MAX_BODY`] a 413 naming the limit (the
/// route's `DefaultBodyLimit`), other rejections as [`Body`] answers them.
pub struct ShipBody(ShipRequest);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ShipBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<ShipRequest>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ShipBody(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a batch of a worker's log is at most {MAX_BODY} bytes of JSON: ship fewer \
                     leaves or bodies at once"
                ),
            )),
            // serde's message names the field and the position.
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// Why a batch was refused.
struct BatchRefusal {
    index: Option<u64>,
    reason: String,
    held: u64,
}

/// Record a refused batch in the server's log (`audit.alert`, `check` =
/// `shipping`), log it as an error, and answer 422 naming the reason.
async fn alarm(state: &AppState, who: &Principal, req: &ShipRequest, r: BatchRefusal) -> ApiError {
    let reason = format!(
        "worker {} (account {}) shipped a batch of log {} from {} that is refused: {}{}",
        req.worker,
        who.user.name,
        req.origin,
        req.from,
        r.index.map(|i| format!("index {i}: ")).unwrap_or_default(),
        r.reason
    );
    tracing::error!("{reason}");
    let mut actor = Actor::system();
    actor.principal = who.user.name.clone();
    actor.teams = who.user.teams.clone();
    let mut data = serde_json::json!({"check": "shipping", "reason": reason, "size": r.held});
    if let Some(i) = r.index {
        data["index"] = serde_json::json!(i);
    }
    let ev = Event::new(EventKind::AuditAlert, actor).with_data(data);
    match state.log.append(ev).await {
        Ok(receipt) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason).logged(receipt.seq),
        Err(e) => {
            tracing::error!("recording the refused batch: {e}");
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason)
        }
    }
}
