//! Verifying a session bundle (`docs/export-format.md` §8): no tiles, so
//! nothing is recomputed from the whole log. Instead every entry of the
//! session comes with an inclusion proof against the verified checkpoint
//! (its leaf hash recomputed from the bytes), each leaf passes the rules
//! that need no neighbours, and the session's sub-chain — n from 0 without
//! a gap, each `session.prev` the previous leaf's hash, `session.start`
//! first and its end last — shows that no entry of the session is missing
//! and none is foreign. Earlier checkpoints are tied to the bundle's by
//! consistency proofs. What this cannot show (the rest of the log) is said
//! in the report.

use std::collections::{BTreeMap, BTreeSet};

use stele_attest::Checkpoint;
use stele_audit::check::{commit_hash, CheckMap, LeafChecker, RedactionSeen};
use stele_audit::cpu_time::{cpu_seconds_since, thread_cpu_ns};
use stele_audit::event::EventKind;
use stele_audit::export::layout::{
    sha256, Selection, CONSISTENCY_DIR, KEYS_DIR, PAYLOADS_DIR, PROOFS_DIR, REDACTIONS_DIR,
};
use stele_audit::leaf::{parse_hash_b64, Leaf};
use stele_audit::leaf_view::LeafView;
use stele_audit::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use stele_audit::session_chain::SessionChain;

use crate::account::AccountBuilder;
use crate::derived::Derived;
use crate::extras::{self, Attestation};
use crate::manifest::{Checkpoints, Manifest};
use crate::stream::Streamed;
use crate::{report, Bundle, Expect, Failure, Options, Report};

