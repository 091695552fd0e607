//! What the shipping tests read and send: a worker's log entries as stored
//! (SQLite), the server's shipped copy (PostgreSQL, by psql), a batch made
//! by hand with its signed checkpoint, and a cosignature checked with the
//! server's witness key.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_attest::cosignature::CosignatureVerifier;
use stele_attest::{Checkpoint, SignedNote, Signer};
use stele_audit::merkle::{leaf_hash, Frontier};
use stele_tests::postgres::TempCluster;

/// Every entry of the log at `db`, its exact bytes, in order.
pub fn local_entries(db: &Path) -> Vec<Vec<u8>> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT leaf FROM entries ORDER BY seq").unwrap();
    let rows = st.query_map([], |r| r.get(0)).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// The server's copy of `origin` in database `db`, in order.
pub fn shipped(cluster: &TempCluster, db: &str, origin: &str) -> Vec<Vec<u8>> {
    let out = cluster
        .psql(
            db,
            &format!(
                "SELECT encode(leaf, 'hex') FROM shipped_entries WHERE origin = '{origin}' \
                 ORDER BY seq"
            ),
        )
        .unwrap();
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

/// The size the server holds of `origin` (None: no row).
pub fn shipped_size(cluster: &TempCluster, db: &str, origin: &str) -> Option<u64> {
    let out = cluster
        .psql(
            db,
            &format!("SELECT size FROM shipped_logs WHERE origin = '{origin}'"),
        )
        .unwrap();
    out.trim().parse().ok()
}

/// Wait (at most `limit`) until the server holds `n` entries of `origin`.
pub fn wait_shipped(cluster: &TempCluster, db: &str, origin: &str, n: u64, limit: Duration) {
    let began = Instant::now();
    while shipped_size(cluster, db, origin) != Some(n) {
        assert!(
            began.elapsed() < limit,
            "the server holds {:?} entries of {origin}, not {n}",
            shipped_size(cluster, db, origin)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A checkpoint signed by `signer` over `leaves` (the log's first ones).
pub fn note_for(signer: &dyn Signer, leaves: &[Vec<u8>]) -> String {
    let mut f = Frontier::new();
    for l in leaves {
        f.push(leaf_hash(l), |_| {});
    }
    Checkpoint {
        origin: signer.name().to_string(),
        size: f.size(),
        root: f.root(),
    }
    .sign(signer)
    .unwrap()
    .to_text()
}

/// The leaves in the wire's base64.
pub fn b64(leaves: &[Vec<u8>]) -> Vec<String> {
    leaves.iter().map(|l| B64.encode(l)).collect()
}

/// Check `line` as `witness`'s cosignature of `note`.
pub fn check_cosignature(witness: &str, note: &str, line: &str) {
    let key = CosignatureVerifier::parse(witness).unwrap();
    let signed = SignedNote::parse(note).unwrap();
    let with = SignedNote::parse(&format!("{}\n{line}\n", signed.text)).unwrap();
    let sig = with.signatures.iter().find(|s| key.matches(s)).unwrap();
    key.verify(&signed.text, sig).unwrap();
}

/// The newest cosignature a worker's log at `db` keeps: (size, witness
/// name, line, the checkpoint note at that size).
pub fn newest_cosignature(db: &Path) -> Option<(u64, String, String, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT c.size, c.witness, c.line, k.note FROM cosignatures c \
         JOIN checkpoints k ON k.size = c.size ORDER BY c.size DESC LIMIT 1",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .ok()
}

/// A payload body: commitment, media type, salt, body.
pub type Body = (Vec<u8>, String, Vec<u8>, Vec<u8>);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The bodies the server holds of `origin` whose commitments are listed
/// first by an entry in `seqs` (None: all), by commitment.
pub fn shipped_bodies(
    cluster: &TempCluster,
    db: &str,
    origin: &str,
    seqs: Option<&[u64]>,
) -> Vec<Body> {
    let out = cluster
        .psql(
            db,
            &format!(
                "SELECT seq, encode(cmt, 'hex'), encode(convert_to(media, 'UTF8'), 'hex'), \
                 encode(salt, 'hex'), encode(body, 'hex') FROM shipped_payloads \
                 WHERE origin = '{origin}' ORDER BY cmt"
            ),
        )
        .unwrap();
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').collect::<Vec<_>>())
        .filter(|f| seqs.is_none_or(|s| s.contains(&f[0].parse::<u64>().unwrap())))
        .map(|f| {
            let media = String::from_utf8(unhex(f[2])).unwrap();
            (unhex(f[1]), media, unhex(f[3]), unhex(f[4]))
        })
        .collect()
}

/// The bodies the worker's log at `db` holds (not redacted) of entries in
/// `seqs` (None: all), by commitment.
pub fn local_bodies(db: &Path, seqs: Option<&[u64]>) -> Vec<Body> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare(
            "SELECT seq, cmt, media, salt, body FROM payloads WHERE body IS NOT NULL ORDER BY cmt",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
            ))
        })
        .unwrap();
    rows.map(|r| r.unwrap())
        .filter(|(seq, _)| seqs.is_none_or(|s| s.contains(seq)))
        .map(|(_, b)| b)
        .collect()
}
