#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Connections at the gate: every refusal is a logged decision (a host
//! that does not canonicalise, a session without network, a name refused
//! before resolution, a name that does not resolve, an internal address),
//! a name is resolved only if not refused by name, and the proxy is told
//! exactly the address that was decided and logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use stele_attest::Ed25519Signer;
use stele_audit::leaf::Leaf;
use stele_audit::{AuditLog, EventKind, LogOptions, Status};
use stele_policy::{
    ApprovalOutcome, Bundle, Network, Resolve, ResolveError, SandboxBackend, SandboxFacts,
};
use stele_sandbox::{Mediator, NetRequest, NetScheme, NetVerdict, Requester};

use super::Connection;
use crate::gate::approval::FlagApprover;
use crate::gate::mediator::tests::leaves;
use crate::gate::mediator::{GateMediator, NO_NETWORK};
use crate::gate::{Gate, SessionInfo};

const ORG: &str = r#"
@id("org.net")
permit (principal, action == Action::"net.connect", resource)
unless { resource.name like "*.evil.test" };

@id("org.no-internal")
forbid (principal, action == Action::"net.connect", resource)
when { resource has class && resource.class != "public" }
unless { resource.name == "allowed.test" };

@id("org.ask-for-uploads")
@ask("human")
forbid (principal, action == Action::"net.connect", resource)
when { resource.name == "upload.test" }
unless { context has approval && context.approval.granted };
"#;

struct Setup {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    gate: Arc<Gate>,
}

fn setup(network: Network) -> Setup {
    setup_with(
        network,
        Box::new(FlagApprover::new(
            ApprovalOutcome::Refused,
            "alice",
            "flag",
            "test",
        )),
    )
}

fn setup_with(network: Network, approver: Box<dyn crate::gate::Approver>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(bundle_dir.join("org")).unwrap();
    std::fs::write(bundle_dir.join("org/org.cedar"), ORG).unwrap();
    std::fs::write(bundle_dir.join("members.toml"), "[users]\n").unwrap();
    std::fs::write(
        bundle_dir.join("schema.cedarschema"),
        stele_policy::STELE_SCHEMA,
    )
    .unwrap();
    let db = dir.path().join("audit.db");
    let signer = Arc::new(Ed25519Signer::from_seed("net.test.invalid/log", &[6; 32]).unwrap());
    let log = Arc::new(
        AuditLog::create(
            &db,
            signer,
            LogOptions {
                heartbeat: None,
                ..LogOptions::default()
            },
        )
        .unwrap(),
    );
    let gate = Gate::start_session(
        log,
        Arc::new(Bundle::load(&bundle_dir).unwrap()),
        SessionInfo {
            id: "s-net".into(),
            principal: "alice".into(),
            teams: vec![],
        },
        approver,
        SandboxFacts {
            backend: SandboxBackend::Process,
            network,
        },
        serde_json::json!({}),
    )
    .unwrap();
    Setup {
        _dir: dir,
        db,
        gate: Arc::new(gate),
    }
}

/// A fixed table that records which names it was asked about.
#[derive(Debug, Default)]
struct Table {
    names: HashMap<&'static str, Vec<IpAddr>>,
    asked: Mutex<Vec<String>>,
}

