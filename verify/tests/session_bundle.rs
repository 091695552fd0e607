#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Session bundles: a session export holds only the session's entries,
//! each with an inclusion proof against the export's checkpoint, and no
//! tiles. It verifies from those alone, and every way of making it lie —
//! an entry left out, added, altered, moved; a proof or the checkpoint
//! changed; the readable views edited — fails naming the file and entry,
//! even when the manifest is re-signed with the export key.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stele_attest::dsse::Envelope;
use stele_attest::intoto::{Statement, Subject};
use stele_attest::{Checkpoint, Ed25519Signer, Signer};
use stele_audit::export::layout::{sha256, Selection, MANIFEST, OCSF, PREDICATE_TYPE, SUMMARY};
use stele_audit::export::write::{export, ExportOptions};
use stele_audit::{
    Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, PayloadInput, Refs, Target,
};
use stele_verify::{verify, Bundle, Failure, Options, Report};

const ORIGIN: &str = "audit.test.invalid/sessionbundle";

fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

struct Setup {
    dir: tempfile::TempDir,
    key: Arc<Ed25519Signer>,
    export_key: Ed25519Signer,
    log: AuditLog,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(Ed25519Signer::from_seed(ORIGIN, &[21; 32]).unwrap());
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
            export_key: Ed25519Signer::from_seed("export.test.invalid", &[22; 32]).unwrap(),
            log,
        }
    }

    fn export(&self, id: &str, name: &str, payloads: bool) -> PathBuf {
        let out = self.dir.path().join(name);
        let o = ExportOptions {
            selection: Selection::Session { id: id.into() },
            payloads,
            policies: vec![],
            exporter: actor(),
            allow_open_session: false,
            tar: false,
        };
        export(&self.log, &self.export_key, &o, &out).unwrap();
        out
    }

    fn opts(&self) -> Options {
        Options {
            log_key: self.key.verifier(),
            more_keys: Vec::new(),
            revoked: Vec::new(),
            export_key: Some(self.export_key.verifier()),
            witnesses: vec![],
            quorum: None,
            anchors: vec![],
            now: 4_000_000_000,
            tsa: None,
        }
    }

    fn check(&self, dir: &Path) -> Result<Report, Failure> {
        verify(&Bundle::open(dir)?, &self.opts())
    }

    /// A fresh copy of `out` to damage.
    fn copy(&self, out: &Path) -> PathBuf {
        let t = self.dir.path().join("t");
        let _ = std::fs::remove_dir_all(&t);
        for f in stele_audit::export::list_files(out).unwrap() {
            let d = t.join(&f);
            std::fs::create_dir_all(d.parent().unwrap()).unwrap();
            std::fs::copy(out.join(&f), d).unwrap();
        }
        t
    }

    /// What a holder of the export key can do: re-sign the manifest over
    /// the files as they now are, with the predicate edited by `edit`.
    fn resign(&self, dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let env = Envelope::from_json(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
        let st = Statement::open(&env, &self.export_key.verifier(), PREDICATE_TYPE).unwrap();
        let mut p = st.predicate;
        edit(&mut p);
        let subjects: Vec<Subject> = stele_audit::export::list_files(dir)
            .unwrap()
            .into_iter()
            .filter(|f| f != MANIFEST)
            .map(|f| Subject::sha256(f.clone(), &sha256(&std::fs::read(dir.join(&f)).unwrap())))
            .collect();
        let env = Statement::new(subjects, PREDICATE_TYPE, p)
            .sign(&self.export_key)
            .unwrap();
        std::fs::write(dir.join(MANIFEST), env.to_json().unwrap() + "\n").unwrap();
    }
}

