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
    // Handed to someone outside: what it covers must survive a power failure.
    crate::durability::sync_wal(store.path())?;
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

/// A proof's parts, read but not yet verified.
#[derive(Debug, Clone)]
pub struct ParsedProof<'a> {
    /// Leaf index.
    pub index: u64,
    /// The leaf bytes carried in `extra`.
    pub leaf: Vec<u8>,
    /// The audit path.
    pub path: Vec<Hash>,
    /// The signed checkpoint note, as written.
    pub note: &'a str,
}

/// Read a proof in the strict form [`verify`] describes, without checking
/// any signature or hash (for a verifier that checks many proofs against
/// one checkpoint it has verified once).
pub fn parse(text: &str) -> Result<ParsedProof<'_>, String> {
    let (head, note) = text
        .split_once("\n\n")
        .ok_or("no blank line before the checkpoint")?;
    let mut lines = head.split('\n');
    if lines.next() != Some(HEADER) {
        return Err(format!("first line must be {HEADER}"));
    }
    let leaf = lines
        .next()
        .and_then(|l| l.strip_prefix("extra "))
        .ok_or("the second line must be `extra <base64 leaf>` (the leaf is required)")?;
    let leaf = B64
        .decode(leaf)
        .map_err(|_| "extra is not canonical base64")?;
    let index = lines
        .next()
        .and_then(|l| l.strip_prefix("index "))
        .ok_or("the third line must be `index <n>`")?;
    if index.is_empty()
        || !index.bytes().all(|b| b.is_ascii_digit())
        || (index.len() > 1 && index.starts_with('0'))
    {
        return Err("index must be a decimal number without leading zeros".into());
    }
    let index: u64 = index.parse().map_err(|_| "index out of range")?;
    let mut path: Vec<Hash> = Vec::new();
    for l in lines {
        let h = crate::leaf::parse_hash_b64(l)
            .ok_or("each audit path line must be the canonical base64 of a 32-byte hash")?;
        path.push(h);
    }
    Ok(ParsedProof {
        index,
        leaf,
        path,
        note,
    })
}

/// Parse and verify a proof with the log's key. The form is strict: the
/// header, then `extra` (the leaf, required), then `index` (decimal, no
/// leading zeros), then one canonical base64 hash per line, a blank line
/// and the signed checkpoint; the leaf must be a valid leaf of this log at
/// that index.
pub fn verify(text: &str, verifier: &NoteVerifier) -> Result<VerifiedProof, String> {
    let ParsedProof {
        index,
        leaf,
        path,
        note,
    } = parse(text)?;
    let (cp, _) = Checkpoint::open(note, verifier).map_err(|e| e.to_string())?;
    verify_inclusion(&leaf_hash(&leaf), index, cp.size, &path, &cp.root)
        .map_err(|e| e.to_string())?;
    // What is proven included must be a leaf of this log at this index.
    let parsed = crate::leaf::Leaf::parse_canonical(&leaf).map_err(|e| e.to_string())?;
    if parsed.seq != index || parsed.log != cp.origin {
        return Err(format!(
            "the leaf claims index {} of log {:?}, not index {index} of {:?}",
            parsed.seq, parsed.log, cp.origin
        ));
    }
    crate::rules::check_values(
        &crate::leaf_view::LeafView::of(&parsed),
        &verifier.to_string(),
    )?;
    Ok(VerifiedProof {
        index,
        leaf,
        checkpoint: cp,
    })
}
