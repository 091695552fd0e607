#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Approvals that mean something: who may approve (segregation of duties
//! under the finance template), refusing without asking when no one who
//! could lift the rule can be reached, what the approver is shown for a
//! file write (its content, its changes), and what the answer records
//! (approver, method, ticket).

use std::path::Path;
use std::sync::{Arc, Mutex};

use ring::digest::{digest, SHA256};
use serde_json::json;
use stele_attest::Ed25519Signer;
use stele_audit::leaf::Leaf;
use stele_audit::{AuditLog, EventKind, LogOptions, Store};
use stele_policy::{ApprovalOutcome, Bundle, SandboxFacts};
use stele_sandbox::tools::WorkspaceTools;
use stele_sandbox::Requester;

use super::approval::{ApprovalAnswer, Approver, Reachable};
use super::mediator::{GateMediator, Parent};
use super::{Gate, SessionInfo};
use crate::gate::mediator::tests::leaves;

/// Answers as `who` through `method` with `outcome` (and `ticket`), and
/// keeps every text it was shown.
#[derive(Debug)]
struct Person {
    who: &'static str,
    method: &'static str,
    outcome: ApprovalOutcome,
    ticket: Option<&'static str>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Person {
    fn granting(who: &'static str) -> Self {
        Self {
            who,
            method: "tty",
            outcome: ApprovalOutcome::Granted,
            ticket: None,
            seen: Arc::default(),
        }
    }
}

impl Approver for Person {
    fn ask(&self, text: &str) -> ApprovalAnswer {
        self.seen.lock().unwrap().push(text.to_owned());
        ApprovalAnswer {
            outcome: self.outcome,
            approver: self.who.into(),
            method: self.method.into(),
            ticket: self.ticket.map(str::to_owned),
            detail: None,
        }
    }

    fn reachable(&self) -> Vec<Reachable> {
        vec![Reachable {
            approver: self.who.into(),
            method: self.method.into(),
        }]
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    ws: std::path::PathBuf,
    gate: Arc<Gate>,
}

/// A session of alice (finance) on `bundle`, answered by `approver`.
fn setup_on(bundle: &Path, approver: Box<dyn Approver>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let ws = dir.path().join("ws");
    for d in ["outbox", "reports"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
    }
    let signer = Arc::new(Ed25519Signer::from_seed("approval.test.invalid/log", &[7; 32]).unwrap());
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
        Arc::new(Bundle::load(bundle).unwrap()),
        SessionInfo {
            id: "s-approval".into(),
            principal: "alice".into(),
            teams: vec!["finance".into()],
        },
        approver,
        SandboxFacts::default(),
        json!({}),
    )
    .unwrap();
    Setup {
        _dir: dir,
        db,
        ws,
        gate: Arc::new(gate),
    }
}

fn finance() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/finance")
}

/// Run the `file_write` tool as the agent would (the tool call's own
/// mediator, which shows approvers the content).
fn write_tool(s: &Setup, path: &str, content: &str) -> crate::tools::Ran {
    let m = GateMediator::with_parent(s.gate.clone(), Parent::ToolCall(1));
    let dir =
        Arc::new(cap_std::fs::Dir::open_ambient_dir(&s.ws, cap_std::ambient_authority()).unwrap());
    let input = json!({"path": path, "content": content});
    let m = match crate::tools::files::show_write(&dir, "file_write", &input) {
        Some(show) => m.showing_writes(show),
        None => m,
    };
    let files = WorkspaceTools::open(&s.ws, Arc::new(m), Requester::default()).unwrap();
    crate::tools::files::run(&files, "file_write", &input)
}

fn of_kind(l: &[Leaf], k: EventKind) -> Vec<&Leaf> {
    l.iter().filter(|x| x.kind == k).collect()
}

fn shown_payload(db: &Path, request: &Leaf) -> String {
    let store = Store::open(db).unwrap();
    let cmt = &request
        .payload
        .first()
        .expect("the shown text is a payload")
        .commit;
    let p = store
        .payload(&stele_audit::payload::parse_commit(cmt).unwrap())
        .unwrap()
        .expect("stored");
    String::from_utf8(p.body.expect("not redacted")).unwrap()
}

/// The reproduction: a self-approval. Under the finance template an outbox
/// letter needs another member of finance; alice, alone at her terminal
/// (or with `--approve allow`), is not asked at all: the write is refused
/// with the reason, logged, and nothing is written.
#[test]
fn a_self_approval_under_the_finance_template_is_refused_without_asking() {
    for method in ["tty", "flag"] {
        let person = Person {
            method,
            ..Person::granting("alice")
        };
        let seen = person.seen.clone();
        let s = setup_on(&finance(), Box::new(person));
        let ran = write_tool(&s, "outbox/letter.txt", "Dear Acme,\n");
        assert_eq!(
            ran.outcome.status,
            stele_audit::Status::Denied,
            "{}",
            ran.text
        );
        assert!(seen.lock().unwrap().is_empty(), "{method}: alice was asked");
        assert!(!s.ws.join("outbox/letter.txt").exists());
        let v: serde_json::Value = serde_json::from_str(&ran.text).unwrap();
        assert_eq!(v["policies"], json!(["finance.outbox-four-eyes"]), "{v}");
        let reason = v["reason"].as_str().unwrap();
        assert!(reason.contains(&format!("alice ({method})")), "{reason}");
        assert!(
            reason.contains("someone other than the requester"),
            "{reason}"
        );
        let l = leaves(&s.db);
        assert!(
            of_kind(&l, EventKind::ApprovalRequest).is_empty(),
            "{method}"
        );
        let d = of_kind(&l, EventKind::PolicyDecision);
        let refusal = d
            .iter()
            .find(|x| x.seq == v["audit_entry"].as_u64().unwrap())
            .expect("the refusal is logged");
        let data = refusal.data.as_ref().unwrap();
        assert_eq!(
            data["approval_unreachable"],
            json!([{"approver": "alice", "method": method}])
        );
        assert_eq!(
            refusal.decision.as_ref().unwrap().reason.as_deref(),
            Some(reason)
        );
    }
}