/// Append one entry of each session in turn (interleaved), each an exec
/// intent and its result with a payload, then end them all.
fn interleaved(log: &AuditLog, ids: &[&str], rounds: usize) {
    for id in ids {
        log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session(*id))
            .unwrap();
    }
    for r in 0..rounds {
        for id in ids {
            let i = log
                .append_blocking(
                    Event::new(EventKind::ExecStart, actor())
                        .in_session(*id)
                        .with_target(Target {
                            program: Some("/usr/bin/ls".into()),
                            argv: Some(vec!["ls".into(), format!("{id}-{r}")]),
                            ..Target::default()
                        }),
                )
                .unwrap();
            log.append_blocking(
                Event::new(EventKind::ExecEnd, actor())
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
    for id in ids {
        log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session(*id))
            .unwrap();
    }
}

/// Indices of the `proofs/` files, in order.
fn proof_indices(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = stele_audit::export::list_files(dir)
        .unwrap()
        .iter()
        .filter_map(|f| {
            f.strip_prefix("proofs/")?
                .strip_suffix(".tlog-proof")?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    v
}

fn proof_name(seq: u64) -> String {
    format!("proofs/{seq}.tlog-proof")
}

fn session_predicate(p: &mut serde_json::Value, f: impl FnOnce(&mut serde_json::Value)) {
    f(&mut p["sessions"][0]);
}

#[test]
fn a_session_bundle_holds_only_its_session_and_verifies() {
    let s = Setup::new();
    interleaved(&s.log, &["a", "b", "c"], 40);
    let out = s.export("b", "exp", true);
    let r = s.check(&out).unwrap();
    // start + 40 × (intent, result) + end.
    assert_eq!(r.selected, 82);
    assert_eq!(r.entries, 82);
    assert_eq!(r.proofs, 82);
    assert_eq!(r.payloads_verified, 40);
    assert_eq!(r.layout, stele_audit::export::layout::BundleLayout::Session);
    let files = stele_audit::export::list_files(&out).unwrap();
    assert!(!files.iter().any(|f| f.starts_with("tile/")), "{files:?}");
    // Exactly the session's entries, every one proven.
    let store = s.log.store().unwrap();
    let mut want = Vec::new();
    store
        .for_each_entry(0, store.size().unwrap(), |seq, leaf, _| {
            let l = stele_audit::leaf::Leaf::parse_canonical(leaf).unwrap();
            if l.session.is_some_and(|x| x.id == "b") {
                want.push(seq);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(proof_indices(&out), want);
    // The readable views are about it alone.
    let summary = std::fs::read_to_string(out.join(SUMMARY)).unwrap();
    assert!(summary.contains("session b"), "{summary}");
    assert!(!summary.contains("ls a-") && !summary.contains("ls c-"));
    let mut ocsf = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(out.join(OCSF)).unwrap())
        .read_to_string(&mut ocsf)
        .unwrap();
    assert_eq!(ocsf.lines().count(), 82);
    assert!(ocsf.lines().all(|l| l.contains("\"uid\":\"b\"")), "{ocsf}");
    assert_eq!(r.account.sessions.len(), 1);
    assert!(r.account.verification.unchecked[0].contains("a session bundle"));
    // Also as a tar file.
    let tar = s.dir.path().join("exp.tar");
    let o = ExportOptions {
        selection: Selection::Session { id: "c".into() },
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: true,
    };
    export(&s.log, &s.export_key, &o, &tar).unwrap();
    assert_eq!(s.check(&tar).unwrap().selected, 82);
}

#[test]
fn every_way_of_making_a_session_bundle_lie_fails_naming_it() {
    let s = Setup::new();
    interleaved(&s.log, &["a", "b"], 6);
    let out = s.export("a", "exp", true);
    s.check(&out).unwrap();
    let seqs = proof_indices(&out);
    let (first, mid, last) = (seqs[0], seqs[seqs.len() / 2], *seqs.last().unwrap());
    let fails = |t: &Path, file: &str, index: Option<u64>, words: &str| {
        let e = s
            .check(t)
            .expect_err(&format!("accepted; expected {words}"));
        assert_eq!(e.file, file, "{e}");
        assert_eq!(e.index, index, "{e}");
        assert!(e.reason.contains(words), "wanted {words:?}: {e}");
    };

    // An entry removed from the middle: a gap in n.
    let t = s.copy(&out);
    std::fs::remove_file(t.join(proof_name(mid))).unwrap();
    s.resign(&t, |p| {
        p["selected"] = (seqs.len() - 1).into();
        session_predicate(p, |x| x["entries"] = (seqs.len() - 1).into());
    });
    let next = seqs[seqs.len() / 2 + 1];
    fails(&t, &proof_name(next), Some(next), "gap");

    // The end entry removed: incomplete, whatever the manifest says.
    let before_end = seqs[seqs.len() - 2];
    for open in [false, true] {
        let t = s.copy(&out);
        std::fs::remove_file(t.join(proof_name(last))).unwrap();
        s.resign(&t, |p| {
            p["selected"] = (seqs.len() - 1).into();
            session_predicate(p, |x| {
                x["entries"] = (seqs.len() - 1).into();
                x["last"] = before_end.into();
                x["ended"] = (!open).into();
            });
        });
        if open {
            fails(&t, &proof_name(before_end), Some(before_end), "incomplete");
        } else {
            fails(&t, MANIFEST, Some(before_end), "ended=false");
        }
    }

    // The first entry removed: the session does not begin with its start.
    let t = s.copy(&out);
    std::fs::remove_file(t.join(proof_name(first))).unwrap();
    s.resign(&t, |_| {});
    fails(
        &t,
        &proof_name(seqs[1]),
        Some(seqs[1]),
        "does not begin with session.start",
    );

    // An entry of another session (or of none) added, with a valid proof
    // against the same checkpoint.
    let store = s.log.store().unwrap();
    let other_seq = (0..last).find(|q| !seqs.contains(q) && *q > first).unwrap();
    for foreign in [other_seq, 0] {
        let t = s.copy(&out);
        let proof = stele_audit::proof::make(&store, &s.key.verifier(), foreign).unwrap();
        std::fs::write(t.join(proof_name(foreign)), proof).unwrap();
        s.resign(&t, |_| {});
        let e = s.check(&t).unwrap_err();
        assert_eq!(
            (e.file.clone(), e.index),
            (proof_name(foreign), Some(foreign)),
            "{e}"
        );
        assert!(
            e.reason.contains("not to session a") || e.reason.contains("does not begin"),
            "{e}"
        );
    }

    // An entry's bytes changed (same length, still canonical): the leaf
    // hash no longer proves.
    let t = s.copy(&out);
    edit_proof(&t, mid, |lines| {
        let mut leaf = B64.decode(&lines[1]["extra ".len()..]).unwrap();
        let at = find(&leaf, b"\"principal\":\"alice\"") + 13;
        leaf[at] = b'm';
        lines[1] = format!("extra {}", B64.encode(&leaf));
    });
    s.resign(&t, |_| {});
    fails(
        &t,
        &proof_name(mid),
        Some(mid),
        "inclusion proof does not verify",
    );

    // A hash of the audit path altered.
    let t = s.copy(&out);
    edit_proof(&t, mid, |lines| {
        let mut h = B64.decode(&lines[3]).unwrap();
        h[0] ^= 1;
        lines[3] = B64.encode(&h);
    });
    s.resign(&t, |_| {});
    fails(
        &t,
        &proof_name(mid),
        Some(mid),
        "inclusion proof does not verify",
    );

    // Two entries swapped (each file holding the other's proof).
    let t = s.copy(&out);
    let (x, y) = (seqs[2], seqs[3]);
    let (bx, by) = (
        std::fs::read(t.join(proof_name(x))).unwrap(),
        std::fs::read(t.join(proof_name(y))).unwrap(),
    );
    std::fs::write(t.join(proof_name(x)), by).unwrap();
    std::fs::write(t.join(proof_name(y)), bx).unwrap();
    s.resign(&t, |_| {});
    fails(&t, &proof_name(x), Some(x), "not the");

    // The checkpoint swapped for a smaller one of the same log...
    let small = s.dir.path().join("small");
    let o = ExportOptions {
        selection: Selection::Session { id: "b".into() },
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    // (an earlier export's checkpoint: exports are appended, so this one is
    // smaller than the next export's)
    export(&s.log, &s.export_key, &o, &small).unwrap();
    let later = s.export("a", "later", true);
    let small_note = std::fs::read_to_string(small.join("checkpoint")).unwrap();
    let small_cp = Checkpoint::open(&small_note, &s.key.verifier()).unwrap().0;
    let t = s.copy(&later);
    std::fs::write(t.join("checkpoint"), &small_note).unwrap();
    s.resign(&t, |_| {});
    fails(&t, "checkpoint", None, "differs from the manifest");
    // ...with the manifest saying so too: the proofs are against the other.
    let t = s.copy(&later);
    std::fs::write(t.join("checkpoint"), &small_note).unwrap();
    s.resign(&t, |p| {
        p["tree_size"] = small_cp.size.into();
        p["root"] = stele_audit::leaf::hash_b64(&small_cp.root).into();
    });
    fails(&t, &proof_name(first), Some(first), "not the bundle's");
    // ...and another log's checkpoint (another key, same origin).
    let other = Ed25519Signer::from_seed(ORIGIN, &[23; 32]).unwrap();
    let t = s.copy(&out);
    let body =
        stele_attest::SignedNote::parse(&std::fs::read_to_string(t.join("checkpoint")).unwrap())
            .unwrap()
            .text;
    let forged = Checkpoint::parse_body(&body)
        .unwrap()
        .sign(&other)
        .unwrap()
        .to_text();
    std::fs::write(t.join("checkpoint"), forged).unwrap();
    s.resign(&t, |_| {});
    fails(
        &t,
        "checkpoint",
        None,
        "does not verify with the trusted log key",
    );

    // The readable views edited and re-signed.
    let t = s.copy(&out);
    let sm = std::fs::read_to_string(t.join(SUMMARY)).unwrap();
    let edited: String = sm
        .lines()
        .filter(|l| !l.contains("exec"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(sm, edited);
    std::fs::write(t.join(SUMMARY), edited).unwrap();
    s.resign(&t, |_| {});
    fails(&t, SUMMARY, None, "differs from the summary recomputed");
    let t = s.copy(&out);
    let mut ocsf = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(t.join(OCSF)).unwrap())
        .read_to_string(&mut ocsf)
        .unwrap();
    let ocsf = ocsf.replacen("\"alice\"", "\"mallory\"", 1);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(ocsf.as_bytes()).unwrap();
    std::fs::write(t.join(OCSF), gz.finish().unwrap()).unwrap();
    s.resign(&t, |_| {});
    fails(&t, OCSF, Some(first), "differs from the event recomputed");

    // A tile slipped in, a payload removed, a foreign payload added.
    let t = s.copy(&out);
    std::fs::create_dir_all(t.join("tile/entries")).unwrap();
    std::fs::write(t.join("tile/entries/000"), b"x").unwrap();
    s.resign(&t, |_| {});
    fails(
        &t,
        "tile/entries/000",
        None,
        "not part of the export format",
    );
    let t = s.copy(&out);
    let payload = stele_audit::export::list_files(&t)
        .unwrap()
        .into_iter()
        .find(|f| f.starts_with("payloads/"))
        .unwrap();
    std::fs::remove_file(t.join(&payload)).unwrap();
    s.resign(&t, |_| {});
    let e = s.check(&t).unwrap_err();
    assert_eq!(e.file, payload, "{e}");
    assert!(e.reason.contains("missing"), "{e}");
    let t = s.copy(&out);
    let b_payload = stele_audit::export::list_files(&small)
        .unwrap()
        .into_iter()
        .find(|f| f.starts_with("payloads/"))
        .unwrap();
    std::fs::copy(small.join(&b_payload), t.join(&b_payload)).unwrap();
    s.resign(&t, |_| {});
    fails(&t, &b_payload, None, "no entry of the session commits");
    // The session's selection pointed at another session.
    let t = s.copy(&out);
    s.resign(&t, |p| p["range"]["id"] = "b".into());
    fails(&t, MANIFEST, None, "describes session a, not b");
}

#[test]
fn redacted_payloads_come_with_their_redaction_entry() {
    let s = Setup::new();
    interleaved(&s.log, &["a", "b"], 3);
    let store = s.log.store().unwrap();
    // The first payload of session a.
    let a_payload = store
        .payloads()
        .unwrap()
        .into_iter()
        .find(|p| {
            let l = stele_audit::leaf::Leaf::parse_canonical(&store.entry(p.seq).unwrap().leaf)
                .unwrap();
            l.session.is_some_and(|x| x.id == "a")
        })
        .unwrap();
    let cmt = stele_audit::payload::commit_text(&a_payload.cmt.clone().try_into().unwrap());
    let red = s
        .log
        .redact_blocking(vec![cmt], "GDPR art. 17".into(), actor())
        .unwrap();
    let out = s.export("a", "exp", true);
    let r = s.check(&out).unwrap();
    assert_eq!((r.payloads_verified, r.payloads_redacted), (2, 1));
    assert_eq!(r.redactions.len(), 1);
    let name = format!("redactions/{}.tlog-proof", red.seq);
    assert!(out.join(&name).is_file());
    // Without the redaction entry, the missing payload is not explained.
    let t = s.copy(&out);
    std::fs::remove_file(t.join(&name)).unwrap();
    s.resign(&t, |_| {});
    let e = s.check(&t).unwrap_err();
    assert!(e.reason.contains("missing and no redaction entry"), "{e}");
    // Another entry in its place (not a redaction).
    let t = s.copy(&out);
    let other = stele_audit::proof::make(&store, &s.key.verifier(), red.seq - 1).unwrap();
    std::fs::remove_file(t.join(&name)).unwrap();
    std::fs::write(
        t.join(format!("redactions/{}.tlog-proof", red.seq - 1)),
        other,
    )
    .unwrap();
    s.resign(&t, |_| {});
    let e = s.check(&t).unwrap_err();
    assert_eq!(e.index, Some(red.seq - 1), "{e}");
    assert!(e.reason.contains("not a redaction"), "{e}");
    // A redaction of another session's payload is not this bundle's.
    let b_payload = store
        .payloads()
        .unwrap()
        .into_iter()
        .find(|p| {
            let l = stele_audit::leaf::Leaf::parse_canonical(&store.entry(p.seq).unwrap().leaf)
                .unwrap();
            l.session.is_some_and(|x| x.id == "b")
        })
        .unwrap();
    let cmt = stele_audit::payload::commit_text(&b_payload.cmt.clone().try_into().unwrap());
    let red_b = s
        .log
        .redact_blocking(vec![cmt], "GDPR art. 17".into(), actor())
        .unwrap();
    let out = s.export("a", "exp2", true);
    let t = s.copy(&out);
    let store = s.log.store().unwrap();
    std::fs::write(
        t.join(format!("redactions/{}.tlog-proof", red_b.seq)),
        stele_audit::proof::make(&store, &s.key.verifier(), red_b.seq).unwrap(),
    )
    .unwrap();
    s.resign(&t, |_| {});
    let e = s.check(&t).unwrap_err();
    assert!(e.reason.contains("erases no payload of session a"), "{e}");
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// Edit the lines of `proofs/<seq>.tlog-proof` before its checkpoint.
fn edit_proof(dir: &Path, seq: u64, f: impl FnOnce(&mut Vec<String>)) {
    let p = dir.join(proof_name(seq));
    let text = std::fs::read_to_string(&p).unwrap();
    let (head, note) = text.split_once("\n\n").unwrap();
    let mut lines: Vec<String> = head.lines().map(str::to_string).collect();
    f(&mut lines);
    std::fs::write(&p, format!("{}\n\n{note}", lines.join("\n"))).unwrap();
}
