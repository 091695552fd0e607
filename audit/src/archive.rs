//! Archival (docs/audit-format.md §9): a sealed prefix of the log, entries
//! `0 … N−1`, moved into an archive bundle and removed from the live
//! database by one audited `log.archive` entry. This module holds what the
//! database keeps of an archived prefix (the `archived` row) and how a
//! verifier takes the live log up from it; the writer's side is
//! `writer/archive.rs`, the procedure `crate::export::archive`.

use rusqlite::OptionalExtension;

use crate::check::ArchiveSeen;
use crate::error::AuditError;
use crate::event::Actor;
use crate::merkle::{Frontier, Hash};
use crate::store::Store;

/// An `archived` row: what the live log keeps of an archived prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRow {
    /// Entries archived (`N`): the live log starts at this index.
    pub size: u64,
    /// Merkle root at `N` (equals the signed checkpoint kept for `N`).
    pub root: Hash,
    /// Leaf hash of entry `N−1` (the first live leaf's `prev`).
    pub prev: Hash,
    /// The Merkle frontier at `N`.
    pub frontier: Frontier,
    /// `sha256:<hex>` of the archive bundle's signed manifest.
    pub bundle: String,
    /// Index of the `log.archive` entry that recorded it.
    pub entry: u64,
}

/// A request to archive the prefix `0 … through−1` whose bundle (already
/// written and verified) has manifest digest `bundle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRequest {
    /// Entries to archive (`N`).
    pub through: u64,
    /// `sha256:<hex>` of the archive bundle's signed manifest.
    pub bundle: String,
    /// Why (retention schedule, ticket).
    pub reason: String,
    /// Who archives.
    pub actor: Actor,
    /// The keys below `through` (see `crate::archive_keys`): checked by
    /// the writer against its own checkpoints and key schedule.
    pub keys: crate::archive_keys::ArchiveKeys,
}

impl ArchivedRow {
    /// The frontier's hashes as stored (concatenated).
    pub fn frontier_bytes(&self) -> Vec<u8> {
        self.frontier.nodes().concat()
    }
}

fn hash32(v: Vec<u8>, what: &str, size: u64) -> Result<Hash, AuditError> {
    v.try_into().map_err(|_| AuditError::Integrity {
        index: size.saturating_sub(1),
        reason: format!("archived row {size}: {what} is not 32 bytes"),
    })
}

