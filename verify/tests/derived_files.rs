#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The readable parts of an export are verified too: `SUMMARY.md` and the
//! OCSF view are recomputed from the verified entries and any difference
//! fails — whoever re-signed the manifest (the log key or a separate export
//! key). And the reviewer's report is derived from the entries alone: it
//! names the files, the denial with its rule, the approval with its
//! approver and the text shown, whatever the exporter's files say.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use stele_attest::dsse::Envelope;
use stele_attest::intoto::{Statement, Subject};
use stele_attest::{Ed25519Signer, Signer};
use stele_audit::export::layout::{sha256, Selection, MANIFEST, OCSF, PREDICATE_TYPE, SUMMARY};
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::{
    Actor, AuditLog, DecisionRecord, Disclosure, Effect, Event, EventKind, LogOptions, Outcome,
    PayloadInput, Refs, Status, Target,
};
use stele_verify::{verify, Bundle, Failure, Options, Report};

const ORIGIN: &str = "audit.test.invalid/derived";
const SESSION: &str = "s-review";
const SHOWN: &str =
    "Write file: outbox/letter.txt\nContent:\n| Dear Acme, the totals are attached.\n";

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec!["finance".into()],
    }
}

fn decision(effect: Effect, policies: &[&str], reason: &str) -> DecisionRecord {
    DecisionRecord {
        bundle: "sha256:00".into(),
        effect,
        layer: Some("team:finance".into()),
        policies: policies.iter().map(|p| p.to_string()).collect(),
        reason: Some(reason.into()),
    }
}

fn text(role: &str, body: &str) -> PayloadInput {
    PayloadInput {
        role: role.into(),
        media: "text/plain".into(),
        body: body.as_bytes().to_vec(),
        disclosure: Disclosure::CommitmentOnly,
    }
}

fn path(p: &str) -> Target {
    Target {
        path: Some(p.into()),
        ..Default::default()
    }
}

/// A session like the demo's: the task, a model call, a file read, a
/// denied read with its rule, an approved write with what was shown.
fn demo_like_session(log: &AuditLog) {
    let ev = |k| Event::new(k, actor()).in_session(SESSION);
    log.append_blocking(
        ev(EventKind::SessionStart)
            .with_data(
                serde_json::json!({"client": {"kind": "cli", "command": "run"}, "network": "none"}),
            )
            .with_payload(text("task", "Total the receipts by client.")),
    )
    .unwrap();
    let m = log
        .append_blocking(
            ev(EventKind::ModelRequest)
                .with_target(Target {
                    model: Some("claude-test".into()),
                    provider: Some("anthropic".into()),
                    ..Default::default()
                })
                .with_decision(decision(
                    Effect::Allow,
                    &["org.models"],
                    "model.request permitted by org.models (org, org/ceilings.cedar:3)",
                )),
        )
        .unwrap();
    let mut o = Outcome::status(Status::Ok);
    o.tokens_in = Some(120);
    o.tokens_out = Some(30);
    log.append_blocking(
        ev(EventKind::ModelResponse)
            .with_refs(refs(&m))
            .with_outcome(o),
    )
    .unwrap();
    let r = log
        .append_blocking(
            ev(EventKind::FileOpen)
                .with_target(path("receipts/acme.txt"))
                .with_data(serde_json::json!({"op": "open"}))
                .with_decision(decision(Effect::Allow, &["finance.read-receipts"], "file.read permitted by finance.read-receipts (team:finance, teams/finance/finance.cedar:5)")),
        )
        .unwrap();
    let mut o = Outcome::status(Status::Ok);
    o.bytes_in = Some(82);
    log.append_blocking(ev(EventKind::FileClose).with_refs(refs(&r)).with_outcome(o))
        .unwrap();
    log.append_blocking(
        ev(EventKind::PolicyDecision)
            .with_target(path("hr/salaries.csv"))
            .with_data(serde_json::json!({"op": "open"}))
            .with_decision(decision(
                Effect::Deny,
                &["finance.no-hr"],
                "file.read denied by finance.no-hr (team:finance, teams/finance/finance.cedar:40)",
            ))
            .with_outcome(Outcome::status(Status::Denied)),
    )
    .unwrap();
    let ask = log
        .append_blocking(
            ev(EventKind::ApprovalRequest)
                .with_target(path("outbox/letter.txt"))
                .with_decision(decision(Effect::Ask, &["finance.outbox-four-eyes"], "file.write needs approval under finance.outbox-four-eyes (team:finance, teams/finance/finance.cedar:73)"))
                .with_payload(text("shown", SHOWN)),
        )
        .unwrap();
    log.append_blocking(ev(EventKind::ApprovalGrant).with_data(serde_json::json!({
        "approver": "bob", "method": "terminal", "detail": "ticket FIN-7", "request_seq": ask.seq,
    })))
    .unwrap();
    let w = log
        .append_blocking(
            ev(EventKind::FileOpen)
                .with_target(path("outbox/letter.txt"))
                .with_data(serde_json::json!({"op": "create"}))
                .with_decision(decision(Effect::Allow, &["finance.outbox-write"], "file.write permitted by finance.outbox-write (team:finance, teams/finance/finance.cedar:69)")),
        )
        .unwrap();
    let mut o = Outcome::status(Status::Ok);
    o.bytes_out = Some(38);
    log.append_blocking(
        ev(EventKind::FileClose)
            .with_refs(refs(&w))
            .with_outcome(o)
            .with_data(serde_json::json!({"sha256_after_write": "ab".repeat(32)})),
    )
    .unwrap();
    log.append_blocking(ev(EventKind::SessionEnd).with_outcome(Outcome::status(Status::Ok)))
        .unwrap();
}

