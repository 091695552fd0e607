#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Network destinations: every spelling of an address is one canonical
//! host with one class; names are decided by name, resolved once, and
//! decided again with the address; the templates forbid what is not public.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use common::bundle;
use stele_policy::canonical::CanonicalHost;
use stele_policy::{
    Action, AddressClass, Bundle, ConnectStep, Effect, Request, Resolve, ResolveError, Resource,
    UidForm,
};

/// Permits any host by name for everyone; forbids non-public destinations
/// unless the name is `allowed.test`.
const ORG: &str = r#"
@id("org.net")
permit (principal, action == Action::"net.connect", resource);

@id("org.no-internal")
forbid (principal, action == Action::"net.connect", resource)
when { resource has class && resource.class != "public" }
unless { resource.name == "allowed.test" };

@id("org.no-evil")
forbid (principal, action == Action::"net.connect", resource)
when { resource.name like "*evil.example" };
"#;

fn net_bundle() -> Bundle {
    let dir = bundle(&[("org/org.cedar", ORG)]);
    Bundle::load(dir.path()).unwrap()
}

fn host(spelling: &str, port: u16) -> CanonicalHost {
    CanonicalHost::new("https", spelling, Some(port)).unwrap()
}

fn request(h: CanonicalHost) -> Request {
    Request::builder("alice", Action::NetConnect, Resource::Host(h))
        .build()
        .unwrap()
}

/// Every way of writing an address of each class.
const SPELLINGS: &[(&str, &str, AddressClass)] = &[
    ("127.0.0.1", "127.0.0.1", AddressClass::Loopback),
    ("127.1", "127.0.0.1", AddressClass::Loopback),
    ("2130706433", "127.0.0.1", AddressClass::Loopback),
    ("0x7f.1", "127.0.0.1", AddressClass::Loopback),
    ("0x7F000001", "127.0.0.1", AddressClass::Loopback),
    ("0177.0.0.1", "127.0.0.1", AddressClass::Loopback),
    ("127.0.0.1.", "127.0.0.1", AddressClass::Loopback),
    ("[::ffff:127.0.0.1]", "127.0.0.1", AddressClass::Loopback),
    ("[::ffff:7f00:1]", "127.0.0.1", AddressClass::Loopback),
    ("[::127.0.0.1]", "127.0.0.1", AddressClass::Loopback),
    ("１２７．０．０．１", "127.0.0.1", AddressClass::Loopback),
    ("127.9.8.7", "127.9.8.7", AddressClass::Loopback),
    ("[::1]", "::1", AddressClass::Loopback),
    ("0.0.0.0", "0.0.0.0", AddressClass::Loopback),
    ("0", "0.0.0.0", AddressClass::Loopback),
    ("[::]", "::", AddressClass::Loopback),
    ("[::ffff:0.0.0.0]", "0.0.0.0", AddressClass::Loopback),
    ("10.0.0.5", "10.0.0.5", AddressClass::Private),
    ("167772165", "10.0.0.5", AddressClass::Private),
    ("0xa.5", "10.0.0.5", AddressClass::Private),
    ("172.16.9.9", "172.16.9.9", AddressClass::Private),
    ("192.168.0.1", "192.168.0.1", AddressClass::Private),
    ("[::ffff:c0a8:1]", "192.168.0.1", AddressClass::Private),
    ("100.64.0.1", "100.64.0.1", AddressClass::Private),
    ("[fd00::5]", "fd00::5", AddressClass::Private),
    ("[64:ff9b::a00:5]", "64:ff9b::a00:5", AddressClass::Private),
    ("[2002:a00:5::1]", "2002:a00:5::1", AddressClass::Private),
    (
        "169.254.169.254",
        "169.254.169.254",
        AddressClass::LinkLocal,
    ),
    (
        "[::ffff:a9fe:a9fe]",
        "169.254.169.254",
        AddressClass::LinkLocal,
    ),
    ("0xa9fea9fe", "169.254.169.254", AddressClass::LinkLocal),
    ("[fe80::1]", "fe80::1", AddressClass::LinkLocal),
    ("224.0.0.251", "224.0.0.251", AddressClass::Multicast),
    ("[ff02::fb]", "ff02::fb", AddressClass::Multicast),
    (
        "255.255.255.255",
        "255.255.255.255",
        AddressClass::Broadcast,
    ),
    ("192.0.2.1", "192.0.2.1", AddressClass::Reserved),
    ("[2001:db8::1]", "2001:db8::1", AddressClass::Reserved),
    ("93.184.216.34", "93.184.216.34", AddressClass::Public),
    ("[::ffff:5db8:d822]", "93.184.216.34", AddressClass::Public),
    ("[2606:4700::1111]", "2606:4700::1111", AddressClass::Public),
];

