#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The gate's Mediator: refusals carry the logged denial, one-shot changes
//! get an intent and a result, entries name the tool call they belong to.

use std::path::Path;
use std::sync::Arc;

use stele_attest::Ed25519Signer;
use stele_audit::leaf::Leaf;
use stele_audit::{AuditLog, EventKind, LogOptions, Status, Store};
use stele_policy::{ApprovalOutcome, Bundle, SandboxFacts};
use stele_sandbox::{
    ChangeOutcome, FileAccess, FileChangeReport, FileOp, FileRefusal, FileRequest, Mediator,
    RefusalRule, Requester, Ticket, Verdict,
};

use super::{GateMediator, Parent, RefusedBeforePolicy};
use crate::gate::approval::FlagApprover;
use crate::gate::{Denial, Gate, SessionInfo};

pub(crate) struct Setup {
    _dir: tempfile::TempDir,
    pub(crate) db: std::path::PathBuf,
    pub(crate) gate: Arc<Gate>,
}

/// A session of alice (finance) on the finance bundle, logging to a temp db.
pub(crate) fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let signer = Arc::new(Ed25519Signer::from_seed("mediator.test.invalid/log", &[5; 32]).unwrap());
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/finance");
    let gate = Gate::start_session(
        log,
        Arc::new(Bundle::load(&root).unwrap()),
        SessionInfo {
            id: "s-mediator".into(),
            principal: "alice".into(),
            teams: vec!["finance".into()],
        },
        Box::new(FlagApprover::new(
            ApprovalOutcome::Refused,
            "alice",
            "flag",
            "test",
        )),
        SandboxFacts::default(),
        serde_json::json!({}),
    )
    .unwrap();
    Setup {
        _dir: dir,
        db,
        gate: Arc::new(gate),
    }
}

impl Setup {
    /// Every entry so far (reads are released before they are written:
    /// wait for them first).
    pub(crate) fn leaves(&self) -> Vec<Leaf> {
        self.gate.log().sync_blocking().unwrap();
        leaves(&self.db)
    }
}

pub(crate) fn leaves(db: &Path) -> Vec<Leaf> {
    let s = Store::open(db).unwrap();
    let mut v = Vec::new();
    s.for_each_entry(0, u64::MAX, |_, b, _| {
        v.push(Leaf::parse_canonical(b).unwrap());
        Ok(())
    })
    .unwrap();
    v
}

fn req(access: FileAccess, op: FileOp, path: &str) -> FileRequest {
    FileRequest {
        access,
        op,
        path: path.into(),
        requester: Requester::default(),
    }
}

fn allowed(m: &GateMediator, access: FileAccess, op: FileOp, path: &str) -> Ticket {
    match m.file_access(&req(access, op, path)) {
        Verdict::Allow(t) => t,
        Verdict::Deny(r) => panic!("{op:?} {path}: {r}"),
    }
}

#[test]
fn a_refusal_carries_the_rule_and_its_layer() {
    let s = setup();
    let m = GateMediator::new(s.gate.clone(), None);
    let path = "reports/audit-export/x.csv";
    let Verdict::Deny(r) = m.file_access(&req(FileAccess::Write, FileOp::Create, path)) else {
        panic!("audit exports are not writable")
    };
    let d = r
        .detail::<Denial>()
        .expect("the logged denial travels with it");
    assert_eq!(d.policies, ["project.no-audit-exports"]);
    assert_eq!(d.layer.as_deref(), Some("project"));
    assert_eq!(r.reason(), d.reason);
    // A cached lookup refusal still carries it.
    for _ in 0..2 {
        let Verdict::Deny(r) = m.file_access(&req(FileAccess::List, FileOp::Lookup, "hr")) else {
            panic!("hr/ is not listable")
        };
        assert!(r.detail::<Denial>().is_some());
    }
    // A refusal no policy made (an unusable path) has no denial attached.
    let Verdict::Deny(r) = m.file_access(&req(FileAccess::Read, FileOp::Open, "../etc/passwd"))
    else {
        panic!()
    };
    assert!(r.detail::<Denial>().is_none());
    s.gate.end_session(Status::Ok, None).unwrap();
    let l = s.leaves();
    let entry = &l[d.seq as usize];
    assert_eq!(entry.kind, EventKind::PolicyDecision);
    assert_eq!(entry.outcome.as_ref().unwrap().status, Status::Denied);
}