fn refs(r: &stele_audit::Receipt) -> Refs {
    Refs {
        intent_leaf: base64::engine::general_purpose::STANDARD.encode(r.leaf_hash),
        intent_seq: r.seq,
    }
}

/// Which key signs the manifest.
#[derive(Debug, Clone, Copy)]
enum ManifestKey {
    Log,
    Export,
}

struct Setup {
    dir: tempfile::TempDir,
    log_key: Arc<Ed25519Signer>,
    export_key: Ed25519Signer,
}

impl Setup {
    fn new() -> Self {
        let s = Self {
            dir: tempfile::tempdir().unwrap(),
            log_key: Arc::new(Ed25519Signer::from_seed(ORIGIN, &[7; 32]).unwrap()),
            export_key: Ed25519Signer::from_seed("export.test.invalid", &[8; 32]).unwrap(),
        };
        let log = s.log();
        demo_like_session(&log);
        log.close().unwrap();
        s
    }
    fn log(&self) -> AuditLog {
        let opts = LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        };
        AuditLog::open_or_create(
            &self.dir.path().join("audit.db"),
            self.log_key.clone(),
            opts,
        )
        .unwrap()
    }
    fn signer(&self, k: ManifestKey) -> &Ed25519Signer {
        match k {
            ManifestKey::Log => &self.log_key,
            ManifestKey::Export => &self.export_key,
        }
    }
    fn export(&self, k: ManifestKey, sel: Selection, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        let o = ExportOptions {
            selection: sel,
            payloads: true,
            policies: vec![],
            exporter: actor(),
            allow_open_session: false,
            tar: false,
        };
        let log = self.log();
        export(&log, self.signer(k), &o, &out).unwrap();
        log.close().unwrap();
        out
    }
    fn opts(&self, k: ManifestKey) -> Options {
        Options {
            log_key: self.log_key.verifier(),
            more_keys: Vec::new(),
            revoked: Vec::new(),
            export_key: match k {
                ManifestKey::Log => None,
                ManifestKey::Export => Some(self.export_key.verifier()),
            },
            witnesses: vec![],
            quorum: None,
            anchors: vec![],
            now: 4_000_000_000,
            tsa: None,
        }
    }
}

fn check(path: &Path, o: &Options) -> Result<Report, Failure> {
    verify(&Bundle::open(path)?, o)
}

fn copy_dir(from: &Path, to: &Path) {
    for f in stele_audit::export::list_files(from).unwrap() {
        let d = to.join(&f);
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), d).unwrap();
    }
}

