#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The gate with a real policy bundle and a real audit log.

use std::path::Path;
use std::sync::Arc;

use stele_attest::Ed25519Signer;
use stele_audit::leaf::Leaf;
use stele_audit::verify::verify_db;
use stele_audit::{AuditLog, EventKind, LogOptions, Outcome, Status, Store};
use stele_policy::canonical::canonical_path;
use stele_policy::{ApprovalOutcome, Bundle, Resource, SandboxFacts};
use stele_runtime::gate::approval::FlagApprover;
use stele_runtime::gate::mediator::GateMediator;
use stele_runtime::gate::{ActionRequest, Authorization, Gate, SessionInfo};
use stele_sandbox::{
    FileAccess, FileCloseReport, FileOp, FileRequest, Mediator, Requester, Verdict,
};

struct Setup {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    gate: Arc<Gate>,
    signer: Arc<Ed25519Signer>,
}

fn setup(answer: ApprovalOutcome) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let signer = Arc::new(Ed25519Signer::from_seed("gate.test.invalid/log", &[3; 32]).unwrap());
    let log = Arc::new(
        AuditLog::create(
            &db,
            signer.clone(),
            LogOptions {
                heartbeat: None,
                ..LogOptions::default()
            },
        )
        .unwrap(),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/finance");
    let bundle = Arc::new(Bundle::load(&root).unwrap());
    let session = SessionInfo {
        id: "s-gate".into(),
        principal: "alice".into(),
        teams: vec!["finance".into()],
    };
    let gate = Gate::start_session(
        log,
        bundle,
        session,
        Box::new(FlagApprover::new(answer, "alice", "flag", "test")),
        SandboxFacts::default(),
        serde_json::json!({}),
    )
    .unwrap();
    Setup {
        _dir: dir,
        db,
        gate: Arc::new(gate),
        signer,
    }
}

fn file(action: stele_policy::Action, p: &str) -> ActionRequest {
    ActionRequest::new(action, Resource::File(canonical_path(p).unwrap()))
}

fn leaves(db: &Path) -> Vec<Leaf> {
    let s = Store::open(db).unwrap();
    let mut v = Vec::new();
    s.for_each_entry(0, u64::MAX, |_, b, _| {
        v.push(Leaf::parse_canonical(b).unwrap());
        Ok(())
    })
    .unwrap();
    v
}

#[test]
fn allow_logs_intent_then_result() {
    let s = setup(ApprovalOutcome::Refused);
    let Authorization::Permitted(p) = s
        .gate
        .authorize(file(stele_policy::Action::FileRead, "receipts/a.txt"))
        .unwrap()
    else {
        panic!("finance may read receipts")
    };
    let intent = p.intent_seq();
    s.gate
        .complete(p, Outcome::status(Status::Ok), vec![], None)
        .unwrap();
    s.gate.end_session(Status::Ok, None).unwrap();
    let l = leaves(&s.db);
    let i = &l[intent as usize];
    assert_eq!(i.kind, EventKind::FileOpen);
    let d = i.decision.as_ref().unwrap();
    assert_eq!(d.policies, vec!["finance.read-receipts".to_string()]);
    assert!(d.bundle.starts_with("sha256:"));
    let r = &l[intent as usize + 1];
    assert_eq!(
        (r.kind, r.refs.as_ref().unwrap().intent_seq),
        (EventKind::FileClose, intent)
    );
}

#[test]
fn deny_is_logged_with_rule_and_nothing_is_permitted() {
    let s = setup(ApprovalOutcome::Refused);
    let Authorization::Denied(d) = s
        .gate
        .authorize(file(stele_policy::Action::FileRead, "hr/salaries.csv"))
        .unwrap()
    else {
        panic!("hr/ is not readable")
    };
    assert!(d.reason.contains("denied by default"), "{}", d.reason);
    let host = stele_policy::canonical::CanonicalHost::new("https", "pypi.org", None).unwrap();
    let Authorization::Denied(n) = s
        .gate
        .authorize(ActionRequest::new(
            stele_policy::Action::NetConnect,
            Resource::Host(host),
        ))
        .unwrap()
    else {
        panic!("finance has no network")
    };
    assert_eq!(n.policies, vec!["finance.no-network".to_string()]);
    assert!(n.reason.contains("finance.no-network"), "{}", n.reason);
    let l = leaves(&s.db);
    let e = &l[n.seq as usize];
    assert_eq!(e.kind, EventKind::PolicyDecision);
    assert_eq!(e.outcome.as_ref().unwrap().status, Status::Denied);
    assert!(
        l.iter().all(|x| x.kind != EventKind::NetConnect),
        "no intent for a denied action"
    );
}

fn gmail_send() -> ActionRequest {
    ActionRequest::new(
        stele_policy::Action::McpCall,
        Resource::McpTool {
            server: "gmail".into(),
            tool: "send_email".into(),
        },
    )
}

#[test]
fn ask_then_approve_logs_request_grant_and_intent() {
    let s = setup(ApprovalOutcome::Granted);
    let Authorization::Permitted(p) = s.gate.authorize(gmail_send()).unwrap() else {
        panic!("approved")
    };
    let l = leaves(&s.db);
    let kinds: Vec<EventKind> = l.iter().map(|x| x.kind).collect();
    let at = kinds
        .iter()
        .position(|k| *k == EventKind::ApprovalRequest)
        .unwrap();
    assert_eq!(
        &kinds[at..],
        &[
            EventKind::ApprovalRequest,
            EventKind::ApprovalGrant,
            EventKind::McpCall
        ]
    );
    let shown = l[at].data.as_ref().unwrap()["shown_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        l[at + 1].data.as_ref().unwrap()["shown_sha256"]
            .as_str()
            .unwrap(),
        shown
    );
    assert_eq!(l[at + 1].data.as_ref().unwrap()["approver"], "alice");
    assert_eq!(l[at + 1].data.as_ref().unwrap()["method"], "flag");
    assert_eq!(
        l[at + 2].decision.as_ref().unwrap().policies,
        vec!["finance.mcp-gmail".to_string()]
    );
    assert_eq!(p.intent_seq(), (at + 2) as u64);
}

