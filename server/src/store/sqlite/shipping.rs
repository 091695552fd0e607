//! [`ShippingStore`] on SQLite: the `shipped_logs`, `shipped_entries`,
//! `shipped_payloads` and `shipped_nodes` tables.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _, Row};

use super::SqliteStore;
use crate::error::ServerError;
use crate::store::shipping::{
    search_sql, stored_leaf_hash, Appended, ShippedEntry, ShippedLog, ShippedParts, ShippedQuery,
    ShippingStore, ENTRY_COLUMNS, LOG_COLUMNS, SEARCH_COLUMNS,
};

fn log_row(r: &Row<'_>) -> rusqlite::Result<ShippedLog> {
    let boot: Option<String> = r.get(8)?;
    let ts: Option<String> = r.get(9)?;
    Ok(ShippedLog {
        origin: r.get(0)?,
        verifier: r.get(1)?,
        account: r.get(2)?,
        worker: r.get(3)?,
        size: r.get(4)?,
        root: r.get(5)?,
        frontier: r.get(6)?,
        last_hash: r.get(7)?,
        last_time: boot.zip(ts),
        checkpoint: r.get(10)?,
        updated: r.get(11)?,
        revoked_at: r.get(12)?,
    })
}

/// An entry read from [`ENTRY_COLUMNS`] starting at column `at`.
pub(super) fn entry_row(r: &Row<'_>, at: usize) -> rusqlite::Result<ShippedEntry> {
    let leaf: Vec<u8> = r.get(at + 1)?;
    Ok(ShippedEntry {
        seq: r.get(at)?,
        ts: r.get(at + 2)?,
        session: r.get(at + 3)?,
        principal: r.get(at + 4)?,
        teams: r.get(at + 5)?,
        kind: r.get(at + 6)?,
        effect: r.get(at + 7)?,
        path: r.get(at + 8)?,
        leaf_hash: stored_leaf_hash(r.get(at + 9)?, &leaf),
        leaf,
    })
}

#[async_trait]
impl ShippingStore for SqliteStore {
    async fn shipped_log(&self, origin: &str) -> Result<Option<ShippedLog>, ServerError> {
        let origin = origin.to_string();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {LOG_COLUMNS} FROM shipped_logs WHERE origin = ?1"),
                params![origin],
                log_row,
            )
            .optional()
        })
        .await
    }

    async fn append_shipped(
        &self,
        from: i64,
        to: &ShippedLog,
        entries: &[ShippedEntry],
        parts: &ShippedParts,
    ) -> Result<Appended, ServerError> {
        let (to, entries, parts) = (to.clone(), entries.to_vec(), parts.clone());
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            let held: Option<(i64, Option<i64>)> = tx
                .query_row(
                    "SELECT size, revoked_at FROM shipped_logs WHERE origin = ?1",
                    params![to.origin],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match held {
                Some((_, Some(_))) => return Ok(Appended::Revoked),
                Some((size, None)) if size != from => return Ok(Appended::Moved(size)),
                None if from != 0 => return Ok(Appended::Moved(0)),
                _ => {}
            }
            let (boot, ts) = to.last_time.clone().unzip();
            tx.execute(
                &format!(
                    "INSERT INTO shipped_logs ({LOG_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL) \
                     ON CONFLICT(origin) DO UPDATE SET size = excluded.size, verifier = excluded.verifier, \
                       root = excluded.root, frontier = excluded.frontier, \
                       last_hash = excluded.last_hash, last_boot = excluded.last_boot, \
                       last_ts = excluded.last_ts, checkpoint = excluded.checkpoint, \
                       updated = excluded.updated"
                ),
                params![
                    to.origin,
                    to.verifier,
                    to.account,
                    to.worker,
                    to.size,
                    to.root,
                    to.frontier,
                    to.last_hash,
                    boot,
                    ts,
                    to.checkpoint,
                    to.updated
                ],
            )?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO shipped_entries \
                     (origin, seq, leaf, ts, session, principal, teams, kind, effect, path, leaf_hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for e in &entries {
                    st.execute(params![
                        to.origin,
                        e.seq,
                        e.leaf,
                        e.ts,
                        e.session,
                        e.principal,
                        e.teams,
                        e.kind,
                        e.effect,
                        e.path,
                        e.leaf_hash
                    ])?;
                }
                // A body held already (listed again by a later entry) stays
                // as first stored, under its first entry.
                let mut st = tx.prepare_cached(
                    "INSERT INTO shipped_payloads (origin, cmt, seq, media, salt, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(origin, cmt) DO NOTHING",
                )?;
                for p in &parts.payloads {
                    st.execute(params![to.origin, p.cmt, p.seq, p.media, p.salt, p.body])?;
                }
                // The worker erased these bodies: so does its copy here.
                let mut st = tx.prepare_cached(
                    "DELETE FROM shipped_payloads WHERE origin = ?1 AND cmt = ?2",
                )?;
                for c in &parts.erased {
                    st.execute(params![to.origin, c])?;
                }
                let mut st = tx.prepare_cached(
                    "INSERT INTO shipped_nodes (origin, level, idx, hash) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for n in &parts.nodes {
                    st.execute(params![to.origin, n.level, n.index as i64, n.hash])?;
                }
            }
            tx.commit()?;
            Ok(Appended::Yes)
        })
        .await
    }

    async fn shipped_entries(
        &self,
        origin: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<ShippedEntry>, ServerError> {
        let origin = origin.to_string();
        self.call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {ENTRY_COLUMNS} \
                 FROM shipped_entries WHERE origin = ?1 AND seq >= ?2 AND seq < ?3 ORDER BY seq"
            ))?;
            let rows = st.query_map(params![origin, from, to], |r| entry_row(r, 0))?;
            rows.collect()
        })
        .await
    }

    async fn revoke_shipped(&self, log: &ShippedLog, now: i64) -> Result<bool, ServerError> {
        let l = log.clone();
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            let n = tx.execute(
                "UPDATE shipped_logs SET revoked_at = ?2, updated = ?2 \
                 WHERE origin = ?1 AND revoked_at IS NULL",
                params![l.origin, now],
            )?;
            let made = if n == 0 {
                tx.execute(
                    &format!(
                        "INSERT INTO shipped_logs ({LOG_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, NULL, NULL, NULL, '', ?7, ?7) \
                         ON CONFLICT(origin) DO NOTHING"
                    ),
                    params![l.origin, l.verifier, l.account, l.worker, l.root, l.frontier, now],
                )?
            } else {
                n
            };
            tx.commit()?;
            Ok(made == 1)
        })
        .await
    }

    async fn search_shipped(
        &self,
        q: &ShippedQuery,
    ) -> Result<Vec<(String, ShippedEntry)>, ServerError> {
        let (tail, args) = search_sql(q, |i| format!("?{i}"));
        self.call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {SEARCH_COLUMNS} FROM shipped_entries {tail}"
            ))?;
            let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((r.get(0)?, entry_row(r, 1)?))
            })?;
            rows.collect()
        })
        .await
    }
}