#[test]
fn one_shot_changes_have_an_intent_before_and_a_result_after() {
    let s = setup();
    let m = GateMediator::new(s.gate.clone(), Some(1));
    let outcomes = [
        (FileOp::Mkdir, "reports/q1", ChangeOutcome::Done),
        (
            FileOp::SetAttr,
            "reports/a.csv",
            ChangeOutcome::Failed(libc::ENOENT),
        ),
        (FileOp::Symlink, "reports/link", ChangeOutcome::Abandoned),
    ];
    let mut tickets = Vec::new();
    for (op, path, outcome) in outcomes {
        let t = allowed(&m, FileAccess::Write, op, path);
        m.file_changed(&FileChangeReport {
            ticket: t,
            op,
            outcome,
            sha256_after: None,
        });
        tickets.push(t);
    }
    // A report for a ticket it never handed out (or twice) records nothing.
    m.file_changed(&FileChangeReport {
        ticket: tickets[0],
        op: FileOp::Mkdir,
        outcome: ChangeOutcome::Done,
        sha256_after: None,
    });
    assert!(m.take_open().is_empty());
    s.gate.end_session(Status::Ok, None).unwrap();
    let l = s.leaves();
    let want = [
        ("mkdir", Status::Ok, None),
        ("setattr", Status::Error, Some(i64::from(libc::ENOENT))),
        ("symlink", Status::Denied, None),
    ];
    for (t, (op, status, code)) in tickets.iter().zip(want) {
        let intent = &l[t.0 as usize];
        assert_eq!(intent.kind, EventKind::FileOpen);
        assert_eq!(intent.data.as_ref().unwrap()["op"], op);
        assert_eq!(intent.data.as_ref().unwrap()["exec"], "1");
        let results: Vec<&Leaf> = l
            .iter()
            .filter(|x| x.refs.as_ref().is_some_and(|r| r.intent_seq == t.0))
            .collect();
        assert_eq!(results.len(), 1, "{op}: one result");
        let r = results[0];
        assert!(r.seq > t.0);
        assert_eq!(r.kind, EventKind::FileClose);
        let o = r.outcome.as_ref().unwrap();
        assert_eq!((o.status, o.code), (status, code), "{op}");
        assert_eq!(r.data.as_ref().unwrap()["op"], op);
    }
}

#[test]
fn entries_of_a_tool_call_name_its_intent() {
    let s = setup();
    let m = GateMediator::with_parent(s.gate.clone(), Parent::ToolCall(7));
    let t = allowed(&m, FileAccess::Read, FileOp::Open, "receipts/r1.txt");
    let data = s.leaves()[t.0 as usize].data.clone().unwrap();
    assert_eq!(data["tool_call"], 7);
    assert_eq!(data["exec"], serde_json::Value::Null);
    // The session's own mediator names no tool call.
    let m = GateMediator::with_parent(s.gate.clone(), Parent::Session);
    let t = allowed(&m, FileAccess::Read, FileOp::Open, "receipts/r2.txt");
    let data = s.leaves()[t.0 as usize].data.clone().unwrap();
    assert!(data.get("tool_call").is_none());
}