/// Re-sign the manifest over the files as they now are, with `key`.
fn resign(dir: &Path, key: &Ed25519Signer) {
    let env = Envelope::from_json(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    let st = Statement::open(&env, &key.verifier(), PREDICATE_TYPE).unwrap();
    let subjects: Vec<Subject> = stele_audit::export::list_files(dir)
        .unwrap()
        .into_iter()
        .filter(|f| f != MANIFEST)
        .map(|f| Subject::sha256(f.clone(), &sha256(&std::fs::read(dir.join(&f)).unwrap())))
        .collect();
    let env = Statement::new(subjects, PREDICATE_TYPE, st.predicate)
        .sign(key)
        .unwrap();
    std::fs::write(dir.join(MANIFEST), env.to_json().unwrap() + "\n").unwrap();
}

fn read_ocsf(dir: &Path) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.join(OCSF)).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn write_ocsf(dir: &Path, text: &str) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    std::fs::write(dir.join(OCSF), gz.finish().unwrap()).unwrap();
}

/// Each way of making the readable files lie, as (name, edit).
type Edit = fn(&Path);

fn edits() -> Vec<(&'static str, Edit)> {
    vec![
        ("summary: the denial deleted", |d| {
            let s = std::fs::read_to_string(d.join(SUMMARY)).unwrap();
            assert!(s.contains("hr/salaries.csv"), "{s}");
            let kept: Vec<&str> = s
                .lines()
                .filter(|l| !l.contains("hr/salaries.csv"))
                .collect();
            std::fs::write(d.join(SUMMARY), kept.join("\n") + "\n").unwrap();
        }),
        ("summary: the denial count lowered", |d| {
            let s = std::fs::read_to_string(d.join(SUMMARY)).unwrap();
            std::fs::write(
                d.join(SUMMARY),
                s.replace("## Denials (1)", "## Denials (0)"),
            )
            .unwrap();
        }),
        ("summary: a line added at the end", |d| {
            let s = std::fs::read_to_string(d.join(SUMMARY)).unwrap();
            std::fs::write(
                d.join(SUMMARY),
                s + "- all actions were approved by the CFO\n",
            )
            .unwrap();
        }),
        ("ocsf: the denial turned into an allow", |d| {
            let s = read_ocsf(d);
            assert!(s.contains("\"Blocked\""), "{s}");
            write_ocsf(d, &s.replace("\"Blocked\"", "\"Allowed\""));
        }),
        ("ocsf: the denied event dropped", |d| {
            let s = read_ocsf(d);
            let kept: Vec<&str> = s
                .lines()
                .filter(|l| !l.contains("hr/salaries.csv"))
                .collect();
            write_ocsf(d, &(kept.join("\n") + "\n"));
        }),
        ("ocsf: an event added", |d| {
            let s = read_ocsf(d);
            let first = s.lines().next().unwrap().to_string();
            write_ocsf(d, &(s + &first + "\n"));
        }),
        ("ocsf: the approver's user renamed", |d| {
            let s = read_ocsf(d);
            write_ocsf(d, &s.replace("\"alice\"", "\"mallory\""));
        }),
        // `zcat` and SIEM collectors read every gzip member of a file: an
        // event in a second member is an event the SIEM ingests.
        ("ocsf: a forged event in a second gzip member", |d| {
            let s = read_ocsf(d);
            let forged = s
                .lines()
                .next()
                .unwrap()
                .replace("\"alice\"", "\"mallory\"");
            append_gzip_member(d, &(forged + "\n"));
        }),
        ("ocsf: an empty line in a second gzip member", |d| {
            append_gzip_member(d, "\n");
        }),
    ]
}

/// Append a gzip member holding `text` to the OCSF file.
fn append_gzip_member(dir: &Path, text: &str) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let mut bytes = std::fs::read(dir.join(OCSF)).unwrap();
    bytes.extend_from_slice(&gz.finish().unwrap());
    std::fs::write(dir.join(OCSF), bytes).unwrap();
}

