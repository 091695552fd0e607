#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The indexed evaluation (guards, unconditional shortcuts, cached candidate
//! sets) must decide exactly as handing Cedar every policy of the slot.

use stele_policy::{
    synthetic, Approval, ApprovalOutcome, Bundle, Network, Request, SandboxBackend, SandboxFacts,
};

fn variants(r: &Request, i: usize) -> Request {
    let mut c = r.context().clone();
    if i.is_multiple_of(3) {
        c.sandbox = SandboxFacts {
            backend: SandboxBackend::Microvm,
            network: Network::ViaProxy,
        };
    }
    if i.is_multiple_of(5) {
        c.approval = Some(Approval {
            outcome: ApprovalOutcome::Granted,
            approver: if i.is_multiple_of(2) {
                "a".into()
            } else {
                r.principal().into()
            },
            method: "tty".into(),
            ticket: String::new(),
        });
    }
    if i.is_multiple_of(7) {
        c.argv.push(format!("--unsafe{}", i % 50));
    }
    Request::builder(r.principal(), r.action(), r.resource().clone())
        .context(c)
        .build()
        .unwrap()
}

#[test]
fn indexed_equals_reference_on_synthetic_bundle() {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write_bundle(dir.path(), 1000).unwrap();
    let b = Bundle::load(dir.path()).unwrap();
    let mut differing_effects = std::collections::HashSet::new();
    for (i, r) in synthetic::requests(4000, 99).unwrap().iter().enumerate() {
        let r = variants(r, i);
        let fast = b.decide(&r);
        let slow = b.decide_reference(&r);
        assert_eq!(fast, slow, "request {i}: {r:?}");
        differing_effects.insert(fast.effect);
    }
    // The comparison covered all three outcomes.
    assert_eq!(differing_effects.len(), 3);
}

#[test]
fn indexed_equals_reference_on_templates() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for name in ["finance", "strict-default"] {
        let b = Bundle::load(root.join(name)).unwrap();
        for (i, r) in synthetic::requests(500, 5).unwrap().iter().enumerate() {
            for user in ["alice", "bob", "carol", "nobody"] {
                let r = Request::builder(user, r.action(), r.resource().clone())
                    .context(variants(r, i).context().clone())
                    .build()
                    .unwrap();
                assert_eq!(b.decide(&r), b.decide_reference(&r), "{name} {r:?}");
            }
        }
    }
}
