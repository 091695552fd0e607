//! Which key signs the log's checkpoints at which tree size: the key
//! schedule, built from the log's own `key.rotation` entries, and the
//! revocations of compromised keys.
//!
//! A rotation entry at index `r` announces the new key; its commit's
//! checkpoint, at size `b = r + 1`, is signed by both the old and the new
//! key. The old key's range ends at `b`, the new key's begins there:
//! ranges are inclusive and meet at exactly one size (the boundary), so a
//! schedule has neither gaps nor overlaps. Checkpoints of size `s` are
//! signed by the key whose range holds `s` (both keys at a boundary).
//!
//! A revocation says: do not trust this key for sizes `>= from`. What an
//! attacker who holds a compromised key can forge, and so what a reviewer
//! must hold from elsewhere, is explained in docs/keys.md.

use serde::{Deserialize, Serialize};
use stele_attest::NoteVerifier;

/// One key and the checkpoint sizes it signs (`from ..= until`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRange {
    /// The verifier key, signed-note text form.
    pub key: String,
    /// First tree size it signs.
    pub from: u64,
    /// Last tree size it signs (absent: still the log's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// A key that must not be trusted from a tree size on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The verifier key.
    pub key: String,
    /// Checkpoints of this size and above signed by it are refused.
    pub from: u64,
}

/// The `data` of a `key.rotation` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationData {
    /// The key that signed up to the boundary.
    pub old: String,
    /// The key that signs from the boundary on.
    pub new: String,
    /// The boundary: this entry's index + 1.
    pub from_size: u64,
    /// Why (scheduled rotation, staff change, suspected compromise…).
    pub reason: String,
}

/// The `data` of a `key.revocation` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationData {
    /// The revoked key (a former key of this log).
    pub key: String,
    /// From which tree size it is not to be trusted.
    pub from_size: u64,
    /// Why.
    pub reason: String,
}

/// Every key of a log, in order, with its range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeySchedule {
    ranges: Vec<KeyRange>,
}

impl KeySchedule {
    /// A log that has only ever had `key`.
    pub fn single(key: &str) -> Self {
        Self {
            ranges: vec![KeyRange {
                key: key.to_string(),
                from: 0,
                until: None,
            }],
        }
    }

    /// A schedule from its ranges, checked (see [`KeySchedule::check`]).
    pub fn from_ranges(ranges: Vec<KeyRange>, origin: &str) -> Result<Self, String> {
        let s = Self { ranges };
        s.check(origin)?;
        Ok(s)
    }

    /// The ranges in order.
    pub fn ranges(&self) -> &[KeyRange] {
        &self.ranges
    }

    /// The genesis key (the one `log.genesis` names).
    pub fn first(&self) -> &str {
        self.ranges.first().map_or("", |r| r.key.as_str())
    }

    /// The key that signs now.
    pub fn current(&self) -> &str {
        self.ranges.last().map_or("", |r| r.key.as_str())
    }

