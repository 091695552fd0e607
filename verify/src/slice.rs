//! A verified session bundle read back as the session it holds: its
//! leaves in order and its payload bodies, for a program that continues
//! the session elsewhere (`stele session import`). Call it only on a
//! bundle [`crate::verify`] accepted with the same options: it re-checks
//! the manifest and each file's digest, not the proofs.

use std::collections::BTreeMap;

use stele_audit::export::layout::{Selection, PAYLOADS_DIR, POLICIES_DIR, PROOFS_DIR};
use stele_audit::leaf::Leaf;
use stele_audit::merkle::{leaf_hash, Hash};

use crate::{Bundle, Failure, Options};

/// The session a session bundle holds.
#[derive(Debug, Clone)]
pub struct SessionSlice {
    /// The session id.
    pub id: String,
    /// The log's origin.
    pub origin: String,
    /// The bundle checkpoint's size.
    pub tree_size: u64,
    /// Its root (base64).
    pub root: String,
    /// The session's leaves, in order.
    pub leaves: Vec<Leaf>,
    /// The leaf hash of the last one.
    pub last_hash: Hash,
    /// Payload bodies (without their salt) by commitment.
    pub bodies: BTreeMap<Hash, Vec<u8>>,
    /// Policy bundle copies: name → (relative path → bytes).
    pub policies: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// Read the session of a session bundle that verified with `opts`.
pub fn read_session(bundle: &Bundle, opts: &Options) -> Result<SessionSlice, Failure> {
    let m = crate::manifest::check(bundle, opts)?;
    let Selection::Session { id } = &m.predicate.range else {
        return Err(Failure::new(
            stele_audit::export::layout::MANIFEST,
            None,
            "not a session bundle (export the session with `stele session export`)",
        ));
    };
    let mut leaves = Vec::new();
    let mut last_hash = [0u8; 32];
    let mut proofs: Vec<(u64, &String)> = m
        .digests
        .keys()
        .filter_map(|n| {
            let seq = n.strip_prefix(PROOFS_DIR)?.strip_suffix(".tlog-proof")?;
            Some((seq.parse().ok()?, n))
        })
        .collect();
    proofs.sort_unstable();
    for (seq, name) in proofs {
        let text = String::from_utf8(m.read(bundle, name)?)
            .map_err(|_| Failure::new(name.clone(), Some(seq), "not UTF-8"))?;
        let p = stele_audit::proof::parse(&text)
            .map_err(|r| Failure::new(name.clone(), Some(seq), r))?;
        last_hash = leaf_hash(&p.leaf);
        leaves.push(
            Leaf::parse_canonical(&p.leaf)
                .map_err(|e| Failure::new(name.clone(), Some(seq), e.to_string()))?,
        );
    }
    let mut bodies = BTreeMap::new();
    let mut policies: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for name in m.digests.keys() {
        if let Some(hexc) = name.strip_prefix(PAYLOADS_DIR) {
            let c: Hash = hex::decode(hexc)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| Failure::new(name.clone(), None, "not a commitment"))?;
            let b = m.read(bundle, name)?;
            if b.len() < 32 {
                return Err(Failure::new(name.clone(), None, "shorter than its salt"));
            }
            bodies.insert(c, b[32..].to_vec());
        } else if let Some((pol, rel)) = name
            .strip_prefix(POLICIES_DIR)
            .and_then(|r| r.split_once('/'))
        {
            policies
                .entry(pol.to_string())
                .or_default()
                .insert(rel.to_string(), m.read(bundle, name)?);
        }
    }
    Ok(SessionSlice {
        id: id.clone(),
        origin: m.predicate.origin.clone(),
        tree_size: m.predicate.tree_size,
        root: m.predicate.root.clone(),
        leaves,
        last_hash,
        bodies,
        policies,
    })
}
