//! Checks after streaming: sessions, payloads, proofs, policy copies and
//! session attestations.

use std::collections::BTreeMap;

use stele_attest::dsse::Envelope;
use stele_attest::intoto::Statement;
use stele_audit::export::layout::{
    files_digest, sha256, Selection, ATTESTATIONS_DIR, MAX_PROOFS, PAYLOADS_DIR, POLICIES_DIR,
    PROOFS_DIR, SESSION_PREDICATE_TYPE,
};
use stele_audit::export::tiles::{entry_bundle_path, split_bundle, TILE_WIDTH};
use stele_audit::leaf::parse_hash_b64;
use stele_audit::merkle::leaf_hash;

use crate::manifest::Manifest;
use crate::stream::Streamed;
use crate::{Bundle, Expect, Failure, Options, Report};

/// Every session the manifest names must match the entries; a session
/// export must contain the whole session, through its end.
pub(crate) fn sessions(m: &Manifest, s: &Streamed) -> Result<(), Failure> {
    let f = |r: String| Failure::new("manifest.intoto.jsonl", None, r);
    if m.predicate.selected != s.selected {
        return Err(f(format!(
            "the manifest claims {} selected entries; the entries hold {}",
            m.predicate.selected, s.selected
        )));
    }
    if let Selection::Session { id } = &m.predicate.range {
        if !m.predicate.sessions.iter().any(|r| &r.id == id) {
            return Err(f(format!("session {id} is selected but not described")));
        }
    }
    for r in &m.predicate.sessions {
        let seen = s
            .checker
            .sessions
            .get(&r.id)
            .ok_or_else(|| f(format!("session {} is not in the entries", r.id)))?;
        if seen.first != r.first
            || seen.last != r.last
            || seen.n + 1 != r.entries
            || seen.ended != r.ended
        {
            return Err(Failure::new("manifest.intoto.jsonl", Some(seen.last), format!(
                "session {}: the manifest says entries #{}..#{} ({} entries, ended={}); the entries show #{}..#{} ({}, ended={})",
                r.id, r.first, r.last, r.entries, r.ended, seen.first, seen.last, seen.n + 1, seen.ended)));
        }
        if !seen.ended {
            return Err(Failure::new("manifest.intoto.jsonl", Some(seen.last), format!(
                "session {} is incomplete in this export: its last entry is #{} (n={}) and no session.end follows",
                r.id, seen.last, seen.n)));
        }
    }
    Ok(())
}

pub(crate) fn payloads(
    bundle: &Bundle,
    m: &Manifest,
    s: &Streamed,
    report: &mut Report,
) -> Result<(), Failure> {
    let committed = s.checker.committed();
    s.checker
        .check_commitments(&committed)
        .map_err(|f| Failure::new("tile/entries", Some(f.index), f.reason))?;
    // Erasures against legal holds and expiry cut-offs: the entries that
    // made the erased payloads, read back from their entry bundles (a
    // whole-log or range export holds every bundle; each was checked
    // against its digest and the tree while streaming).
    let size = m.predicate.tree_size;
    s.checker
        .check_erasures(&committed, |seq| {
            let n = seq / TILE_WIDTH;
            let w = (size - n * TILE_WIDTH).min(TILE_WIDTH);
            let name = entry_bundle_path(n, w);
            if !m.digests.contains_key(&name) {
                return Ok(None);
            }
            let b = m.read(bundle, &name).map_err(|e| e.to_string())?;
            let leaves = split_bundle(&b).ok_or("entry bundle does not split")?;
            let leaf = leaves
                .get((seq % TILE_WIDTH) as usize)
                .ok_or("entry bundle is short")?;
            stele_audit::holds::EntryAttrs::of_leaf(leaf).map(Some)
        })
        .map_err(|f| Failure::new("tile/entries", Some(f.index), f.reason))?;
    let mut present = std::collections::BTreeSet::new();
    for name in m.digests.keys().filter(|n| n.starts_with(PAYLOADS_DIR)) {
        let hexc = &name[PAYLOADS_DIR.len()..];
        let c: [u8; 32] = hex::decode(hexc)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| {
                Failure::new(name.clone(), None, "payload name is not a hex commitment")
            })?;
        let by = committed
            .get(&c)
            .copied()
            .ok_or_else(|| Failure::new(name.clone(), None, "no entry commits to this payload"))?;
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
    let selected = if s.all {
        &committed
    } else {
        &s.selected_commits
    };
    for (c, seq) in selected {
        if present.contains(c) {
            report.payloads_verified += 1;
        } else if s.checker.redacted_by.contains_key(c) {
            report.payloads_redacted += 1;
        } else if !m.predicate.payloads_included {
            report.payloads_withheld += 1;
        } else {
            return Err(Failure::new(
                format!("{PAYLOADS_DIR}{}", hex::encode(c)),
                Some(*seq),
                "payload of a selected entry is missing and no redaction entry covers it",
            ));
        }
    }
    Ok(())
}