#[test]
fn ask_then_refuse_is_a_logged_denial() {
    let s = setup(ApprovalOutcome::Refused);
    let Authorization::Denied(d) = s.gate.authorize(gmail_send()).unwrap() else {
        panic!("refused")
    };
    assert!(d.reason.contains("refused"), "{}", d.reason);
    let l = leaves(&s.db);
    assert_eq!(l[d.seq as usize].kind, EventKind::ApprovalDeny);
    assert!(l.iter().all(|x| x.kind != EventKind::McpCall));
}

#[test]
fn mediator_logs_sandbox_file_access_and_closes_handles() {
    let s = setup(ApprovalOutcome::Refused);
    let m = GateMediator::new(s.gate.clone(), Some(1));
    let req = |access, op, path: &str| FileRequest {
        access,
        op,
        path: path.into(),
        requester: Requester::default(),
    };
    let Verdict::Allow(t) = m.file_access(&req(FileAccess::Read, FileOp::Open, "receipts/r1.txt"))
    else {
        panic!()
    };
    m.file_closed(&FileCloseReport {
        ticket: t,
        path: "receipts/r1.txt".into(),
        bytes_read: 12,
        bytes_written: 0,
        sha256_after_write: None,
    });
    assert!(matches!(
        m.file_access(&req(FileAccess::Write, FileOp::Create, "receipts/evil.txt")),
        Verdict::Deny(_)
    ));
    assert!(matches!(
        m.file_access(&req(FileAccess::Read, FileOp::Open, "../etc/passwd")),
        Verdict::Deny(_)
    ));
    // Repeated lookups are decided once.
    for _ in 0..5 {
        assert!(m
            .file_access(&req(FileAccess::List, FileOp::Lookup, "receipts"))
            .is_allow());
    }
    assert!(m.take_open().is_empty());
    s.gate.end_session(Status::Ok, None).unwrap();
    let l = leaves(&s.db);
    let close = l.iter().find(|x| x.kind == EventKind::FileClose).unwrap();
    assert_eq!(close.outcome.as_ref().unwrap().bytes_in, Some(12));
    assert_eq!(
        l.iter()
            .filter(|x| x.target.as_ref().and_then(|t| t.path.as_deref()) == Some("receipts"))
            .count(),
        1
    );
    let log_signer = s.signer.clone();
    drop(s.gate);
    use stele_attest::Signer as _;
    let rep = verify_db(&s.db, &log_signer.verifier(), None).unwrap();
    assert!(rep.unfinished.is_empty(), "{:?}", rep.unfinished);
}

#[test]
fn a_log_that_cannot_be_written_permits_nothing() {
    let s = setup(ApprovalOutcome::Refused);
    let log = s.gate.log().clone();
    let store = log.store().unwrap();
    let before = store.size().unwrap();
    drop(store);
    // Simulate an unwritable log: every insert of an entry fails underneath.
    let c = rusqlite::Connection::open(&s.db).unwrap();
    c.execute_batch("CREATE TRIGGER block BEFORE INSERT ON entries BEGIN SELECT RAISE(ABORT, 'disk gone'); END;").unwrap();
    // Effects that reach the host or leave wait for their durable intent:
    // no permit.
    for action in [
        stele_policy::Action::FileWrite,
        stele_policy::Action::FileDelete,
    ] {
        let r = s.gate.authorize(file(action, "receipts/a.txt"));
        assert!(r.is_err(), "{action:?}: no permit without a durable intent");
    }
    c.execute_batch("DROP TRIGGER block;").unwrap();
    assert_eq!(Store::open(&s.db).unwrap().size().unwrap(), before);
}

#[test]
fn a_read_released_before_a_failed_write_stops_every_effect_after_it() {
    let s = setup(ApprovalOutcome::Refused);
    let before = Store::open(&s.db).unwrap().size().unwrap();
    let c = rusqlite::Connection::open(&s.db).unwrap();
    c.execute_batch("CREATE TRIGGER block BEFORE INSERT ON entries BEGIN SELECT RAISE(ABORT, 'disk gone'); END;").unwrap();
    // A read inside the sandbox waits only for its place in the log
    // (external synchrony, SECURITY.md "Durability")...
    let read = s
        .gate
        .authorize(file(stele_policy::Action::FileRead, "receipts/a.txt"))
        .unwrap();
    assert!(matches!(read, Authorization::Permitted(_)));
    // ...so nothing that could carry what was read may happen after it:
    // the next durable intent fails, and so does every one after, even
    // once the disk is back (an entry someone relied on was lost).
    let w = s
        .gate
        .authorize(file(stele_policy::Action::FileWrite, "receipts/a.txt"));
    assert!(
        w.is_err(),
        "a write after a lost read must not be permitted"
    );
    c.execute_batch("DROP TRIGGER block;").unwrap();
    for action in [
        stele_policy::Action::FileWrite,
        stele_policy::Action::FileRead,
    ] {
        let r = s.gate.authorize(file(action, "receipts/a.txt"));
        assert!(r.is_err(), "{action:?} after the lost entry");
    }
    assert!(s.gate.end_session(Status::Ok, None).is_err());
    assert_eq!(Store::open(&s.db).unwrap().size().unwrap(), before);
}
