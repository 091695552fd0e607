//! [`ShippingStore`] on PostgreSQL: the `shipped_logs`, `shipped_entries`,
//! `shipped_payloads` and `shipped_nodes` tables, shared by every server on
//! the database. A
//! batch is stored under a row lock on its origin (a first batch by its
//! insert): two servers storing the same batch keep it once.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::PgStore;
use crate::error::ServerError;
use crate::store::shipping::{
    search_sql, stored_leaf_hash, Appended, ShippedEntry, ShippedLog, ShippedParts, ShippedQuery,
    ShippingStore, ENTRY_COLUMNS, LOG_COLUMNS, SEARCH_COLUMNS,
};

fn log_row(r: &Row) -> Result<ShippedLog, ServerError> {
    let boot: Option<String> = r.try_get(8)?;
    let ts: Option<String> = r.try_get(9)?;
    Ok(ShippedLog {
        origin: r.try_get(0)?,
        verifier: r.try_get(1)?,
        account: r.try_get(2)?,
        worker: r.try_get(3)?,
        size: r.try_get(4)?,
        root: r.try_get(5)?,
        frontier: r.try_get(6)?,
        last_hash: r.try_get(7)?,
        last_time: boot.zip(ts),
        checkpoint: r.try_get(10)?,
        updated: r.try_get(11)?,
        revoked_at: r.try_get(12)?,
    })
}

/// An entry read from [`ENTRY_COLUMNS`] starting at column `at`.
pub(super) fn entry_row(r: &Row, at: usize) -> Result<ShippedEntry, ServerError> {
    let leaf: Vec<u8> = r.try_get(at + 1)?;
    Ok(ShippedEntry {
        seq: r.try_get(at)?,
        ts: r.try_get(at + 2)?,
        session: r.try_get(at + 3)?,
        principal: r.try_get(at + 4)?,
        teams: r.try_get(at + 5)?,
        kind: r.try_get(at + 6)?,
        effect: r.try_get(at + 7)?,
        path: r.try_get(at + 8)?,
        leaf_hash: stored_leaf_hash(r.try_get(at + 9)?, &leaf),
        leaf,
    })
}

#[async_trait]
impl ShippingStore for PgStore {
    async fn shipped_log(&self, origin: &str) -> Result<Option<ShippedLog>, ServerError> {
        let c = self.client().await?;
        c.query_opt(
            &format!("SELECT {LOG_COLUMNS} FROM shipped_logs WHERE origin = $1"),
            &[&origin],
        )
        .await?
        .map(|r| log_row(&r))
        .transpose()
    }

