//! The `log.archive` entry, built by the sequencer itself: the boundary is
//! checked against the writer's own state (nothing else writes the log),
//! and the prefix is removed in the same transaction as the entry
//! (`commit.rs`), so a crash leaves the log whole or archived, never half.

use rusqlite::OptionalExtension;

use super::{Undo, Writer};
use crate::archive::{ArchiveRequest, ArchivedRow};
use crate::error::AuditError;
use crate::event::{Event, EventKind};
use crate::leaf::hash_b64;
use crate::merkle::{Frontier, Hash};

impl Writer {
    /// Check that `0 … through−1` is a sealed prefix and build the entry
    /// and the `archived` row it writes.
    pub(super) fn archive_event(
        &mut self,
        req: ArchiveRequest,
        seq: u64,
        undo: &mut Undo,
    ) -> Result<(Event, ArchivedRow), AuditError> {
        let n = req.through;
        if req.reason.trim().is_empty() {
            return Err(AuditError::Invalid("an archive needs a reason".into()));
        }
        if !is_digest(&req.bundle) {
            return Err(AuditError::Invalid(format!(
                "bundle digest {:?} is not sha256:<64 hex>",
                req.bundle
            )));
        }
        // Judged on the committed state alone: an archive starts its batch.
        if seq != undo.frontier.size() || undo.archive_below.is_some() {
            return Err(AuditError::Invalid(
                "an archive must be the first entry of its commit; try again".into(),
            ));
        }
        let archived = self.archived_size()?;
        if n <= archived {
            return Err(AuditError::Invalid(format!(
                "entries below {n} are already archived (the live log starts at {archived})"
            )));
        }
        if n > seq {
            return Err(AuditError::Invalid(format!(
                "cannot archive {n} entries: the log holds {seq}"
            )));
        }
        self.check_archive_keys(&req.keys, n)?;
        let book = self.hold_book()?.clone();
        let intents: Vec<u64> = self.open_intents.keys().copied().collect();
        crate::archive_boundary::check_boundary(&self.conn, &self.path, n, seq, intents, &book)?;
        let e = self.err();
        let layout = self.tree;
        let node = |level: u8, index: u64| {
            crate::store::read_node(&self.conn, &self.path, layout, level, index)
        };
        let mut nodes = Vec::new();
        for (level, index) in Frontier::positions(n) {
            nodes.push(node(level, index)?);
        }
        let frontier = Frontier::from_parts(n, nodes).ok_or(AuditError::Integrity {
            index: n - 1,
            reason: "cannot rebuild the tree frontier".into(),
        })?;
        let prev: Vec<u8> = self
            .conn
            .query_row(
                "SELECT leaf_hash FROM entries WHERE seq = ?1",
                [(n - 1) as i64],
                |r| r.get(0),
            )
            .map_err(e)?;
        let prev: Hash = prev.try_into().map_err(|_| AuditError::Integrity {
            index: n - 1,
            reason: "stored leaf hash is not 32 bytes".into(),
        })?;
        let row = ArchivedRow {
            size: n,
            root: frontier.root(),
            prev,
            frontier,
            bundle: req.bundle.clone(),
            entry: seq,
        };
        let ev = Event::new(EventKind::LogArchive, req.actor).with_data(serde_json::json!({
            "bundle": req.bundle,
            "prev": hash_b64(&row.prev),
            "reason": req.reason,
            "root": hash_b64(&row.root),
            "through": n,
            "keys": serde_json::to_value(&req.keys).map_err(|e| AuditError::Invalid(e.to_string()))?,
        }));
        undo.archive_below = Some(n);
        Ok((ev, row))
    }

    /// The request's record of the keys below `n` must rebuild, from the
    /// genesis key and this log's own kept checkpoints, exactly the
    /// schedule this writer has at `n`: an archive never records a key
    /// history its verifiers could not replay.
    fn check_archive_keys(
        &self,
        keys: &crate::archive_keys::ArchiveKeys,
        n: u64,
    ) -> Result<(), AuditError> {
        let conn = &self.conn;
        let mut at = |size: u64| {
            conn.query_row(
                "SELECT note FROM checkpoints WHERE size = ?1",
                [size as i64],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(|e| e.to_string())
        };
        let (schedule, _) = keys
            .replay(self.keys.first(), &self.origin, n, &mut at)
            .map_err(|why| AuditError::Invalid(format!("cannot archive below {n}: {why}")))?;
        if schedule != self.keys.at(n) {
            return Err(AuditError::Invalid(format!(
                "cannot archive below {n}: the archive's key record does not give the log's key schedule at that size"
            )));
        }
        Ok(())
    }

    /// Entries below this are archived (0: none).
    pub(super) fn archived_size(&self) -> Result<u64, AuditError> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT max(size) FROM archived", [], |r| r.get(0))
            .optional()
            .map_err(self.err())?
            .flatten();
        Ok(n.unwrap_or(0) as u64)
    }
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