/// Bytes after the gzip stream that are not a gzip member at all are
/// refused too (whatever a reader would make of them), naming the file.
#[test]
fn bytes_after_the_ocsf_stream_fail() {
    let s = Setup::new();
    let good = s.export(ManifestKey::Export, Selection::All, "trail");
    for (what, tail) in [
        ("text", &b"{\"forged\":true}\n"[..]),
        ("a truncated gzip header", &[0x1f, 0x8b, 0x08][..]),
    ] {
        let t = s
            .dir
            .path()
            .join(format!("trail-{}", what.replace(' ', "-")));
        copy_dir(&good, &t);
        let mut bytes = std::fs::read(t.join(OCSF)).unwrap();
        bytes.extend_from_slice(tail);
        std::fs::write(t.join(OCSF), bytes).unwrap();
        resign(&t, &s.export_key);
        let e = check(&t, &s.opts(ManifestKey::Export))
            .err()
            .unwrap_or_else(|| panic!("{what} after the OCSF stream verified"));
        assert_eq!(e.file, OCSF, "{what}: {e}");
    }
}

#[test]
fn altered_summary_or_ocsf_fails_whichever_key_re_signs() {
    let s = Setup::new();
    for key in [ManifestKey::Log, ManifestKey::Export] {
        for sel in [Selection::Session { id: SESSION.into() }, Selection::All] {
            let name = format!("{key:?}-{}", matches!(sel, Selection::All));
            let good = s.export(key, sel, &name);
            let o = s.opts(key);
            let r = check(&good, &o).unwrap();
            assert!(r.account.verification.derived_files_match);
            for (what, edit) in edits() {
                let t = s.dir.path().join(format!("{name}-{what}"));
                copy_dir(&good, &t);
                edit(&t);
                resign(&t, s.signer(key));
                let e = check(&t, &o).err().unwrap_or_else(|| {
                    panic!("{what} (manifest re-signed with the {key:?} key) verified")
                });
                let want = if what.starts_with("summary") {
                    SUMMARY
                } else {
                    OCSF
                };
                assert_eq!(e.file, want, "{what}: {e}");
                assert!(
                    e.reason.contains("line ") && e.reason.contains("recomputed"),
                    "{what}: the failure names the first difference: {e}"
                );
            }
        }
    }
}

#[test]
fn the_same_ocsf_events_written_otherwise_verify() {
    // Other spacing and key order (a binary whose JSON keeps insertion
    // order writes keys unsorted): the same events, so the same export.
    let s = Setup::new();
    let good = s.export(ManifestKey::Log, Selection::All, "spacing");
    let text = read_ocsf(&good);
    let mut out = String::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let serde_json::Value::Object(m) = v else {
            panic!("{l}")
        };
        let mut pairs: Vec<(String, serde_json::Value)> = m.into_iter().collect();
        pairs.reverse();
        let parts: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{:?} : {v}", k))
            .collect();
        out.push_str(&format!("{{ {} }}\n", parts.join(" , ")));
    }
    write_ocsf(&good, &out);
    resign(&good, &s.log_key);
    check(&good, &s.opts(ManifestKey::Log)).unwrap();
}

#[test]
fn ocsf_failure_names_the_entry_and_field() {
    let s = Setup::new();
    let good = s.export(
        ManifestKey::Export,
        Selection::Session { id: SESSION.into() },
        "x",
    );
    let t = s.dir.path().join("x-blocked");
    copy_dir(&good, &t);
    let text = read_ocsf(&t);
    write_ocsf(&t, &text.replace("\"Blocked\"", "\"Allowed\""));
    resign(&t, &s.export_key);
    let e = check(&t, &s.opts(ManifestKey::Export)).unwrap_err();
    // Entry 5 is the denial (0 genesis, 1 start, 2-3 model, 4-5 read… the
    // denial is the first Blocked event): whatever its index, it is named.
    assert!(e.index.is_some(), "{e}");
    assert!(e.reason.contains("/disposition"), "{e}");
    assert!(
        e.reason.contains("\"Allowed\"") && e.reason.contains("\"Blocked\""),
        "{e}"
    );
}

