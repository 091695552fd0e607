#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A real RFC 3161 Time Stamping Authority for tests: a CA and a TSA
//! certificate made by `openssl` in a temporary folder, and a small HTTP
//! front-end that hands each request to `openssl ts -reply` (the TSA
//! logic is openssl's) and returns its answer as
//! `application/timestamp-reply`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Key type of the CA and TSA certificates.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    /// ECDSA P-256.
    P256,
    /// RSA 2048.
    Rsa2048,
}

/// A running TSA.
pub struct Tsa {
    pub dir: tempfile::TempDir,
    pub url: String,
    /// The CA's certificate (PEM) — the trust anchor.
    pub ca_pem: String,
    pub ca_path: PathBuf,
    /// When set, every answer is the first one again (a replaying TSA).
    pub replay: Arc<AtomicBool>,
}

/// The first answer given, for [`Tsa::replay`].
type FirstAnswer = Arc<Mutex<Option<Vec<u8>>>>;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn newkey(kind: KeyKind) -> Vec<&'static str> {
    match kind {
        KeyKind::P256 => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        KeyKind::Rsa2048 => vec!["-newkey", "rsa:2048"],
    }
}

impl Tsa {
    /// A CA, a TSA certificate it issues (extended key usage timeStamping,
    /// critical) and the HTTP front-end, listening on 127.0.0.1.
    pub fn start(name: &str, kind: KeyKind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut ca = vec!["req", "-x509", "-nodes", "-days", "30"];
        ca.extend(newkey(kind));
        let ca_subj = format!("/CN={name} Test CA");
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            &ca_subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &ca);
        let mut csr = vec!["req", "-new", "-nodes"];
        csr.extend(newkey(kind));
        let tsa_subj = format!("/CN={name} TSA");
        csr.extend(["-keyout", "tsa.key", "-out", "tsa.csr", "-subj", &tsa_subj]);
        openssl(d, &csr);
        std::fs::write(
            d.join("ext.cnf"),
            "extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-out",
                "tsa.crt",
                "-extfile",
                "ext.cnf",
            ],
        );
        std::fs::write(d.join("serial"), "01\n").unwrap();
        std::fs::write(
            d.join("tsa.cnf"),
            format!(
                "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {}\nserial = $dir/serial\n\
                 crypto_device = builtin\nsigner_cert = $dir/tsa.crt\ncerts = $dir/ca.crt\n\
                 signer_key = $dir/tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n\
                 digests = sha256, sha384, sha512\naccuracy = secs:1\nordering = no\n\
                 tsa_name = no\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n",
                d.display()
            ),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/tsa", listener.local_addr().unwrap());
        let root = d.to_path_buf();
        let replay = Arc::new(AtomicBool::new(false));
        let first: FirstAnswer = Arc::default();
        let (rp, fa) = (replay.clone(), first.clone());
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                let (root, rp, fa) = (root.clone(), rp.clone(), fa.clone());
                std::thread::spawn(move || serve_one(conn, &root, i, &rp, &fa));
            }
        });
        let ca_path = d.join("ca.crt");
        let ca_pem = std::fs::read_to_string(&ca_path).unwrap();
        Self {
            dir,
            url,
            ca_pem,
            ca_path,
            replay,
        }
    }

    /// The TSA's own certificate (PEM).
    pub fn tsa_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tsa.crt")).unwrap()
    }
}

/// One HTTP/1.1 request: the body to `openssl ts -reply`, its answer back.
fn serve_one(
    conn: std::net::TcpStream,
    root: &Path,
    i: usize,
    replay: &AtomicBool,
    first: &Mutex<Option<Vec<u8>>>,
) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut len = 0usize;
    let mut ctype = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix("content-type:") {
            ctype = v.trim().to_string();
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    let mut w = conn;
    if ctype != "application/timestamp-query" {
        let _ = w.write_all(b"HTTP/1.1 415 Unsupported Media Type\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let q = root.join(format!("q{i}.tsq"));
    let a = root.join(format!("a{i}.tsr"));
    std::fs::write(&q, &body).unwrap();
    let out = Command::new("openssl")
        .args(["ts", "-reply", "-config"])
        .arg(root.join("tsa.cnf"))
        .arg("-queryfile")
        .arg(&q)
        .arg("-out")
        .arg(&a)
        .output()
        .unwrap();
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).to_string();
        let _ = write!(
            w,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        );
        return;
    }
    let mut resp = std::fs::read(&a).unwrap();
    {
        let mut f = first.lock().unwrap();
        match (&*f, replay.load(Ordering::SeqCst)) {
            (None, _) => *f = Some(resp.clone()),
            (Some(old), true) => resp = old.clone(),
            (Some(_), false) => {}
        }
    }
    let _ = write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.len()
    );
    let _ = w.write_all(&resp);
}
