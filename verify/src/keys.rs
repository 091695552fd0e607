//! Which keys the reviewer trusts, and the export's key schedule.
//!
//! The reviewer gives one or more keys of the log (`--key`) and any
//! revocations (`--revoked KEY@SIZE`). The export states the log's key
//! schedule; it is accepted when it is well formed (no gap, no overlap),
//! names at least one trusted key, and — once any key is revoked — names
//! only trusted keys: an attacker holding a revoked key could have
//! announced a successor of their own, so trust no longer passes from key
//! to key. The streams then check the schedule against the log's own
//! rotation entries, and every checkpoint against the key of its size.

use stele_attest::dsse::Envelope;
use stele_attest::intoto::Statement;
use stele_attest::NoteVerifier;
use stele_audit::export::layout::{ExportPredicate, PREDICATE_TYPE};
use stele_audit::keys::{KeySchedule, Revocation};

use crate::Options;

/// Every key the reviewer trusts.
pub(crate) fn trusted(opts: &Options) -> impl Iterator<Item = &NoteVerifier> {
    std::iter::once(&opts.log_key).chain(opts.more_keys.iter())
}

/// Open the manifest with the export key, or with a trusted log key, or
/// with the key the export says signs now (accepted only if the schedule
/// check below links it to a trusted key).
pub(crate) fn open_manifest(env: &Envelope, opts: &Options) -> Result<Statement, String> {
    if let Some(k) = &opts.export_key {
        return Statement::open(env, k, PREDICATE_TYPE)
            .map_err(|e| format!("signature check failed: {e}"));
    }
    let mut last = String::from("no trusted key");
    for k in trusted(opts) {
        match Statement::open(env, k, PREDICATE_TYPE) {
            Ok(st) => return Ok(st),
            Err(e) => last = e.to_string(),
        }
    }
    // A rotated log's manifest is signed by its newest key.
    use base64::Engine as _;
    let unverified: serde_json::Value = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(k) = unverified["predicate"]["log_key"]
        .as_str()
        .and_then(|k| NoteVerifier::parse(k).ok())
    {
        if let Ok(st) = Statement::open(env, &k, PREDICATE_TYPE) {
            return Ok(st);
        }
    }
    Err(format!("signature check failed: {last}"))
}

/// The schedule the export states, checked against what the reviewer
/// trusts; with the revocations in force and the newest key.
pub(crate) fn trusted_schedule(
    p: &ExportPredicate,
    opts: &Options,
) -> Result<(KeySchedule, Vec<Revocation>, NoteVerifier), String> {
    if p.origin != opts.log_key.name() {
        return Err(format!(
            "the export is of log {:?}, not the trusted key's {:?}",
            p.origin,
            opts.log_key.name()
        ));
    }
    let keys = p.key_schedule().map_err(|e| format!("key ranges: {e}"))?;
    let trusted: Vec<String> = trusted(opts).map(|k| k.to_string()).collect();
    if !keys.ranges().iter().any(|r| trusted.contains(&r.key)) {
        return Err(format!(
            "the export is of log {:?} with key {}, not the trusted key",
            p.origin, p.log_key
        ));
    }
    let mut revoked = opts.revoked.clone();
    revoked.extend(p.revoked.iter().cloned());
    if !revoked.is_empty() {
        if let Some(r) = keys.ranges().iter().find(|r| !trusted.contains(&r.key)) {
            return Err(format!(
                "a key of this log is revoked, so every key it names must be given with --key; {} is not",
                r.key
            ));
        }
    }
    let current = NoteVerifier::parse(&p.log_key).map_err(|e| format!("log_key: {e}"))?;
    Ok((keys, revoked, current))
}
