//! A worker ships its log to the server (docs/server.md "Workers:
//! shipping"): every second, when a session ends and when it drains, it
//! sends the entries the server does not hold yet, in batches of at most
//! [`BATCH_LEAVES`] leaves or [`BATCH_BYTES`] bytes, each leaf as its exact
//! stored bytes with the payload bodies it committed that are still held
//! here (a redacted, erased or expired body is not sent), and the log's
//! signed checkpoint at the batch's end (the
//! stored one when there is one at that size, else one signed now). The
//! server's cosignature comes back and is kept with the log's other
//! cosignatures, so `stele audit export` carries it.
//!
//! Shipping never holds up an effect: it runs beside the sessions and
//! reads the log as any reader does. An unreachable server only grows the
//! backlog; a refused batch is logged and tried again later (never
//! skipped: the server's copy has no gaps).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::{Checkpoint, SignedNote, Signer};
use stele_audit::merkle::subtree_hash;
use stele_audit::Store;

use super::client::{Client, ClientError};
use super::log_wire::{LogSize, LogSizeRequest, ShipPayload, ShipRequest, Shipped};
use super::ship_bodies;

/// Most leaves in one batch.
pub const BATCH_LEAVES: u64 = 1000;

/// Most bytes of leaves and payload bodies (salt and body) in one batch:
/// one leaf whose bytes and bodies are larger goes alone (its bodies that
/// would not fit in a request the server takes are left out, with a
/// warning: the server's bundle says they are withheld).
pub const BATCH_BYTES: usize = 4 << 20;

/// How often the backlog is looked at.
const EVERY: Duration = Duration::from_secs(1);

/// How long to wait after the server refused a batch; doubled at each
/// refusal in a row (every refusal is an alert in the server's log), up to
/// [`MAX_AFTER_REFUSAL`].
const AFTER_REFUSAL: Duration = Duration::from_secs(5);

/// The longest wait after refusals in a row.
const MAX_AFTER_REFUSAL: Duration = Duration::from_secs(300);

/// How long a draining worker keeps trying to ship what is left.
const DRAIN_FOR: Duration = Duration::from_secs(10);

/// What the shipper needs.
pub struct Shipper {
    client: Client,
    db: PathBuf,
    signer: Arc<dyn Signer>,
    worker: String,
    /// Entries the server holds (None: ask it).
    held: Option<u64>,
    /// The server's witness key, as it last said.
    witness: Option<CosignatureVerifier>,
}

/// One batch read from the log.
struct Batch {
    from: u64,
    leaves: Vec<String>,
    payloads: Vec<ShipPayload>,
    note: String,
}

/// How a round went.
enum Round {
    /// Nothing left to ship.
    CaughtUp,
    /// A batch was taken; maybe more are left.
    Shipped,
}

impl Shipper {
    /// A shipper of the log at `db` signed by `signer`, for worker `worker`.
    pub fn new(client: Client, db: PathBuf, signer: Arc<dyn Signer>, worker: String) -> Self {
        Shipper {
            client,
            db,
            signer,
            worker,
            held: None,
            witness: None,
        }
    }

