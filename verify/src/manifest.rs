//! The signed manifest, the file list, the checkpoints and cosignatures.

use std::collections::{BTreeMap, BTreeSet};

use stele_attest::dsse::Envelope;
use stele_attest::{Checkpoint, SignedNote};
use stele_audit::export::layout::{
    sha256, ExportPredicate, CHECKPOINT, CHECKPOINTS_DIR, KEYS_DIR, MANIFEST,
};
use stele_audit::export::layout::{BundleLayout, CONSISTENCY_DIR, REDACTIONS_DIR, TIMESTAMPS_DIR};
use stele_audit::export::layout::{
    ATTESTATIONS_DIR, OCSF, PAYLOADS_DIR, POLICIES_DIR, PROOFS_DIR, SUMMARY, VERIFY_MD,
};
use stele_audit::leaf::parse_hash_b64;

use crate::{Bundle, Expect, Failure, Options};

/// What the manifest says.
#[derive(Debug)]
pub(crate) struct Manifest {
    pub predicate: ExportPredicate,
    /// The log's keys as the predicate states them (checked against the
    /// rotation entries by the streams).
    pub keys: stele_audit::keys::KeySchedule,
    /// Revocations in force: the reviewer's and the log's own.
    pub revoked: Vec<stele_audit::keys::Revocation>,
    /// The key that signs `checkpoint` (the log's newest).
    pub current: stele_attest::NoteVerifier,
    /// Listed file → SHA-256.
    pub digests: BTreeMap<String, [u8; 32]>,
    pub root: [u8; 32],
    pub note: String,
}

impl Manifest {
    /// The digest the manifest lists for `name`.
    pub fn listed(&self, name: &str) -> Result<&[u8; 32], Failure> {
        self.digests
            .get(name)
            .ok_or_else(|| Failure::new(name, None, "not listed in the manifest"))
    }

    /// Fail unless `got` is the listed digest `want` of `name`.
    pub fn check_sum(&self, name: &str, want: &[u8; 32], got: &[u8; 32]) -> Result<(), Failure> {
        if got != want {
            return Err(Failure::new(
                name,
                None,
                "SHA-256 differs from the manifest (file altered)",
            ));
        }
        Ok(())
    }

    /// Read a listed file and check its digest.
    pub fn read(&self, bundle: &Bundle, name: &str) -> Result<Vec<u8>, Failure> {
        let want = self.listed(name)?;
        let b = bundle.read(name)?;
        self.check_sum(name, want, &sha256(&b))?;
        Ok(b)
    }

    /// Check a file's digest without keeping its bytes.
    pub fn check_digest(&self, bundle: &Bundle, name: &str) -> Result<(), Failure> {
        let want = self
            .digests
            .get(name)
            .ok_or_else(|| Failure::new(name, None, "not listed in the manifest"))?;
        if &bundle.digest(name)? != want {
            return Err(Failure::new(
                name,
                None,
                "SHA-256 differs from the manifest (file altered)",
            ));
        }
        Ok(())
    }
}

pub(crate) fn check(bundle: &Bundle, opts: &Options) -> Result<Manifest, Failure> {
    let f = |r: String| Failure::new(MANIFEST, None, r);
    let text = bundle
        .read(MANIFEST)
        .map_err(|_| f("missing: this is not a signed export".into()))?;
    let env = Envelope::from_json(&text).map_err(|e| f(e.to_string()))?;
    let st = crate::keys::open_manifest(&env, opts).map_err(f)?;
    let predicate: ExportPredicate =
        serde_json::from_value(st.predicate).map_err(|e| f(format!("predicate: {e}")))?;
    let mut digests = BTreeMap::new();
    for s in &st.subject {
        let d = s
            .sha256_bytes()
            .ok_or_else(|| f(format!("subject {} has no SHA-256", s.name)))?;
        if s.name == MANIFEST || digests.insert(s.name.clone(), d).is_some() {
            return Err(f(format!(
                "subject {} listed twice or names the manifest",
                s.name
            )));
        }
    }
    let present: BTreeSet<String> = bundle
        .names()
        .into_iter()
        .filter(|n| n != MANIFEST)
        .collect();
    if let Some(extra) = present.iter().find(|n| !digests.contains_key(*n)) {
        return Err(Failure::new(
            extra.clone(),
            None,
            "file is not listed in the signed manifest (added)",
        ));
    }
    if let Some(missing) = digests.keys().find(|n| !present.contains(*n)) {
        return Err(Failure::new(
            missing.clone(),
            None,
            "listed in the signed manifest but missing (deleted or truncated export)",
        ));
    }
    if let Some(s) = &predicate.start {
        // Its own shape first: a start that does not hold together is
        // named as such, before anything is read against it.
        s.parse()
            .map_err(|e| f(format!("the bundle's start: {e}")))?;
    }
    let (keys, revoked, current) = crate::keys::trusted_schedule(&predicate, opts).map_err(f)?;
    let root =
        parse_hash_b64(&predicate.root).ok_or_else(|| f("predicate root is not a hash".into()))?;
    let note = String::from_utf8(bundle.read(CHECKPOINT)?)
        .map_err(|_| Failure::new(CHECKPOINT, None, "not UTF-8"))?;
    let m = Manifest {
        keys,
        revoked,
        current,
        predicate,
        digests,
        root,
        note,
    };
    m.read(bundle, CHECKPOINT)?;
    Ok(m)
}

