//! Portable inclusion proofs in the C2SP tlog-proof text form:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 leaf bytes>
//! index <n>
//! <base64 hash>            (one line per audit-path hash)
//!
//! <signed checkpoint note>
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_attest::{Checkpoint, NoteVerifier};

#[cfg(feature = "store")]
use crate::error::AuditError;
#[cfg(feature = "store")]
use crate::merkle::inclusion_proof;
use crate::merkle::{leaf_hash, verify_inclusion, Hash};
#[cfg(feature = "store")]
use crate::store::Store;

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed and verified proof.
#[derive(Debug, Clone)]
pub struct VerifiedProof {
    /// Leaf index.
    pub index: u64,
    /// The leaf bytes carried in `extra`.
    pub leaf: Vec<u8>,
    /// The checkpoint the leaf is proven against.
    pub checkpoint: Checkpoint,
}

#[cfg(feature = "store")]
/// Build the proof for entry `seq` against the newest checkpoint, and check
/// it before handing it out.
pub fn make(store: &Store, verifier: &NoteVerifier, seq: u64) -> Result<String, AuditError> {
    let (size, note) = store
        .latest_checkpoint()?
        .ok_or_else(|| AuditError::NotFound("checkpoint".into()))?;
    if seq >= size {
        return Err(AuditError::NotFound(format!(
            "entry {seq} (the log has {size} entries)"
        )));
    }
    let entry = store.entry(seq)?;
    let path = inclusion_proof(store, seq, size)?;
    let text = render(&entry.leaf, seq, &path, &note);
    verify(&text, verifier).map_err(|e| AuditError::Integrity {
        index: seq,
        reason: format!("the stored tree gives a proof that does not verify: {e}"),
    })?;
    Ok(text)
}

/// The tlog-proof text for `leaf` at `index` with its audit `path` against
/// the signed checkpoint `note`.
pub fn render(leaf: &[u8], index: u64, path: &[Hash], note: &str) -> String {
    let mut text = format!("{HEADER}\nextra {}\nindex {index}\n", B64.encode(leaf));
    for h in path {
        text.push_str(&B64.encode(h));
        text.push('\n');
    }
    text.push('\n');
    text.push_str(note);
    text
}

/// Parse and verify a proof with the log's key.
pub fn verify(text: &str, verifier: &NoteVerifier) -> Result<VerifiedProof, String> {
    let (head, note) = text
        .split_once("\n\n")
        .ok_or("no blank line before the checkpoint")?;
    let mut lines = head.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("first line must be {HEADER}"));
    }
    let mut leaf = None;
    let mut index = None;
    let mut path: Vec<Hash> = Vec::new();
    for l in lines {
        if let Some(x) = l.strip_prefix("extra ") {
            leaf = Some(B64.decode(x).map_err(|_| "extra is not base64")?);
        } else if let Some(x) = l.strip_prefix("index ") {
            index = Some(x.parse::<u64>().map_err(|_| "index is not a number")?);
        } else {
            let h = B64
                .decode(l)
                .ok()
                .and_then(|v| Hash::try_from(v).ok())
                .ok_or("bad hash line")?;
            path.push(h);
        }
    }
    let leaf = leaf.ok_or("no leaf (extra line)")?;
    let index = index.ok_or("no index line")?;
    let (cp, _) = Checkpoint::open(note, verifier).map_err(|e| e.to_string())?;
    verify_inclusion(&leaf_hash(&leaf), index, cp.size, &path, &cp.root)
        .map_err(|e| e.to_string())?;
    Ok(VerifiedProof {
        index,
        leaf,
        checkpoint: cp,
    })
}