    /// Ship until `stop` says so, then ship what is left (for a while).
    /// `wake` shortens the wait (a session ended). Nothing is shipped
    /// before `registered` (the worker's first claim registered its key).
    pub async fn run(
        mut self,
        mut stop: tokio::sync::watch::Receiver<bool>,
        wake: Arc<tokio::sync::Notify>,
        mut registered: tokio::sync::watch::Receiver<bool>,
    ) {
        tokio::select! {
            r = registered.wait_for(|r| *r) => {
                if r.is_err() {
                    return;
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut quiet_until = tokio::time::Instant::now();
        let mut refusals = 0u32;
        loop {
            if *stop.borrow() {
                break;
            }
            if tokio::time::Instant::now() >= quiet_until {
                match self.catch_up().await {
                    Ok(()) => refusals = 0,
                    Err(e) if e.refused() => {
                        let wait = AFTER_REFUSAL
                            .saturating_mul(1 << refusals.min(6))
                            .min(MAX_AFTER_REFUSAL);
                        refusals += 1;
                        quiet_until = tokio::time::Instant::now() + wait;
                    }
                    Err(_) => {}
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
        let until = tokio::time::Instant::now() + DRAIN_FOR;
        loop {
            match self.catch_up().await {
                Ok(()) => {
                    stele_runtime::errln!(
                        "stele worker {}: its log is shipped ({} entries)",
                        self.worker,
                        self.held.unwrap_or(0)
                    );
                    return;
                }
                Err(_) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(EVERY).await;
                }
                Err(e) => {
                    stele_runtime::errln!(
                        "stele worker {}: stopping with part of its log not shipped ({e}); it is \
                         shipped when the worker runs again",
                        self.worker
                    );
                    return;
                }
            }
        }
    }

    /// Ship batches until nothing is left.
    async fn catch_up(&mut self) -> Result<(), ShipError> {
        loop {
            match self.round().await {
                Ok(Round::CaughtUp) => return Ok(()),
                Ok(Round::Shipped) => {}
                Err(e) => {
                    e.log(&self.worker);
                    return Err(e);
                }
            }
        }
    }

    /// Ship one batch.
    async fn round(&mut self) -> Result<Round, ShipError> {
        let origin = self.signer.name().to_string();
        let from = match self.held {
            Some(n) => n,
            None => {
                let r = self
                    .client
                    .post::<_, LogSize>(
                        "/api/v1/worker/log/size",
                        &LogSizeRequest {
                            origin: origin.clone(),
                        },
                    )
                    .await?
                    .ok_or(ShipError::Answer("an empty answer to log/size".into()))?;
                self.witness = Some(
                    CosignatureVerifier::parse(&r.witness)
                        .map_err(|e| ShipError::Answer(format!("the witness key: {e}")))?,
                );
                self.held = Some(r.size);
                r.size
            }
        };
        let (db, signer) = (self.db.clone(), self.signer.clone());
        let batch = tokio::task::spawn_blocking(move || read_batch(&db, signer.as_ref(), from))
            .await
            .map_err(|e| ShipError::Local(e.to_string()))??;
        let Some(batch) = batch else {
            return Ok(Round::CaughtUp);
        };
        let req = ShipRequest {
            worker: self.worker.clone(),
            origin,
            from: batch.from,
            leaves: batch.leaves,
            checkpoint: batch.note.clone(),
            payloads: batch.payloads,
        };
        let shipped = match self
            .client
            .post::<_, Shipped>("/api/v1/worker/log", &req)
            .await
        {
            Ok(Some(s)) => s,
            Ok(None) => return Err(ShipError::Answer("an empty answer to log".into())),
            Err(e @ ClientError::Lost { .. }) => {
                // The server holds another size: ask it again.
                self.held = None;
                tracing::warn!("{e}");
                return Ok(Round::Shipped);
            }
            Err(e) => return Err(e.into()),
        };
        self.held = Some(shipped.size);
        let key = CosignatureVerifier::parse(&shipped.witness)
            .map_err(|e| ShipError::Answer(format!("the witness key: {e}")))?;
        let (db, note, size, line) = (
            self.db.clone(),
            batch.note,
            shipped.size,
            shipped.cosignature,
        );
        tokio::task::spawn_blocking(move || keep(&db, &key, size, &line, &note))
            .await
            .map_err(|e| ShipError::Local(e.to_string()))??;
        Ok(Round::Shipped)
    }
}

/// The entries from `from` on (a batch's worth) and the checkpoint at
/// their end; None when there are none.
fn read_batch(db: &Path, signer: &dyn Signer, from: u64) -> Result<Option<Batch>, ShipError> {
    let store = Store::open(db).map_err(|e| ShipError::Local(e.to_string()))?;
    let size = store.size().map_err(|e| ShipError::Local(e.to_string()))?;
    if from > size {
        // Never shipped from here: this log is not the one the server holds.
        return Err(ShipError::Local(format!(
            "the server holds {from} entries of this log but it has only {size}: it was rolled \
             back or replaced; nothing is shipped until that is investigated"
        )));
    }
    if from == size {
        return Ok(None);
    }
    let local = |e: String| ShipError::Local(e);
    let to = size.min(from + BATCH_LEAVES);
    let mut held = ship_bodies::held(&store, from, to).map_err(|e| local(e.to_string()))?;
    let mut leaves = Vec::new();
    let mut cmts: Vec<ship_bodies::Held> = Vec::new();
    let mut bytes = 0usize;
    let mut full = false;
    store
        .for_each_entry(from, to, |seq, leaf, _| {
            let bodies = held.remove(&seq).unwrap_or_default();
            let n = leaf.len() + bodies.iter().map(|b| b.bytes).sum::<usize>();
            // Consecutive leaves only: once full, the rest waits for the next batch.
            full |= !leaves.is_empty() && bytes + n > BATCH_BYTES;
            if full {
                return Ok(());
            }
            bytes += n;
            leaves.push(B64.encode(leaf));
            cmts.extend(bodies);
            // A key rotation ends its batch: the batch's checkpoint is then
            // the rotation's boundary checkpoint (kept, signed by both keys),
            // which is what lets the server follow the new key.
            full = is_rotation(leaf);
            Ok(())
        })
        .map_err(|e| ShipError::Local(e.to_string()))?;
    let end = from + leaves.len() as u64;
    if bytes > BATCH_BYTES {
        // A lone leaf over the cap: what the server's request limit takes.
        let (fit, left) = ship_bodies::fitting(cmts);
        for b in &left {
            tracing::warn!(
                "entry {from}: its payload body {} ({} bytes) is too large to ship; the server \
                 holds its commitment only (withheld)",
                format!(
                    "{}{}",
                    stele_audit::payload::COMMIT_PREFIX,
                    B64.encode(&b.cmt)
                ),
                b.bytes
            );
        }
        cmts = fit;
    }
    let cmts: Vec<Vec<u8>> = cmts.into_iter().map(|b| b.cmt).collect();
    let payloads = ship_bodies::read(&store, &cmts).map_err(|e| local(e.to_string()))?;
    let note = match store
        .checkpoint_at(end)
        .map_err(|e| ShipError::Local(e.to_string()))?
    {
        Some(n) => n,
        None => {
            let root = subtree_hash(&store, 0, end).map_err(|e| ShipError::Local(e.to_string()))?;
            Checkpoint {
                origin: signer.name().to_string(),
                size: end,
                root,
            }
            .sign(signer)
            .map_err(|e| ShipError::Local(format!("signing the checkpoint at {end}: {e}")))?
            .to_text()
        }
    };
    Ok(Some(Batch {
        from,
        leaves,
        payloads,
        note,
    }))
}

/// Whether a stored leaf is a `key.rotation` entry.
fn is_rotation(leaf: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        kind: &'a str,
    }
    serde_json::from_slice::<Kind<'_>>(leaf).is_ok_and(|k| k.kind == "key.rotation")
}

/// Check the server's cosignature of `note` and keep it in the log.
fn keep(
    db: &Path,
    key: &CosignatureVerifier,
    size: u64,
    line: &str,
    note: &str,
) -> Result<(), ShipError> {
    let bad = |e: String| ShipError::Answer(format!("the server's cosignature: {e}"));
    let signed = SignedNote::parse(note).map_err(|e| bad(e.to_string()))?;
    let with =
        SignedNote::parse(&format!("{}\n{line}\n", signed.text)).map_err(|e| bad(e.to_string()))?;
    let sig = with
        .signatures
        .iter()
        .find(|s| key.matches(s))
        .ok_or_else(|| bad("not by the server's witness key".into()))?;
    key.verify(&signed.text, sig)
        .map_err(|e| bad(e.to_string()))?;
    stele_audit::witness::store_cosignature(db, size, key.name(), line, note)
        .map_err(|e| ShipError::Local(e.to_string()))
}

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
enum ShipError {
    /// The server could not be reached or answered an error.
    #[error(transparent)]
    Server(#[from] ClientError),
    /// Its answer was not what the API sends.
    #[error("{0}")]
    Answer(String),
    /// Reading or writing the local log failed.
    #[error("the worker's log: {0}")]
    Local(String),
}

impl ShipError {
    /// Whether the server looked at the batch and refused it (rather than
    /// being out of reach or unwell for now).
    fn refused(&self) -> bool {
        match self {
            ShipError::Server(ClientError::Unreachable { .. }) => false,
            ShipError::Server(ClientError::Other { status, .. }) => *status < 500,
            _ => true,
        }
    }

    /// Say why (a refusal is an error: the batch stays here, unshipped).
    fn log(&self, worker: &str) {
        if !self.refused() {
            tracing::warn!("worker {worker}: shipping waits: {self}");
            return;
        }
        tracing::error!("worker {worker}: the server refused its log's batch: {self}");
        stele_runtime::errln!(
            "stele worker {worker}: shipping refused (kept here, tried again): {self}"
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use stele_attest::Ed25519Signer;
    use stele_audit::{Actor, AuditLog, Event, EventKind, LogOptions};

    /// A batch stops at a key rotation, and carries the boundary
    /// checkpoint both keys signed; the next starts after it.
    #[test]
    fn a_batch_ends_at_a_key_rotation_with_both_keys_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let origin = "w.test.invalid/log";
        let old = Arc::new(Ed25519Signer::generate(origin).unwrap());
        let log = AuditLog::create(&db, old.clone(), LogOptions::default()).unwrap();
        let new = Arc::new(Ed25519Signer::generate(origin).unwrap());
        let r = log
            .rotate_blocking(new.clone(), "yearly".into(), Actor::system())
            .unwrap();
        for _ in 0..3 {
            log.append_blocking(Event::new(EventKind::PolicyLoad, Actor::system()))
                .unwrap();
        }
        log.close().unwrap();
        let b = read_batch(&db, new.as_ref(), 0).unwrap().unwrap();
        assert_eq!(b.leaves.len() as u64, r.seq + 1);
        for k in [&old, &new] {
            Checkpoint::open(&b.note, &k.verifier()).unwrap();
        }
        let next = read_batch(&db, new.as_ref(), r.seq + 1).unwrap().unwrap();
        assert_eq!(next.from, r.seq + 1);
        assert!(next.leaves.len() >= 3);
    }

    /// Bodies go with the leaf that committed them and count toward the
    /// batch's bytes; a redacted one is not sent.
    #[test]
    fn a_batch_carries_the_bodies_it_holds_within_its_bytes() {
        use stele_audit::event::{Disclosure, PayloadInput};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let signer = Arc::new(Ed25519Signer::generate("w.test.invalid/log").unwrap());
        let log = AuditLog::create(&db, signer.clone(), LogOptions::default()).unwrap();
        let big = |fill: u8| {
            Event::new(EventKind::PolicyLoad, Actor::system()).with_payload(PayloadInput {
                role: "args".into(),
                media: "text/plain".into(),
                body: vec![fill; 2 << 20],
                disclosure: Disclosure::CommitmentOnly,
            })
        };
        let a = log.append_blocking(big(b'a')).unwrap().seq;
        let b = log.append_blocking(big(b'b')).unwrap().seq;
        log.append_blocking(big(b'c')).unwrap();
        let store = Store::open(&db).unwrap();
        let c = store.payloads_from(b + 1).unwrap().remove(0).cmt;
        drop(store);
        let text = format!("{}{}", stele_audit::payload::COMMIT_PREFIX, B64.encode(&c));
        log.redact_blocking(vec![text], "test".into(), Actor::system())
            .unwrap();
        log.close().unwrap();
        // Two 2 MiB bodies pass 4 MiB: the first batch ends after the first.
        let first = read_batch(&db, signer.as_ref(), 0).unwrap().unwrap();
        assert_eq!(first.leaves.len() as u64, a + 1);
        assert_eq!(first.payloads.len(), 1);
        assert_eq!(
            B64.decode(&first.payloads[0].body).unwrap(),
            vec![b'a'; 2 << 20]
        );
        let second = read_batch(&db, signer.as_ref(), a + 1).unwrap().unwrap();
        assert_eq!(second.from, b);
        // Entry b's body, not the redacted one of b + 1 (nor the redaction's).
        assert_eq!(second.payloads.len(), 1, "{}", second.leaves.len());
        assert_eq!(
            B64.decode(&second.payloads[0].body).unwrap(),
            vec![b'b'; 2 << 20]
        );
        assert!(second.leaves.len() >= 2);
    }
}