pub(crate) fn proofs(
    bundle: &Bundle,
    _opts: &Options,
    m: &Manifest,
    s: &Streamed,
    report: &mut Report,
) -> Result<(), Failure> {
    let listed: Vec<&String> = m
        .digests
        .keys()
        .filter(|n| n.starts_with(PROOFS_DIR))
        .collect();
    for name in &listed {
        let seq: u64 = name[PROOFS_DIR.len()..]
            .strip_suffix(".tlog-proof")
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| {
                Failure::new(
                    (*name).clone(),
                    None,
                    "proof name must be <index>.tlog-proof",
                )
            })?;
        let text = String::from_utf8(m.read(bundle, name)?)
            .map_err(|_| Failure::new((*name).clone(), Some(seq), "not UTF-8"))?;
        let p = stele_audit::proof::verify(&text, &m.current)
            .map_err(|e| Failure::new((*name).clone(), Some(seq), e))?;
        let want = s.selected_hashes.get(&seq).ok_or_else(|| {
            Failure::new(
                (*name).clone(),
                Some(seq),
                "proof for an entry outside the selection",
            )
        })?;
        if p.index != seq
            || &leaf_hash(&p.leaf) != want
            || p.checkpoint.size != m.predicate.tree_size
            || p.checkpoint.root != m.root
        {
            return Err(Failure::new(
                (*name).clone(),
                Some(seq),
                "proof does not match the exported entry and checkpoint",
            ));
        }
        report.proofs += 1;
    }
    let need = s.selected_hashes.len().min(MAX_PROOFS);
    if let Some((seq, _)) = s.selected_hashes.iter().take(need).find(|(q, _)| {
        !m.digests
            .contains_key(&format!("{PROOFS_DIR}{q}.tlog-proof"))
    }) {
        return Err(Failure::new(
            format!("{PROOFS_DIR}{seq}.tlog-proof"),
            Some(*seq),
            "inclusion proof of a selected entry is missing",
        ));
    }
    Ok(())
}

pub(crate) fn policies(bundle: &Bundle, m: &Manifest, report: &mut Report) -> Result<(), Failure> {
    let mut groups: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for name in m.digests.keys().filter(|n| n.starts_with(POLICIES_DIR)) {
        let rest = &name[POLICIES_DIR.len()..];
        let (dir, rel) = rest.split_once('/').ok_or_else(|| {
            Failure::new(name.clone(), None, "policy file outside a bundle folder")
        })?;
        groups
            .entry(dir.to_string())
            .or_default()
            .push((rel.to_string(), m.read(bundle, name)?));
    }
    for p in &m.predicate.policies {
        let files = groups.remove(&p.name).unwrap_or_default();
        let d = files_digest(&files);
        if d != p.files_digest {
            return Err(Failure::new(
                format!("{POLICIES_DIR}{}", p.name),
                None,
                format!(
                    "policy files digest {d} differs from the manifest's {}",
                    p.files_digest
                ),
            ));
        }
        report.policies.push((
            p.name.clone(),
            p.files_digest.clone(),
            p.bundle_digest.clone(),
        ));
    }
    if let Some(name) = groups.keys().next() {
        return Err(Failure::new(
            format!("{POLICIES_DIR}{name}"),
            None,
            "policy folder not named in the manifest",
        ));
    }
    Ok(())
}

/// A parsed session attestation, checked after streaming.
#[derive(Debug)]
pub(crate) struct Attestation {
    file: String,
    predicate: serde_json::Value,
    subject_digest: Option<[u8; 32]>,
}

pub(crate) fn read_attestations(
    bundle: &Bundle,
    _opts: &Options,
    m: &Manifest,
    expect: &mut Expect,
) -> Result<Vec<Attestation>, Failure> {
    let mut out = Vec::new();
    for name in m.digests.keys().filter(|n| n.starts_with(ATTESTATIONS_DIR)) {
        let b = m.read(bundle, name)?;
        let f = |r: String| Failure::new(name.clone(), None, r);
        let env = Envelope::from_json(&b).map_err(|e| f(e.to_string()))?;
        // Signed by the log's key of the time: any key of its schedule.
        let mut opened = Err(String::from("no key"));
        for k in m.keys.ranges() {
            let Ok(v) = stele_attest::NoteVerifier::parse(&k.key) else {
                continue;
            };
            match Statement::open(&env, &v, SESSION_PREDICATE_TYPE) {
                Ok(st) => {
                    opened = Ok(st);
                    break;
                }
                Err(e) => opened = Err(e.to_string()),
            }
        }
        let st = opened.map_err(|e| f(format!("attestation: {e}")))?;
        let cp = &st.predicate["checkpoint"];
        let size = cp["size"]
            .as_u64()
            .ok_or_else(|| f("no checkpoint size".into()))?;
        let root = cp["root"]
            .as_str()
            .and_then(parse_hash_b64)
            .ok_or_else(|| f("no checkpoint root".into()))?;
        if size > m.predicate.tree_size {
            return Err(f(format!(
                "attests a checkpoint of size {size} beyond the export"
            )));
        }
        if let Some((r, from)) = expect.get(&size) {
            if *r != root {
                return Err(f(format!("attested checkpoint contradicts {from}")));
            }
        }
        expect.entry(size).or_insert((root, name.clone()));
        out.push(Attestation {
            file: name.clone(),
            subject_digest: st.subject.first().and_then(|s| s.sha256_bytes()),
            predicate: st.predicate,
        });
    }
    Ok(out)
}

pub(crate) fn check_attestations(
    atts: &[Attestation],
    sessions: &stele_audit::check::CheckMap<String, stele_audit::check::SessionSeen>,
    report: &mut Report,
) -> Result<(), Failure> {
    for a in atts {
        let p = &a.predicate;
        let f = |r: String| Failure::new(a.file.clone(), None, r);
        let id = p["session"]
            .as_str()
            .ok_or_else(|| f("no session".into()))?;
        let seen = sessions
            .get(id)
            .ok_or_else(|| f(format!("session {id} is not in the entries")))?;
        let ok = p["first"].as_u64() == Some(seen.first)
            && p["last"].as_u64() == Some(seen.last)
            && p["entries"].as_u64() == Some(seen.n + 1)
            && p["ended"].as_bool() == Some(seen.ended)
            && a.subject_digest == Some(seen.head);
        if !ok {
            return Err(f(format!(
                "attestation of session {id} does not match its entries"
            )));
        }
        report.attestations.push(id.to_string());
    }
    Ok(())
}
