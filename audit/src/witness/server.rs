//! The witness: checks each `add-checkpoint` (known log, valid signature,
//! `old` equal to what it holds, consistency proof), persists the new
//! checkpoint, then cosigns. Served over HTTP with axum.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::post;
use axum::Router;
use stele_attest::cosignature::cosign;
use stele_attest::{Checkpoint, NoteVerifier, SignedNote, Signer};

use super::protocol::AddCheckpoint;
use super::state::{LogState, WitnessState};
use crate::leaf::{hash_b64, parse_hash_b64};
use crate::merkle::verify_consistency;

/// A witness: its cosigning key, the logs it accepts and its state file.
pub struct Witness {
    signer: Arc<dyn Signer>,
    logs: HashMap<String, NoteVerifier>,
    state_path: PathBuf,
    // Serializes check → persist → cosign, so two requests cannot both
    // advance from the same size.
    state: Mutex<WitnessState>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("name", &self.signer.name())
            .field("state", &self.state_path)
            .finish()
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessOutcome {
    /// 200: cosignature line(s), newline-terminated.
    Cosigned(String),
    /// 409: the size the witness holds for this log.
    Conflict(u64),
    /// Any other refusal: HTTP status and reason.
    Refused(u16, String),
}

impl Witness {
    /// A witness signing with `signer`, accepting the logs of `logs`, keeping state in `state_path`.
    pub fn new(
        signer: Arc<dyn Signer>,
        logs: Vec<NoteVerifier>,
        state_path: PathBuf,
    ) -> std::io::Result<Self> {
        let state = WitnessState::load(&state_path)?;
        let logs = logs
            .into_iter()
            .map(|v| (v.name().to_string(), v))
            .collect();
        Ok(Self {
            signer,
            logs,
            state_path,
            state: Mutex::new(state),
        })
    }

    /// Handle one `add-checkpoint` body.
    pub fn add_checkpoint(&self, body: &str, now: u64) -> WitnessOutcome {
        let req = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(e) => return WitnessOutcome::Refused(400, e),
        };
        let Ok(parsed) = SignedNote::parse(&req.note) else {
            return WitnessOutcome::Refused(400, "malformed checkpoint note".into());
        };
        let origin = parsed
            .text
            .split('\n')
            .next()
            .unwrap_or_default()
            .to_string();
        let Some(v) = self.logs.get(&origin) else {
            return WitnessOutcome::Refused(404, format!("unknown log {origin:?}"));
        };
        let cp = match Checkpoint::open(&req.note, v) {
            Ok((c, _)) => c,
            Err(e) => return WitnessOutcome::Refused(403, format!("checkpoint signature: {e}")),
        };
        let Ok(mut st) = self.state.lock() else {
            return WitnessOutcome::Refused(500, "witness state poisoned".into());
        };
        let (held_size, held_root) = match st.logs.get(&origin) {
            Some(s) => (s.size, parse_hash_b64(&s.root)),
            None => (0, None),
        };
        if req.old != held_size {
            return WitnessOutcome::Conflict(held_size);
        }
        if cp.size < held_size {
            return WitnessOutcome::Refused(400, "checkpoint is older than old".into());
        }
        if let Some(old_root) = held_root {
            if verify_consistency(held_size, cp.size, &old_root, &cp.root, &req.proof).is_err() {
                return WitnessOutcome::Refused(422, "consistency proof does not verify".into());
            }
        } else if !req.proof.is_empty() {
            return WitnessOutcome::Refused(422, "proof given from size 0".into());
        }
        let mut next = st.clone();
        next.logs.insert(
            origin,
            LogState {
                size: cp.size,
                root: hash_b64(&cp.root),
                note: req.note.clone(),
            },
        );
        // Persist before cosigning: a cosignature is never issued for a state the witness could forget.
        if let Err(e) = next.save(&self.state_path) {
            return WitnessOutcome::Refused(500, format!("cannot persist state: {e}"));
        }
        *st = next;
        match cosign(self.signer.as_ref(), &parsed.text, now) {
            Ok(line) => WitnessOutcome::Cosigned(format!("{}\n", line.line())),
            Err(e) => WitnessOutcome::Refused(500, format!("cosigning failed: {e}")),
        }
    }
}

async fn add_checkpoint(
    State(w): State<Arc<Witness>>,
    body: String,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let w2 = w.clone();
    let out = tokio::task::spawn_blocking(move || w2.add_checkpoint(&body, now))
        .await
        .unwrap_or_else(|_| WitnessOutcome::Refused(500, "witness task failed".into()));
    match out {
        WitnessOutcome::Cosigned(lines) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            lines,
        ),
        WitnessOutcome::Conflict(size) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{size}\n"),
        ),
        WitnessOutcome::Refused(code, why) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{why}\n"),
        ),
    }
}

/// Serve the witness on `listener` until the future is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .with_state(witness);
    axum::serve(listener, app).await
}