/// Verify a session bundle whose manifest, checkpoints and attestations
/// were read (`expect`: the roots they name, by size).
pub(crate) fn verify(
    bundle: &Bundle,
    opts: &Options,
    m: &Manifest,
    cps: &Checkpoints,
    atts: &[Attestation],
    expect: &Expect,
    completeness: crate::Completeness,
) -> Result<Report, Failure> {
    let started = std::time::Instant::now();
    let cpu0 = thread_cpu_ns();
    let mf = |r: String| Failure::new("manifest.intoto.jsonl", None, r);
    let Selection::Session { id } = &m.predicate.range else {
        return Err(mf("a session bundle must select a session".into()));
    };
    let [range] = m.predicate.sessions.as_slice() else {
        return Err(mf(
            "a session bundle describes exactly its one session".into()
        ));
    };
    if &range.id != id {
        return Err(mf(format!("describes session {}, not {id}", range.id)));
    }
    // A bundle of a log whose prefix is archived starts at `N`: its start
    // is checked as a live-part bundle's is (the signed checkpoint at `N`,
    // the key record replayed from the genesis key), and the `log.archive`
    // entry that made the record must be proven under `keys/`.
    let start = crate::start::check(bundle, m, expect)?;
    let from = start.as_ref().map_or(0, |s| s.parsed.size);
    consistency(bundle, m, expect, from)?;
    let mut proofs = Proofs::new(m);
    let mut chain = SessionChain::new(&m.predicate.origin, m.keys.first(), id);
    let mut derived = Derived::open(bundle, m)?;
    let mut account = AccountBuilder::default();
    let mut commits: BTreeMap<Hash, u64> = BTreeMap::new();
    let mut redacted_by: CheckMap<Hash, u64> = CheckMap::default();
    let mut redactions = Vec::new();
    let mut span: Option<(String, String)> = None;
    let mut bytes = 0u64;
    let mut count = 0u64;
    let mut continues = None;
    for (seq, name) in indexed(m, PROOFS_DIR)? {
        let leaf_bytes = proofs.read(bundle, &name, seq)?;
        bytes += leaf_bytes.len() as u64;
        let (leaf, h) = chain
            .push(seq, &leaf_bytes)
            .map_err(|f| Failure::new(name.clone(), Some(seq), f.reason))?;
        if count == 0 {
            continues = stele_audit::export::earlier::Continues::of(&leaf)
                .map_err(|r| Failure::new(name.clone(), Some(seq), r))?;
        }
        count += 1;
        for p in &leaf.payload {
            if let Some(c) = commit_hash(&p.commit) {
                commits.entry(c).or_insert(seq);
            }
        }
        if matches!(leaf.kind, EventKind::Redaction | EventKind::PayloadExpiry) {
            redaction(&name, &leaf, &mut redacted_by, &mut redactions)?;
        }
        match &mut span {
            None => span = Some((leaf.ts.clone(), leaf.ts.clone())),
            Some((_, b)) => b.clone_from(&leaf.ts),
        }
        derived.add(None, &leaf_bytes, seq, &h)?;
        account.add(&leaf);
    }
    let seen = chain
        .seen()
        .cloned()
        .ok_or_else(|| Failure::new(PROOFS_DIR, None, format!("no entry of session {id}")))?;
    if range.first != seen.first
        || range.last != seen.last
        || range.entries != seen.n + 1
        || range.ended != seen.ended
    {
        return Err(Failure::new("manifest.intoto.jsonl", Some(seen.last), format!(
            "session {id}: the manifest says entries #{}..#{} ({} entries, ended={}); the entries show #{}..#{} ({}, ended={})",
            range.first, range.last, range.entries, range.ended, seen.first, seen.last, seen.n + 1, seen.ended)));
    }
    // The end entry is what shows that nothing of the session is left out
    // (a writer appends nothing to a session after it). The manifest's word
    // that the session was open cannot stand in for it: whoever holds a
    // manifest key could drop the tail and say so.
    if !seen.ended && completeness == crate::Completeness::Whole {
        return Err(Failure::new(
            format!("{PROOFS_DIR}{}.tlog-proof", seen.last),
            Some(seen.last),
            format!(
                "session {id} is incomplete in this export: its last entry is #{} (n={}) and no session.end follows",
                seen.last, seen.n
            ),
        ));
    }
    if m.predicate.selected != count {
        return Err(mf(format!(
            "the manifest claims {} selected entries; the bundle holds {count} of session {id}",
            m.predicate.selected
        )));
    }
    let mut extra_entries = 0u64;
    // The rotations that set the keys of the bundle's checkpoints, from
    // the genesis key or from the start's replayed schedule at `N`.
    let (mut keys, mut revs) = match &start {
        Some(st) => (st.keys.clone(), st.revocations.clone()),
        None => (
            stele_audit::keys::KeySchedule::single(m.keys.first()),
            Vec::new(),
        ),
    };
    let mut start_facts = None;
    for (seq, name) in indexed(m, KEYS_DIR)? {
        let leaf_bytes = proofs.read(bundle, &name, seq)?;
        let leaf = outside_entry(
            &name,
            seq,
            &leaf_bytes,
            m.keys.first(),
            &[EventKind::KeyRotation, EventKind::LogArchive],
        )?;
        match leaf.kind {
            EventKind::LogArchive if start_facts.is_some() => {
                return Err(Failure::new(
                    name,
                    Some(seq),
                    "a second log.archive entry under keys/ (the bundle starts at one boundary)",
                ));
            }
            EventKind::LogArchive => {
                start_facts = Some(archive_entry(&name, seq, &leaf_bytes, m, start.as_ref())?);
            }
            _ => stele_audit::keys::check_entry(
                &LeafView::of(&leaf),
                &m.predicate.origin,
                &mut keys,
                &mut revs,
            )
            .map_err(|r| Failure::new(name.clone(), Some(seq), r))?,
        }
        extra_entries += 1;
    }
    if let (Some(st), None) = (&start, &start_facts) {
        return Err(mf(format!(
            "the bundle starts at {} but proves no log.archive entry that archived through it under {KEYS_DIR}",
            st.parsed.size
        )));
    }
    if keys != m.keys {
        return Err(mf(
            "the key ranges differ from the key.rotation entries the bundle proves".into(),
        ));
    }
    for (seq, name) in indexed(m, REDACTIONS_DIR)? {
        let leaf_bytes = proofs.read(bundle, &name, seq)?;
        let leaf = outside_redaction(&name, seq, &leaf_bytes, m.keys.first())?;
        let before = redactions.len();
        redaction(&name, &leaf, &mut redacted_by, &mut redactions)?;
        let erased: Vec<(Hash, u64)> = redacted_by
            .iter()
            .filter(|(_, r)| **r == seq)
            .filter_map(|(c, _)| commits.get(c).map(|by| (*c, *by)))
            .collect();
        if erased.is_empty() || redactions.len() == before {
            return Err(Failure::new(
                name,
                Some(seq),
                format!("redaction entry erases no payload of session {id}: it does not belong in this bundle"),
            ));
        }
        if let Some((_, by)) = erased.iter().find(|(_, by)| *by >= seq) {
            return Err(Failure::new(
                name,
                Some(seq),
                format!(
                    "redaction names a payload first committed by entry {by}, which is not earlier"
                ),
            ));
        }
        extra_entries += 1;
    }
    let selected_commits: CheckMap<Hash, u64> = commits.iter().map(|(c, s)| (*c, *s)).collect();
    let mut checker = LeafChecker::new(&m.predicate.origin, m.keys.first());
    checker.sessions.insert(id.clone(), seen.clone());
    checker.redacted_by = redacted_by;
    checker.redactions = redactions;
    let mut s = Streamed {
        checker,
        selected: count,
        selected_commits,
        all: false,
        seconds: 0.0,
        cpu_seconds: 0.0,
        selected_hashes: BTreeMap::new(),
        span,
        entries_bytes: bytes,
        derived: None,
        account: None,
        last_leaf: None,
        start: start_facts,
    };
    derived.finish(bundle, m)?;
    let mut report = Report::new(m, cps, &s);
    report.layout = stele_audit::export::layout::BundleLayout::Session;
    report.entries = count + extra_entries;
    report.proofs = count + extra_entries;
    report.unfinished = chain
        .unfinished()
        .map(|(q, k)| (q, k.to_string()))
        .collect();
    report.sessions = (1, 0);
    payloads(bundle, m, &s, &mut report)?;
    match &continues {
        Some(c) => report.earlier = crate::earlier::verify(bundle, m, id, c, opts)?,
        None if m
            .digests
            .contains_key(stele_audit::export::earlier::EARLIER_FILE) =>
        {
            return Err(Failure::new(
                stele_audit::export::earlier::EARLIER_FILE,
                None,
                format!("an earlier slice, but session {id}'s session.start continues nothing"),
            ))
        }
        None => {}
    }
    extras::policies(bundle, m, &mut report)?;
    extras::check_attestations(atts, &s.checker.sessions, &mut report)?;
    s.seconds = started.elapsed().as_secs_f64();
    s.cpu_seconds = cpu_seconds_since(cpu0, s.seconds);
    report.stream_seconds = s.seconds;
    report.stream_cpu_seconds = s.cpu_seconds;
    report.account = report::account(account, bundle, m, &s, &report, opts);
    let u = &mut report.account.verification.unchecked;
    u.insert(0, format!(
        "a session bundle: session {id} is shown complete (its sub-chain from session.start to its end) and each entry included in the log at size {}; the log's other {} entries are not in it and were not checked",
        m.predicate.tree_size,
        m.predicate.tree_size.saturating_sub(count + extra_entries)
    ));
    for (result, intent) in &chain.outside {
        u.push(format!(
            "entry {result} closes intent {intent}, which is outside the session: its pairing is not checked here"
        ));
    }
    Ok(report)
}