    /// The sizes where the key changed (each checkpoint there is signed by
    /// both keys).
    pub fn boundaries(&self) -> impl Iterator<Item = u64> + '_ {
        self.ranges.iter().filter_map(|r| r.until)
    }

    /// Well-formed: starts at 0, each range ends where the next begins (no
    /// gap, no overlap), only the last is open, a key never follows itself,
    /// every key parses and is named `origin`.
    pub fn check(&self, origin: &str) -> Result<(), String> {
        let Some(first) = self.ranges.first() else {
            return Err("the key schedule is empty".into());
        };
        if first.from != 0 {
            return Err(format!(
                "the first key's range starts at size {}, not 0",
                first.from
            ));
        }
        for (i, r) in self.ranges.iter().enumerate() {
            let v = NoteVerifier::parse(&r.key).map_err(|e| format!("key {}: {e}", i + 1))?;
            if v.name() != origin {
                return Err(format!(
                    "key {} is named {:?}, not the log origin {origin:?}",
                    i + 1,
                    v.name()
                ));
            }
            let last = i + 1 == self.ranges.len();
            match (r.until, last) {
                (None, true) => {}
                (None, false) => {
                    return Err(format!(
                        "key {} has an open range but is not the last",
                        i + 1
                    ))
                }
                (Some(_), true) => {
                    return Err("the last key's range is closed: no key signs after it".into())
                }
                (Some(u), false) => {
                    let next = &self.ranges[i + 1];
                    if u < r.from.max(1) {
                        return Err(format!("key {} ends at {u}, before it starts", i + 1));
                    }
                    if next.from > u {
                        return Err(format!(
                            "gap: key {} ends at size {u} but key {} starts at {}",
                            i + 1,
                            i + 2,
                            next.from
                        ));
                    }
                    if next.from < u {
                        return Err(format!(
                            "overlap: key {} ends at size {u} but key {} starts at {}",
                            i + 1,
                            i + 2,
                            next.from
                        ));
                    }
                    if next.key == r.key {
                        return Err(format!("key {} is rotated to itself", i + 1));
                    }
                }
            }
        }
        Ok(())
    }

    /// The keys whose range holds `size`: one, or two at a boundary (old
    /// first).
    pub fn keys_at(&self, size: u64) -> Vec<&str> {
        self.ranges
            .iter()
            .filter(|r| r.from <= size && r.until.is_none_or(|u| size <= u))
            .map(|r| r.key.as_str())
            .collect()
    }

    /// Record a rotation to `new` at boundary `size` (`size` is past the
    /// current key's start).
    pub fn rotate(&mut self, new: &str, size: u64) {
        if let Some(last) = self.ranges.last_mut() {
            last.until = Some(size);
        }
        self.ranges.push(KeyRange {
            key: new.to_string(),
            from: size,
            until: None,
        });
    }

    /// The schedule as it stood once the log held `size` entries: the
    /// ranges that had begun by then (rotations at indices `>= size` not
    /// yet made), the last of them reopened.
    pub fn at(&self, size: u64) -> Self {
        let mut ranges: Vec<KeyRange> = self
            .ranges
            .iter()
            .filter(|r| r.from <= size)
            .cloned()
            .collect();
        if let Some(last) = ranges.last_mut() {
            last.until = None;
        }
        Self { ranges }
    }

    /// Check that a rotation entry continues this schedule: the old key is
    /// the current one, the boundary is the entry's index + 1, the new key
    /// differs and carries the origin's name. Applies it on success.
    pub fn apply_rotation(
        &mut self,
        d: &RotationData,
        index: u64,
        origin: &str,
    ) -> Result<(), String> {
        if d.old != self.current() {
            return Err(format!(
                "key.rotation names {} as the old key, but the log's key is {}",
                d.old,
                self.current()
            ));
        }
        if d.from_size != index + 1 {
            return Err(format!(
                "key.rotation at index {index} gives from_size {}, not {}",
                d.from_size,
                index + 1
            ));
        }
        if d.new == d.old {
            return Err("key.rotation rotates a key to itself".into());
        }
        let v = NoteVerifier::parse(&d.new).map_err(|e| format!("key.rotation new key: {e}"))?;
        if v.name() != origin {
            return Err(format!(
                "key.rotation new key is named {:?}, not the log origin {origin:?}",
                v.name()
            ));
        }
        if d.reason.trim().is_empty() {
            return Err("key.rotation needs a reason".into());
        }
        self.rotate(&d.new, d.from_size);
        Ok(())
    }
}