impl Table {
    fn new(entries: &[(&'static str, &[&str])]) -> Self {
        Self {
            names: entries
                .iter()
                .map(|(n, a)| (*n, a.iter().map(|x| x.parse().unwrap()).collect()))
                .collect(),
            asked: Mutex::new(Vec::new()),
        }
    }
}

impl Resolve for Table {
    fn resolve(&self, name: &str, _port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        self.asked.lock().unwrap().push(name.to_owned());
        self.names
            .get(name)
            .cloned()
            .ok_or_else(|| ResolveError::Lookup {
                name: name.into(),
                message: "NXDOMAIN".into(),
            })
    }
}

fn net(host: &str, port: u16) -> NetRequest {
    NetRequest {
        host: host.into(),
        port,
        scheme: NetScheme::Connect,
        requester: Requester::default(),
    }
}

/// Decide through the gate with `resolver`.
fn decide(s: &Setup, host: &str, resolver: &dyn Resolve) -> Connection {
    let attempt = s
        .gate
        .net_attempt(&net(host, 443), serde_json::json!({}))
        .unwrap()
        .unwrap();
    s.gate.net_connect(attempt, resolver).unwrap()
}

fn entry(s: &Setup, seq: u64) -> Leaf {
    leaves(&s.db).into_iter().nth(seq as usize).unwrap()
}

#[test]
fn names_resolving_inside_are_refused_with_address_and_class() {
    let s = setup(Network::ViaProxy);
    let t = Table::new(&[
        ("db.test", &["10.0.0.5"]),
        ("meta.test", &["::ffff:169.254.169.254"]),
        ("ula.test", &["fd00::5"]),
        ("home.test", &["192.168.7.7"]),
        ("corp.test", &["172.16.1.1"]),
        ("loop.test", &["127.0.0.1"]),
    ]);
    for (name, address, class) in [
        ("db.test", "10.0.0.5", "private"),
        ("meta.test", "169.254.169.254", "link-local"),
        ("ula.test", "fd00::5", "private"),
        ("home.test", "192.168.7.7", "private"),
        ("corp.test", "172.16.1.1", "private"),
        ("loop.test", "127.0.0.1", "loopback"),
    ] {
        let Connection::Denied(d) = decide(&s, name, &t) else {
            panic!("{name} was permitted")
        };
        assert_eq!(d.policies, ["org.no-internal"], "{name}");
        let e = entry(&s, d.seq);
        assert_eq!(e.kind, EventKind::PolicyDecision);
        assert_eq!(e.target.as_ref().unwrap().host.as_deref(), Some(name));
        let data = e.data.unwrap();
        assert_eq!(data["address"], address, "{name}");
        assert_eq!(data["class"], class, "{name}");
    }
}

#[test]
fn the_address_decided_is_the_address_returned() {
    let s = setup(Network::ViaProxy);
    let t = Table::new(&[
        ("pub.test", &["93.184.216.34", "10.0.0.1"]),
        ("allowed.test", &["::ffff:127.0.0.1"]),
    ]);
    let Connection::Permitted { permit, address } = decide(&s, "Pub.Test.", &t) else {
        panic!("a public name was refused")
    };
    assert_eq!(address, "93.184.216.34".parse::<IpAddr>().unwrap());
    let e = entry(&s, permit.intent_seq());
    assert_eq!(e.kind, EventKind::NetConnect);
    let data = e.data.unwrap();
    assert_eq!(data["address"], "93.184.216.34");
    assert_eq!(data["class"], "public");
    assert_eq!(
        data["resolved"],
        serde_json::json!(["93.184.216.34", "10.0.0.1"])
    );
    assert_eq!(data["requested_host"], "Pub.Test.");
    // Explicitly allowed by name, though loopback: the mapped address is
    // canonicalised before it is decided on and handed out.
    let Connection::Permitted { address, .. } = decide(&s, "allowed.test", &t) else {
        panic!("the allowed name was refused")
    };
    assert_eq!(address, "127.0.0.1".parse::<IpAddr>().unwrap());
}

#[test]
fn a_name_refused_by_name_is_logged_and_never_resolved() {
    let s = setup(Network::ViaProxy);
    let t = Table::new(&[("x.evil.test", &["93.184.216.34"]), ("nx.test", &[])]);
    let Connection::Denied(d) = decide(&s, "secret-data.x.evil.test", &t) else {
        panic!()
    };
    assert!(
        t.asked.lock().unwrap().is_empty(),
        "resolved before deciding"
    );
    let e = entry(&s, d.seq);
    assert_eq!(e.kind, EventKind::PolicyDecision);
    assert!(e.data.unwrap().get("address").is_none());
    // A name that does not resolve: a logged refusal saying so.
    let Connection::Denied(d) = decide(&s, "nx.test", &t) else {
        panic!()
    };
    assert!(d.reason.contains("nx.test"), "{}", d.reason);
    assert_eq!(entry(&s, d.seq).outcome.unwrap().status, Status::Denied);
    assert_eq!(*t.asked.lock().unwrap(), ["nx.test"]);
}

#[test]
fn every_spelling_of_loopback_through_the_mediator_is_a_logged_refusal() {
    let s = setup(Network::ViaProxy);
    let m = GateMediator::new(s.gate.clone(), Some(3));
    for spelling in [
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
        "[::]",
        "2130706433",
        "0x7f.1",
        "127.1",
        "localhost",
        "LOCALHOST.",
        "[::1]",
    ] {
        let NetVerdict::Deny(r) = m.net_connect(&net(spelling, 8080)) else {
            panic!("{spelling} was permitted")
        };
        let d = r.detail::<crate::gate::Denial>().expect("logged");
        let e = entry(&s, d.seq);
        assert_eq!(e.kind, EventKind::PolicyDecision, "{spelling}");
        assert_eq!(
            e.decision.unwrap().policies,
            ["org.no-internal"],
            "{spelling}"
        );
        let data = e.data.unwrap();
        assert_eq!(data["class"], "loopback", "{spelling}");
        assert_eq!(data["exec"], "3");
    }
}

#[test]
fn a_host_that_does_not_canonicalise_is_a_logged_refusal() {
    let s = setup(Network::ViaProxy);
    let m = GateMediator::new(s.gate.clone(), None);
    for bad in [
        "%31%32%37.0.0.1",
        "exa_mple!.com",
        "1.2.3.4.5",
        "[fe80::1%25lo]",
    ] {
        let NetVerdict::Deny(r) = m.net_connect(&net(bad, 443)) else {
            panic!("{bad} was permitted")
        };
        let d = r.detail::<crate::gate::Denial>().expect("logged");
        let e = entry(&s, d.seq);
        assert_eq!(e.kind, EventKind::PolicyDecision);
        assert_eq!(e.data.unwrap()["requested_host"], bad);
        assert_eq!(e.target.unwrap().host, None, "not a canonical host");
    }
}

#[test]
fn without_network_every_attempt_is_a_logged_refusal() {
    let s = setup(Network::Disabled);
    let m = GateMediator::new(s.gate.clone(), Some(9));
    for host in ["93.184.216.34", "pypi.org", "127.0.0.1", "%zz"] {
        let NetVerdict::Deny(r) = m.net_connect(&net(host, 443)) else {
            panic!("{host} was permitted without network")
        };
        let d = r.detail::<crate::gate::Denial>().expect("logged");
        let e = entry(&s, d.seq);
        assert_eq!(e.kind, EventKind::PolicyDecision, "{host}");
        assert_eq!(e.outcome.unwrap().status, Status::Denied);
        assert_eq!(e.data.unwrap()["exec"], "9");
        if host != "%zz" {
            assert_eq!(r.reason(), NO_NETWORK);
            assert_eq!(e.decision.unwrap().reason.as_deref(), Some(NO_NETWORK));
        }
    }
}

/// Grants everything and keeps what it was shown.
#[derive(Debug, Default)]
struct Shown(Arc<Mutex<Vec<String>>>);

impl crate::gate::Approver for Shown {
    fn ask(&self, text: &str) -> crate::gate::ApprovalAnswer {
        self.0.lock().unwrap().push(text.to_owned());
        crate::gate::ApprovalAnswer {
            outcome: ApprovalOutcome::Granted,
            approver: "bob".into(),
            method: "test".into(),
            ticket: None,
            detail: None,
        }
    }

    fn reachable(&self) -> Vec<crate::gate::approval::Reachable> {
        vec![crate::gate::approval::Reachable {
            approver: "bob".into(),
            method: "test".into(),
        }]
    }
}

#[test]
fn an_approver_is_shown_the_address_a_name_resolved_to() {
    let shown = Arc::new(Mutex::new(Vec::new()));
    let s = setup_with(Network::ViaProxy, Box::new(Shown(shown.clone())));
    let t = Table::new(&[("upload.test", &["93.184.216.34"])]);
    let Connection::Permitted { address, .. } = decide(&s, "upload.test", &t) else {
        panic!("the approved upload was refused")
    };
    assert_eq!(address, "93.184.216.34".parse::<IpAddr>().unwrap());
    let shown = shown.lock().unwrap();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].contains("https://upload.test:443"), "{}", shown[0]);
    assert!(
        shown[0].contains("Address:  93.184.216.34 (public)"),
        "{}",
        shown[0]
    );
}