impl Store {
    /// Every `archived` row, oldest first (none in a log never archived or
    /// older than schema 5). A row whose fields do not parse is an
    /// integrity error naming it.
    pub fn archived_rows(&self) -> Result<Vec<ArchivedRow>, AuditError> {
        let has: i64 = self
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'archived'",
                [],
                |r| r.get(0),
            )
            .map_err(AuditError::sqlite(self.path()))?;
        if has == 0 {
            return Ok(Vec::new());
        }
        let e = AuditError::sqlite(self.path());
        let mut st = self
            .conn()
            .prepare("SELECT size, root, prev, frontier, bundle, entry FROM archived ORDER BY size")
            .map_err(&e)?;
        let raw = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)? as u64,
                ))
            })
            .map_err(&e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&e)?;
        let mut out = Vec::with_capacity(raw.len());
        for (size, root, prev, frontier, bundle, entry) in raw {
            let bad = |reason: String| AuditError::Integrity {
                index: size.saturating_sub(1),
                reason,
            };
            let want = Frontier::positions(size).len();
            if frontier.len() != want * 32 {
                return Err(bad(format!(
                    "archived row {size}: the frontier holds {} bytes, not {} hashes",
                    frontier.len(),
                    want
                )));
            }
            let nodes = frontier
                .chunks_exact(32)
                .map(|c| hash32(c.to_vec(), "a frontier hash", size))
                .collect::<Result<Vec<_>, _>>()?;
            let frontier = Frontier::from_parts(size, nodes)
                .ok_or_else(|| bad(format!("archived row {size}: bad frontier")))?;
            out.push(ArchivedRow {
                size,
                root: hash32(root, "root", size)?,
                prev: hash32(prev, "prev", size)?,
                frontier,
                bundle,
                entry,
            });
        }
        Ok(out)
    }

    /// The newest `archived` row: where the live log starts.
    pub fn archived(&self) -> Result<Option<ArchivedRow>, AuditError> {
        Ok(self.archived_rows()?.pop())
    }

    /// How many entry and payload rows lie below `size` (0 in a sound
    /// archived log).
    pub(crate) fn rows_below(&self, size: u64) -> Result<u64, AuditError> {
        let c: Option<i64> = self
            .conn()
            .query_row(
                "SELECT (SELECT count(*) FROM entries WHERE seq < ?1) + (SELECT count(*) FROM payloads WHERE seq < ?1)",
                [size as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(AuditError::sqlite(self.path()))?;
        Ok(c.unwrap_or(0) as u64)
    }
}

/// The checks of the `archived` rows against the live log, once the live
/// leaves are checked (`seen` = the `log.archive` entries the checker
/// read): every row's signed checkpoint root, its place, and agreement
/// with the entry that recorded it; nothing stored below the newest row.
pub(crate) fn check_rows(
    store: &Store,
    rows: &[ArchivedRow],
    seen: &[ArchiveSeen],
    signed: &std::collections::BTreeMap<u64, (Hash, &'static str)>,
) -> Result<(), (Option<u64>, String)> {
    let Some(newest) = rows.last() else {
        if let Some(a) = seen.iter().find(|a| a.through > 0) {
            return Err((
                Some(a.seq),
                format!(
                    "log.archive at {} archived {} entries, but the log holds no archived row for it",
                    a.seq, a.through
                ),
            ));
        }
        return Ok(());
    };
    let mut last = 0u64;
    for r in rows {
        let at = Some(r.size.saturating_sub(1));
        if r.size <= last || r.entry < r.size {
            return Err((at, format!("archived row {} is out of order", r.size)));
        }
        last = r.size;
        if r.frontier.root() != r.root {
            return Err((
                at,
                format!(
                    "archived row {}: the frontier's root differs from the row's root",
                    r.size
                ),
            ));
        }
        match signed.get(&r.size) {
            Some((root, _)) if *root == r.root => {}
            Some(_) => {
                return Err((
                    at,
                    format!(
                        "archived row {}: the root differs from the signed checkpoint at that size",
                        r.size
                    ),
                ))
            }
            None => {
                return Err((
                    at,
                    format!(
                        "archived row {}: the signed checkpoint at that size is missing",
                        r.size
                    ),
                ))
            }
        }
        // The entry that recorded the row, if it is still live.
        if r.entry >= newest.size {
            let Some(a) = seen.iter().find(|a| a.seq == r.entry) else {
                return Err((
                    Some(r.entry),
                    format!(
                        "archived row {} names entry {} as its log.archive, which is not one",
                        r.size, r.entry
                    ),
                ));
            };
            if a.through != r.size
                || a.root != Some(r.root)
                || a.prev != Some(r.prev)
                || a.bundle != r.bundle
            {
                return Err((
                    Some(r.entry),
                    format!(
                        "archived row {} disagrees with its log.archive entry {} (size, root, prev or bundle)",
                        r.size, r.entry
                    ),
                ));
            }
        }
    }
    for a in seen {
        if !rows.iter().any(|r| r.entry == a.seq) {
            return Err((
                Some(a.seq),
                format!(
                    "log.archive at {} archived {} entries, but the log holds no archived row for it",
                    a.seq, a.through
                ),
            ));
        }
    }
    let below = store
        .rows_below(newest.size)
        .map_err(|e| (None, e.to_string()))?;
    if below > 0 {
        return Err((
            Some(newest.size.saturating_sub(1)),
            format!(
                "{below} entry or payload rows are stored below the archived size {} (re-inserted after archival)",
                newest.size
            ),
        ));
    }
    Ok(())
}

/// The start-up check of the newest `archived` row (O(1) reads): its
/// frontier gives its root, the signed checkpoint kept for its size has
/// that root, and its `log.archive` entry names the same size, root, prev
/// and bundle. (The live leaves from the row on are checked against the
/// newest checkpoint by the start-up check itself.)
pub(crate) fn check_newest_row(
    store: &Store,
    keys: &crate::keys::KeySchedule,
    origin: &str,
) -> Result<Option<ArchivedRow>, AuditError> {
    let Some(r) = store.archived()? else {
        return Ok(None);
    };
    let bad = |reason: String| AuditError::Integrity {
        index: r.size.saturating_sub(1),
        reason: format!("archived row {}: {reason}", r.size),
    };
    if r.frontier.root() != r.root {
        return Err(bad("the frontier's root differs from the row's root".into()));
    }
    let note = store
        .checkpoint_at(r.size)?
        .ok_or_else(|| bad("the signed checkpoint at that size is missing".into()))?;
    let cp = crate::keys::open_checkpoint(&note, keys, &[])
        .map_err(|e| bad(format!("the checkpoint at that size does not verify: {e}")))?;
    if cp.size != r.size || cp.root != r.root {
        return Err(bad(
            "the root differs from the signed checkpoint at that size".into(),
        ));
    }
    // Index lookups: nothing may be stored below the boundary.
    let below = store.rows_below(r.size)?;
    if below > 0 {
        return Err(bad(format!(
            "{below} entry or payload rows are stored below the archived size (re-inserted after archival)"
        )));
    }
    let leaf = store.entry(r.entry)?.leaf;
    let mut c = crate::check::LeafChecker::new("", "");
    let seen = c.archive_of(&leaf).map_err(bad)?;
    if seen.through != r.size
        || seen.root != Some(r.root)
        || seen.prev != Some(r.prev)
        || seen.bundle != r.bundle
    {
        return Err(bad(format!(
            "disagrees with its log.archive entry {} (size, root, prev or bundle)",
            r.entry
        )));
    }
    let (schedule, _) = replay_keys(store, &seen, keys.first(), origin).map_err(bad)?;
    if schedule != keys.at(r.size) {
        return Err(bad(
            "the log's key record differs from the key rotations its log.archive entry proves"
                .into(),
        ));
    }
    Ok(Some(r))
}

/// The key schedule and revocations at an archive's boundary, replayed
/// from what its `log.archive` entry records against this store's kept
/// checkpoints (see `crate::archive_keys`).
pub(crate) fn replay_keys(
    store: &Store,
    seen: &ArchiveSeen,
    genesis: &str,
    origin: &str,
) -> Result<(crate::keys::KeySchedule, Vec<crate::keys::Revocation>), String> {
    seen.keys
        .replay(genesis, origin, seen.through, &mut |size| {
            store.checkpoint_at(size).map_err(|e| e.to_string())
        })
}