/// Check a `key.rotation` or `key.revocation` leaf against the schedule
/// so far, and apply it.
pub fn check_entry(
    leaf: &crate::leaf_view::LeafView<'_>,
    origin: &str,
    keys: &mut KeySchedule,
    revocations: &mut Vec<Revocation>,
) -> Result<(), String> {
    use crate::event::EventKind;
    use crate::leaf_view::DataView;
    let value: serde_json::Value = match leaf.data {
        None => return Err(format!("{} needs data", leaf.kind)),
        Some(DataView::Typed(v)) => v.clone(),
        Some(DataView::Raw(b)) => serde_json::from_slice(b).map_err(|e| e.to_string())?,
    };
    match leaf.kind {
        EventKind::KeyRotation => {
            let d: RotationData =
                serde_json::from_value(value).map_err(|e| format!("key.rotation data: {e}"))?;
            keys.apply_rotation(&d, leaf.seq, origin)
        }
        EventKind::KeyRevocation => {
            let d: RevocationData =
                serde_json::from_value(value).map_err(|e| format!("key.revocation data: {e}"))?;
            if d.key == keys.current() {
                return Err("key.revocation revokes the log's current key (rotate first)".into());
            }
            let Some(r) = keys.ranges().iter().find(|r| r.key == d.key) else {
                return Err("key.revocation names a key this log never had".into());
            };
            if d.from_size < r.from.max(1) || d.from_size > leaf.seq + 1 {
                return Err(format!(
                    "key.revocation from_size {} is outside 1..={}",
                    d.from_size,
                    leaf.seq + 1
                ));
            }
            if d.reason.trim().is_empty() {
                return Err("key.revocation needs a reason".into());
            }
            revocations.push(Revocation {
                key: d.key,
                from: d.from_size,
            });
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Open a checkpoint note under a schedule: every key whose range holds
/// its size and that is not revoked there must have signed it (both keys
/// at a rotation boundary), and at least one such key must exist.
pub fn open_checkpoint(
    note: &str,
    keys: &KeySchedule,
    revoked: &[Revocation],
) -> Result<stele_attest::Checkpoint, String> {
    let parsed = stele_attest::SignedNote::parse(note).map_err(|e| e.to_string())?;
    let cp = stele_attest::Checkpoint::parse_body(&parsed.text).map_err(|e| e.to_string())?;
    let mut trusted = 0;
    for k in keys.keys_at(cp.size) {
        if revoked.iter().any(|r| r.key == k && cp.size >= r.from) {
            continue;
        }
        let v = NoteVerifier::parse(k).map_err(|e| e.to_string())?;
        stele_attest::Checkpoint::open(note, &v)
            .map_err(|e| format!("not signed by the key for size {}: {e}", cp.size))?;
        trusted += 1;
    }
    if trusted == 0 {
        return Err(format!("size {} is signed only by a revoked key", cp.size));
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stele_attest::{Ed25519Signer, Signer as _};

    fn key(seed: u8) -> String {
        Ed25519Signer::from_seed("o.test/log", &[seed; 32])
            .unwrap()
            .verifier()
            .to_string()
    }

    #[test]
    fn ranges_meet_at_the_boundary_and_gaps_and_overlaps_are_refused() {
        let mut s = KeySchedule::single(&key(1));
        s.rotate(&key(2), 10);
        s.rotate(&key(1), 20);
        s.check("o.test/log").unwrap();
        assert_eq!(s.keys_at(0), vec![key(1).as_str()]);
        assert_eq!(s.keys_at(10), vec![key(1).as_str(), key(2).as_str()]);
        assert_eq!(s.keys_at(11), vec![key(2).as_str()]);
        assert_eq!(s.keys_at(25), vec![key(1).as_str()]);
        assert_eq!(s.boundaries().collect::<Vec<_>>(), vec![10, 20]);
        assert_eq!(s.at(9), KeySchedule::single(&key(1)));
        assert_eq!(s.at(10).current(), key(2));
        assert_eq!(s.at(15).current(), key(2));
        assert_eq!(s.at(20).ranges().len(), 3);

        let mut gap = s.clone();
        gap.ranges[1].from = 11;
        assert!(gap.check("o.test/log").unwrap_err().contains("gap"));
        let mut overlap = s.clone();
        overlap.ranges[1].from = 9;
        assert!(overlap.check("o.test/log").unwrap_err().contains("overlap"));
        let mut open = s.clone();
        open.ranges[0].until = None;
        assert!(open.check("o.test/log").is_err());
        let mut closed = s.clone();
        closed.ranges[2].until = Some(30);
        assert!(closed.check("o.test/log").is_err());
        let mut late = s.clone();
        late.ranges[0].from = 1;
        assert!(late.check("o.test/log").is_err());
        let mut same = KeySchedule::single(&key(1));
        same.rotate(&key(1), 5);
        assert!(same.check("o.test/log").unwrap_err().contains("itself"));
        assert!(s.check("other.test/log").unwrap_err().contains("origin"));
    }

    #[test]
    fn a_rotation_entry_must_continue_the_schedule() {
        let mut s = KeySchedule::single(&key(1));
        let d = |old: String, new: String, from_size| RotationData {
            old,
            new,
            from_size,
            reason: "scheduled".into(),
        };
        assert!(s
            .apply_rotation(&d(key(3), key(2), 8), 7, "o.test/log")
            .is_err());
        assert!(s
            .apply_rotation(&d(key(1), key(2), 9), 7, "o.test/log")
            .is_err());
        assert!(s
            .apply_rotation(&d(key(1), key(1), 8), 7, "o.test/log")
            .is_err());
        let other = Ed25519Signer::from_seed("x.test/log", &[5; 32])
            .unwrap()
            .verifier()
            .to_string();
        assert!(s
            .apply_rotation(&d(key(1), other, 8), 7, "o.test/log")
            .is_err());
        s.apply_rotation(&d(key(1), key(2), 8), 7, "o.test/log")
            .unwrap();
        assert_eq!(s.current(), key(2));
        assert_eq!(s.first(), key(1));
    }
}
