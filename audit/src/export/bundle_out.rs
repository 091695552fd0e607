//! What every kind of bundle writes the same way: files collected with
//! their digests, stored checkpoints and cosignatures, policy copies,
//! session attestations, and the signed manifest.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use stele_attest::intoto::{Statement, Subject};
use stele_attest::private_fs;
use stele_attest::Signer;

use super::layout::*;
use super::session_parts::PartCheckpoint;
use super::write::PolicyInput;
use super::ExportError;
use crate::store::Store;

/// Collects files in the temporary folder and their digests.
pub(super) struct Out {
    pub(super) dir: PathBuf,
    pub(super) digests: BTreeMap<String, [u8; 32]>,
}

impl Out {
    /// Files go into `dir` (created by the caller).
    pub(super) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            digests: BTreeMap::new(),
        }
    }

    pub(super) fn put(&mut self, rel: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let p = self.dir.join(rel);
        if let Some(parent) = p.parent() {
            private_fs::create_dir_all(parent).map_err(|e| ExportError::io(parent, e))?;
        }
        // Not synced one by one (an fsync per proof and payload file made a
        // session export minutes long): `finish` flushes them all at once
        // before the folder is renamed into place. Private whatever the umask.
        let mut f = private_fs::create_file(&p).map_err(|e| ExportError::io(&p, e))?;
        f.write_all(bytes).map_err(|e| ExportError::io(&p, e))?;
        self.digests.insert(rel.to_string(), sha256(bytes));
        Ok(())
    }

    /// Copy the policy bundle folders under `policies/`.
    pub(super) fn policies(
        &mut self,
        inputs: &[PolicyInput],
    ) -> Result<Vec<PolicyRecord>, ExportError> {
        let mut policies = Vec::new();
        for (i, p) in inputs.iter().enumerate() {
            let files = read_tree(&p.dir)?;
            let base = p
                .dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("policy");
            let name = format!("{i}-{base}");
            for (rel, b) in &files {
                self.put(&format!("{POLICIES_DIR}{name}/{rel}"), b)?;
            }
            policies.push(PolicyRecord {
                name,
                files_digest: files_digest(&files),
                bundle_digest: p.bundle_digest.clone(),
            });
        }
        Ok(policies)
    }

    /// Copy the attestations stored beside the database of the given
    /// sessions; returns their bytes.
    pub(super) fn attestations(
        &mut self,
        db: &Path,
        sessions: &[SessionRange],
    ) -> Result<Vec<Vec<u8>>, ExportError> {
        let mut out = Vec::new();
        for s in sessions {
            let f = super::attestation::attestation_path(db, &s.id);
            if let Ok(b) = std::fs::read(&f) {
                self.put(
                    &format!(
                        "{ATTESTATIONS_DIR}{}.intoto.jsonl",
                        super::attestation::file_stem(&s.id)
                    ),
                    &b,
                )?;
                out.push(b);
            }
        }
        Ok(out)
    }

    /// `VERIFY.md` and the manifest over every file written; returns the
    /// number of files before the manifest.
    pub(super) fn seal(
        mut self,
        predicate: &ExportPredicate,
        log_key: &str,
        manifest_signer: &dyn Signer,
    ) -> Result<usize, ExportError> {
        self.put(
            VERIFY_MD,
            super::verify_md(log_key, &manifest_signer.verifier().to_string()).as_bytes(),
        )?;
        let files = self.digests.len();
        let subjects: Vec<Subject> = self
            .digests
            .iter()
            .map(|(n, d)| Subject::sha256(n.clone(), d))
            .collect();
        let pv =
            serde_json::to_value(predicate).map_err(|e| ExportError::Invalid(e.to_string()))?;
        let env = Statement::new(subjects, PREDICATE_TYPE, pv).sign(manifest_signer)?;
        let mut line = env.to_json()?;
        line.push('\n');
        self.put(MANIFEST, line.as_bytes())?;
        Ok(files)
    }
}