#[test]
fn every_spelling_is_one_canonical_host_with_its_class() {
    for (spelling, canonical, class) in SPELLINGS {
        let h = host(spelling, 8080);
        assert_eq!(h.name(), *canonical, "{spelling}");
        assert_eq!(h.class(), Some(*class), "{spelling}");
        assert_eq!(
            h.address().map(|a| a.to_string()).as_deref(),
            Some(*canonical)
        );
        // What `stele policy explain` parses is the same host.
        let uid = format!("Host::\"https://{spelling}:8080\"");
        let from_uid = Resource::parse_uid(&uid, UidForm::Canonicalise).unwrap();
        assert_eq!(from_uid, Resource::Host(h), "{spelling}");
    }
}

#[test]
fn every_non_public_spelling_is_refused_and_public_ones_allowed() {
    let b = net_bundle();
    for (spelling, _, class) in SPELLINGS {
        let r = request(host(spelling, 443));
        b.check_request(&r).unwrap();
        let d = b.decide(&r);
        if *class == AddressClass::Public {
            assert_eq!(d.effect, Effect::Allow, "{spelling}");
        } else {
            assert_eq!(d.effect, Effect::Deny, "{spelling}");
            assert_eq!(
                d.reasons().collect::<Vec<_>>(),
                ["org.no-internal"],
                "{spelling}"
            );
        }
    }
}

#[test]
fn spellings_that_are_no_address_are_refused() {
    for bad in [
        "1.2.3.4.5",
        "256.1.1.1",
        "0x100000000",
        "4294967296",
        "a.09",
        "%31%32%37.0.0.1",
        "127.0.0.1%00",
        "[fe80::1%25eth0]",
        "[fe80::1%eth0]",
        "[127.0.0.1]",
        "exa_mple.com",
        "a..b",
    ] {
        assert!(
            CanonicalHost::new("https", bad, Some(443)).is_err(),
            "{bad:?} was accepted"
        );
        let uid = format!("Host::\"https://{bad}:443\"");
        assert!(
            Resource::parse_uid(&uid, UidForm::Canonicalise).is_err(),
            "{bad:?} was accepted by explain's parser"
        );
    }
}

/// A resolver with a fixed table that counts its calls.
#[derive(Debug, Default)]
struct Table {
    names: HashMap<String, Vec<IpAddr>>,
    calls: Mutex<Vec<String>>,
}

