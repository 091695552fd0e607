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

/// Forbids whose condition is a `||` (the templates protect `.stele` and
/// `outbox` that way): the guard read off the disjunction must skip exactly
/// the requests Cedar would find unsatisfied, and never one it would find in
/// error.
#[test]
fn indexed_equals_reference_on_disjunctions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("schema.cedarschema"),
        stele_policy::STELE_SCHEMA,
    )
    .unwrap();
    std::fs::write(dir.path().join("members.toml"), "[users]\n").unwrap();
    std::fs::create_dir(dir.path().join("org")).unwrap();
    std::fs::write(
        dir.path().join("org/p.cedar"),
        r#"
@id("all") permit (principal, action, resource);
@id("stele") forbid (principal, action, resource is File)
when { resource.path == ".stele" || resource.path like ".stele/*" };
@id("nested") forbid (principal, action == Action::"file.write", resource is File)
when { (resource.path == "a" || (resource.path like "b/*" || ["c", "d/e"].contains(resource.path))) && resource.path like "*x" };
@id("two-attributes") forbid (principal, action == Action::"exec", resource is Program)
when { resource.path like "/usr/bin/prog1" || resource.name == "prog7" };
@id("unknown-operand") forbid (principal, action == Action::"file.read", resource is File)
when { resource.path like "u/*" || context.argv.contains("--unsafe3") };
@id("no-prefix") forbid (principal, action == Action::"file.list", resource is File)
when { resource.path like "*q" || resource.path == "w" };
"#,
    )
    .unwrap();
    let b = stele_policy::Bundle::load(dir.path()).unwrap();
    let paths = [
        ".stele",
        ".stele/keys/log.key",
        ".stelex",
        "x/.stele",
        "a",
        "ax",
        "b/1x",
        "b/1",
        "c",
        "d/e",
        "d/ex",
        "m/1",
        "m",
        "u/1",
        "u",
        "q",
        "zq",
        "w",
        "in/0/f1.txt",
    ];
    let mut effects = std::collections::HashSet::new();
    let mut n = 0;
    for (i, base) in synthetic::requests(400, 11).unwrap().iter().enumerate() {
        let r = variants(base, i);
        let resources = match r.resource() {
            stele_policy::Resource::File(_) => paths
                .iter()
                .map(|p| {
                    stele_policy::Resource::File(
                        stele_policy::canonical::canonical_path(p).unwrap(),
                    )
                })
                .collect(),
            other => vec![other.clone()],
        };
        for res in resources {
            let r = Request::builder(r.principal(), r.action(), res)
                .context(r.context().clone())
                .build()
                .unwrap();
            let fast = b.decide(&r);
            assert_eq!(fast, b.decide_reference(&r), "{r:?}");
            effects.insert(fast.effect);
            n += 1;
        }
    }
    assert!(n > 1000, "only {n} requests compared");
    assert!(effects.len() >= 2, "{effects:?}");
}