/// `<dir><index>.tlog-proof` files listed in the manifest, in index order.
fn indexed(m: &Manifest, dir: &str) -> Result<Vec<(u64, String)>, Failure> {
    let mut v = Vec::new();
    for name in m.digests.keys().filter(|n| n.starts_with(dir)) {
        let seq = name[dir.len()..]
            .strip_suffix(".tlog-proof")
            .filter(|x| !x.is_empty() && (x.len() == 1 || !x.starts_with('0')))
            .and_then(|x| x.parse::<u64>().ok())
            .ok_or_else(|| {
                Failure::new(name.clone(), None, "proof name must be <index>.tlog-proof")
            })?;
        v.push((seq, name.clone()));
    }
    v.sort_unstable();
    Ok(v)
}

/// Reads tlog-proofs against the bundle's checkpoint, verifying each
/// distinct checkpoint note once.
struct Proofs<'a> {
    m: &'a Manifest,
    notes: BTreeSet<String>,
}

impl<'a> Proofs<'a> {
    fn new(m: &'a Manifest) -> Self {
        Self {
            m,
            notes: BTreeSet::new(),
        }
    }

    /// The leaf bytes of proof file `name`, proven included at `seq` in
    /// the tree of the bundle's checkpoint.
    fn read(&mut self, bundle: &Bundle, name: &str, seq: u64) -> Result<Vec<u8>, Failure> {
        let f = |r: String| Failure::new(name, Some(seq), r);
        let text =
            String::from_utf8(self.m.read(bundle, name)?).map_err(|_| f("not UTF-8".into()))?;
        let p = stele_audit::proof::parse(&text).map_err(f)?;
        if p.index != seq {
            return Err(f(format!(
                "proves index {}, not the {seq} its name says",
                p.index
            )));
        }
        if !self.notes.contains(p.note) {
            let (cp, _) = Checkpoint::open(p.note, &self.m.current).map_err(|e| {
                f(format!(
                    "checkpoint does not verify with the trusted log key: {e}"
                ))
            })?;
            let pr = &self.m.predicate;
            if cp.origin != pr.origin || cp.size != pr.tree_size || cp.root != self.m.root {
                return Err(f(format!(
                    "proves inclusion against a checkpoint of size {}, not the bundle's (size {})",
                    cp.size, pr.tree_size
                )));
            }
            self.notes.insert(p.note.to_string());
        }
        verify_inclusion(
            &leaf_hash(&p.leaf),
            seq,
            self.m.predicate.tree_size,
            &p.path,
            &self.m.root,
        )
        .map_err(|e| {
            f(format!(
                "inclusion proof does not verify against the checkpoint (entry bytes or proof altered): {e}"
            ))
        })?;
        Ok(p.leaf)
    }
}

