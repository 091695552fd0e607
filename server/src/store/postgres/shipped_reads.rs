//! [`ShippedReads`] on PostgreSQL: each read in one or two statements
//! (positions and commitments passed as arrays), whatever their number.

use std::collections::HashMap;

use async_trait::async_trait;
use stele_audit::merkle::Hash;

use super::shipping::entry_row;
use super::PgStore;
use crate::error::ServerError;
use crate::store::shipped_reads::{counts, SessionCounts, ShippedReads};
use crate::store::shipping::{stored_leaf_hash, ShippedEntry, ShippedPayload, ENTRY_COLUMNS};

#[async_trait]
impl ShippedReads for PgStore {
    async fn shipped_session_entries(
        &self,
        origin: &str,
        session: &str,
    ) -> Result<Vec<ShippedEntry>, ServerError> {
        let c = self.client().await?;
        c.query(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM shipped_entries \
                 WHERE session = $1 AND origin = $2 ORDER BY seq"
            ),
            &[&session, &origin],
        )
        .await?
        .iter()
        .map(|r| entry_row(r, 0))
        .collect()
    }

    async fn shipped_session_origins(&self, session: &str) -> Result<Vec<String>, ServerError> {
        let c = self.client().await?;
        c.query(
            "SELECT DISTINCT origin FROM shipped_entries WHERE session = $1 ORDER BY origin",
            &[&session],
        )
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    async fn shipped_session_counts(
        &self,
        sessions: &[String],
    ) -> Result<HashMap<String, SessionCounts>, ServerError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT session, count(*), \
                 count(*) FILTER (WHERE effect = 'deny'), \
                 count(*) FILTER (WHERE kind LIKE 'approval.%') \
                 FROM shipped_entries WHERE session = ANY($1) GROUP BY session",
                &[&sessions],
            )
            .await?;
        let mut out = HashMap::new();
        for r in rows {
            let s: String = r.try_get(0)?;
            out.insert(s, counts(r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
        }
        Ok(out)
    }

    async fn shipped_sessions_between(
        &self,
        since: &str,
        until: &str,
    ) -> Result<Vec<String>, ServerError> {
        let c = self.client().await?;
        c.query(
            "SELECT DISTINCT session FROM shipped_entries \
             WHERE ts >= $1 AND ts < $2 AND session IS NOT NULL ORDER BY session",
            &[&since, &until],
        )
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    async fn shipped_payloads(
        &self,
        origin: &str,
        cmts: &[Vec<u8>],
    ) -> Result<Vec<ShippedPayload>, ServerError> {
        let c = self.client().await?;
        c.query(
            "SELECT cmt, seq, media, salt, body FROM shipped_payloads \
             WHERE origin = $1 AND cmt = ANY($2) ORDER BY seq, cmt",
            &[&origin, &cmts],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(ShippedPayload {
                cmt: r.try_get(0)?,
                seq: r.try_get(1)?,
                media: r.try_get(2)?,
                salt: r.try_get(3)?,
                body: r.try_get(4)?,
            })
        })
        .collect()
    }

    async fn shipped_nodes(
        &self,
        origin: &str,
        positions: &[(u8, u64)],
    ) -> Result<HashMap<(u8, u64), Hash>, ServerError> {
        let mut seqs: Vec<i64> = Vec::new();
        let (mut levels, mut idxs): (Vec<i16>, Vec<i64>) = (Vec::new(), Vec::new());
        for &(level, idx) in positions {
            let Ok(i) = i64::try_from(idx) else { continue };
            if level == 0 {
                seqs.push(i);
            } else {
                levels.push(i16::from(level));
                idxs.push(i);
            }
        }
        let c = self.client().await?;
        let mut out = HashMap::with_capacity(positions.len());
        if !seqs.is_empty() {
            for r in c
                .query(
                    "SELECT seq, leaf_hash, CASE WHEN length(leaf_hash) = 32 THEN NULL ELSE leaf END \
                     FROM shipped_entries WHERE origin = $1 AND seq = ANY($2)",
                    &[&origin, &seqs],
                )
                .await?
            {
                let (seq, stored, leaf): (i64, Option<Vec<u8>>, Option<Vec<u8>>) =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                out.insert(
                    (0, seq as u64),
                    stored_leaf_hash(stored, &leaf.unwrap_or_default()),
                );
            }
        }
        if !levels.is_empty() {
            for r in c
                .query(
                    "SELECT n.level, n.idx, n.hash FROM shipped_nodes n \
                     JOIN unnest($2::smallint[], $3::bigint[]) AS p(level, idx) \
                       ON n.level = p.level AND n.idx = p.idx \
                     WHERE n.origin = $1",
                    &[&origin, &levels, &idxs],
                )
                .await?
            {
                let (level, idx, hash): (i16, i64, Vec<u8>) =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                if let (Ok(level), Ok(hash)) =
                    (u8::try_from(level), Hash::try_from(hash.as_slice()))
                {
                    out.insert((level, idx as u64), hash);
                }
            }
        }
        Ok(out)
    }
}
