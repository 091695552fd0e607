//! Which exports a log records, quickly. `audit.export` entries name their
//! output; finding them means scanning the log, which costs about 3 µs an
//! entry (0.65 s for 200,000). So the answer is kept in an index beside
//! the database, `<db>.exports` (0600): the exports found in entries
//! before `scanned`. A check reads the index and scans only the entries
//! after it; `audit export` and the end of every session bring it up to
//! date. The log stays the truth: a missing or unreadable index means a
//! full scan, and an index that lost an update (two writers) only has a
//! lower `scanned`, so nothing is missed.

use std::path::{Path, PathBuf};

use super::IsolationError;

/// What `<db>.exports` holds.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct ExportIndex {
    /// Entries `0..scanned` have been looked at.
    scanned: u64,
    /// The absolute outputs of the exports among them.
    exports: Vec<PathBuf>,
}

/// The index file of the log at `db`.
pub fn index_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(".exports");
    PathBuf::from(s)
}

fn read_index(db: &Path) -> ExportIndex {
    std::fs::read(index_path(db))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Paths found by [`scan`], and where it stopped.
#[derive(Debug, Default)]
pub struct Found {
    /// The absolute paths found.
    pub paths: Vec<PathBuf>,
    /// Entries before this index were looked at.
    pub upto: u64,
}

/// The absolute paths in `data.<field>` of the entries of `kind` with an
/// index of at least `from`, read-only; nothing when the database does not
/// exist yet.
pub fn scan(db: &Path, kind: &str, field: &str, from: u64) -> Result<Found, IsolationError> {
    if !db.exists() {
        return Ok(Found::default());
    }
    let err = |e: &dyn std::fmt::Display| {
        IsolationError::Exports(format!("{}: {e}", crate::terminal_safe::path(db)))
    };
    let store = stele_audit::Store::open(db).map_err(|e| err(&e))?;
    // Entries are append-only: everything below `upto` stays as it is read.
    let upto = store.size().map_err(|e| err(&e))?;
    let from = i64::try_from(from.min(upto)).unwrap_or(i64::MAX);
    let end = i64::try_from(upto).unwrap_or(i64::MAX);
    // A scan inside SQLite for the kind's canonical-JSON spelling (each hit
    // is then parsed and its kind checked): far cheaper than decoding
    // every leaf.
    let needle = format!("\"kind\":\"{kind}\"").into_bytes();
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT leaf FROM entries WHERE seq >= ?1 AND seq < ?2 AND instr(leaf, ?3) > 0 \
             ORDER BY seq",
        )
        .map_err(|e| err(&e))?;
    let rows = stmt
        .query_map((from, end, needle), |r| r.get::<_, Vec<u8>>(0))
        .map_err(|e| err(&e))?;
    let mut paths = Vec::new();
    for row in rows {
        let bytes = row.map_err(|e| err(&e))?;
        let Ok(leaf) = stele_audit::leaf::Leaf::parse_canonical(&bytes) else {
            continue;
        };
        if leaf.kind.as_str() != kind {
            continue;
        }
        let p = leaf
            .data
            .as_ref()
            .and_then(|d| d.get(field))
            .and_then(|v| v.as_str())
            .map(PathBuf::from);
        if let Some(p) = p.filter(|p| p.is_absolute()) {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    Ok(Found { paths, upto })
}

/// Every export the log at `db` records: the index, and a scan of what
/// came after it.
pub fn recorded_exports(db: &Path) -> Result<Vec<PathBuf>, IsolationError> {
    let idx = read_index(db);
    let found = scan(db, "audit.export", "out", idx.scanned)?;
    let mut all = idx.exports;
    for p in found.paths {
        if !all.contains(&p) {
            all.push(p);
        }
    }
    Ok(all)
}

/// Bring `<db>.exports` up to date (written aside and renamed, 0600).
/// Best effort: without it the next check scans more.
pub fn refresh_index(db: &Path) {
    let idx = read_index(db);
    let Ok(found) = scan(db, "audit.export", "out", idx.scanned) else {
        return;
    };
    if found.upto == idx.scanned && found.paths.is_empty() && index_path(db).exists() {
        return;
    }
    let mut exports = idx.exports;
    for p in found.paths {
        if !exports.contains(&p) {
            exports.push(p);
        }
    }
    let next = ExportIndex {
        scanned: found.upto,
        exports,
    };
    let Ok(text) = serde_json::to_vec(&next) else {
        return;
    };
    let path = index_path(db);
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    if crate::paths::write_private_cache(&tmp, &text).is_ok()
        && std::fs::rename(&tmp, &path).is_ok()
    {
        return;
    }
    let _ = std::fs::remove_file(&tmp);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_index_is_used_and_what_came_after_it_is_scanned() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("audit.db");
        assert!(recorded_exports(&db).unwrap().is_empty());
        let key = d.path().join("k");
        let signer =
            std::sync::Arc::new(stele_attest::generate_key_file(&key, "t.invalid/log").unwrap());
        let log =
            stele_audit::AuditLog::create(&db, signer, stele_audit::LogOptions::default()).unwrap();
        let export = |out: &str| {
            stele_audit::Event::new(
                stele_audit::EventKind::AuditExport,
                stele_audit::Actor::system(),
            )
            .with_data(serde_json::json!({ "out": out }))
        };
        log.append_blocking(export("/srv/e1")).unwrap();
        log.append_blocking(export("relative/e2")).unwrap();
        log.append_blocking(
            stele_audit::Event::new(
                stele_audit::EventKind::AuditRead,
                stele_audit::Actor::system(),
            )
            .with_data(serde_json::json!({ "out": "/not/an/export" })),
        )
        .unwrap();
        assert_eq!(
            recorded_exports(&db).unwrap(),
            vec![PathBuf::from("/srv/e1")]
        );
        refresh_index(&db);
        let idx = read_index(&db);
        assert!(idx.scanned >= 4, "{idx:?}");
        assert_eq!(idx.exports, vec![PathBuf::from("/srv/e1")]);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(index_path(&db))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // After the index: scanned; before it: from the index alone (an
        // index naming an export the log does not is still believed).
        log.append_blocking(export("/srv/e3")).unwrap();
        log.close().unwrap();
        let mut planted = read_index(&db);
        planted.exports.push(PathBuf::from("/srv/from-index"));
        std::fs::write(index_path(&db), serde_json::to_vec(&planted).unwrap()).unwrap();
        let all = recorded_exports(&db).unwrap();
        assert_eq!(
            all,
            ["/srv/e1", "/srv/from-index", "/srv/e3"]
                .map(PathBuf::from)
                .to_vec()
        );
        // A broken index means a full scan.
        std::fs::write(index_path(&db), "not json").unwrap();
        assert_eq!(
            recorded_exports(&db).unwrap(),
            ["/srv/e1", "/srv/e3"].map(PathBuf::from).to_vec()
        );
    }
}