/// A `redaction` or `payload.expiry` entry from outside the session: its own rules.
fn outside_redaction(name: &str, seq: u64, bytes: &[u8], log_key: &str) -> Result<Leaf, Failure> {
    outside_entry(
        name,
        seq,
        bytes,
        log_key,
        &[EventKind::Redaction, EventKind::PayloadExpiry],
    )
}

/// A proven entry outside the session, of one of `kinds`.
fn outside_entry(
    name: &str,
    seq: u64,
    bytes: &[u8],
    log_key: &str,
    kinds: &[EventKind],
) -> Result<Leaf, Failure> {
    let f = |r: String| Failure::new(name, Some(seq), r);
    let leaf = Leaf::parse_canonical(bytes).map_err(|e| f(e.to_string()))?;
    stele_audit::rules::check_values(&LeafView::of(&leaf), log_key).map_err(f)?;
    if leaf.seq != seq {
        return Err(f(format!("leaf claims index {}", leaf.seq)));
    }
    if !kinds.contains(&leaf.kind) {
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        return Err(f(format!(
            "is a {} entry, not a {} entry",
            leaf.kind,
            names.join(" or ")
        )));
    }
    Ok(leaf)
}

/// The `log.archive` entry proven under `keys/`: only in a bundle that
/// starts past 0, and it must be the one that archived through the start,
/// recording the same root, last leaf hash and keys.
fn archive_entry(
    name: &str,
    seq: u64,
    bytes: &[u8],
    m: &Manifest,
    started: Option<&crate::start::Started>,
) -> Result<crate::start::StartFacts, Failure> {
    let f = |r: String| Failure::new(name, Some(seq), r);
    let (Some(st), Some(start)) = (started, &m.predicate.start) else {
        return Err(f(
            "a log.archive entry under keys/ of a bundle that does not start past 0".into(),
        ));
    };
    let a = LeafChecker::new("", "").archive_of(bytes).map_err(&f)?;
    let n = st.parsed.size;
    let differs = |what: &str| {
        f(format!(
            "the bundle's start at {n} differs from this log.archive entry ({what})"
        ))
    };
    if a.through != n {
        return Err(f(format!(
            "archived through {}, not through the bundle's start {n}",
            a.through
        )));
    }
    if a.root != Some(st.parsed.root) {
        return Err(differs("root"));
    }
    if a.prev != Some(st.parsed.prev) {
        return Err(differs("last leaf hash"));
    }
    if a.keys != start.keys {
        return Err(differs("keys"));
    }
    Ok(crate::start::StartFacts {
        size: n,
        root: stele_audit::leaf::hash_b64(&st.parsed.root),
        prev: stele_audit::leaf::hash_b64(&st.parsed.prev),
        archive_entry: a.seq,
        archive_bundle: a.bundle,
        revoked_below: st.revocations.clone(),
    })
}

/// Note what a redaction entry erases.
fn redaction(
    name: &str,
    leaf: &Leaf,
    by: &mut CheckMap<Hash, u64>,
    seen: &mut Vec<RedactionSeen>,
) -> Result<(), Failure> {
    let f = |r: String| Failure::new(name, Some(leaf.seq), r);
    let d = leaf
        .data
        .as_ref()
        .ok_or_else(|| f("redaction without data".into()))?;
    let list = d["commits"]
        .as_array()
        .ok_or_else(|| f("redaction without commits".into()))?;
    for c in list {
        let h = c
            .as_str()
            .and_then(commit_hash)
            .ok_or_else(|| f("redaction names a bad commitment".into()))?;
        if let Some(before) = by.insert(h, leaf.seq) {
            return Err(f(format!(
                "redaction names a payload already redacted by entry {before}"
            )));
        }
    }
    seen.push(RedactionSeen {
        seq: leaf.seq,
        count: list.len(),
        // An expiry states its class and period instead of a reason.
        reason: match d["reason"].as_str() {
            Some(r) => r.to_string(),
            None => format!(
                "retention class {} ({}) expired",
                d["class"].as_str().unwrap_or_default(),
                d["retention"].as_str().unwrap_or_default()
            ),
        },
    });
    Ok(())
}