/// Another member of finance is asked, sees the letter, and their grant is
/// recorded with their name and method; the write happens.
#[test]
fn another_member_sees_the_letter_and_their_grant_is_recorded() {
    let bob = Person::granting("bob");
    let seen = bob.seen.clone();
    let s = setup_on(&finance(), Box::new(bob));
    let letter = "Dear Acme,\nyour March receipts are summarised in reports/by-client.csv.\n";
    let ran = write_tool(&s, "outbox/acme.txt", letter);
    assert_eq!(ran.outcome.status, stele_audit::Status::Ok, "{}", ran.text);
    assert_eq!(
        std::fs::read_to_string(s.ws.join("outbox/acme.txt")).unwrap(),
        letter
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let shown = &seen[0];
    assert!(
        shown.starts_with("Write file: outbox/acme.txt\n"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "| Dear Acme,\n| your March receipts are summarised in reports/by-client.csv.\n"
        ),
        "{shown}"
    );
    let letter_hash = hex::encode(digest(&SHA256, letter.as_bytes()));
    assert!(shown.contains(&letter_hash), "{shown}");
    // The log hashes exactly what was shown, and keeps it.
    let l = leaves(&s.db);
    let req = of_kind(&l, EventKind::ApprovalRequest)[0];
    let hash = hex::encode(digest(&SHA256, shown.as_bytes()));
    assert_eq!(req.data.as_ref().unwrap()["shown_sha256"], hash.as_str());
    assert_eq!(shown_payload(&s.db, req), *shown);
    let grant = of_kind(&l, EventKind::ApprovalGrant)[0];
    let g = grant.data.as_ref().unwrap();
    assert_eq!(g["approver"], "bob");
    assert_eq!(g["method"], "tty");
    assert_eq!(g["request_seq"], req.seq);
    assert_eq!(g["shown_sha256"], hash.as_str());
}

/// Replacing a file shows the changes against the current one.
#[test]
fn replacing_a_file_shows_its_changes() {
    let bob = Person::granting("bob");
    let seen = bob.seen.clone();
    let s = setup_on(&finance(), Box::new(bob));
    std::fs::write(
        s.ws.join("outbox/acme.txt"),
        "Dear Acme,\ntotal: 50.50 EUR\nBye\n",
    )
    .unwrap();
    let ran = write_tool(
        &s,
        "outbox/acme.txt",
        "Dear Acme,\ntotal: 5050.00 EUR\nBye\n",
    );
    assert_eq!(ran.outcome.status, stele_audit::Status::Ok, "{}", ran.text);
    let shown = seen.lock().unwrap()[0].clone();
    assert!(
        shown.contains("Replaces the current file (32 bytes"),
        "{shown}"
    );
    assert!(
        shown.contains("-total: 50.50 EUR\n+total: 5050.00 EUR\n"),
        "{shown}"
    );
}

/// A refusal by the other member is recorded under their name; nothing is
/// written.
#[test]
fn a_refusal_by_another_member_is_theirs() {
    let bob = Person {
        outcome: ApprovalOutcome::Refused,
        ..Person::granting("bob")
    };
    let s = setup_on(&finance(), Box::new(bob));
    let ran = write_tool(&s, "outbox/x.txt", "no\n");
    assert_eq!(ran.outcome.status, stele_audit::Status::Denied);
    assert!(ran.text.contains("bob refused it (tty)"), "{}", ran.text);
    assert!(!s.ws.join("outbox/x.txt").exists());
    let l = leaves(&s.db);
    let deny = of_kind(&l, EventKind::ApprovalDeny)[0];
    assert_eq!(deny.data.as_ref().unwrap()["approver"], "bob");
}

/// A ticket the approver gives is recorded and is what policy sees.
#[test]
fn a_ticket_given_with_the_answer_is_recorded_and_decides() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path();
    std::fs::create_dir_all(b.join("org")).unwrap();
    std::fs::write(b.join("schema.cedarschema"), stele_policy::STELE_SCHEMA).unwrap();
    std::fs::write(b.join("members.toml"), "[users]\n").unwrap();
    std::fs::write(
        b.join("org/org.cedar"),
        r#"
@id("org.write")
permit (principal, action == Action::"file.write", resource is File);
@id("org.change-ticket")
@ask("human")
forbid (principal, action == Action::"file.write", resource is File)
unless { context has approval && context.approval.granted && context.approval.ticket like "CHG-*" };
"#,
    )
    .unwrap();
    for (ticket, written) in [(Some("CHG-1234"), true), (None, false)] {
        let person = Person {
            ticket,
            ..Person::granting("alice")
        };
        let s = setup_on(b, Box::new(person));
        let ran = write_tool(&s, "reports/r.txt", "x\n");
        assert_eq!(
            s.ws.join("reports/r.txt").exists(),
            written,
            "{ticket:?}: {}",
            ran.text
        );
        let l = leaves(&s.db);
        let grant = of_kind(&l, EventKind::ApprovalGrant)[0];
        let g = grant.data.as_ref().unwrap();
        match ticket {
            Some(t) => assert_eq!(g["ticket"], t),
            None => {
                assert!(g.get("ticket").is_none(), "{g}");
                // Granted, but the rule still forbids it without a ticket: named.
                assert!(ran.text.contains("org.change-ticket"), "{}", ran.text);
            }
        }
    }
}
