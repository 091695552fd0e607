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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use stele_audit::EventKind;

    use super::*;

    fn entry(seq: u64, listed: Vec<ListedPayload>) -> AcceptedEntry {
        AcceptedEntry {
            seq,
            leaf: Vec::new(),
            ts: String::new(),
            kind: EventKind::PolicyLoad,
            session: None,
            principal: String::new(),
            teams: Vec::new(),
            effect: None,
            path: None,
            hash: [0; 32],
            payloads: listed,
        }
    }

    fn body(text: &str) -> (ListedPayload, ShipPayload) {
        let salt = [text.len() as u8; 32];
        let cmt = commitment(&salt, text.as_bytes());
        let listed = ListedPayload {
            cmt,
            media: "text/plain".into(),
            size: text.len() as u64,
        };
        let wire = ShipPayload {
            cmt: B64.encode(cmt),
            media: "text/plain".into(),
            salt: B64.encode(salt),
            body: B64.encode(text),
        };
        (listed, wire)
    }

    fn refused(r: Result<Vec<ShippedPayload>, BodyRefusal>) -> String {
        match r {
            Err(BodyRefusal::Refused(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_body_is_kept_under_its_first_entry_and_each_mismatch_is_refused() {
        let (a, wa) = body("alpha");
        let (b, wb) = body("bravo!");
        // Entry 8 lists a again (a reference to the body entry 7 committed).
        let entries = [entry(7, vec![a.clone()]), entry(8, vec![a.clone(), b])];
        let got = check_bodies(&entries, &[wb.clone(), wa.clone()]).unwrap();
        assert_eq!(
            got.iter().map(|p| p.seq).collect::<Vec<_>>(),
            [8, 7],
            "{got:?}"
        );
        assert_eq!(got[1].body, b"alpha");
        assert!(check_bodies(&entries, &[]).unwrap().is_empty());
        // Sent twice.
        let m = refused(check_bodies(&entries, &[wa.clone(), wa.clone()]));
        assert!(
            m.contains("twice") && m.contains(&commit_text(&a.cmt)),
            "{m}"
        );
        // Another media type, another size than the leaf states.
        let mut other = entries.clone();
        other[0].payloads[0].media = "text/html".into();
        other[1].payloads.truncate(0);
        assert!(refused(check_bodies(&other, std::slice::from_ref(&wa))).contains("media type"));
        other[0].payloads[0].media = "text/plain".into();
        other[0].payloads[0].size = 6;
        assert!(refused(check_bodies(&other, std::slice::from_ref(&wa))).contains("5 bytes"));
        // Not base64, or not 32 bytes: malformed (400), naming the field.
        let mut bad = wa.clone();
        bad.salt = "%%".into();
        assert!(matches!(
            check_bodies(&entries, &[bad]),
            Err(BodyRefusal::Malformed(m)) if m.contains("payloads[0].salt")
        ));
        let mut bad = wa;
        bad.cmt = B64.encode([1u8; 31]);
        assert!(matches!(
            check_bodies(&entries, &[bad]),
            Err(BodyRefusal::Malformed(m)) if m.contains("payloads[0].cmt")
        ));
    }
}
