//! The group commit's transaction: entries, tree nodes, payloads, derived
//! tables, pending `meta` notes and the signed checkpoint, then COMMIT.

use std::sync::Arc;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use stele_attest::Checkpoint;

use super::{Built, Writer};
use crate::error::AuditError;
use crate::event::{EventKind, IntentRole};

impl Writer {
    /// Insert everything and the signed checkpoint, then COMMIT (fsync).
    pub(super) fn write(
        &mut self,
        built: &[Result<Built, AuditError>],
    ) -> Result<Arc<str>, AuditError> {
        let path = self.path.clone();
        let e = AuditError::sqlite(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        {
            let mut ins_entry = tx
                .prepare_cached("INSERT INTO entries(seq, leaf, leaf_hash) VALUES (?1, ?2, ?3)")
                .map_err(&e)?;
            let mut ins_node = tx
                .prepare_cached(match self.tree {
                    crate::schema::TreeLayout::Tlog => {
                        "INSERT INTO tree_nodes(id, h) VALUES (?1, ?2)"
                    }
                    crate::schema::TreeLayout::Legacy => {
                        "INSERT INTO tree_hashes(id, h) VALUES (?1, ?2)"
                    }
                })
                .map_err(&e)?;
            let mut ins_payload = tx
                .prepare_cached("INSERT INTO payloads(cmt, seq, media, size, salt, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .map_err(&e)?;
            let mut redact = tx
                .prepare_cached("UPDATE payloads SET salt = NULL, body = NULL, redacted_seq = ?2 WHERE cmt = ?1")
                .map_err(&e)?;
            let mut ins_intent = tx
                .prepare_cached("INSERT INTO open_intents(seq, kind, session, leaf_hash) VALUES (?1, ?2, ?3, ?4)")
                .map_err(&e)?;
            let mut ins_hold = tx
                .prepare_cached("INSERT INTO hold_entries(seq) VALUES (?1)")
                .map_err(&e)?;
            let mut del_intent = tx
                .prepare_cached("DELETE FROM open_intents WHERE seq = ?1")
                .map_err(&e)?;
            let mut up_session = tx
                .prepare_cached(
                    "INSERT INTO sessions(id, n, head, ended, first, last) VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
                     ON CONFLICT(id) DO UPDATE SET n = excluded.n, head = excluded.head, ended = excluded.ended, last = excluded.last",
                )
                .map_err(&e)?;
            // Before `sessions` is updated: its `last` is then the
            // session's previous entry.
            let mut ins_session_link = tx
                .prepare_cached(
                    "INSERT INTO session_links(seq, prev) VALUES (?1, (SELECT last FROM sessions WHERE id = ?2))",
                )
                .map_err(&e)?;
            for b in built.iter().flatten() {
                ins_entry
                    .execute(params![b.seq as i64, b.leaf, &b.hash[..]])
                    .map_err(&e)?;
                for n in &b.nodes {
                    ins_node
                        .execute(params![self.tree.row_id(n.level, n.index), &n.hash[..]])
                        .map_err(&e)?;
                }
                for p in &b.payloads {
                    ins_payload
                        .execute(params![
                            &p.cmt[..],
                            b.seq as i64,
                            p.reference.media,
                            p.body.len() as i64,
                            &p.salt[..],
                            p.body
                        ])
                        .map_err(&e)?;
                }
                for c in &b.redactions {
                    // In the entry's own transaction: never a body gone
                    // without its entry, whatever happens next.
                    redact.execute(params![&c[..], b.seq as i64]).map_err(&e)?;
                }
                if b.hold_entry {
                    ins_hold.execute([b.seq as i64]).map_err(&e)?;
                }
                if let Some(row) = &b.archive {
                    // In the entry's own transaction: the prefix is gone
                    // only with its entry and row, whatever happens next.
                    remove_prefix(&tx, row, self.signer.as_ref(), &self.keys, &self.origin)
                        .map_err(|x| match x {
                            PrefixError::Sql(s) => e(s),
                            PrefixError::Audit(a) => a,
                        })?;
                }
                if b.kind.role() == IntentRole::Intent {
                    let sid = b.session.as_ref().map(|s| &s.0);
                    ins_intent
                        .execute(params![b.seq as i64, b.kind.as_str(), sid, &b.hash[..]])
                        .map_err(&e)?;
                }
                if let Some(intent) = b.closes {
                    del_intent.execute([intent as i64]).map_err(&e)?;
                }
                if let Some((id, n)) = &b.session {
                    let ended = matches!(
                        b.kind,
                        EventKind::SessionEnd | EventKind::SessionInterrupted
                    );
                    // The index by session (derived, like `sessions`).
                    ins_session_link
                        .execute(params![b.seq as i64, id])
                        .map_err(&e)?;
                    up_session
                        .execute(params![
                            id,
                            *n as i64,
                            &b.hash[..],
                            ended as i64,
                            b.seq as i64
                        ])
                        .map_err(&e)?;
                }
            }
        }
        for (k, v) in std::mem::take(&mut self.pending_meta) {
            tx.execute(
                "INSERT INTO meta(k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                params![k, v],
            )
            .map_err(&e)?;
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size: self.frontier.size(),
            root: self.frontier.root(),
        };
        let mut signed = cp.sign(self.signer.as_ref())?;
        if let Some(new) = &self.co_signer {
            // A rotation's boundary: the new key signs too, and this
            // checkpoint is kept (and exported) for good.
            signed.add_signature(new.as_ref())?;
            tx.execute(
                "INSERT INTO checkpoints(size, note, published) VALUES (?1, ?2, 1) \
                 ON CONFLICT(size) DO UPDATE SET note = excluded.note, published = 1",
                params![cp.size as i64, signed.to_text()],
            )
            .map_err(&e)?;
        }
        let note = signed.to_text();
        // The newest checkpoint replaces the one before: a stored
        // checkpoint per commit added nothing a verifier needs (it
        // recomputes every root) and made verification check a signature
        // every few entries; and an attacker holding only the file now has
        // no signed checkpoint to cut the log back to.
        tx.execute(
            "INSERT INTO head(id, size, note) VALUES (1, ?1, ?2) \
             ON CONFLICT(id) DO UPDATE SET size = excluded.size, note = excluded.note",
            params![cp.size as i64, note],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(Arc::from(note))
    }
    /// Write the pending `meta` notes now, in a transaction of their own
    /// (when no entry is about to carry them).
    pub(crate) fn flush_meta(&mut self) -> Result<(), AuditError> {
        if self.pending_meta.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let e = AuditError::sqlite(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        for (k, v) in std::mem::take(&mut self.pending_meta) {
            tx.execute(
                "INSERT INTO meta(k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                params![k, v],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)
    }
}

impl Writer {
    /// The log was found altered (`check` names which check): commit an
    /// `audit.alert` entry saying what and where, with a signed
    /// "tampered" full-check marker in the same transaction, then refuse
    /// every further append (and, through the marker, every later start).
    pub(crate) fn record_alteration(
        &mut self,
        check: &str,
        index: Option<u64>,
        reason: &str,
        actor: crate::event::Actor,
    ) -> Result<super::Receipt, AuditError> {
        use crate::marker::{Finding, FullCheck, FULL_CHECK};
        let mut data = serde_json::json!({
            "check": check,
            "reason": reason,
            "size": self.frontier.size(),
        });
        if let (Some(i), Some(o)) = (index, data.as_object_mut()) {
            o.insert("index".into(), i.into());
        }
        let marker = FullCheck {
            size: self.frontier.size(),
            root: self.frontier.root(),
            at: crate::marker::now_secs(),
            finding: Finding::Tampered(index),
        }
        .sign(self.signer.as_ref())?;
        self.pending_meta.push((FULL_CHECK, marker));
        let ev = crate::event::Event::new(EventKind::AuditAlert, actor).with_data(data);
        let r = self
            .commit_batch(vec![super::Work::Append(Box::new(ev))])
            .pop()
            .unwrap_or(Err(AuditError::Stopped(None)));
        let at = index.map(|i| format!(" at index {i}")).unwrap_or_default();
        self.refused = Some(format!(
            "its {check} verification found it altered{at}: {reason}"
        ));
        r
    }
}

/// Why removing an archived prefix failed.
enum PrefixError {
    Sql(rusqlite::Error),
    Audit(AuditError),
}

impl From<rusqlite::Error> for PrefixError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

/// Keep the `archived` row and the signed checkpoint at its size, then
/// delete the prefix's entries, payloads and derived rows (the `archived`
/// row goes first: the delete triggers allow nothing below it otherwise).
/// The tree's internal nodes stay. The checkpoint at the size is signed
/// now if the current key signs that size; a size an earlier key signed
/// must already have its checkpoint (kept when it was signed).
fn remove_prefix(
    tx: &rusqlite::Transaction<'_>,
    row: &crate::archive::ArchivedRow,
    signer: &dyn stele_attest::Signer,
    keys: &crate::keys::KeySchedule,
    origin: &str,
) -> Result<(), PrefixError> {
    let n = row.size as i64;
    let current = signer.verifier().to_string();
    tx.execute(
        "INSERT INTO archived(size, root, prev, frontier, bundle, entry) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![n, &row.root[..], &row.prev[..], row.frontier_bytes(), row.bundle, row.entry as i64],
    )?;
    let refuse = |reason: String| {
        PrefixError::Audit(AuditError::Integrity {
            index: row.size - 1,
            reason,
        })
    };
    if keys.keys_at(row.size).contains(&current.as_str()) {
        let note = Checkpoint {
            origin: origin.to_string(),
            size: row.size,
            root: row.root,
        }
        .sign(signer)
        .map_err(|x| PrefixError::Audit(x.into()))?
        .to_text();
        // Ed25519 is deterministic: a checkpoint already kept for `n` (one
        // sent to witnesses, or the archive bundle's own) is this same note
        // (or, at a rotation boundary, the note both keys signed).
        tx.execute(
            "INSERT INTO checkpoints(size, note) VALUES (?1, ?2) ON CONFLICT(size) DO NOTHING",
            params![n, note],
        )?;
    }
    let kept: Option<String> = tx
        .query_row("SELECT note FROM checkpoints WHERE size = ?1", [n], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(kept) = kept else {
        return Err(refuse(format!(
            "no checkpoint is kept for size {n}, which an earlier key signs: archive through a size whose checkpoint is kept (a key rotation's boundary, or after the newest rotation)"
        )));
    };
    match crate::keys::open_checkpoint(&kept, keys, &[]) {
        Ok(cp) if cp.size == row.size && cp.root == row.root => {}
        Ok(_) => {
            return Err(refuse(format!(
                "the checkpoint kept for size {n} differs from the archived root"
            )))
        }
        Err(why) => {
            return Err(refuse(format!(
                "the checkpoint kept for size {n} does not verify: {why}"
            )))
        }
    }
    tx.execute_batch(&format!(
        "DELETE FROM payloads WHERE seq < {n};
         DELETE FROM session_links WHERE seq < {n};
         DELETE FROM sessions WHERE last < {n};
         DELETE FROM hold_entries WHERE seq < {n};
         DELETE FROM open_intents WHERE seq < {n};
         DELETE FROM entries WHERE seq < {n};"
    ))?;
    Ok(())
}
