//! Which payload bodies are past their retention ([`plan`]) and erasing
//! them ([`execute`]): one `payload.expiry` entry per class and chunk, each
//! written with its erasures in one transaction. Running it again finds only
//! what is still present, so an interrupted run (even `kill -9`) is finished
//! by the next; a held body is never named.

use time::OffsetDateTime;

use crate::error::AuditError;
use crate::event::Actor;
use crate::holds::HoldBook;
use crate::payload::commit_text;
use crate::retention::{leaf_time, MakerAttrs, Retention};
use crate::store::Store;
use crate::writer::erasure::ExpiryRequest;
use crate::{AuditLog, Receipt};

/// Most commitments one `payload.expiry` entry names (53 bytes each: far
/// below the 64 KiB leaf limit).
pub const CHUNK: usize = 400;

/// A payload past its retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Its commitment (`sha256s:…`).
    pub commit: String,
    /// The entry that made it.
    pub maker: u64,
    /// When.
    pub ts: String,
    /// Its session, if any.
    pub session: Option<String>,
}

/// One class: its cut-off and what is due under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassPlan {
    /// Class name.
    pub class: String,
    /// Its period as configured.
    pub retention: String,
    /// Bodies made before this time are past it.
    pub before: String,
    /// Due and not held.
    pub due: Vec<Due>,
    /// Due but under a legal hold (id): kept.
    pub held: Vec<(Due, u64)>,
}

/// What an expiry run would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The time the cut-offs are computed from.
    pub now: String,
    /// Per class that has anything due or held.
    pub classes: Vec<ClassPlan>,
    /// Bodies present whose entry maps to no class (kept).
    pub unclassed: u64,
    /// `sha256:<hex>` of the configuration.
    pub config: String,
}

/// Find every present body past its class's retention at `now`.
pub fn plan(store: &Store, r: &Retention, now: OffsetDateTime) -> Result<Plan, AuditError> {
    let mut classes: Vec<ClassPlan> = Vec::new();
    for c in r.classes() {
        classes.push(ClassPlan {
            class: c.name.clone(),
            retention: c.written.clone(),
            before: leaf_time(c.period.cutoff(now).map_err(AuditError::Invalid)?),
            due: Vec::new(),
            held: Vec::new(),
        });
    }
    let holds = holds_of(store)?;
    let conn = store.conn();
    let e = AuditError::sqlite(store.path());
    let mut st = conn
        .prepare(
            "SELECT p.cmt, p.seq, e.leaf FROM payloads p JOIN entries e ON e.seq = p.seq \
             WHERE p.body IS NOT NULL ORDER BY p.seq",
        )
        .map_err(&e)?;
    let mut rows = st.query([]).map_err(&e)?;
    let mut unclassed = 0;
    while let Some(row) = rows.next().map_err(&e)? {
        let cmt: Vec<u8> = row.get(0).map_err(&e)?;
        let seq = row.get::<_, i64>(1).map_err(&e)? as u64;
        let leaf = row.get_ref(2).and_then(|v| Ok(v.as_blob()?)).map_err(&e)?;
        let a = MakerAttrs::of_leaf(leaf)
            .map_err(|reason| AuditError::Integrity { index: seq, reason })?;
        let Some(class) = r.class_for(&a.teams) else {
            unclassed += 1;
            continue;
        };
        let Some(cp) = classes.iter_mut().find(|c| c.class == class.name) else {
            continue;
        };
        if a.ts >= cp.before {
            continue;
        }
        let cmt: crate::merkle::Hash =
            cmt.as_slice()
                .try_into()
                .map_err(|_| AuditError::Integrity {
                    index: seq,
                    reason: "payload key is not 32 bytes".into(),
                })?;
        let due = Due {
            commit: commit_text(&cmt),
            maker: seq,
            ts: a.ts.clone(),
            session: a.hold.session.clone(),
        };
        match holds.holding_at(u64::MAX, &a.hold) {
            Some(h) => cp.held.push((due, h.id)),
            None => cp.due.push(due),
        }
    }
    classes.retain(|c| !c.due.is_empty() || !c.held.is_empty());
    Ok(Plan {
        now: leaf_time(now),
        classes,
        unclassed,
        config: r.config_digest.clone(),
    })
}

/// The log's legal holds as its entries left them (none in a log older
/// than the `hold_entries` index).
pub fn holds_of(store: &Store) -> Result<HoldBook, AuditError> {
    let has: i64 = store
        .conn()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'hold_entries'",
            [],
            |r| r.get(0),
        )
        .map_err(AuditError::sqlite(store.path()))?;
    if has == 0 {
        return Ok(HoldBook::default());
    }
    crate::writer::erasure::load_holds(store.conn(), store.path())
}

/// Erase what `plan` found due, [`CHUNK`] commitments per entry; returns
/// the receipts of the `payload.expiry` entries. Stops at the first
/// refusal (e.g. a hold placed since the plan was made): what was written
/// before stays, and a new plan takes up the rest.
pub fn execute(log: &AuditLog, plan: &Plan, actor: &Actor) -> Result<Vec<Receipt>, AuditError> {
    let mut out = Vec::new();
    for c in &plan.classes {
        for chunk in c.due.chunks(CHUNK) {
            let r = log.expire_blocking(ExpiryRequest {
                commits: chunk.iter().map(|d| d.commit.clone()).collect(),
                class: c.class.clone(),
                retention: c.retention.clone(),
                before: c.before.clone(),
                config: plan.config.clone(),
                actor: actor.clone(),
            })?;
            out.push(r);
        }
    }
    Ok(out)
}