/// Cosignatures counted per witness: the largest size each one cosigned.
#[derive(Debug, Default)]
pub(crate) struct Checkpoints {
    pub checked: Vec<u64>,
    pub cosigned: BTreeMap<String, u64>,
    pub anchors: Vec<(u64, String)>,
}

pub(crate) fn checkpoints(
    bundle: &Bundle,
    opts: &Options,
    m: &Manifest,
    expect: &mut Expect,
) -> Result<Checkpoints, Failure> {
    let mut out = Checkpoints::default();
    let p = &m.predicate;
    let (cp, note) = open_note(&m.note, CHECKPOINT, m, opts, &mut out)?;
    if cp.size != p.tree_size || cp.root != m.root {
        return Err(Failure::new(
            CHECKPOINT,
            None,
            format!(
                "checkpoint (size {}) differs from the manifest (size {})",
                cp.size, p.tree_size
            ),
        ));
    }
    let _ = note;
    expect.insert(cp.size, (cp.root, CHECKPOINT.to_string()));
    let listed: BTreeSet<String> = p
        .checkpoints
        .iter()
        .map(|s| format!("{CHECKPOINTS_DIR}{s}"))
        .collect();
    for name in m.digests.keys().filter(|n| n.starts_with(CHECKPOINTS_DIR)) {
        if !listed.contains(name) {
            return Err(Failure::new(
                name.clone(),
                None,
                "checkpoint file not named in the manifest predicate",
            ));
        }
    }
    for name in &listed {
        let text = String::from_utf8(m.read(bundle, name)?)
            .map_err(|_| Failure::new(name.clone(), None, "not UTF-8"))?;
        let (c, _) = open_note(&text, name, m, opts, &mut out)?;
        if format!("{CHECKPOINTS_DIR}{}", c.size) != *name || c.size > p.tree_size {
            return Err(Failure::new(
                name.clone(),
                None,
                format!("holds size {} (tree size {})", c.size, p.tree_size),
            ));
        }
        if let Some(st) = &p.start {
            // Below the start nothing is in the bundle to check a root
            // against, except the key rotations `start.keys` proves.
            if c.size < st.size && !m.keys.boundaries().any(|b| b == c.size) {
                return Err(Failure::new(
                    name.clone(),
                    None,
                    format!(
                        "holds size {}, below the bundle's start {} (entries 0..{} are archived), and no key rotation needs it",
                        c.size, st.size, st.size
                    ),
                ));
            }
        }
        expect.insert(c.size, (c.root, name.clone()));
    }
    let need = opts.quorum.unwrap_or(opts.witnesses.len());
    if out.cosigned.len() < need {
        return Err(Failure::new(CHECKPOINT, None, format!(
            "witness quorum not met: {} of the {} trusted witnesses cosigned a checkpoint in this export, {need} required",
            out.cosigned.len(), opts.witnesses.len())));
    }
    // Each rotation's checkpoint, signed by both keys, links one key to the next.
    for b in m.keys.boundaries().filter(|b| *b <= p.tree_size) {
        if !expect.contains_key(&b) {
            return Err(Failure::new(
                format!("{CHECKPOINTS_DIR}{b}"),
                b.checked_sub(1),
                format!("the checkpoint of the key rotation at size {b} is missing"),
            ));
        }
    }
    for (text, source) in &opts.anchors {
        let a = stele_audit::keys::open_checkpoint(text, &m.keys, &m.revoked).map_err(|e| {
            Failure::new(
                source.clone(),
                None,
                format!("the checkpoint you hold does not verify: {e}"),
            )
        })?;
        if a.size > p.tree_size {
            return Err(Failure::new(source.clone(), Some(p.tree_size), format!(
                "the export ends at {} entries but the checkpoint you hold covers {}: truncated or rolled back", p.tree_size, a.size)));
        }
        if let Some((r, from)) = expect.get(&a.size) {
            if *r != a.root {
                return Err(Failure::new(
                    source.clone(),
                    a.size.checked_sub(1),
                    format!("contradicts {from} at size {} (fork)", a.size),
                ));
            }
        }
        expect.insert(a.size, (a.root, format!("held checkpoint {source}")));
        out.anchors.push((a.size, source.clone()));
    }
    Ok(out)
}