/// Stored cosignature lines by checkpoint size.
fn cosignature_lines(store: &Store) -> Result<BTreeMap<u64, Vec<String>>, ExportError> {
    let mut st = store
        .conn()
        .prepare("SELECT size, line FROM cosignatures ORDER BY size, witness")
        .map_err(crate::AuditError::sqlite(store.path()))?;
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })
        .map_err(crate::AuditError::sqlite(store.path()))?;
    let mut m: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for row in rows {
        let (s, l) = row.map_err(crate::AuditError::sqlite(store.path()))?;
        m.entry(s).or_default().push(l);
    }
    Ok(m)
}

/// Published and cosigned checkpoints below `below`, by size.
fn published_checkpoints(
    store: &Store,
    below: u64,
    cosigs: &BTreeMap<u64, Vec<String>>,
) -> Result<Vec<(u64, String)>, ExportError> {
    let mut st = store
        .conn()
        .prepare(
            "SELECT size, note FROM checkpoints WHERE published != 0 AND size < ?1 ORDER BY size",
        )
        .map_err(crate::AuditError::sqlite(store.path()))?;
    let rows = st
        .query_map([below as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })
        .map_err(crate::AuditError::sqlite(store.path()))?;
    let mut out: BTreeMap<u64, String> = BTreeMap::new();
    for row in rows {
        let (s, n) = row.map_err(crate::AuditError::sqlite(store.path()))?;
        out.insert(s, n);
    }
    for s in cosigs.keys().filter(|s| **s < below) {
        if !out.contains_key(s) {
            if let Some(n) = store.checkpoint_at(*s)? {
                out.insert(*s, n);
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// The stored checkpoints a bundle at `size` holds: the newest (`note`),
/// every published or cosigned one below it, each with its cosignatures,
/// and the RFC 3161 tokens up to `size`. A bundle that starts at
/// `start` above 0 holds none below it but the one at `start` and those of the key
/// rotations below it (what its `log.archive` key record is proven
/// against). One signed only by a key revoked at its size proves nothing
/// and would make the export fail: left out.
pub(super) fn stored_checkpoints(
    store: &Store,
    note: &str,
    size: u64,
    keys: &crate::keys::KeySchedule,
    revoked: &[crate::keys::Revocation],
    start: u64,
) -> Result<StoredCheckpoints, ExportError> {
    let cosigs = cosignature_lines(store)?;
    let part = |s: u64, note: String| PartCheckpoint {
        size: s,
        note,
        cosignatures: cosigs.get(&s).cloned().unwrap_or_default(),
    };
    let mut kept = published_checkpoints(store, size, &cosigs)?;
    if start > 0 {
        let needed: Vec<u64> = std::iter::once(start)
            .chain(keys.boundaries().filter(|b| *b < start))
            .collect();
        kept.retain(|(s, _)| *s > start || needed.contains(s));
        for s in needed {
            if !kept.iter().any(|(k, _)| *k == s) {
                let n = store.checkpoint_at(s)?.ok_or_else(|| {
                    ExportError::Invalid(format!(
                        "the signed checkpoint at size {s}, which a bundle starting at {start} needs, is not kept"
                    ))
                })?;
                kept.push((s, n));
            }
        }
        kept.sort_by_key(|(s, _)| *s);
    }
    let earlier = kept
        .into_iter()
        .filter(|(_, n)| crate::keys::open_checkpoint(n, keys, revoked).is_ok())
        .map(|(s, n)| part(s, n))
        .collect();
    Ok(StoredCheckpoints {
        newest: part(size, note.to_string()),
        earlier,
        tokens: stored_tokens(store, size)?,
    })
}

/// What [`stored_checkpoints`] found.
pub(super) struct StoredCheckpoints {
    /// The bundle's checkpoint.
    pub newest: PartCheckpoint,
    /// The earlier ones it keeps, by size.
    pub earlier: Vec<PartCheckpoint>,
    /// RFC 3161 tokens by size (those of checkpoints not kept are skipped
    /// when written).
    pub tokens: Vec<(u64, Vec<u8>)>,
}

/// Write the stored checkpoints of a bundle at `size` (see
/// [`stored_checkpoints`]); returns the sizes of the ones below it.
pub(super) fn put_checkpoints(
    o: &mut Out,
    store: &Store,
    note: &str,
    size: u64,
    keys: &crate::keys::KeySchedule,
    revoked: &[crate::keys::Revocation],
    start: u64,
) -> Result<Vec<u64>, ExportError> {
    let c = stored_checkpoints(store, note, size, keys, revoked, start)?;
    write_checkpoints(o, &c.newest, &c.earlier, &c.tokens)
}

/// Write `checkpoint` (the bundle's), the `earlier` ones under
/// `checkpoints/`, each with its cosignatures, and the RFC 3161 tokens of
/// those written (stamped ones are kept for good, so each has its
/// checkpoint here); returns the earlier sizes.
pub(super) fn write_checkpoints(
    o: &mut Out,
    checkpoint: &PartCheckpoint,
    earlier: &[PartCheckpoint],
    tokens: &[(u64, Vec<u8>)],
) -> Result<Vec<u64>, ExportError> {
    o.put(
        CHECKPOINT,
        with_cosignatures(&checkpoint.note, &checkpoint.cosignatures).as_bytes(),
    )?;
    let mut sizes = Vec::new();
    for c in earlier {
        o.put(
            &format!("{CHECKPOINTS_DIR}{}", c.size),
            with_cosignatures(&c.note, &c.cosignatures).as_bytes(),
        )?;
        sizes.push(c.size);
    }
    for (s, token) in tokens {
        if *s == checkpoint.size || sizes.contains(s) {
            o.put(&super::layout::timestamp_path(*s), token)?;
        }
    }
    Ok(sizes)
}

/// Stored RFC 3161 tokens by checkpoint size, at most `up_to` (none in a
/// log written before timestamps existed).
pub fn stored_tokens(store: &Store, up_to: u64) -> Result<Vec<(u64, Vec<u8>)>, ExportError> {
    let err = crate::AuditError::sqlite(store.path());
    let has: bool = store
        .conn()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'timestamps'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(&err)?
        > 0;
    if !has {
        return Ok(Vec::new());
    }
    let mut st = store
        .conn()
        .prepare("SELECT size, token FROM timestamps WHERE size <= ?1 ORDER BY size")
        .map_err(&err)?;
    let rows = st
        .query_map([up_to as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(&err)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(&err)?);
    }
    Ok(out)
}

/// Append cosignature lines to a signed note.
fn with_cosignatures(note: &str, lines: &[String]) -> String {
    let mut s = note.to_string();
    for l in lines {
        s.push_str(l.trim_end_matches('\n'));
        s.push('\n');
    }
    s
}

/// Regular files under `dir`, as `(relative path with /, bytes)`, sorted.
/// Anything else (a symlink) is refused: it could pull in content from
/// outside the folder.
fn read_tree(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ExportError> {
    super::list_files(dir)?
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let meta = std::fs::symlink_metadata(&p).map_err(|e| ExportError::io(&p, e))?;
            if !meta.is_file() {
                return Err(ExportError::Invalid(format!(
                    "{} is not a regular file",
                    p.display()
                )));
            }
            let body = std::fs::read(&p).map_err(|e| ExportError::io(&p, e))?;
            Ok((rel, body))
        })
        .collect()
}

/// The log's key schedule as it stood at `size` (the export's size).
pub(super) fn keys_at(store: &Store, size: u64) -> Result<crate::keys::KeySchedule, ExportError> {
    Ok(store.key_schedule()?.at(size))
}

/// The predicate's `keys`: empty for a log that never rotated (the
/// format before rotation, which `log_key` alone describes).
pub(super) fn listed_keys(keys: &crate::keys::KeySchedule) -> Vec<crate::keys::KeyRange> {
    if keys.ranges().len() > 1 {
        keys.ranges().to_vec()
    } else {
        Vec::new()
    }
}
