//! The payload bodies a shipped batch carries, checked before anything of
//! the batch is stored: each must be listed by an entry of the batch, and
//! match its commitment (`SHA-256(salt ‖ body)`, computed as the verifiers
//! do, [`stele_audit::payload::commitment`]), size and media type.

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_audit::incremental::{AcceptedEntry, ListedPayload};
use stele_audit::merkle::Hash;
use stele_audit::payload::{commit_text, commitment};

use crate::sessions::remote::log_wire::ShipPayload;
use crate::store::shipping::ShippedPayload;

/// Why the bodies of a batch were not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefusal {
    /// A field is not what the API takes (400).
    #[error("{0}")]
    Malformed(String),
    /// A body does not belong to the batch or does not match (422).
    #[error("{0}")]
    Refused(String),
}

/// The bodies of `payloads` as the store keeps them, each under the first
/// entry of `entries` that lists it.
pub fn check_bodies(
    entries: &[AcceptedEntry],
    payloads: &[ShipPayload],
) -> Result<Vec<ShippedPayload>, BodyRefusal> {
    let mut listed: HashMap<Hash, (u64, &ListedPayload)> = HashMap::new();
    for e in entries {
        for p in &e.payloads {
            listed.entry(p.cmt).or_insert((e.seq, p));
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(payloads.len());
    for (k, p) in payloads.iter().enumerate() {
        let field = |name: &str, v: &str| {
            B64.decode(v).map_err(|e| {
                BodyRefusal::Malformed(format!("payloads[{k}].{name}: not standard base64: {e}"))
            })
        };
        let cmt = Hash::try_from(field("cmt", &p.cmt)?.as_slice())
            .map_err(|_| BodyRefusal::Malformed(format!("payloads[{k}].cmt: not 32 bytes")))?;
        let (salt, body) = (field("salt", &p.salt)?, field("body", &p.body)?);
        let named = commit_text(&cmt);
        let refused = |why: String| BodyRefusal::Refused(format!("payloads[{k}] ({named}): {why}"));
        let Some((seq, l)) = listed.get(&cmt) else {
            return Err(refused(
                "no entry of this batch lists this commitment".into(),
            ));
        };
        if !seen.insert(cmt) {
            return Err(refused("sent twice in this batch".into()));
        }
        if commitment(&salt, &body) != cmt {
            return Err(refused(
                "the body does not match its commitment (SHA-256 of salt and body differs)".into(),
            ));
        }
        if body.len() as u64 != l.size {
            return Err(refused(format!(
                "the body is {} bytes but entry {seq} lists {}",
                body.len(),
                l.size
            )));
        }
        if p.media != l.media {
            return Err(refused(format!(
                "media type {:?} but entry {seq} lists {:?}",
                p.media, l.media
            )));
        }
        out.push(ShippedPayload {
            cmt: cmt.to_vec(),
            seq: *seq as i64,
            media: l.media.clone(),
            salt,
            body,
        });
    }
    Ok(out)
}