fn open_note(
    text: &str,
    name: &str,
    m: &Manifest,
    opts: &Options,
    out: &mut Checkpoints,
) -> Result<(Checkpoint, SignedNote), Failure> {
    let fail = |e: String| {
        Failure::new(
            name,
            None,
            format!("checkpoint does not verify with the trusted log key for its size: {e}"),
        )
    };
    let cp = stele_audit::keys::open_checkpoint(text, &m.keys, &m.revoked).map_err(fail)?;
    let note = SignedNote::parse(text).map_err(|e| fail(e.to_string()))?;
    for w in &opts.witnesses {
        if !note.signatures.iter().any(|s| w.matches(s)) {
            continue;
        }
        let ts = w
            .verify_note(&note)
            .map_err(|e| Failure::new(name, None, format!("{e}")))?;
        if ts > opts.now + 300 {
            return Err(Failure::new(
                name,
                None,
                format!("cosignature by {} is dated in the future ({ts})", w.name()),
            ));
        }
        let e = out.cosigned.entry(w.name().to_string()).or_insert(0);
        *e = (*e).max(cp.size);
    }
    out.checked.push(cp.size);
    Ok((cp, note))
}

/// The derived files (summary, OCSF view, instructions) are required and
/// checked against the manifest; any name outside the format is refused.
pub(crate) fn derived_files(bundle: &Bundle, m: &Manifest) -> Result<(), Failure> {
    // Always written by stele: their absence means a changed export.
    for name in [SUMMARY, VERIFY_MD, OCSF] {
        if !m.digests.contains_key(name) {
            return Err(Failure::new(
                name,
                None,
                "required in every export but missing from the manifest",
            ));
        }
    }
    // Tiles in a bundle proven by tiles; consistency proofs and the
    // redaction entries a session's payloads need in a session bundle.
    let by_layout: [&str; 2] = match m.predicate.layout {
        BundleLayout::Tiles => ["tile/", "tile/"],
        BundleLayout::Session => [CONSISTENCY_DIR, REDACTIONS_DIR],
    };
    let keys_dir = match m.predicate.layout {
        BundleLayout::Tiles => "tile/",
        BundleLayout::Session => KEYS_DIR,
    };
    let dirs = [
        by_layout[0],
        by_layout[1],
        keys_dir,
        CHECKPOINTS_DIR,
        PAYLOADS_DIR,
        PROOFS_DIR,
        POLICIES_DIR,
        ATTESTATIONS_DIR,
        TIMESTAMPS_DIR,
    ];
    for name in m.digests.keys() {
        if [SUMMARY, VERIFY_MD, OCSF].contains(&name.as_str()) {
            m.check_digest(bundle, name)?;
        } else if name == stele_audit::export::earlier::EARLIER_FILE
            && m.predicate.layout == BundleLayout::Session
        {
            // A moved session's earlier slice: checked by the session stream.
        } else if name != CHECKPOINT && !dirs.iter().any(|d| name.starts_with(d)) {
            return Err(Failure::new(
                name.clone(),
                None,
                "file is not part of the export format",
            ));
        }
    }
    Ok(())
}