    async fn append_shipped(
        &self,
        from: i64,
        to: &ShippedLog,
        entries: &[ShippedEntry],
        parts: &ShippedParts,
    ) -> Result<Appended, ServerError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let held = tx
            .query_opt(
                "SELECT size, revoked_at FROM shipped_logs WHERE origin = $1 FOR UPDATE",
                &[&to.origin],
            )
            .await?;
        if let Some(r) = &held {
            let (size, revoked): (i64, Option<i64>) = (r.try_get(0)?, r.try_get(1)?);
            if revoked.is_some() {
                return Ok(Appended::Revoked);
            }
            if size != from {
                return Ok(Appended::Moved(size));
            }
        } else if from != 0 {
            return Ok(Appended::Moved(0));
        }
        let (boot, ts) = to.last_time.clone().unzip();
        // A first batch inserts: a second server inserting the same one at
        // once fails on the key and changes nothing (its worker asks again).
        tx.execute(
            &format!(
                "INSERT INTO shipped_logs ({LOG_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL) \
                 ON CONFLICT (origin) DO UPDATE SET size = EXCLUDED.size, verifier = EXCLUDED.verifier, \
                   root = EXCLUDED.root, frontier = EXCLUDED.frontier, \
                   last_hash = EXCLUDED.last_hash, last_boot = EXCLUDED.last_boot, \
                   last_ts = EXCLUDED.last_ts, checkpoint = EXCLUDED.checkpoint, \
                   updated = EXCLUDED.updated"
            ),
            &[
                &to.origin,
                &to.verifier,
                &to.account,
                &to.worker,
                &to.size,
                &to.root,
                &to.frontier,
                &to.last_hash,
                &boot,
                &ts,
                &to.checkpoint,
                &to.updated,
            ],
        )
        .await?;
        let st = tx
            .prepare(
                "INSERT INTO shipped_entries \
                 (origin, seq, leaf, ts, session, principal, teams, kind, effect, path, leaf_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await?;
        for e in entries {
            tx.execute(
                &st,
                &[
                    &to.origin,
                    &e.seq,
                    &e.leaf,
                    &e.ts,
                    &e.session,
                    &e.principal,
                    &e.teams,
                    &e.kind,
                    &e.effect,
                    &e.path,
                    &e.leaf_hash.as_slice(),
                ],
            )
            .await?;
        }
        // A body held already (listed again by a later entry) stays as
        // first stored, under its first entry. In one statement, as the
        // nodes: a statement per body halved the ingest of 1 KiB bodies.
        if !parts.payloads.is_empty() {
            let ps = &parts.payloads;
            let cmts: Vec<&[u8]> = ps.iter().map(|p| p.cmt.as_slice()).collect();
            let seqs: Vec<i64> = ps.iter().map(|p| p.seq).collect();
            let media: Vec<&str> = ps.iter().map(|p| p.media.as_str()).collect();
            let salts: Vec<&[u8]> = ps.iter().map(|p| p.salt.as_slice()).collect();
            let bodies: Vec<&[u8]> = ps.iter().map(|p| p.body.as_slice()).collect();
            tx.execute(
                "INSERT INTO shipped_payloads (origin, cmt, seq, media, salt, body) \
                 SELECT $1, * FROM unnest($2::bytea[], $3::bigint[], $4::text[], $5::bytea[], \
                   $6::bytea[]) \
                 ON CONFLICT (origin, cmt) DO NOTHING",
                &[&to.origin, &cmts, &seqs, &media, &salts, &bodies],
            )
            .await?;
        }
        // The worker erased these bodies: so does its copy here.
        if !parts.erased.is_empty() {
            tx.execute(
                "DELETE FROM shipped_payloads WHERE origin = $1 AND cmt = ANY($2)",
                &[&to.origin, &parts.erased],
            )
            .await?;
        }
        // The nodes in one statement: a batch of 1,000 leaves completes
        // about as many nodes, and a round trip each would double its cost.
        if !parts.nodes.is_empty() {
            let levels: Vec<i16> = parts.nodes.iter().map(|n| i16::from(n.level)).collect();
            let idxs: Vec<i64> = parts.nodes.iter().map(|n| n.index as i64).collect();
            let hashes: Vec<&[u8]> = parts.nodes.iter().map(|n| n.hash.as_slice()).collect();
            tx.execute(
                "INSERT INTO shipped_nodes (origin, level, idx, hash) \
                 SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[])",
                &[&to.origin, &levels, &idxs, &hashes],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Appended::Yes)
    }

    async fn shipped_entries(
        &self,
        origin: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<ShippedEntry>, ServerError> {
        let c = self.client().await?;
        c.query(
            &format!(
                "SELECT {ENTRY_COLUMNS} \
                 FROM shipped_entries WHERE origin = $1 AND seq >= $2 AND seq < $3 ORDER BY seq"
            ),
            &[&origin, &from, &to],
        )
        .await?
        .iter()
        .map(|r| entry_row(r, 0))
        .collect()
    }

    async fn revoke_shipped(&self, log: &ShippedLog, now: i64) -> Result<bool, ServerError> {
        let l = log;
        let c = self.client().await?;
        let n = c
            .execute(
                &format!(
                    "INSERT INTO shipped_logs ({LOG_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, 0, $5, $6, NULL, NULL, NULL, '', $7, $7) \
                     ON CONFLICT (origin) DO UPDATE SET revoked_at = EXCLUDED.revoked_at, \
                       updated = EXCLUDED.updated \
                     WHERE shipped_logs.revoked_at IS NULL"
                ),
                &[
                    &l.origin,
                    &l.verifier,
                    &l.account,
                    &l.worker,
                    &l.root,
                    &l.frontier,
                    &now,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn search_shipped(
        &self,
        q: &ShippedQuery,
    ) -> Result<Vec<(String, ShippedEntry)>, ServerError> {
        let (tail, args) = search_sql(q, |i| format!("${i}"));
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
            .iter()
            .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let c = self.client().await?;
        c.query(
            &format!("SELECT {SEARCH_COLUMNS} FROM shipped_entries {tail}"),
            &params,
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, entry_row(r, 1)?)))
        .collect()
    }
}
