//! Entries that erase payload bodies (`redaction`, `payload.expiry`) and
//! that place and release legal holds, built by the sequencer itself so
//! that their rules hold for every caller: an erased body was present and
//! is erased once, no hold in force covers it, and a hold's release needs
//! two different principals. Each erasure is written in the same
//! transaction as its entry (`commit.rs`): no body is ever gone without its
//! entry, and a crash leaves both or neither.

use rusqlite::{params, OptionalExtension};

use super::{Undo, Writer};
use crate::error::AuditError;
use crate::event::{Actor, Event, EventKind};
use crate::holds::{EntryAttrs, HoldBook, HoldScope};
use crate::leaf::Leaf;
use crate::merkle::Hash;
use crate::payload::{commit_text, parse_commit};

/// What a `payload.expiry` entry erases, and under which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryRequest {
    /// The commitments (`sha256s:…`).
    pub commits: Vec<String>,
    /// The retention class.
    pub class: String,
    /// Its period as configured (`12mo`).
    pub retention: String,
    /// The cut-off (leaf time): every body named was made before it.
    pub before: String,
    /// `sha256:<hex>` of the configuration the class came from.
    pub config: String,
    /// Who ran the expiry.
    pub actor: Actor,
}

/// Kinds only the log's own calls write (a plain append of one is refused,
/// so no session or tool can fake an expiry, a hold or an archive).
pub(crate) fn dedicated(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Redaction
            | EventKind::PayloadExpiry
            | EventKind::HoldPlace
            | EventKind::HoldRelease
            | EventKind::LogArchive
    )
}

impl Writer {
    pub(super) fn redaction_event(
        &mut self,
        commits: Vec<String>,
        reason: String,
        actor: Actor,
        seq: u64,
        undo: &Undo,
    ) -> Result<(Event, Vec<Hash>), AuditError> {
        if reason.trim().is_empty() {
            return Err(AuditError::Invalid("a redaction needs a reason".into()));
        }
        let raw = self.erasable(&commits, seq, undo)?;
        let names: Vec<String> = raw.iter().map(commit_text).collect();
        let ev = Event::new(EventKind::Redaction, actor)
            .with_data(serde_json::json!({ "commits": names, "reason": reason }));
        Ok((ev, raw))
    }

    pub(super) fn expiry_event(
        &mut self,
        req: ExpiryRequest,
        seq: u64,
        undo: &Undo,
    ) -> Result<(Event, Vec<Hash>), AuditError> {
        let raw = self.erasable(&req.commits, seq, undo)?;
        for h in &raw {
            let a = self.maker_attrs(h)?;
            if a.ts >= req.before {
                return Err(AuditError::Invalid(format!(
                    "payload {} was made at {}, not before the cut-off {}",
                    commit_text(h),
                    a.ts,
                    req.before
                )));
            }
        }
        let names: Vec<String> = raw.iter().map(commit_text).collect();
        let ev = Event::new(EventKind::PayloadExpiry, req.actor).with_data(serde_json::json!({
            "before": req.before,
            "class": req.class,
            "commits": names,
            "config": req.config,
            "retention": req.retention,
        }));
        Ok((ev, raw))
    }

