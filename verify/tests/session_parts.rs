#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Session bundles written from parts (what a team server holds of a
//! worker's log: leaves, proofs, the signed checkpoint, payload bodies),
//! not from the log's SQLite file: the bundle verifies with the worker's
//! log key and the server's export key, its files are the local export's
//! (same bytes where the content is the same), its `exporter.entry` lies
//! outside its tree, and every tampered part is refused before anything
//! is written, naming the entry.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stele_attest::{Ed25519Signer, Signer};
use stele_audit::export::layout::{Selection, MANIFEST, VERIFY_MD};
use stele_audit::export::session_parts::{
    write_session_bundle, OpenSession, PartCheckpoint, PartEntry, PartPayload, Payloads,
    SessionParts,
};
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::leaf::Leaf;
use stele_audit::merkle::{consistency_proof, inclusion_proof};
use stele_audit::payload::parse_commit;
use stele_audit::{
    Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, PayloadInput, Refs, Target,
};
use stele_verify::{verify, Bundle, Failure, Options, Report};

const ORIGIN: &str = "audit.test.invalid/sessionparts";

fn actor(principal: &str, host: &str) -> Actor {
    Actor {
        host: host.into(),
        principal: principal.into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

struct Setup {
    dir: tempfile::TempDir,
    key: Arc<Ed25519Signer>,
    /// The worker's own export key (local exports).
    local_key: Ed25519Signer,
    /// The team server's export key (bundles from parts).
    server_key: Ed25519Signer,
    log: AuditLog,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(Ed25519Signer::from_seed(ORIGIN, &[31; 32]).unwrap());
        let log = AuditLog::create(
            &dir.path().join("audit.db"),
            key.clone(),
            LogOptions {
                heartbeat: None,
                ..LogOptions::default()
            },
        )
        .unwrap();
        Self {
            dir,
            key,
            local_key: Ed25519Signer::from_seed("export.test.invalid", &[32; 32]).unwrap(),
            server_key: Ed25519Signer::from_seed("server.test.invalid", &[33; 32]).unwrap(),
            log,
        }
    }

    fn check(&self, bundle: &Path, export_key: &Ed25519Signer) -> Result<Report, Failure> {
        let opts = Options {
            log_key: self.key.verifier(),
            more_keys: Vec::new(),
            revoked: Vec::new(),
            export_key: Some(export_key.verifier()),
            witnesses: vec![],
            quorum: None,
            anchors: vec![],
            now: 4_000_000_000,
            tsa: None,
        };
        verify(&Bundle::open(bundle)?, &opts)
    }

    /// The local export of session `id` (a folder); returns it and its size.
    fn local(&self, id: &str) -> (PathBuf, u64) {
        let out = self.dir.path().join(format!("local-{id}"));
        let o = ExportOptions {
            selection: Selection::Session { id: id.into() },
            payloads: true,
            policies: vec![],
            exporter: actor("alice", "worker-1"),
            allow_open_session: false,
            tar: false,
        };
        let r = export(&self.log, &self.local_key, &o, &out).unwrap();
        (out, r.tree_size)
    }

    fn parts(&self, id: &str, size: u64) -> SessionParts {
        parts_of(&self.log, id, size, &[])
    }
}

/// What a server holds of session `id` at checkpoint `size`, read from the
/// worker's log through its public store API: the session's entries and
/// payloads, the entries before each key rotation, and the checkpoints at
/// `earlier` with their consistency proofs.
fn parts_of(log: &AuditLog, id: &str, size: u64, earlier: &[u64]) -> SessionParts {
    let store = log.store().unwrap();
    let note = store.checkpoint_at(size).unwrap().expect("a checkpoint");
    let proven = |seq: u64, leaf: Vec<u8>| PartEntry {
        seq,
        leaf,
        proof: inclusion_proof(&store, seq, size).unwrap(),
    };
    let mut entries = Vec::new();
    let mut cmts = Vec::new();
    store
        .for_each_session_entry(id, size, |e| {
            let l = Leaf::parse_canonical(e.leaf).unwrap();
            cmts.extend(l.payload.iter().filter_map(|p| parse_commit(&p.commit)));
            entries.push(proven(e.seq, e.leaf.to_vec()));
            Ok(())
        })
        .unwrap();
    let payloads = cmts
        .iter()
        .map(|c| {
            let p = store.payload(c).unwrap().unwrap();
            PartPayload {
                cmt: *c,
                salt: p.salt.unwrap(),
                body: p.body.unwrap(),
            }
        })
        .collect();
    let keys = store.key_schedule().unwrap().at(size);
    let key_entries = keys
        .boundaries()
        .map(|b| proven(b - 1, store.entry(b - 1).unwrap().leaf))
        .collect();
    SessionParts {
        origin: ORIGIN.into(),
        keys,
        session: id.into(),
        checkpoint: PartCheckpoint {
            size,
            note,
            cosignatures: vec![],
        },
        entries,
        payloads: Payloads::Included(payloads),
        redactions: vec![],
        key_entries,
        earlier_checkpoints: earlier
            .iter()
            .map(|s| PartCheckpoint {
                size: *s,
                note: store.checkpoint_at(*s).unwrap().unwrap(),
                cosignatures: vec![],
            })
            .collect(),
        consistency: earlier
            .iter()
            .map(|s| (*s, consistency_proof(&store, *s, size).unwrap()))
            .collect(),
        timestamps: vec![],
        attestation: None,
        earlier_bundle: None,
        policies: vec![],
        start: None,
        exporter: actor("team-server", "server.test.invalid"),
        // The server's own log: far past this log's size.
        export_entry: size + 1_000,
        open: OpenSession::Refuse,
    }
}

/// Session entries (each exec intent and its result with a payload) of
/// `ids`, interleaved; the sessions in `end` are ended.
fn sessions(log: &AuditLog, ids: &[&str], rounds: usize, end: &[&str]) {
    let a = actor("alice", "worker-1");
    for id in ids {
        log.append_blocking(Event::new(EventKind::SessionStart, a.clone()).in_session(*id))
            .unwrap();
    }
    for r in 0..rounds {
        for id in ids {
            let i = log
                .append_blocking(
                    Event::new(EventKind::ExecStart, a.clone())
                        .in_session(*id)
                        .with_target(Target {
                            program: Some("/usr/bin/ls".into()),
                            argv: Some(vec!["ls".into(), format!("{id}-{r}")]),
                            ..Target::default()
                        }),
                )
                .unwrap();
            log.append_blocking(
                Event::new(EventKind::ExecEnd, a.clone())
                    .in_session(*id)
                    .with_refs(Refs {
                        intent_leaf: stele_audit::leaf::hash_b64(&i.leaf_hash),
                        intent_seq: i.seq,
                    })
                    .with_outcome(stele_audit::Outcome::status(stele_audit::Status::Ok))
                    .with_payload(PayloadInput {
                        role: "stdout".into(),
                        media: "text/plain".into(),
                        body: format!("output {r} of {id}\n").into_bytes(),
                        disclosure: Disclosure::CommitmentOnly,
                    }),
            )
            .unwrap();
        }
    }
    for id in end {
        log.append_blocking(Event::new(EventKind::SessionEnd, a.clone()).in_session(*id))
            .unwrap();
    }
}

/// The members of a `.tar` bundle, by name.
fn members(tar: &Path) -> Vec<(String, Vec<u8>)> {
    let mut f = std::fs::File::open(tar).unwrap();
    let all = std::fs::read(tar).unwrap();
    stele_audit::export::tar::read_index(&mut f)
        .unwrap()
        .into_iter()
        .map(|(n, r)| (n, all[r.start as usize..r.end as usize].to_vec()))
        .collect()
}

/// Nothing but the log's own files in the folder: no bundle, no leftover.
fn nothing_written(dir: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("audit.db") && !n.starts_with("local-"))
        .collect();
    names.sort();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
fn a_bundle_from_parts_is_the_local_bundle_signed_by_the_server() {
    let s = Setup::new();
    sessions(&s.log, &["a", "b"], 12, &["a", "b"]);
    let (local, size) = s.local("a");
    let lr = s.check(&local, &s.local_key).unwrap();

    let parts = s.parts("a", size);
    let out = s.dir.path().join("server-a.tar");
    let report = write_session_bundle(&parts, &s.server_key, &out).unwrap();
    assert_eq!(report.tree_size, size);
    assert_eq!(report.selected, 26);
    assert_eq!(report.export_entry, size + 1_000);

    // It verifies with the worker's log key and the server's export key
    // (the exporter's entry lies outside the bundle's tree) ...
    let r = s.check(&out, &s.server_key).unwrap();
    assert_eq!((r.selected, r.proofs, r.payloads_verified), (26, 26, 12));
    assert_eq!((lr.selected, lr.proofs, lr.payloads_verified), (26, 26, 12));
    assert!(
        r.exporter.contains("team-server") && r.exporter.contains(&format!("{}", size + 1_000)),
        "{}",
        r.exporter
    );
    // ... and not with the worker's export key.
    assert!(s.check(&out, &s.local_key).is_err());

    // The same files as the local export, the same bytes but for the
    // manifest and VERIFY.md (which name the key that signs the manifest).
    let got = members(&out);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    let want = stele_audit::export::list_files(&local).unwrap();
    assert_eq!(names, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(names.iter().filter(|n| n.starts_with("proofs/")).count() == 26);
    assert!(names.iter().filter(|n| n.starts_with("payloads/")).count() == 12);
    for (n, b) in &got {
        if n == MANIFEST || n == VERIFY_MD {
            assert_ne!(b, &std::fs::read(local.join(n)).unwrap(), "{n}");
        } else {
            assert_eq!(b, &std::fs::read(local.join(n)).unwrap(), "{n} differs");
        }
    }
    // The file is refused where one exists.
    let e = write_session_bundle(&parts, &s.server_key, &out).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}

#[test]
fn tampered_parts_are_refused_naming_the_entry_and_nothing_is_written() {
    let s = Setup::new();
    sessions(&s.log, &["a", "b"], 6, &["a", "b"]);
    let size = s.log.store().unwrap().size().unwrap();
    let good = s.parts("a", size);
    let other = s.parts("b", size);
    let out = s.dir.path().join("bad.tar");
    let refused = |parts: &SessionParts, words: &[&str]| {
        let e = write_session_bundle(parts, &s.server_key, &out)
            .expect_err(&format!("accepted; expected {words:?}"))
            .to_string();
        for w in words {
            assert!(e.contains(w), "{e:?} does not say {w:?}");
        }
        nothing_written(s.dir.path());
    };
    let seq = |i: usize| good.entries[i].seq;

    // A leaf changed (still canonical: a different argument).
    let mut p = good.clone();
    let l = String::from_utf8(p.entries[3].leaf.clone()).unwrap();
    assert!(l.contains("a-1"), "{l}");
    p.entries[3].leaf = l.replace("a-1", "a-9").into_bytes();
    refused(&p, &[&format!("entry {}", seq(3)), "inclusion proof"]);

    // A proof for another index.
    let mut p = good.clone();
    p.entries[4].proof = good.entries[5].proof.clone();
    refused(&p, &[&format!("entry {}", seq(4)), "inclusion proof"]);

    // A proof one hash short.
    let mut p = good.clone();
    p.entries[2].proof.pop();
    refused(&p, &[&format!("entry {}", seq(2)), "inclusion proof"]);

    // An entry missing in the middle: the next one does not follow.
    let mut p = good.clone();
    p.entries.remove(5);
    refused(&p, &[&format!("entry {}", seq(6))]);

    // An entry of another session among them.
    let mut p = good.clone();
    let intruder = other.entries[3].clone();
    let at = p.entries.iter().position(|e| e.seq > intruder.seq).unwrap();
    p.entries.insert(at, intruder.clone());
    refused(&p, &[&format!("entry {}", intruder.seq), "session"]);

    // Entries out of order.
    let mut p = good.clone();
    p.entries.swap(2, 3);
    refused(&p, &[&format!("entry {}", seq(3))]);

    // A payload body changed: named by the entry that commits to it.
    let mut p = good.clone();
    let Payloads::Included(ps) = &mut p.payloads else {
        panic!("payloads")
    };
    ps[1].body = b"something else\n".to_vec();
    let committing = good
        .entries
        .iter()
        .find(|e| {
            let l = Leaf::parse_canonical(&e.leaf).unwrap();
            l.payload
                .iter()
                .any(|x| parse_commit(&x.commit) == Some(ps[1].cmt))
        })
        .unwrap()
        .seq;
    refused(&p, &[&format!("entry {committing}"), "commitment"]);

    // A payload of another session.
    let mut p = good.clone();
    let (Payloads::Included(ps), Payloads::Included(theirs)) = (&mut p.payloads, &other.payloads)
    else {
        panic!("payloads")
    };
    ps.push(theirs[0].clone());
    refused(&p, &["no entry of session a commits to it"]);

    // A checkpoint of another size than stated, or edited.
    let mut p = good.clone();
    p.checkpoint.size -= 1;
    refused(&p, &["checkpoint"]);
    let mut p = good.clone();
    p.checkpoint.note = p.checkpoint.note.replacen(&size.to_string(), "3", 1);
    assert!(write_session_bundle(&p, &s.server_key, &out).is_err());
    nothing_written(s.dir.path());

    // A cosignature that is not a signature line.
    let mut p = good.clone();
    p.checkpoint.cosignatures.push("not a line".into());
    refused(&p, &["cosignature"]);

    // The untouched parts still write.
    write_session_bundle(&good, &s.server_key, &out).unwrap();
    s.check(&out, &s.server_key).unwrap();
}

#[test]
fn an_unfinished_session_is_refused_unless_allowed_and_then_fails_verification() {
    let s = Setup::new();
    sessions(&s.log, &["a", "b"], 3, &["b"]);
    let size = s.log.store().unwrap().size().unwrap();
    let mut p = s.parts("a", size);
    let out = s.dir.path().join("open.tar");
    let e = write_session_bundle(&p, &s.server_key, &out).unwrap_err();
    assert!(e.to_string().contains("has not ended"), "{e}");
    nothing_written(s.dir.path());
    p.open = OpenSession::Allow;
    write_session_bundle(&p, &s.server_key, &out).unwrap();
    let f = s.check(&out, &s.server_key).unwrap_err();
    assert!(
        f.to_string().contains("not ended") || f.to_string().contains("end"),
        "{f}"
    );
    // The ended session of the same log writes and verifies.
    let out = s.dir.path().join("b.tar");
    write_session_bundle(&s.parts("b", size), &s.server_key, &out).unwrap();
    s.check(&out, &s.server_key).unwrap();
}

#[test]
fn a_rotated_log_s_session_from_parts_carries_its_key_entries_and_checkpoints() {
    let s = Setup::new();
    let db = s.dir.path().join("rotated.db");
    let k2 = Arc::new(Ed25519Signer::from_seed(ORIGIN, &[34; 32]).unwrap());
    let log = AuditLog::create(
        &db,
        s.key.clone(),
        LogOptions {
            heartbeat: None,
            ..LogOptions::default()
        },
    )
    .unwrap();
    sessions(&log, &["r"], 2, &[]);
    let rot = log
        .rotate_blocking(k2.clone(), "yearly".into(), actor("alice", "worker-1"))
        .unwrap();
    sessions(&log, &["q"], 1, &["q"]);
    log.append_blocking(
        Event::new(EventKind::SessionEnd, actor("alice", "worker-1")).in_session("r"),
    )
    .unwrap();
    let local = s.dir.path().join("local-r");
    let o = ExportOptions {
        selection: Selection::Session { id: "r".into() },
        payloads: true,
        policies: vec![],
        exporter: actor("alice", "worker-1"),
        allow_open_session: false,
        tar: false,
    };
    let size = export(&log, &s.local_key, &o, &local).unwrap().tree_size;
    let opts = |export_key: &Ed25519Signer| Options {
        log_key: s.key.verifier(),
        more_keys: vec![k2.verifier()],
        revoked: Vec::new(),
        export_key: Some(export_key.verifier()),
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    };
    verify(&Bundle::open(&local).unwrap(), &opts(&s.local_key)).unwrap();
    // The earlier checkpoints the local bundle keeps are ones the worker
    // published: the server holds them too.
    let files = stele_audit::export::list_files(&local).unwrap();
    let earlier: Vec<u64> = files
        .iter()
        .filter_map(|f| f.strip_prefix("checkpoints/")?.parse().ok())
        .collect();
    assert!(!earlier.is_empty(), "no earlier checkpoints kept");
    let parts = parts_of(&log, "r", size, &earlier);
    assert_eq!(parts.key_entries.len(), 1);
    assert_eq!(parts.key_entries[0].seq, rot.size - 1);
    let out = s.dir.path().join("server-r.tar");
    write_session_bundle(&parts, &s.server_key, &out).unwrap();
    let r = verify(&Bundle::open(&out).unwrap(), &opts(&s.server_key)).unwrap();
    assert_eq!(r.selected, 6);
    let got = members(&out);
    assert_eq!(
        got.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        files
    );
    assert!(files.contains(&format!("keys/{}.tlog-proof", rot.size - 1)));
    for (n, b) in &got {
        if n != MANIFEST && n != VERIFY_MD {
            assert_eq!(b, &std::fs::read(local.join(n)).unwrap(), "{n} differs");
        }
    }
    // A key entry with another entry's proof is refused, naming it.
    let mut p = parts.clone();
    p.key_entries[0].proof = p.entries[0].proof.clone();
    let out = s.dir.path().join("bad-r.tar");
    let e = write_session_bundle(&p, &s.server_key, &out).unwrap_err();
    assert!(
        e.to_string().contains(&format!("entry {}", rot.size - 1)),
        "{e}"
    );
    assert!(!out.exists());
    // A consistency proof that does not hold is refused, naming its size.
    let mut p = parts.clone();
    p.consistency[0].1.push([7; 32]);
    let e = write_session_bundle(&p, &s.server_key, &out).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("consistency proof from size {}", earlier[0])),
        "{e}"
    );
    assert!(!out.exists());
}