#[test]
fn the_report_is_derived_from_the_entries_not_the_summary() {
    let s = Setup::new();
    let good = s.export(
        ManifestKey::Export,
        Selection::Session { id: SESSION.into() },
        "r",
    );
    // The exporter's prose removed altogether (files and manifest lines):
    // the derived files are required in every bundle (export-format §2),
    // so that is refused, naming the file.
    let t = s.dir.path().join("r-no-prose");
    copy_dir(&good, &t);
    std::fs::remove_file(t.join(SUMMARY)).unwrap();
    std::fs::remove_file(t.join(OCSF)).unwrap();
    resign(&t, &s.export_key);
    let e = check(&t, &s.opts(ManifestKey::Export)).unwrap_err();
    assert!(e.to_string().contains("required in every export"), "{e}");
    for dir in [&good] {
        let r = check(dir, &s.opts(ManifestKey::Export)).unwrap();
        let a = &r.account;
        assert_eq!(a.sessions.len(), 1);
        let x = &a.sessions[0];
        assert_eq!(x.principal, "alice");
        assert_eq!(
            x.task,
            stele_verify::account::PayloadText::Present("Total the receipts by client.".into())
        );
        assert_eq!(x.models.len(), 1);
        assert_eq!(
            (
                x.models[0].requests,
                x.models[0].tokens_in,
                x.models[0].tokens_out
            ),
            (1, 120, 30)
        );
        let files: Vec<(&str, &str)> = x
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.access.as_str()))
            .collect();
        assert_eq!(
            files,
            [
                ("receipts/acme.txt", "read"),
                ("hr/salaries.csv", "read"),
                ("outbox/letter.txt", "write")
            ]
        );
        assert_eq!(x.files[0].bytes_read, Some(82));
        assert_eq!(
            x.files[2].sha256_after_write.as_deref(),
            Some("ab".repeat(32).as_str())
        );
        assert_eq!(x.denials.len(), 1);
        assert_eq!(x.denials[0].target, "hr/salaries.csv");
        assert_eq!(x.denials[0].rule.policies, ["finance.no-hr"]);
        assert!(x.denials[0]
            .rule
            .reason
            .as_deref()
            .unwrap()
            .contains("finance.cedar:40"));
        assert_eq!(x.approvals.len(), 1);
        let ap = &x.approvals[0];
        assert_eq!(
            (ap.requester.as_str(), ap.answer.as_str()),
            ("alice", "granted")
        );
        assert_eq!(ap.approver.as_deref(), Some("bob"));
        assert_eq!(ap.method.as_deref(), Some("terminal"));
        assert_eq!(
            ap.shown,
            stele_verify::account::PayloadText::Present(SHOWN.into())
        );
        // Every rendering carries the same facts.
        let md = stele_verify::account::markdown::render(a);
        let html = stele_verify::account::html::render(a);
        for needle in [
            "receipts/acme.txt",
            "hr/salaries.csv",
            "finance.no-hr",
            "bob",
            "Dear Acme, the totals are attached.",
        ] {
            assert!(md.contains(needle), "markdown lacks {needle}");
            assert!(html.contains(needle), "html lacks {needle}");
        }
    }
}

