//! The field names of each leaf object and how the scanner recognises a
//! key: the names in sorted order (the order canonical JSON has them), and
//! each as a 16-byte pattern compared at once.

// Field names of each object, in the (sorted) order canonical JSON has them.
pub(super) const LEAF: &[&[u8]] = &[
    b"actor",
    b"boot",
    b"data",
    b"decision",
    b"kind",
    b"log",
    b"outcome",
    b"payload",
    b"prev",
    b"refs",
    b"seq",
    b"session",
    b"target",
    b"ts",
    b"v",
];
pub(super) const ACTOR: &[&[u8]] = &[b"host", b"principal", b"runtime", b"teams"];
pub(super) const DECISION: &[&[u8]] = &[b"bundle", b"effect", b"layer", b"policies", b"reason"];
pub(super) const OUTCOME: &[&[u8]] = &[
    b"bytes_in",
    b"bytes_out",
    b"code",
    b"detail",
    b"duration_ms",
    b"status",
    b"tokens_in",
    b"tokens_out",
];
pub(super) const PAYLOAD: &[&[u8]] = &[b"commit", b"media", b"role", b"sha256", b"size"];
pub(super) const REFS: &[&[u8]] = &[b"intent_leaf", b"intent_seq"];
pub(super) const SESSION: &[&[u8]] = &[b"id", b"n", b"prev"];
pub(super) const TARGET: &[&[u8]] = &[
    b"argv",
    b"host",
    b"model",
    b"path",
    b"port",
    b"program",
    b"provider",
    b"scheme",
    b"server",
    b"tool",
];

pub(super) const LEAF_KEYS: [Key; LEAF.len()] = keys(LEAF);
pub(super) const ACTOR_KEYS: [Key; ACTOR.len()] = keys(ACTOR);
pub(super) const DECISION_KEYS: [Key; DECISION.len()] = keys(DECISION);
pub(super) const OUTCOME_KEYS: [Key; OUTCOME.len()] = keys(OUTCOME);
pub(super) const PAYLOAD_KEYS: [Key; PAYLOAD.len()] = keys(PAYLOAD);
pub(super) const REFS_KEYS: [Key; REFS.len()] = keys(REFS);
pub(super) const SESSION_KEYS: [Key; SESSION.len()] = keys(SESSION);
pub(super) const TARGET_KEYS: [Key; TARGET.len()] = keys(TARGET);

/// Bit mask of the fields `names` at positions `at`.
pub(super) const fn mask(at: &[usize]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < at.len() {
        m |= 1 << at[i];
        i += 1;
    }
    m
}

/// A field name as `"name":`, the low bytes of a little-endian `u128`,
/// with the mask of those bytes: every such key fits in 16 bytes.
#[derive(Clone, Copy)]
pub(super) struct Key {
    pub(super) name: &'static [u8],
    pattern: u128,
    mask: u128,
}

/// The [`Key`]s of `names`, at compile time.
const fn keys<const N: usize>(names: &[&'static [u8]]) -> [Key; N] {
    let mut out = [Key {
        name: b"",
        pattern: 0,
        mask: 0,
    }; N];
    let mut k = 0;
    while k < N {
        let name = names[k];
        let len = name.len() + 3;
        assert!(len <= 16, "a field name is too long for `Key`");
        let mut p = b'"' as u128;
        let mut i = 0;
        while i < name.len() {
            p |= (name[i] as u128) << (8 * (i + 1));
            i += 1;
        }
        p |= (b'"' as u128) << (8 * (name.len() + 1));
        p |= (b':' as u128) << (8 * (name.len() + 2));
        let mask = if len == 16 {
            u128::MAX
        } else {
            (1u128 << (8 * len)) - 1
        };
        out[k] = Key {
            name,
            pattern: p,
            mask,
        };
        k += 1;
    }
    out
}

/// Which of `keys` the key at the start of `rest` is, matched as
/// `"name":` (names need no escapes, so a match is exactly that key).
pub(super) fn key_at(rest: &[u8], keys: &[Key]) -> Option<usize> {
    if let Some(w) = rest.first_chunk::<16>() {
        // One masked compare per candidate instead of byte by byte: leaves
        // have about 20 keys and this was a tenth of the scan.
        let w = u128::from_le_bytes(*w);
        return keys.iter().position(|k| w & k.mask == k.pattern);
    }
    keys.iter().position(|k| {
        let n = k.name;
        rest.get(..n.len() + 3)
            .is_some_and(|r| r[0] == b'"' && r[1..=n.len()] == *n && r[n.len() + 1..] == *b"\":")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_are_sorted() {
        for names in [
            LEAF, ACTOR, DECISION, OUTCOME, PAYLOAD, REFS, SESSION, TARGET,
        ] {
            assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
            assert!(names.len() < 32);
        }
    }

    /// The byte-by-byte definition of a key match.
    fn key_at_reference(rest: &[u8], keys: &[Key]) -> Option<usize> {
        keys.iter().position(|k| {
            let mut want = vec![b'"'];
            want.extend_from_slice(k.name);
            want.extend_from_slice(b"\":");
            rest.starts_with(&want)
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// The 16-byte compare matches exactly the keys the byte-by-byte
        /// one does, near the end of the input too.
        #[test]
        fn key_match_agrees_with_the_reference(
            list in 0usize..8,
            pick in 0usize..16,
            cut in 0usize..20,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
            flip in proptest::option::of((0usize..20, proptest::prelude::any::<u8>())),
        ) {
            let all: [&[Key]; 8] = [
                &LEAF_KEYS, &ACTOR_KEYS, &DECISION_KEYS, &OUTCOME_KEYS,
                &PAYLOAD_KEYS, &REFS_KEYS, &SESSION_KEYS, &TARGET_KEYS,
            ];
            let keys = all[list];
            let name = keys[pick % keys.len()].name;
            let mut rest = vec![b'"'];
            rest.extend_from_slice(name);
            rest.extend_from_slice(b"\":");
            rest.extend_from_slice(&tail);
            if let Some((at, b)) = flip {
                let at = at % rest.len();
                rest[at] = b;
            }
            rest.truncate(rest.len().saturating_sub(cut % 4));
            let from = pick % keys.len() / 2;
            proptest::prop_assert_eq!(
                key_at(&rest, &keys[from..]),
                key_at_reference(&rest, &keys[from..])
            );
        }
    }
}
