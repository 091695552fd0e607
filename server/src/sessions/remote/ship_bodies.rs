//! The payload bodies a shipped batch carries: those its leaves committed
//! and the worker still holds (a redacted, erased or expired one is not
//! sent; the server's bundle says it is withheld).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rusqlite::{params, OptionalExtension as _};
use stele_audit::Store;

use super::log_wire::ShipPayload;
use crate::routes::worker_log::MAX_BODY;

/// Room left in a request for everything but the bodies of a lone leaf
/// (its leaf, the checkpoint, names, JSON): a bigger body is left out.
const ROOM: usize = 1 << 20;

/// A held body: its commitment and its salt and body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Held {
    pub cmt: Vec<u8>,
    pub bytes: usize,
}

/// The bodies held of entries `from .. to`, by the entry that committed them.
pub(super) fn held(
    store: &Store,
    from: u64,
    to: u64,
) -> rusqlite::Result<BTreeMap<u64, Vec<Held>>> {
    let mut st = store.conn().prepare(
        "SELECT seq, cmt, length(salt) + length(body) FROM payloads \
         WHERE seq >= ?1 AND seq < ?2 AND salt IS NOT NULL AND body IS NOT NULL ORDER BY seq",
    )?;
    let mut out: BTreeMap<u64, Vec<Held>> = BTreeMap::new();
    let rows = st.query_map(params![from as i64, to as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (seq, cmt, bytes) = row?;
        out.entry(seq.max(0) as u64).or_default().push(Held {
            cmt,
            bytes: bytes.max(0) as usize,
        });
    }
    Ok(out)
}

/// Bytes of `n` bytes in standard base64.
pub(super) fn encoded(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Of a lone leaf's bodies (the batch is that leaf alone), those that fit
/// in a request the server takes; the others are named to be left out.
pub(super) fn fitting(bodies: Vec<Held>) -> (Vec<Held>, Vec<Held>) {
    let mut room = MAX_BODY.saturating_sub(ROOM);
    bodies.into_iter().partition(|b| {
        let n = encoded(b.bytes) + 256;
        let fits = n <= room;
        if fits {
            room -= n;
        }
        fits
    })
}

/// The bodies of `cmts` as shipped (one erased meanwhile is left out).
pub(super) fn read(store: &Store, cmts: &[Vec<u8>]) -> rusqlite::Result<Vec<ShipPayload>> {
    let mut st = store.conn().prepare(
        "SELECT media, salt, body FROM payloads \
         WHERE cmt = ?1 AND salt IS NOT NULL AND body IS NOT NULL",
    )?;
    let mut out = Vec::with_capacity(cmts.len());
    for cmt in cmts {
        let row = st
            .query_row(params![cmt], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?;
        if let Some((media, salt, body)) = row {
            out.push(ShipPayload {
                cmt: B64.encode(cmt),
                media,
                salt: B64.encode(salt),
                body: B64.encode(body),
            });
        }
    }
    Ok(out)
}