#[test]
fn withheld_payloads_are_said_to_be_withheld() {
    let s = Setup::new();
    let out = s.dir.path().join("nopayloads");
    let o = ExportOptions {
        selection: Selection::Session { id: SESSION.into() },
        payloads: false,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    let log = s.log();
    export(&log, &s.export_key, &o, &out).unwrap();
    log.close().unwrap();
    let r = check(&out, &s.opts(ManifestKey::Export)).unwrap();
    let x = &r.account.sessions[0];
    assert_eq!(x.task, stele_verify::account::PayloadText::Withheld);
    assert_eq!(
        x.approvals[0].shown,
        stele_verify::account::PayloadText::Withheld
    );
    assert!(r
        .account
        .verification
        .unchecked
        .iter()
        .any(|u| u.contains("withheld")));
}

/// Re-sign the manifest after `edit` changed its predicate.
fn resign_predicate(dir: &Path, key: &Ed25519Signer, edit: impl Fn(&mut serde_json::Value)) {
    let env = Envelope::from_json(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    let mut st = Statement::open(&env, &key.verifier(), PREDICATE_TYPE).unwrap();
    edit(&mut st.predicate);
    let env = Statement::new(st.subject, PREDICATE_TYPE, st.predicate)
        .sign(key)
        .unwrap();
    std::fs::write(dir.join(MANIFEST), env.to_json().unwrap() + "\n").unwrap();
}

/// The exported OCSF view rewritten from the log's entries under `mapping`.
fn ocsf_under(s: &Setup, dir: &Path, mapping: stele_audit::export::ocsf::OcsfMapping) -> String {
    let store = stele_audit::Store::open(&s.dir.path().join("audit.db")).unwrap();
    let mut out = String::new();
    for l in read_ocsf(dir).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let seq = v["metadata"]["sequence"].as_u64().unwrap();
        let e = store.entry(seq).unwrap();
        let leaf: stele_audit::leaf::Leaf = serde_json::from_slice(&e.leaf).unwrap();
        let hash = stele_audit::merkle::leaf_hash(&e.leaf);
        let ev = stele_audit::export::ocsf::event_in(&leaf, &hash, ORIGIN, mapping);
        out.push_str(&serde_json::to_string(&ev).unwrap());
        out.push('\n');
    }
    out
}

#[test]
fn an_export_made_under_an_earlier_ocsf_mapping_still_verifies_and_mappings_do_not_mix() {
    use stele_audit::export::ocsf::OcsfMapping;
    let s = Setup::new();
    for sel in [Selection::Session { id: SESSION.into() }, Selection::All] {
        let name = format!("mapping-{}", matches!(sel, Selection::All));
        let good = s.export(ManifestKey::Log, sel, &name);
        let o = s.opts(ManifestKey::Log);
        let manifest = std::fs::read_to_string(good.join(MANIFEST)).unwrap();
        let env = Envelope::from_json(manifest.as_bytes()).unwrap();
        let st = Statement::open(&env, &s.log_key.verifier(), PREDICATE_TYPE).unwrap();
        assert_eq!(st.predicate["ocsf_mapping"], OcsfMapping::CURRENT.as_str());
        let v1 = ocsf_under(&s, &good, OcsfMapping::V1);
        let v2 = ocsf_under(&s, &good, OcsfMapping::V2);
        assert_ne!(
            v1, v2,
            "the session has entries the two mappings place apart"
        );
        let unnamed = |p: &mut serde_json::Value| {
            p.as_object_mut().unwrap().remove("ocsf_mapping");
        };
        // (view written under, manifest edit, verifies?)
        type Case = (
            &'static str,
            String,
            Box<dyn Fn(&mut serde_json::Value)>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "an older export: view 1, no mapping named",
                v1.clone(),
                Box::new(unnamed),
                true,
            ),
            (
                "view 1, mapping 1 named",
                v1.clone(),
                Box::new(|p: &mut serde_json::Value| p["ocsf_mapping"] = "1".into()),
                true,
            ),
            (
                "view 2 claiming to be an older export",
                v2.clone(),
                Box::new(unnamed),
                false,
            ),
            (
                "view 1 under a manifest naming mapping 2",
                v1.clone(),
                Box::new(|_: &mut serde_json::Value| {}),
                false,
            ),
        ];
        for (what, view, edit, ok) in cases {
            let t = s.dir.path().join(format!("{name}-{what}"));
            copy_dir(&good, &t);
            write_ocsf(&t, &view);
            resign(&t, &s.log_key);
            resign_predicate(&t, &s.log_key, &edit);
            match (check(&t, &o), ok) {
                (Ok(r), true) => assert!(r.account.verification.derived_files_match, "{what}"),
                (Err(e), false) => assert_eq!(e.file, OCSF, "{what}: {e}"),
                (Ok(_), false) => panic!("{what}: verified"),
                (Err(e), true) => panic!("{what}: {e}"),
            }
        }
        // A mapping this stele does not know is refused, naming the field.
        let t = s.dir.path().join(format!("{name}-unknown"));
        copy_dir(&good, &t);
        resign_predicate(&t, &s.log_key, |p| p["ocsf_mapping"] = "9".into());
        let e = check(&t, &o).unwrap_err();
        assert!(
            e.reason.contains("ocsf_mapping") && e.reason.contains("\"9\""),
            "{e}"
        );
    }
}