    /// The commitments, each stored with its body, erased by nothing
    /// before (nor earlier in this batch), and held by no hold in force.
    fn erasable(
        &mut self,
        commits: &[String],
        seq: u64,
        undo: &Undo,
    ) -> Result<Vec<Hash>, AuditError> {
        if commits.is_empty() {
            return Err(AuditError::Invalid("no payload to erase".into()));
        }
        let mut raw = Vec::with_capacity(commits.len());
        for c in commits {
            let h = parse_commit(c)
                .ok_or_else(|| AuditError::Invalid(format!("{c:?} is not a commitment")))?;
            let body: Option<Option<Vec<u8>>> = self
                .conn
                .query_row("SELECT body FROM payloads WHERE cmt = ?1", [&h[..]], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(self.err())?;
            match body {
                None => return Err(AuditError::NotFound(format!("payload {c}"))),
                Some(None) => {
                    return Err(AuditError::Invalid(format!(
                        "payload {c} is already erased"
                    )))
                }
                Some(Some(_)) if undo.batch_erased.contains(&h) || raw.contains(&h) => {
                    return Err(AuditError::Invalid(format!(
                        "payload {c} is already being erased"
                    )))
                }
                Some(Some(_)) => {}
            }
            let attrs = self.maker_attrs(&h)?;
            if let Some(hold) = self.hold_book()?.holding_at(seq, &attrs) {
                return Err(AuditError::Held(format!(
                    "payload {c} is under legal hold {} ({}: {}); it cannot be erased until the hold is released",
                    hold.id, hold.scope, hold.reason
                )));
            }
            raw.push(h);
        }
        Ok(raw)
    }

    /// Who, when and in which session the entry that made payload `h` was.
    fn maker_attrs(&self, h: &Hash) -> Result<EntryAttrs, AuditError> {
        let leaf: Vec<u8> = self
            .conn
            .query_row(
                "SELECT e.leaf FROM payloads p JOIN entries e ON e.seq = p.seq WHERE p.cmt = ?1",
                [&h[..]],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        EntryAttrs::of_leaf(&leaf).map_err(|e| AuditError::Integrity {
            index: 0,
            reason: format!("the entry that made payload {}: {e}", commit_text(h)),
        })
    }

    /// The legal holds, read from the `hold.*` entries the first time.
    pub(crate) fn hold_book(&mut self) -> Result<&HoldBook, AuditError> {
        if self.holds.is_none() {
            let book = load_holds(&self.conn, &self.path)?;
            self.holds = Some(book);
        }
        Ok(self.holds.get_or_insert_with(HoldBook::default))
    }

    pub(super) fn place_hold_event(
        &mut self,
        scope: HoldScope,
        reason: String,
        config: Option<String>,
        actor: Actor,
    ) -> Result<Event, AuditError> {
        if reason.trim().is_empty() {
            return Err(AuditError::Invalid("a legal hold needs a reason".into()));
        }
        let mut data = scope.to_data();
        data.insert("reason".into(), reason.into());
        if let Some(c) = config {
            data.insert("config".into(), c.into());
        }
        Ok(Event::new(EventKind::HoldPlace, actor).with_data(serde_json::Value::Object(data)))
    }

    pub(super) fn release_hold_event(
        &mut self,
        hold: u64,
        reason: String,
        config: Option<String>,
        actor: Actor,
        seq: u64,
    ) -> Result<Event, AuditError> {
        if reason.trim().is_empty() {
            return Err(AuditError::Invalid(
                "releasing a legal hold needs a reason".into(),
            ));
        }
        if hold >= seq {
            return Err(AuditError::NotFound(format!("legal hold {hold}")));
        }
        let approval = self
            .hold_book()?
            .next_approval(hold, &actor.principal)
            .map_err(AuditError::Denied)?;
        let mut data = serde_json::json!({
            "approval": approval.number(),
            "hold": hold,
            "reason": reason,
        });
        if let (Some(c), Some(o)) = (config, data.as_object_mut()) {
            o.insert("config".into(), c.into());
        }
        Ok(Event::new(EventKind::HoldRelease, actor).with_data(data))
    }

    /// Apply a validated `hold.*` leaf to the book (saved in `undo` first).
    pub(super) fn record_hold(
        &mut self,
        kind: EventKind,
        seq: u64,
        leaf: &Leaf,
        undo: &mut Undo,
    ) -> Result<(), AuditError> {
        let before = self.hold_book()?.clone();
        let data = leaf
            .data
            .as_ref()
            .and_then(|d| d.as_object())
            .cloned()
            .unwrap_or_default();
        let mut book = before.clone();
        book.replay(kind, seq, &leaf.actor.principal, &data)
            .map_err(AuditError::Denied)?;
        undo.holds.get_or_insert(Some(before));
        self.holds = Some(book);
        Ok(())
    }
}

/// Replay the log's `hold.*` entries (indexed in `hold_entries`).
pub(crate) fn load_holds(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
) -> Result<HoldBook, AuditError> {
    let e = AuditError::sqlite(path);
    let mut st = conn
        .prepare(
            "SELECT e.seq, e.leaf FROM hold_entries h JOIN entries e ON e.seq = h.seq ORDER BY e.seq",
        )
        .map_err(&e)?;
    let rows = st
        .query_map(params![], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(&e)?;
    let mut book = HoldBook::default();
    for row in rows {
        let (seq, bytes) = row.map_err(&e)?;
        let bad = |reason: String| AuditError::Integrity { index: seq, reason };
        let leaf = Leaf::parse_canonical(&bytes).map_err(|x| bad(x.to_string()))?;
        let data = leaf
            .data
            .as_ref()
            .and_then(|d| d.as_object())
            .cloned()
            .unwrap_or_default();
        book.replay(leaf.kind, seq, &leaf.actor.principal, &data)
            .map_err(bad)?;
    }
    Ok(book)
}
