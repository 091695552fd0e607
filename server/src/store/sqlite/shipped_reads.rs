//! [`ShippedReads`] on SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _};
use stele_audit::merkle::Hash;

use super::shipping::entry_row;
use super::SqliteStore;
use crate::error::ServerError;
use crate::store::shipped_reads::{counts, SessionCounts, ShippedReads};
use crate::store::shipping::{stored_leaf_hash, ShippedEntry, ShippedPayload, ENTRY_COLUMNS};

#[async_trait]
impl ShippedReads for SqliteStore {
    async fn shipped_session_entries(
        &self,
        origin: &str,
        session: &str,
    ) -> Result<Vec<ShippedEntry>, ServerError> {
        let (origin, session) = (origin.to_string(), session.to_string());
        self.call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM shipped_entries \
                 WHERE session = ?1 AND origin = ?2 ORDER BY seq"
            ))?;
            let rows = st.query_map(params![session, origin], |r| entry_row(r, 0))?;
            rows.collect()
        })
        .await
    }

    async fn shipped_session_origins(&self, session: &str) -> Result<Vec<String>, ServerError> {
        let session = session.to_string();
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT DISTINCT origin FROM shipped_entries WHERE session = ?1 ORDER BY origin",
            )?;
            let rows = st.query_map(params![session], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn shipped_session_counts(
        &self,
        sessions: &[String],
    ) -> Result<HashMap<String, SessionCounts>, ServerError> {
        let sessions = sessions.to_vec();
        self.call(move |c| {
            // One indexed look-up each: local, so no round trips to save.
            let mut st = c.prepare_cached(
                "SELECT count(*), coalesce(sum(effect = 'deny'), 0), \
                 coalesce(sum(kind LIKE 'approval.%'), 0) \
                 FROM shipped_entries WHERE session = ?1",
            )?;
            let mut out = HashMap::new();
            for s in &sessions {
                let (n, d, a): (i64, i64, i64) =
                    st.query_row(params![s], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                if n > 0 {
                    out.insert(s.clone(), counts(n, d, a));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn shipped_sessions_between(
        &self,
        since: &str,
        until: &str,
    ) -> Result<Vec<String>, ServerError> {
        let (since, until) = (since.to_string(), until.to_string());
        self.call(move |c| {
            let mut st = c.prepare(
                "SELECT DISTINCT session FROM shipped_entries \
                 WHERE ts >= ?1 AND ts < ?2 AND session IS NOT NULL ORDER BY session",
            )?;
            let rows = st.query_map(params![since, until], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn shipped_payloads(
        &self,
        origin: &str,
        cmts: &[Vec<u8>],
    ) -> Result<Vec<ShippedPayload>, ServerError> {
        let (origin, cmts) = (origin.to_string(), cmts.to_vec());
        self.call(move |c| {
            // One indexed look-up each: local, so no round trips to save.
            let mut st = c.prepare_cached(
                "SELECT cmt, seq, media, salt, body FROM shipped_payloads \
                 WHERE origin = ?1 AND cmt = ?2",
            )?;
            let mut out = Vec::new();
            for cmt in &cmts {
                let p = st
                    .query_row(params![origin, cmt], |r| {
                        Ok(ShippedPayload {
                            cmt: r.get(0)?,
                            seq: r.get(1)?,
                            media: r.get(2)?,
                            salt: r.get(3)?,
                            body: r.get(4)?,
                        })
                    })
                    .optional()?;
                out.extend(p);
            }
            Ok(out)
        })
        .await
    }

    async fn shipped_nodes(
        &self,
        origin: &str,
        positions: &[(u8, u64)],
    ) -> Result<HashMap<(u8, u64), Hash>, ServerError> {
        let (origin, positions) = (origin.to_string(), positions.to_vec());
        self.call(move |c| {
            let mut leaves = c.prepare_cached(
                "SELECT leaf_hash, CASE WHEN length(leaf_hash) = 32 THEN NULL ELSE leaf END \
                 FROM shipped_entries WHERE origin = ?1 AND seq = ?2",
            )?;
            let mut nodes = c.prepare_cached(
                "SELECT hash FROM shipped_nodes WHERE origin = ?1 AND level = ?2 AND idx = ?3",
            )?;
            let mut out = HashMap::with_capacity(positions.len());
            for &(level, idx) in &positions {
                let Ok(i) = i64::try_from(idx) else { continue };
                let hash = if level == 0 {
                    leaves
                        .query_row(params![origin, i], |r| {
                            let stored: Option<Vec<u8>> = r.get(0)?;
                            let leaf: Option<Vec<u8>> = r.get(1)?;
                            Ok(stored_leaf_hash(stored, &leaf.unwrap_or_default()))
                        })
                        .optional()?
                } else {
                    nodes
                        .query_row(params![origin, level, i], |r| r.get::<_, Vec<u8>>(0))
                        .optional()?
                        .and_then(|h| Hash::try_from(h.as_slice()).ok())
                };
                if let Some(h) = hash {
                    out.insert((level, idx), h);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use stele_audit::merkle::{leaf_hash, verify_inclusion, Frontier};

    use super::*;
    use crate::shipped::proofs::inclusion_proofs;
    use crate::store::migrations::MIGRATIONS;
    use crate::store::shipping::ShippingStore as _;

    /// Entries stored before schema 10 (no leaf hash, no nodes): after the
    /// migration, their leaf hashes are computed when read and their
    /// proofs computed from them, verifying against the root.
    #[tokio::test]
    async fn a_log_shipped_before_schema_10_still_gives_verifying_proofs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.db");
        let leaves: Vec<Vec<u8>> = (0..11)
            .map(|i| format!("{{\"seq\":{i}}}").into_bytes())
            .collect();
        {
            let c = rusqlite::Connection::open(&p).unwrap();
            for sql in &MIGRATIONS[..9] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 9).unwrap();
            for (i, l) in leaves.iter().enumerate() {
                c.execute(
                    "INSERT INTO shipped_entries (origin, seq, leaf, ts, session, principal, \
                     teams, kind) VALUES ('o', ?1, ?2, 't', 's1', 'p', ',', 'k')",
                    params![i as i64, l],
                )
                .unwrap();
            }
        }
        let s = SqliteStore::open(&p).unwrap();
        assert_eq!(s.version().unwrap() as usize, MIGRATIONS.len());
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let got = s.shipped_entries("o", 0, 100).await.unwrap();
        let read: Vec<Hash> = got.iter().map(|e| e.leaf_hash).collect();
        assert_eq!(read, hashes);
        let s1 = s.shipped_session_entries("o", "s1").await.unwrap();
        assert_eq!(s1, got);
        let mut f = Frontier::new();
        hashes.iter().for_each(|h| f.push(*h, |_| {}));
        let indexes: Vec<u64> = (0..11).collect();
        let proofs = inclusion_proofs(&s, "o", &indexes, 11).await.unwrap();
        for (i, proof) in proofs.iter().enumerate() {
            verify_inclusion(&hashes[i], i as u64, 11, proof, &f.root())
                .unwrap_or_else(|e| panic!("index {i}: {e}"));
        }
    }
}