impl Table {
    fn with(entries: &[(&str, &[&str])]) -> Self {
        Self {
            names: entries
                .iter()
                .map(|(n, a)| {
                    (
                        n.to_string(),
                        a.iter().map(|x| x.parse().unwrap()).collect(),
                    )
                })
                .collect(),
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl Resolve for Table {
    fn resolve(&self, name: &str, _port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        self.calls.lock().unwrap().push(name.to_owned());
        self.names.get(name).cloned().ok_or(ResolveError::Lookup {
            name: name.to_owned(),
            message: "NXDOMAIN".into(),
        })
    }
}

fn final_effect(b: &Bundle, step: ConnectStep) -> (Effect, Option<AddressClass>) {
    match step {
        ConnectStep::Decide {
            request,
            resolution,
            ..
        } => (b.decide(&request).effect, resolution.host.class()),
        ConnectStep::RefusedByName(d) => (d.effect, None),
        ConnectStep::Unresolvable { .. } => (Effect::Deny, None),
    }
}

#[test]
fn names_are_classified_after_resolution() {
    let b = net_bundle();
    let t = Table::with(&[
        ("db.test", &["10.0.0.5"]),
        ("corp.test", &["172.20.1.1"]),
        ("home.test", &["192.168.1.10"]),
        ("ula.test", &["fd12:3456::7"]),
        ("meta.test", &["::ffff:169.254.169.254"]),
        ("cgnat.test", &["100.64.3.4"]),
        ("loop.test", &["127.0.0.1", "::1"]),
        ("zero.test", &["0.0.0.0"]),
        ("rebind.test", &["10.1.1.1", "93.184.216.34"]),
        ("pub.test", &["93.184.216.34", "10.1.1.1"]),
        ("allowed.test", &["127.0.0.1"]),
    ]);
    for (name, class, effect) in [
        ("db.test", AddressClass::Private, Effect::Deny),
        ("corp.test", AddressClass::Private, Effect::Deny),
        ("home.test", AddressClass::Private, Effect::Deny),
        ("ula.test", AddressClass::Private, Effect::Deny),
        ("meta.test", AddressClass::LinkLocal, Effect::Deny),
        ("cgnat.test", AddressClass::Private, Effect::Deny),
        ("loop.test", AddressClass::Loopback, Effect::Deny),
        ("zero.test", AddressClass::Loopback, Effect::Deny),
        // The first address is the one decided and connected to.
        ("rebind.test", AddressClass::Private, Effect::Deny),
        ("pub.test", AddressClass::Public, Effect::Allow),
        // Explicitly allowed by name.
        ("allowed.test", AddressClass::Loopback, Effect::Allow),
    ] {
        let step = b.connect_step(&request(host(name, 443)), &t).unwrap();
        assert_eq!(final_effect(&b, step), (effect, Some(class)), "{name}");
    }
}

#[test]
fn a_name_refused_by_name_is_never_resolved() {
    let b = net_bundle();
    let t = Table::with(&[("data-1234.evil.example", &["93.184.216.34"])]);
    let step = b
        .connect_step(&request(host("data-1234.evil.example", 443)), &t)
        .unwrap();
    assert!(matches!(&step, ConnectStep::RefusedByName(d) if d.effect == Effect::Deny));
    assert!(t.calls.lock().unwrap().is_empty(), "the name was resolved");
    // A literal is never resolved either; an unknown name is unresolvable.
    let step = b.connect_step(&request(host("0x7f.1", 443)), &t).unwrap();
    assert!(matches!(step, ConnectStep::Decide { by_name: None, .. }));
    let step = b.connect_step(&request(host("nx.test", 443)), &t).unwrap();
    assert!(matches!(step, ConnectStep::Unresolvable { .. }));
    assert_eq!(*t.calls.lock().unwrap(), ["nx.test"]);
}

#[test]
fn the_system_resolver_sees_localhost_as_loopback() {
    let b = net_bundle();
    let step = b
        .connect_step(
            &request(host("LocalHost.", 80)),
            &stele_policy::SystemResolver,
        )
        .unwrap();
    assert_eq!(
        final_effect(&b, step),
        (Effect::Deny, Some(AddressClass::Loopback))
    );
}

fn template(name: &str) -> Bundle {
    Bundle::load(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies")
            .join(name),
    )
    .unwrap()
}

#[test]
fn the_templates_forbid_every_non_public_class() {
    for (name, user) in [("strict-default", "anyone"), ("finance", "alice")] {
        let b = template(name);
        for (spelling, _, class) in SPELLINGS {
            let r = Request::builder(
                user,
                Action::NetConnect,
                Resource::Host(host(spelling, 443)),
            )
            .build()
            .unwrap();
            let d = b.decide(&r);
            assert_eq!(d.effect, Effect::Deny, "{name}: {spelling}");
            let reasons: Vec<&str> = d.reasons().collect();
            let internal = reasons.iter().any(|r| r.ends_with("no-internal-addresses"));
            assert_eq!(
                internal,
                *class != AddressClass::Public,
                "{name}: {spelling}: {reasons:?}"
            );
        }
    }
}

#[test]
fn tests_can_give_the_address_a_name_resolved_to() {
    let b = net_bundle();
    let r = request(host("db.test", 443));
    assert_eq!(b.decide(&r).effect, Effect::Allow, "by name alone");
    let resolved = r.with_address("::ffff:10.0.0.5").unwrap();
    assert_eq!(b.decide(&resolved).effect, Effect::Deny);
    // A literal cannot be given another address; other resources none.
    assert!(request(host("10.0.0.5", 443))
        .with_address("10.0.0.6")
        .is_err());
    assert!(request(host("10.0.0.5", 443))
        .with_address("10.0.0.5")
        .is_ok());
    assert!(r.with_address("not-an-address").is_err());
}
