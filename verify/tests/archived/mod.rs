//! What the archive tests share: a log archived twice across key rotations,
//! exports, and a way to forge a bundle as a dishonest producer could.
#![allow(dead_code, unused_imports)]

pub use std::path::{Path, PathBuf};
pub use std::sync::Arc;

pub use stele_attest::{Checkpoint, Ed25519Signer, Signer};
pub use stele_audit::export::archive::{archive, ArchiveOptions};
pub use stele_audit::export::layout::{sha256, Selection, MANIFEST};
pub use stele_audit::export::write::{export, ExportOptions};
pub use stele_audit::{Actor, AuditLog, Disclosure, Event, EventKind, LogOptions, PayloadInput};
pub use stele_verify::chain::{verify_chain, ChainFailure};
pub use stele_verify::{Bundle, Failure, Options, Report};

pub const ORIGIN: &str = "audit.test.invalid/range";

pub fn actor() -> Actor {
    Actor {
        host: "h".into(),
        principal: "alice".into(),
        runtime: "stele/test".into(),
        teams: vec![],
    }
}

pub fn key(seed: u8) -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(ORIGIN, &[seed; 32]).unwrap())
}

pub fn opts(trusted: &[&Ed25519Signer]) -> Options {
    Options {
        log_key: trusted[0].verifier(),
        more_keys: trusted[1..].iter().map(|k| k.verifier()).collect(),
        revoked: vec![],
        export_key: None,
        witnesses: vec![],
        quorum: None,
        anchors: vec![],
        now: 4_000_000_000,
        tsa: None,
    }
}

pub fn session(log: &AuditLog, id: &str, n: usize) {
    log.append_blocking(Event::new(EventKind::SessionStart, actor()).in_session(id))
        .unwrap();
    for i in 0..n {
        log.append_blocking(
            Event::new(EventKind::PolicyDecision, actor())
                .in_session(id)
                .with_payload(PayloadInput {
                    role: "args".into(),
                    media: "text/plain".into(),
                    body: format!("{id} {i}").into_bytes(),
                    disclosure: Disclosure::CommitmentOnly,
                }),
        )
        .unwrap();
    }
    log.append_blocking(Event::new(EventKind::SessionEnd, actor()).in_session(id))
        .unwrap();
}

pub fn check(p: &Path, o: &Options) -> Result<Report, Failure> {
    stele_verify::verify(&Bundle::open(p).unwrap(), o)
}

/// Archive what the log holds now into `out`, stele-verify checking the
/// bundle first (with `trusted`).
pub fn archive_now(
    log: &AuditLog,
    signer: &Arc<Ed25519Signer>,
    out: &Path,
    trusted: &Options,
) -> u64 {
    let through = log.sync_blocking().unwrap().size;
    let o = ArchiveOptions {
        through,
        reason: "retention schedule".into(),
        actor: actor(),
        tar: false,
    };
    let trusted = trusted.clone();
    archive(log, signer.as_ref(), signer.as_ref(), &o, out, &mut |p| {
        check(p, &trusted).map(|_| ()).map_err(|e| e.to_string())
    })
    .unwrap();
    through
}

pub fn export_all(log: &AuditLog, signer: &dyn Signer, sel: Selection, out: &Path) -> PathBuf {
    let o = ExportOptions {
        selection: sel,
        payloads: true,
        policies: vec![],
        exporter: actor(),
        allow_open_session: false,
        tar: false,
    };
    export(log, signer, &o, out).unwrap();
    out.to_path_buf()
}

/// A log archived twice, with a key rotation below the first archive and
/// one between the two: `a1` = [0, n), `a2` = [n, m), `live` = the export
/// of [m, size). Returns the boundaries and the log (open, key 3).
pub struct Chain {
    pub dir: tempfile::TempDir,
    pub n: u64,
    pub m: u64,
    pub log: AuditLog,
}

impl Chain {
    pub fn new(first: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let lo = LogOptions {
            heartbeat: None,
            ..Default::default()
        };
        let log = AuditLog::create(&db, key(1), lo.clone()).unwrap();
        session(&log, "s1", first);
        log.rotate_blocking(key(2), "yearly".into(), actor())
            .unwrap();
        session(&log, "s2", 2);
        let all = opts(&[&key(1), &key(2), &key(3)]);
        let n = archive_now(&log, &key(2), &dir.path().join("a1"), &all);
        session(&log, "s3", 3);
        log.rotate_blocking(key(3), "yearly".into(), actor())
            .unwrap();
        session(&log, "s4", 2);
        let m = archive_now(&log, &key(3), &dir.path().join("a2"), &all);
        session(&log, "s5", 2);
        export_all(
            &log,
            key(3).as_ref(),
            Selection::All,
            &dir.path().join("live"),
        );
        Self { dir, n, m, log }
    }

    pub fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn chain(
        &self,
        names: &[&str],
        o: &Options,
    ) -> Result<Vec<stele_verify::chain::Link>, ChainFailure> {
        let b: Vec<(String, Bundle)> = names
            .iter()
            .map(|n| (n.to_string(), Bundle::open(&self.p(n)).unwrap()))
            .collect();
        verify_chain(&b, o)
    }
}

pub fn all_keys() -> Options {
    opts(&[&key(1), &key(2), &key(3)])
}

/// The manifest's predicate edited and re-signed by `signer` (an exporter
/// holding the key: what a dishonest or broken producer can make), and
/// any file replaced first (`files`: path, new bytes).
pub fn forge(
    dir: &Path,
    signer: &dyn Signer,
    files: &[(String, Option<Vec<u8>>)],
    edit: impl Fn(&mut serde_json::Value),
) {
    use base64::Engine as _;
    for (name, bytes) in files {
        match bytes {
            Some(b) => std::fs::write(dir.join(name), b).unwrap(),
            None => std::fs::remove_file(dir.join(name)).unwrap(),
        }
    }
    let path = dir.join(MANIFEST);
    let env: stele_attest::dsse::Envelope =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    edit(&mut st["predicate"]);
    let subjects = st["subject"].as_array_mut().unwrap();
    for (name, bytes) in files {
        subjects.retain(|s| s["name"] != name.as_str());
        if let Some(b) = bytes {
            subjects.push(
                serde_json::json!({"name": name, "digest": {"sha256": hex::encode(sha256(b))}}),
            );
        }
    }
    let st: stele_attest::intoto::Statement = serde_json::from_value(st).unwrap();
    let env = st.sign(signer).unwrap();
    std::fs::write(&path, env.to_json().unwrap() + "\n").unwrap();
}

pub fn copy_dir(from: &Path, to: &Path) {
    for e in walk(from) {
        let rel = e.strip_prefix(from).unwrap();
        let t = to.join(rel);
        std::fs::create_dir_all(t.parent().unwrap()).unwrap();
        std::fs::copy(&e, &t).unwrap();
    }
}

pub fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub fn flip_b64(v: &mut serde_json::Value) {
    use base64::Engine as _;
    let e = base64::engine::general_purpose::STANDARD;
    let mut b = e.decode(v.as_str().unwrap()).unwrap();
    b[0] ^= 1;
    *v = serde_json::json!(e.encode(b));
}
