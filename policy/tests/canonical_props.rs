#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Properties of path and host canonicalisation over generated inputs.

use proptest::prelude::*;
use stele_policy::canonical::{canonical_host_name, canonical_path};

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just(String::new()),
        "[a-z0-9_.-]{1,6}",
    ]
}

proptest! {
    #[test]
    fn canonical_paths_are_clean_and_idempotent(segs in proptest::collection::vec(segment(), 1..8)) {
        let input = segs.join("/");
        if let Ok(p) = canonical_path(&input) {
            let s = p.as_str();
            prop_assert!(!s.starts_with('/'));
            prop_assert!(s == "." || s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
            prop_assert_eq!(canonical_path(s).unwrap(), p.clone());
            // Depth never goes below the root: replaying the segments never pops past zero.
            let mut depth: i32 = 0;
            for seg in &segs {
                match seg.as_str() {
                    "" | "." => {}
                    ".." => depth -= 1,
                    _ => depth += 1,
                }
                prop_assert!(depth >= 0);
            }
        } else {
            // Refused only when empty, absolute (a leading empty segment) or when
            // something climbs above the root.
            let mut depth: i32 = 0;
            let mut escaped = false;
            for seg in &segs {
                match seg.as_str() {
                    "" | "." => {}
                    ".." => { depth -= 1; escaped |= depth < 0; }
                    _ => depth += 1,
                }
            }
            prop_assert!(
                escaped || input.is_empty() || input.starts_with('/'),
                "refused {input:?}"
            );
        }
    }

    #[test]
    fn canonical_host_names_are_lowercase_ascii_and_idempotent(name in "[A-Za-z][A-Za-z0-9-]{0,10}(\\.[A-Za-z]{2,6}){1,2}") {
        if let Ok(h) = canonical_host_name(&name) {
            prop_assert!(h.is_ascii());
            prop_assert_eq!(h.to_ascii_lowercase(), h.clone());
            prop_assert_eq!(canonical_host_name(&h).unwrap(), h);
        }
    }
}
