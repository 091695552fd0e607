//! A bundle that starts past 0 (docs/export-format.md, "Bundles that start
//! past 0"): entries `0 … N−1` are archived and not in it. Before the
//! entries are streamed, the predicate's `start` must give a frontier whose
//! root is the signed checkpoint's at `N`, and its key record must rebuild,
//! from the genesis key, the manifest's key schedule at `N`; after, the
//! `log.archive` entry in the bundle that archived through `N` must record
//! the same root, last leaf hash and keys.

use stele_audit::check::LeafChecker;
use stele_audit::export::layout::{CHECKPOINTS_DIR, MANIFEST};
use stele_audit::export::start::ParsedStart;
use stele_audit::keys::{KeySchedule, Revocation};
use stele_audit::leaf::hash_b64;

use crate::manifest::Manifest;
use crate::{Bundle, Expect, Failure};

/// What a verified bundle that starts past 0 established about its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFacts {
    /// `N`: entries `0 … N−1` are archived, not in the bundle.
    pub size: u64,
    /// Base64 root at `N`.
    pub root: String,
    /// Base64 leaf hash of entry `N−1`.
    pub prev: String,
    /// Index of the `log.archive` entry (in the bundle) that archived
    /// through `N`.
    pub archive_entry: u64,
    /// `sha256:<hex>` of the archive bundle's manifest that entry names.
    pub archive_bundle: String,
    /// The revocations below `N` that entry's key record lists.
    pub revoked_below: Vec<Revocation>,
}

/// The start, checked before streaming.
#[derive(Debug)]
pub(crate) struct Started {
    pub parsed: ParsedStart,
    pub keys: KeySchedule,
    pub revocations: Vec<Revocation>,
}

fn fail(reason: String) -> Failure {
    Failure::new(MANIFEST, None, format!("the bundle's start: {reason}"))
}

/// Check the predicate's `start` (none: the bundle starts at 0) against the
/// signed checkpoints (`expect`, filled from `checkpoints/`).
pub(crate) fn check(
    bundle: &Bundle,
    m: &Manifest,
    expect: &Expect,
) -> Result<Option<Started>, Failure> {
    let Some(start) = &m.predicate.start else {
        return Ok(None);
    };
    let parsed = start.parse().map_err(fail)?;
    let n = parsed.size;
    if n >= m.predicate.tree_size {
        return Err(fail(format!(
            "starts at {n}, not below the bundle's tree size {}",
            m.predicate.tree_size
        )));
    }
    // A checkpoint the reviewer holds below `N` cannot be checked here
    // (its entries are in the archive): said, not passed over.
    if let Some((size, (_, from))) = expect
        .range(..n)
        .find(|(_, (_, from))| from.starts_with("held checkpoint"))
    {
        return Err(Failure::new(
            from.trim_start_matches("held checkpoint ").to_string(),
            None,
            format!("the checkpoint you hold is of size {size}, below this bundle's start {n} (entries 0..{n} are archived): check it against the archive bundle"),
        ));
    }
    let at = format!("{CHECKPOINTS_DIR}{n}");
    match expect.get(&n) {
        Some((root, _)) if *root == parsed.root => {}
        Some((_, from)) => {
            return Err(Failure::new(
                from.clone(),
                n.checked_sub(1),
                format!("the signed checkpoint at the bundle's start {n} has another root than start.root and start.frontier"),
            ))
        }
        None => {
            return Err(Failure::new(
                at,
                n.checked_sub(1),
                format!("missing: the bundle starts at {n} and needs the signed checkpoint of that size"),
            ))
        }
    }
    // The keys below `N`, replayed from the genesis key link by signed
    // link against the rotation checkpoints the bundle carries.
    let mut checkpoint_at = |size: u64| -> Result<Option<String>, String> {
        let name = format!("{CHECKPOINTS_DIR}{size}");
        if !m.digests.contains_key(&name) {
            return Ok(None);
        }
        let b = m.read(bundle, &name).map_err(|e| e.to_string())?;
        String::from_utf8(b)
            .map(Some)
            .map_err(|_| format!("{name}: not UTF-8"))
    };
    let (keys, revocations) = start
        .keys
        .replay(m.keys.first(), &m.predicate.origin, n, &mut checkpoint_at)
        .map_err(|e| fail(format!("start.keys: {e}")))?;
    if keys != m.keys.at(n) {
        return Err(fail(format!(
            "start.keys rebuild a key schedule at {n} other than the manifest's keys"
        )));
    }
    Ok(Some(Started {
        parsed,
        keys,
        revocations,
    }))
}

/// The checker that takes the tree up at the start.
pub(crate) fn checker(m: &Manifest, started: &Started) -> LeafChecker {
    let mut c = LeafChecker::resume(
        &m.predicate.origin,
        m.keys.first(),
        started.parsed.frontier.clone(),
        Some(started.parsed.prev),
    )
    .with_keys(started.keys.clone());
    c.revocations = started.revocations.clone();
    c
}

/// After streaming: the `log.archive` entry that archived through `N`
/// is in the bundle and agrees with the start.
pub(crate) fn joined(
    m: &Manifest,
    started: &Started,
    checker: &LeafChecker,
) -> Result<StartFacts, Failure> {
    let Some(start) = &m.predicate.start else {
        return Err(fail("went away".into()));
    };
    let n = started.parsed.size;
    let Some(a) = checker.archives.iter().find(|a| a.through == n) else {
        return Err(fail(format!(
            "starts at {n}, but no log.archive entry in the bundle archived through {n}"
        )));
    };
    let entry = |what: &str| {
        Failure::new(
            "tile/entries",
            Some(a.seq),
            format!(
                "the bundle's start at {n} differs from its log.archive entry {} ({what})",
                a.seq
            ),
        )
    };
    if a.root != Some(started.parsed.root) {
        return Err(entry("root"));
    }
    if a.prev != Some(started.parsed.prev) {
        return Err(entry("last leaf hash"));
    }
    if a.keys != start.keys {
        return Err(entry("keys"));
    }
    Ok(StartFacts {
        size: n,
        root: hash_b64(&started.parsed.root),
        prev: hash_b64(&started.parsed.prev),
        archive_entry: a.seq,
        archive_bundle: a.bundle.clone(),
        revoked_below: started.revocations.clone(),
    })
}