/// Each earlier checkpoint named (published, cosigned, attested, held by
/// the reviewer) is tied to the bundle's checkpoint by a consistency proof;
/// no proof is there for any other size.
/// (`start`: the bundle's start `N`; the checkpoints below it, of the
/// archived key rotations, serve only the start's key replay, and a held
/// one below it was refused by that check.)
fn consistency(bundle: &Bundle, m: &Manifest, expect: &Expect, start: u64) -> Result<(), Failure> {
    let size = m.predicate.tree_size;
    let mut wanted = BTreeSet::new();
    for (&at, (root, from)) in expect.range(start.max(1)..size) {
        let name = format!("{CONSISTENCY_DIR}{at}");
        if !m.digests.contains_key(&name) {
            return Err(Failure::new(
                from.clone(),
                None,
                format!(
                    "names size {at}, which a session bundle can tie to its checkpoint (size {size}) only by a consistency proof, and it holds none ({name})"
                ),
            ));
        }
        let text = String::from_utf8(m.read(bundle, &name)?)
            .map_err(|_| Failure::new(name.clone(), None, "not UTF-8"))?;
        let proof: Vec<Hash> = text
            .lines()
            .map(|l| {
                parse_hash_b64(l).ok_or_else(|| {
                    Failure::new(
                        name.clone(),
                        None,
                        "each line must be the base64 of a 32-byte hash",
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        verify_consistency(at, size, root, &m.root, &proof).map_err(|e| {
            Failure::new(
                name.clone(),
                None,
                format!("{from} at size {at} is not consistent with the checkpoint (fork or altered proof): {e}"),
            )
        })?;
        wanted.insert(name);
    }
    if let Some(extra) = m
        .digests
        .keys()
        .find(|n| n.starts_with(CONSISTENCY_DIR) && !wanted.contains(*n))
    {
        return Err(Failure::new(
            extra.clone(),
            None,
            "consistency proof for a size no checkpoint of the bundle names",
        ));
    }
    Ok(())
}

/// Payload files against the session's commitments.
fn payloads(
    bundle: &Bundle,
    m: &Manifest,
    s: &Streamed,
    report: &mut Report,
) -> Result<(), Failure> {
    let mut present = BTreeSet::new();
    for name in m.digests.keys().filter(|n| n.starts_with(PAYLOADS_DIR)) {
        let c: Hash = hex::decode(&name[PAYLOADS_DIR.len()..])
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| {
                Failure::new(name.clone(), None, "payload name is not a hex commitment")
            })?;
        let by = s.selected_commits.get(&c).copied().ok_or_else(|| {
            Failure::new(
                name.clone(),
                None,
                "no entry of the session commits to this payload",
            )
        })?;
        let b = m.read(bundle, name)?;
        if b.len() < 32 || sha256(&b) != c {
            return Err(Failure::new(
                name.clone(),
                Some(by),
                "payload (salt ‖ body) does not match its commitment",
            ));
        }
        if s.checker.redacted_by.contains_key(&c) {
            return Err(Failure::new(
                name.clone(),
                Some(by),
                "payload is present although a redaction erased it",
            ));
        }
        present.insert(c);
    }
    let mut missing: Vec<(&Hash, &u64)> = Vec::new();
    for (c, seq) in &s.selected_commits {
        if present.contains(c) {
            report.payloads_verified += 1;
        } else if s.checker.redacted_by.contains_key(c) {
            report.payloads_redacted += 1;
        } else if !m.predicate.payloads_included {
            report.payloads_withheld += 1;
        } else {
            missing.push((c, seq));
        }
    }
    if let Some((c, seq)) = missing.into_iter().min_by_key(|(_, s)| **s) {
        return Err(Failure::new(
            format!("{PAYLOADS_DIR}{}", hex::encode(c)),
            Some(*seq),
            "payload of a session entry is missing and no redaction entry in the bundle covers it",
        ));
    }
    Ok(())
}