#[test]
fn refusals_before_policy_are_denied_decision_entries() {
    let s = setup();
    let m = GateMediator::new(s.gate.clone(), Some(4));
    // Paths canonicalisation refuses: each a logged denial naming the rule.
    let mut seqs = Vec::new();
    for (path, rule, shown) in [
        ("../etc/passwd", "path.parent_dir", "../etc/passwd"),
        ("/etc/passwd", "path.absolute", "/etc/passwd"),
        ("", "path.empty", ""),
        ("a\u{1b}[2Jb", "path.control_character", "a\\u{1b}[2Jb"),
    ] {
        let Verdict::Deny(r) = m.file_access(&req(FileAccess::Read, FileOp::Open, path)) else {
            panic!("{path:?} was allowed")
        };
        let refused = r
            .detail::<RefusedBeforePolicy>()
            .expect("the logged refusal travels with it");
        assert_eq!(refused.rule, rule);
        seqs.push((refused.denial.seq, rule, shown));
    }
    // The sandbox's own refusals, with who asked and why.
    let requester = Requester {
        pid: Some(7),
        exec_id: Some("9".into()),
    };
    let r = m.file_refused(
        &FileRefusal::new(
            FileAccess::Write,
            FileOp::SetAttr,
            b"myid",
            RefusalRule::PrivilegedMode,
            requester.clone(),
        )
        .with_detail("mode 4755"),
    );
    let setuid = r.detail::<RefusedBeforePolicy>().unwrap().denial.seq;
    // A refused lookup is logged once per session, like a decided one.
    let lookup = FileRefusal::new(
        FileAccess::List,
        FileOp::Lookup,
        b"bad\xff",
        RefusalRule::NotUtf8,
        requester,
    );
    let first = m.file_refused(&lookup);
    let again = m.file_refused(&lookup);
    let once = first.detail::<RefusedBeforePolicy>().unwrap().denial.seq;
    assert_eq!(
        again.detail::<RefusedBeforePolicy>().unwrap().denial.seq,
        once
    );
    // The root is a resource policy decides, as ".".
    let root = allowed(&m, FileAccess::List, FileOp::ReadDir, ".");
    // A truncate's result carries the hash of what it left.
    let t = allowed(&m, FileAccess::Write, FileOp::SetAttr, "reports/a.csv");
    m.file_changed(&FileChangeReport {
        ticket: t,
        op: FileOp::SetAttr,
        outcome: ChangeOutcome::Done,
        sha256_after: Some([0xab; 32]),
    });
    s.gate.end_session(Status::Ok, None).unwrap();
    let l = s.leaves();
    let check = |seq: u64, rule: &str, path: &str| {
        let e = &l[seq as usize];
        assert_eq!(e.kind, EventKind::PolicyDecision, "{rule}");
        assert_eq!(e.outcome.as_ref().unwrap().status, Status::Denied, "{rule}");
        let d = e.decision.as_ref().unwrap();
        assert_eq!(d.effect, stele_audit::Effect::Deny);
        assert!(d.policies.is_empty());
        assert!(d.reason.as_ref().unwrap().contains(rule), "{d:?}");
        let data = e.data.as_ref().unwrap();
        assert_eq!(data["refusal"]["rule"], rule);
        assert_eq!(
            e.target.as_ref().unwrap().path.as_deref(),
            Some(path),
            "{rule}"
        );
        data.clone()
    };
    for (seq, rule, shown) in seqs {
        let data = check(seq, rule, shown);
        assert_eq!(data["exec"], "4");
    }
    let data = check(setuid, "file.privileged_mode", "myid");
    assert_eq!(data["refusal"]["detail"], "mode 4755");
    assert_eq!(data["refusal"]["access"], "file.write");
    assert_eq!(
        (data["pid"].clone(), data["exec"].clone()),
        (7.into(), "9".into())
    );
    check(once, "path.not_utf8", "bad\\xff");
    let refusals = l
        .iter()
        .filter(|e| {
            e.data
                .as_ref()
                .is_some_and(|d| d["refusal"]["rule"] == "path.not_utf8")
        })
        .count();
    assert_eq!(refusals, 1);
    assert_eq!(
        l[root.0 as usize].target.as_ref().unwrap().path.as_deref(),
        Some(".")
    );
    let result = l
        .iter()
        .find(|e| e.refs.as_ref().is_some_and(|r| r.intent_seq == t.0))
        .unwrap();
    assert_eq!(
        result.data.as_ref().unwrap()["sha256_after_write"],
        hex::encode([0xab; 32])
    );
}
