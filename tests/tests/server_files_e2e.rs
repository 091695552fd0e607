#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Workspace files over the API, end to end against the real `stele
//! serve` (finance template: finance may read receipts/*, write reports/*,
//! and write outbox/* only with another member's approval): each listing,
//! download and upload is the person's own `file.list` / `file.read` /
//! `file.write` decided by the gate and recorded like an agent's (intent,
//! then the result with the content's SHA-256); the class of paths that
//! leave the workspace (`..`, absolute, NUL and control bytes, symbolic
//! links in the path or at the target, links swapped in during transfers,
//! hard links, devices, FIFOs) is refused and logged; an upload over
//! `server.max_upload_bytes` is cut at the limit (a lazily generated
//! 10 GiB body, with and without a declared length), nothing of it kept.

mod e2e_common;
mod server_support;

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use server_support::api::get;
use server_support::{runtime, server_decisions, Server};

const FILES: &str = "/api/v1/workspaces/books/files";

fn sha256_hex(b: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn put(srv: &Server, token: &str, path: &str, body: &[u8]) -> reqwest::Response {
    srv.http
        .put(srv.url(path))
        .bearer_auth(token)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Status and problem body (or the body as text when it is not JSON).
async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The person's files sessions in the log (one per request).
fn files_sessions<'a>(leaves: &'a [Value], who: &str) -> Vec<&'a Value> {
    leaves
        .iter()
        .filter(|l| {
            l["kind"] == "session.start"
                && l["data"]["client"]["command"] == "workspace.files"
                && l["actor"]["principal"] == who
        })
        .collect()
}

/// Refusals recorded for `path` (as the target names it) with rule `rule`.
fn refusals<'a>(leaves: &'a [Value], path: &str, rule: &str) -> Vec<&'a Value> {
    leaves
        .iter()
        .filter(|l| {
            l["kind"] == "policy.decision"
                && l["target"]["path"] == path
                && l["data"]["refusal"]["rule"] == rule
                && l["decision"]["effect"] == "deny"
        })
        .collect()
}

#[test]
fn a_person_lists_downloads_and_uploads_through_the_gate_and_each_access_is_logged() {
    let mut srv = Server::start("", "");
    let (alice, carol) = (srv.token("alice"), srv.token("carol"));
    // Big enough that a client that stops reading leaves most of it unsent.
    std::fs::write(srv.ws.join("receipts/big.bin"), vec![7u8; 64 << 20]).unwrap();
    std::fs::write(srv.ws.join("receipts/.stele-upload-0123"), "in progress").unwrap();
    let reader = srv.token_scoped("alice", "read");
    let rt = runtime();
    let new_csv = b"client,amount\nAcme,10.50\n".to_vec();
    let (upload_sha, download_session, gone_session) = rt.block_on(async {
        // The workspaces each may use.
        let l: Value = get(&srv, &alice, "/api/v1/workspaces")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(l["workspaces"][0]["name"], "books", "{l}");
        let l: Value = get(&srv, &carol, "/api/v1/workspaces")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(l["workspaces"], serde_json::json!([]), "{l}");
        // carol (ops) may not use finance's workspace at all: 403, logged.
        let (s, p) = answer(get(&srv, &carol, &format!("{FILES}?path=receipts")).await).await;
        assert_eq!(s, 403, "{p}");
        assert!(p["audit_entry"].is_u64(), "{p}");

        // Listing.
        let (s, l) = answer(get(&srv, &alice, &format!("{FILES}?path=receipts")).await).await;
        assert_eq!(s, 200, "{l}");
        let names: Vec<&str> = l["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        // An upload's temporary file is not listed.
        assert_eq!(names, ["big.bin", "r1.txt", "r2.txt"], "{l}");
        assert_eq!(l["entries"][1]["kind"], "file");
        assert_eq!(l["entries"][1]["size"], 31);
        // A client that goes away mid-download: its result says so.
        let mut r = get(&srv, &alice, &format!("{FILES}/receipts/big.bin")).await;
        assert_eq!(r.status(), 200);
        let gone_session = r.headers()["x-stele-session"].to_str().unwrap().to_string();
        assert!(r.chunk().await.unwrap().is_some());
        drop(r);

        // Download: exactly the file, and the session it is recorded in.
        let r = get(&srv, &alice, &format!("{FILES}/receipts/r1.txt")).await;
        assert_eq!(r.status(), 200);
        let session = r.headers()["x-stele-session"].to_str().unwrap().to_string();
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            b"Client: Acme\nAmount: 10.50 EUR\n"
        );

        // Upload: new (201), then replaced (200); the answer names its hash.
        let (s, u) =
            answer(put(&srv, &alice, &format!("{FILES}/reports/new.csv"), b"x").await).await;
        assert_eq!(s, 201, "{u}");
        assert_eq!(u["created"], true);
        let (s, u) =
            answer(put(&srv, &alice, &format!("{FILES}/reports/new.csv"), &new_csv).await).await;
        assert_eq!(s, 200, "{u}");
        assert_eq!(u["sha256"], sha256_hex(&new_csv));
        assert_eq!(u["bytes"], new_csv.len());

        // The team's policy governs people's uploads as it does the agent's:
        // receipts/ is read-only for finance ...
        let (s, p) =
            answer(put(&srv, &alice, &format!("{FILES}/receipts/r9.txt"), b"forged").await).await;
        assert_eq!(s, 403, "{p}");
        assert!(p["detail"].as_str().unwrap().contains("file.write"), "{p}");
        // ... reports/ is not readable by finance ...
        let (s, p) = answer(get(&srv, &alice, &format!("{FILES}/reports/new.csv")).await).await;
        assert_eq!(s, 403, "{p}");
        // ... outbox/ needs another member's approval, which no upload waits for.
        let (s, p) = answer(
            put(
                &srv,
                &alice,
                &format!("{FILES}/outbox/letter.txt"),
                b"Dear Acme",
            )
            .await,
        )
        .await;
        assert_eq!(s, 403, "{p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("finance.outbox-four-eyes"),
            "{p}"
        );
        // A read-only token may download but not upload.
        let r = get(&srv, &reader, &format!("{FILES}/receipts/r2.txt")).await;
        assert_eq!(r.status(), 200);
        let (s, p) =
            answer(put(&srv, &reader, &format!("{FILES}/reports/r.csv"), b"x").await).await;
        assert_eq!(s, 403, "{p}");
        assert!(p["detail"].as_str().unwrap().contains("`run` scope"), "{p}");
        (sha256_hex(&new_csv), session, gone_session)
    });
    assert_eq!(
        std::fs::read(srv.ws.join("reports/new.csv")).unwrap(),
        new_csv
    );
    assert!(!srv.ws.join("receipts/r9.txt").exists());
    assert!(!srv.ws.join("outbox/letter.txt").exists());
    assert!(!srv.ws.join("reports/r.csv").exists());
    srv.stop();
    let leaves = srv.leaves();

    // Every request of alice's is a files session naming her and her method.
    let sessions = files_sessions(&leaves, "alice");
    assert!(sessions.len() >= 8, "{}", sessions.len());
    assert!(sessions.iter().all(|s| s["data"]["method"] == "token"));
    // The download: intent (file.read allowed by the team's rule), then
    // the result with the SHA-256 of what was sent.
    let dl = e2e_common::of_session(&leaves, &download_session);
    let intent = dl.iter().find(|l| l["kind"] == "file.open").unwrap();
    assert_eq!(intent["target"]["path"], "receipts/r1.txt");
    assert_eq!(intent["decision"]["effect"], "allow");
    assert!(intent["decision"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "finance.read-receipts"));
    let result = dl.iter().find(|l| l["kind"] == "file.close").unwrap();
    assert_eq!(result["refs"]["intent_seq"], intent["seq"]);
    assert_eq!(
        result["data"]["sha256"],
        sha256_hex(b"Client: Acme\nAmount: 10.50 EUR\n")
    );
    assert_eq!(result["outcome"]["bytes_in"], 31);
    assert!(dl.iter().any(|l| l["kind"] == "session.end"));
    // The download the client left: closed as an error, fewer bytes than the file.
    let began = std::time::Instant::now();
    let gone = loop {
        let leaves = srv.leaves();
        let closed = e2e_common::of_session(&leaves, &gone_session)
            .into_iter()
            .find(|l| l["kind"] == "file.close")
            .cloned();
        if let Some(c) = closed {
            break c;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the abandoned download was never closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(gone["outcome"]["status"], "error", "{gone}");
    assert!(
        gone["outcome"]["bytes_in"].as_u64().unwrap() < 64 << 20,
        "{gone}"
    );
    assert!(
        gone["outcome"]["detail"]
            .as_str()
            .unwrap()
            .contains("went away"),
        "{gone}"
    );
    // The upload's result carries the content hash, after its intent.
    let up = leaves
        .iter()
        .find(|l| l["kind"] == "file.close" && l["data"]["sha256_after_write"] == upload_sha)
        .expect("the upload's result entry");
    let up_intent = leaves
        .iter()
        .find(|l| l["seq"] == up["refs"]["intent_seq"])
        .unwrap();
    assert_eq!(up_intent["kind"], "file.open");
    assert_eq!(up_intent["target"]["path"], "reports/new.csv");
    assert_eq!(up_intent["actor"]["principal"], "alice");
    assert!(up_intent["data"]["http"]
        .as_str()
        .unwrap()
        .starts_with("PUT "));
    // The policy refusals are the gate's, naming their rules.
    let denied = |path: &str| {
        leaves.iter().any(|l| {
            l["kind"] == "policy.decision"
                && l["target"]["path"] == path
                && l["decision"]["effect"] == "deny"
                && l["actor"]["principal"] == "alice"
        })
    };
    assert!(denied("receipts/r9.txt") && denied("reports/new.csv") && denied("outbox/letter.txt"));
    // carol's refusal (a listing) is the server's workspace.read decision on the workspace.
    assert!(server_decisions(&leaves, "workspace.read")
        .iter()
        .any(|l| l["actor"]["principal"] == "carol" && l["decision"]["effect"] == "deny"));
    srv.verify();
}

/// A raw HTTP/1.1 request, for paths a URL library would normalise (`..`).
fn raw_status(srv: &Server, token: &str, method: &str, target: &str) -> u16 {
    let addr = srv.base.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn every_path_that_leaves_the_workspace_is_refused_and_logged() {
    let mut srv = Server::start("", "");
    let alice = srv.token("alice");
    let outside = srv.dir.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret.txt"), "SECRET").unwrap();
    std::fs::write(outside.join("dir/secret.txt"), "SECRET").unwrap();
    std::fs::write(outside.join("target.txt"), "UNTOUCHED").unwrap();
    std::fs::write(outside.join("linked.txt"), "UNTOUCHED").unwrap();
    let ws = srv.ws.clone();
    let ln = |to: &std::path::Path, at: &str| std::os::unix::fs::symlink(to, ws.join(at)).unwrap();
    ln(&outside.join("secret.txt"), "receipts/ln.txt");
    ln(&outside.join("dir"), "receipts/lndir");
    ln(&ws.join("receipts/r1.txt"), "receipts/inside.txt");
    ln(&outside.join("target.txt"), "reports/ln.txt");
    ln(&outside.join("dir"), "reports/lndir");
    ln(&outside.join("nothing.txt"), "reports/dangling.txt");
    std::fs::hard_link(outside.join("secret.txt"), ws.join("receipts/hl.txt")).unwrap();
    std::fs::hard_link(outside.join("linked.txt"), ws.join("reports/hl.txt")).unwrap();
    let mk = |args: &[&str]| {
        let st = std::process::Command::new(args[0])
            .args(&args[1..])
            .status()
            .unwrap();
        assert!(st.success(), "{args:?}");
    };
    mk(&["mkfifo", ws.join("receipts/fifo").to_str().unwrap()]);
    mk(&[
        "mknod",
        ws.join("receipts/null").to_str().unwrap(),
        "c",
        "1",
        "3",
    ]);
    mk(&[
        "mknod",
        ws.join("reports/null").to_str().unwrap(),
        "c",
        "1",
        "3",
    ]);

    let rt = runtime();
    rt.block_on(async {
        // (path as sent in the URL, method, status, the rule the log names)
        let cases: &[(&str, &str, u16, &str)] = &[
            // Not a workspace path at all: 400.
            (
                "receipts%2F..%2F..%2Foutside%2Fsecret.txt",
                "GET",
                400,
                "path.parent_dir",
            ),
            (
                "reports%2F..%2F..%2Foutside%2Ftarget.txt",
                "PUT",
                400,
                "path.parent_dir",
            ),
            ("%2Fetc%2Fpasswd", "GET", 400, "path.absolute"),
            ("%2Ftmp%2Fx", "PUT", 400, "path.absolute"),
            (
                "receipts%2Fr1.txt%00.pdf",
                "GET",
                400,
                "path.control_character",
            ),
            ("reports%2Fa%00b", "PUT", 400, "path.control_character"),
            ("reports%2Fa%0Ab", "PUT", 400, "path.control_character"),
            ("reports%2Fa%1Bb", "PUT", 400, "path.control_character"),
            // Links, wherever they point and wherever they are: 403.
            ("receipts/ln.txt", "GET", 403, "path.symlink_escape"),
            ("receipts/inside.txt", "GET", 403, "path.symlink_escape"),
            (
                "receipts/lndir/secret.txt",
                "GET",
                403,
                "path.symlink_escape",
            ),
            ("reports/ln.txt", "PUT", 403, "path.symlink_escape"),
            ("reports/lndir/new.txt", "PUT", 403, "path.symlink_escape"),
            ("reports/dangling.txt", "PUT", 403, "path.symlink_escape"),
            // Hard links (their other names may be outside), devices, FIFOs.
            ("receipts/hl.txt", "GET", 403, "file.hard_link_unresolved"),
            ("reports/hl.txt", "PUT", 403, "file.hard_link_unresolved"),
            ("receipts/null", "GET", 403, "file.device_node"),
            ("reports/null", "PUT", 403, "file.device_node"),
            ("receipts/fifo", "GET", 403, "file.not_regular"),
        ];
        for (path, method, want, _) in cases {
            let url = srv.url(&format!("{FILES}/{path}"));
            let req = match *method {
                "GET" => srv.http.get(url),
                _ => srv.http.put(url).body("FORGED"),
            };
            let r = tokio::time::timeout(Duration::from_secs(20), req.bearer_auth(&alice).send())
                .await
                .unwrap_or_else(|_| panic!("{method} {path} hung"))
                .unwrap();
            let (s, p) = answer(r).await;
            assert_eq!(s, *want, "{method} {path}: {p}");
            assert!(p["audit_entry"].is_u64(), "{method} {path}: {p}");
        }
        // Names that are not text: refused by the server before any file is looked at.
        for (path, method) in [
            ("receipts%2Fr1%FF.txt", "GET"),
            ("reports%2F%C3%28.txt", "PUT"),
        ] {
            let url = srv.url(&format!("{FILES}/{path}"));
            let req = match method {
                "GET" => srv.http.get(url),
                _ => srv.http.put(url).body("FORGED"),
            };
            let (s, p) = answer(req.bearer_auth(&alice).send().await.unwrap()).await;
            assert_eq!(s, 400, "{method} {path}: {p}");
            assert!(p["audit_entry"].is_u64(), "{method} {path}: {p}");
        }
        // (A query is decoded lossily: the name policy is asked about, and
        // the one looked for, is "receipts\u{fffd}", which no rule permits.)
        let (s, p) = answer(get(&srv, &alice, &format!("{FILES}?path=receipts%FF")).await).await;
        assert_eq!(s, 403, "{p}");
        assert!(p["audit_entry"].is_u64(), "{p}");
        // A listing through a link is refused too.
        let (s, p) = answer(get(&srv, &alice, &format!("{FILES}?path=receipts/lndir")).await).await;
        assert_eq!(s, 403, "{p}");
        let (s, p) = answer(get(&srv, &alice, &format!("{FILES}?path=..")).await).await;
        assert_eq!(s, 400, "{p}");
    });
    // `..` as the client sends it, which URL libraries would have resolved.
    for target in [
        "/api/v1/workspaces/books/files/receipts/../../outside/secret.txt",
        "/api/v1/workspaces/books/files/../../../../etc/passwd",
    ] {
        assert_eq!(raw_status(&srv, &alice, "GET", target), 400, "{target}");
        assert_eq!(raw_status(&srv, &alice, "PUT", target), 400, "{target}");
    }
    // Nothing outside changed, nothing was written, no temporary file stayed.
    assert_eq!(
        std::fs::read_to_string(outside.join("target.txt")).unwrap(),
        "UNTOUCHED"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("linked.txt")).unwrap(),
        "UNTOUCHED"
    );
    assert!(!outside.join("nothing.txt").exists());
    assert!(!outside.join("dir/new.txt").exists());
    assert!(std::fs::symlink_metadata(ws.join("reports/ln.txt"))
        .unwrap()
        .file_type()
        .is_symlink());
    for d in ["reports", "receipts"] {
        for e in std::fs::read_dir(ws.join(d)).unwrap() {
            let n = e.unwrap().file_name().into_string().unwrap();
            assert!(!n.starts_with(".stele-upload-"), "{d}/{n} left behind");
        }
    }
    srv.stop();
    let leaves = srv.leaves();
    for (path, rule) in [
        ("receipts/../../outside/secret.txt", "path.parent_dir"),
        ("/etc/passwd", "path.absolute"),
        ("receipts/ln.txt", "path.symlink_escape"),
        ("receipts/lndir/secret.txt", "path.symlink_escape"),
        ("reports/ln.txt", "path.symlink_escape"),
        ("receipts/hl.txt", "file.hard_link_unresolved"),
        ("reports/hl.txt", "file.hard_link_unresolved"),
        ("receipts/null", "file.device_node"),
        ("receipts/fifo", "file.not_regular"),
    ] {
        let r = refusals(&leaves, path, rule);
        assert!(!r.is_empty(), "no refusal of {path} by {rule}");
        assert_eq!(r[0]["actor"]["principal"], "alice");
    }
    assert_eq!(
        server_decisions(&leaves, "workspace.files")
            .iter()
            .filter(|l| l["data"]["refusal"]["rule"] == "path.not_utf8")
            .count(),
        2
    );
    // The NUL is in the log as an escape, never as a byte.
    assert!(leaves
        .iter()
        .any(|l| l["data"]["refusal"]["rule"] == "path.control_character"
            && l["target"]["path"].as_str().unwrap().contains("\\u{0}")));
    srv.verify();
}

#[test]
fn links_swapped_in_during_transfers_let_no_byte_out_or_in() {
    let mut srv = Server::start("", "");
    let alice = srv.token("alice");
    let outside = srv.dir.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret.txt"), "SECRET").unwrap();
    std::fs::write(outside.join("dir/flip.txt"), "SECRET").unwrap();
    std::fs::write(outside.join("target.txt"), "UNTOUCHED").unwrap();
    let ws = srv.ws.clone();
    for d in ["receipts/sub", "reports/sub"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
        std::fs::write(ws.join(d).join("flip.txt"), "inside").unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let swapped = Arc::new(AtomicU64::new(0));
    // Flip names between a regular file (or folder) and a link out, as fast as possible.
    let flipper = {
        let (ws, outside, stop, swapped) =
            (ws.clone(), outside.clone(), stop.clone(), swapped.clone());
        std::thread::spawn(move || {
            let tmp = ws.join("flip.tmp");
            while !stop.load(Ordering::Relaxed) {
                for (name, to) in [
                    ("receipts/flip.txt", outside.join("secret.txt")),
                    ("reports/flip.txt", outside.join("target.txt")),
                ] {
                    let _ = std::fs::remove_file(&tmp);
                    std::os::unix::fs::symlink(&to, &tmp).unwrap();
                    std::fs::rename(&tmp, ws.join(name)).unwrap();
                    std::fs::write(&tmp, "inside").unwrap();
                    std::fs::rename(&tmp, ws.join(name)).unwrap();
                }
                for dir in ["receipts/sub", "reports/sub"] {
                    let real = ws.join(format!("{dir}.real"));
                    std::fs::rename(ws.join(dir), &real).unwrap();
                    std::os::unix::fs::symlink(outside.join("dir"), ws.join(dir)).unwrap();
                    std::fs::remove_file(ws.join(dir)).unwrap();
                    std::fs::rename(&real, ws.join(dir)).unwrap();
                }
                swapped.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let rt = runtime();
    let (mut served, mut written) = (0, 0);
    rt.block_on(async {
        for i in 0..150 {
            for path in ["receipts/flip.txt", "receipts/sub/flip.txt"] {
                let r = get(&srv, &alice, &format!("{FILES}/{path}")).await;
                let status = r.status().as_u16();
                let body = r.bytes().await.unwrap();
                assert!(
                    !body.windows(6).any(|w| w == b"SECRET"),
                    "{path} leaked the outside file"
                );
                if status == 200 {
                    // The file here, or (reports/ only) one of the uploads.
                    assert_eq!(body.as_ref(), b"inside", "{path}");
                    served += 1;
                }
            }
            for path in ["reports/flip.txt", "reports/sub/flip.txt"] {
                let r = put(
                    &srv,
                    &alice,
                    &format!("{FILES}/{path}"),
                    format!("upload {i}").as_bytes(),
                )
                .await;
                if r.status().is_success() {
                    written += 1;
                }
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(
        swapped.load(Ordering::Relaxed) > 10,
        "the names hardly changed"
    );
    eprintln!(
        "served {served}, written {written}, swaps {}",
        swapped.load(Ordering::Relaxed)
    );
    // Whatever the timing, the outside files are as they were.
    assert_eq!(
        std::fs::read_to_string(outside.join("target.txt")).unwrap(),
        "UNTOUCHED"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "SECRET"
    );
    assert_eq!(std::fs::read_dir(outside.join("dir")).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(outside.join("dir/flip.txt")).unwrap(),
        "SECRET"
    );
    srv.stop();
    srv.verify();
}

/// A lazily generated body of `total` bytes, counting what was pulled from it.
fn lazy_body(total: u64, pulled: Arc<AtomicU64>) -> reqwest::Body {
    const CHUNK: usize = 256 * 1024;
    let chunk = bytes_of(CHUNK);
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let (chunk, pulled) = (chunk.clone(), pulled.clone());
        async move {
            if sent >= total {
                return None;
            }
            let n = (total - sent).min(CHUNK as u64) as usize;
            pulled.fetch_add(n as u64, Ordering::Relaxed);
            Some((
                Ok::<_, std::io::Error>(chunk[..n].to_vec()),
                sent + n as u64,
            ))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

fn bytes_of(n: usize) -> Arc<Vec<u8>> {
    Arc::new((0..n).map(|i| (i % 251) as u8).collect())
}

const LIMIT: u64 = 4 * 1024 * 1024;
const TEN_GIB: u64 = 10 * 1024 * 1024 * 1024;

#[test]
fn an_upload_over_the_limit_is_cut_at_the_limit_and_nothing_of_it_kept() {
    let mut srv = Server::start("", &format!("max_upload_bytes = {LIMIT}"));
    let alice = srv.token("alice");
    let rt = runtime();
    rt.block_on(async {
        // Exactly the limit is accepted; one byte more is not.
        let at = bytes_of(LIMIT as usize);
        let (s, u) =
            answer(put(&srv, &alice, &format!("{FILES}/reports/at-limit.bin"), &at).await).await;
        assert_eq!(s, 201, "{u}");
        assert_eq!(u["sha256"], sha256_hex(&at));
        let over = bytes_of(LIMIT as usize + 1);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let r = http
            .put(srv.url(&format!("{FILES}/reports/over.bin")))
            .bearer_auth(&alice)
            .body(over.to_vec())
            .send()
            .await;
        match r {
            Ok(r) => {
                let (s, p) = answer(r).await;
                assert_eq!(s, 413, "{p}");
                assert!(p["audit_entry"].is_u64(), "{p}");
            }
            // The server answered and closed while the client was still sending.
            Err(e) => eprintln!("over.bin: the client saw {e}"),
        }

        // 10 GiB, streamed without a length: the server stops reading at the limit.
        for (name, declared) in [("big.bin", false), ("declared.bin", true)] {
            let pulled = Arc::new(AtomicU64::new(0));
            // A connection of its own (none reused from a pool).
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let mut req = http
                .put(srv.url(&format!("{FILES}/reports/{name}")))
                .bearer_auth(&alice)
                .body(lazy_body(TEN_GIB, pulled.clone()));
            if declared {
                req = req.header("content-length", TEN_GIB.to_string());
            }
            let sent = tokio::time::timeout(Duration::from_secs(120), req.send())
                .await
                .expect("the server kept reading a 10 GiB upload");
            match sent {
                // The answer, when the client got to read it before the server closed.
                Ok(r) => assert_eq!(r.status(), 413, "{name}"),
                // Or the server closed the connection while the client was still sending.
                Err(e) => eprintln!("{name}: the client saw {e}"),
            }
            let n = pulled.load(Ordering::Relaxed);
            eprintln!("{name}: {n} bytes generated of 10 GiB (limit {LIMIT})");
            // At most the limit, one chunk and the socket buffers in flight.
            assert!(
                n < LIMIT + 64 * 1024 * 1024,
                "{name}: {n} bytes were pulled"
            );
        }
        // A client that gives up half way: nothing kept.
        let chunk = bytes_of(1 << 20);
        let parts: Vec<Result<Vec<u8>, std::io::Error>> = vec![
            Ok(chunk.to_vec()),
            Ok(chunk.to_vec()),
            Err(std::io::Error::other("the client gave up")),
        ];
        let r = srv
            .http
            .put(srv.url(&format!("{FILES}/reports/abandoned.bin")))
            .bearer_auth(&alice)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                parts,
            )))
            .send()
            .await;
        assert!(r.is_err(), "{r:?}");
        // The server still answers.
        let r = get(&srv, &alice, &format!("{FILES}?path=reports")).await;
        assert_eq!(r.status(), 200);
    });
    // The abandoned upload's end reaches the server a moment later.
    let began = std::time::Instant::now();
    loop {
        let left = std::fs::read_dir(srv.ws.join("reports"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".stele-upload-")
            })
            .count();
        if left == 0 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "a temporary file stayed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for name in ["over.bin", "big.bin", "declared.bin", "abandoned.bin"] {
        assert!(
            !srv.ws.join("reports").join(name).exists(),
            "{name} was kept"
        );
    }
    for e in std::fs::read_dir(srv.ws.join("reports")).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        assert!(!n.starts_with(".stele-upload-"), "reports/{n} left behind");
    }
    srv.stop();
    let leaves = srv.leaves();
    for path in [
        "reports/over.bin",
        "reports/big.bin",
        "reports/declared.bin",
    ] {
        let r = refusals(&leaves, path, "upload.too_large");
        if r.len() != 1 {
            for l in leaves.iter().filter(|l| {
                l["target"]["path"] == path
                    || l["data"]["http"].as_str().is_some_and(|h| h.contains(path))
            }) {
                eprintln!("{l}");
            }
            eprintln!("{}", srv.stderr());
        }
        assert_eq!(r.len(), 1, "{path}: {r:?}");
    }
    // A declared length over the limit is refused before any policy
    // decision; a body that runs over is refused after its intent, which is
    // closed as denied (nothing kept).
    let over_intent = leaves
        .iter()
        .find(|l| l["kind"] == "file.open" && l["target"]["path"] == "reports/big.bin")
        .unwrap();
    let over_result = leaves
        .iter()
        .find(|l| l["refs"]["intent_seq"] == over_intent["seq"])
        .unwrap();
    assert_eq!(over_result["outcome"]["status"], "denied");
    assert_eq!(over_result["data"]["kept"], false);
    assert!(!leaves
        .iter()
        .any(|l| l["kind"] == "file.open" && l["target"]["path"] == "reports/declared.bin"));
    let gone_intent = leaves
        .iter()
        .find(|l| l["kind"] == "file.open" && l["target"]["path"] == "reports/abandoned.bin")
        .unwrap();
    let gone = leaves
        .iter()
        .find(|l| l["refs"]["intent_seq"] == gone_intent["seq"])
        .expect("the abandoned upload's result");
    assert_eq!(gone["outcome"]["status"], "error", "{gone}");
    assert_eq!(gone["data"]["kept"], false, "{gone}");
    srv.verify();
}

#[test]
fn an_upload_in_progress_has_no_name_until_it_is_whole() {
    // ext4 (as here), xfs, btrfs and tmpfs have O_TMPFILE; elsewhere the
    // server falls back to a named temporary file.
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T", "/tmp"])
        .output()
        .unwrap();
    let fs = String::from_utf8_lossy(&fs.stdout).trim().to_string();
    if !["ext2/ext3", "xfs", "btrfs", "tmpfs"].contains(&fs.as_str()) {
        eprintln!(
            "SKIPPED an_upload_in_progress_has_no_name_until_it_is_whole: {fs} may lack O_TMPFILE"
        );
        return;
    }
    let mut srv = Server::start("", "");
    let alice = srv.token("alice");
    let reports = srv.ws.join("reports");
    let names = move || -> Vec<String> {
        std::fs::read_dir(&reports)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let rt = runtime();
    rt.block_on(async {
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let first = bytes_of(1 << 20).to_vec();
        let stream = futures_util::stream::unfold((0, Some(go_rx)), move |(i, go)| {
            let first = first.clone();
            async move {
                match i {
                    0 => Some((Ok::<_, std::io::Error>(first), (1, go))),
                    1 => {
                        // Held here until the test has looked.
                        let _ = go.unwrap().await;
                        Some((Ok(b"the end".to_vec()), (2, None)))
                    }
                    _ => None,
                }
            }
        });
        let req = srv
            .http
            .put(srv.url(&format!("{FILES}/reports/slow.bin")))
            .bearer_auth(&alice)
            .body(reqwest::Body::wrap_stream(stream))
            .send();
        let sending = tokio::spawn(req);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = names();
        assert!(during.is_empty(), "visible during the upload: {during:?}");
        go_tx.send(()).unwrap();
        let r = sending.await.unwrap().unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    });
    assert_eq!(names(), ["slow.bin"]);
    assert_eq!(
        std::fs::metadata(srv.ws.join("reports/slow.bin"))
            .unwrap()
            .len(),
        (1 << 20) + 7
    );
    srv.stop();
    srv.verify();
}

#[test]
fn a_reviewer_lists_and_downloads_as_herself_but_never_uploads() {
    // rita (finance reviewer) is in the bundle's finance team, so the gate
    // decides her own file.list / file.read under finance's rules.
    let mut srv = Server::prepare("", "");
    let members = srv.dir.path().join("policy/members.toml");
    let text = std::fs::read_to_string(&members).unwrap();
    std::fs::write(
        &members,
        text.replace("[users]\n", "[users]\nrita = [\"finance\"]\n"),
    )
    .unwrap();
    srv.spawn();
    let (rita, carol) = (srv.token("rita"), srv.token("carol"));
    let rt = runtime();
    let (refused_upload, refused_carol) = rt.block_on(async {
        let l: Value = get(&srv, &rita, "/api/v1/workspaces")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(l["workspaces"][0]["name"], "books", "{l}");
        let (s, l) = answer(get(&srv, &rita, &format!("{FILES}?path=receipts")).await).await;
        assert_eq!(s, 200, "{l}");
        assert_eq!(l["entries"].as_array().unwrap().len(), 2, "{l}");
        let r = get(&srv, &rita, &format!("{FILES}/receipts/r1.txt")).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Acme"));
        // Her own rules still decide: finance reads receipts/, not reports/.
        std::fs::write(srv.ws.join("reports/q1.csv"), "x").unwrap();
        let (s, _) = answer(get(&srv, &rita, &format!("{FILES}/reports/q1.csv")).await).await;
        assert_eq!(s, 403);
        // Never an upload: refused before any byte is taken, logged.
        for path in ["reports/new.csv", "receipts/r1.txt"] {
            let (s, p) =
                answer(put(&srv, &rita, &format!("{FILES}/{path}"), b"forged").await).await;
            assert_eq!(s, 403, "{p}");
            assert!(p["audit_entry"].is_u64(), "{p}");
        }
        assert!(!srv.ws.join("reports/new.csv").exists());
        assert!(std::fs::read_to_string(srv.ws.join("receipts/r1.txt"))
            .unwrap()
            .contains("Acme"));
        let (_, p) =
            answer(put(&srv, &rita, &format!("{FILES}/reports/new.csv"), b"x").await).await;
        // Another team's person reads nothing of it.
        let (s, q) = answer(get(&srv, &carol, &format!("{FILES}/receipts/r1.txt")).await).await;
        assert_eq!(s, 403, "{q}");
        let (s, _) = answer(get(&srv, &carol, &format!("{FILES}?path=receipts")).await).await;
        assert_eq!(s, 403);
        (
            p["audit_entry"].as_u64().unwrap(),
            q["audit_entry"].as_u64().unwrap(),
        )
    });
    srv.stop();
    let leaves = srv.leaves();
    let at = |seq: u64| {
        leaves
            .iter()
            .find(|l| l["seq"].as_u64() == Some(seq))
            .unwrap()
    };
    let l = at(refused_upload);
    assert_eq!(
        (
            l["data"]["server_action"].as_str(),
            l["decision"]["effect"].as_str()
        ),
        (Some("session.start"), Some("deny")),
        "{l}"
    );
    assert_eq!(l["actor"]["principal"], "rita");
    let l = at(refused_carol);
    assert_eq!(l["data"]["server_action"], "workspace.read");
    assert_eq!(l["actor"]["principal"], "carol");
    // rita's reads: workspace.read allowed, then her own file.read through the gate.
    assert!(server_decisions(&leaves, "workspace.read")
        .iter()
        .any(|l| l["actor"]["principal"] == "rita" && l["decision"]["effect"] == "allow"));
    let read = leaves
        .iter()
        .find(|l| {
            l["kind"] == "file.open"
                && l["actor"]["principal"] == "rita"
                && l["target"]["path"] == "receipts/r1.txt"
        })
        .unwrap();
    assert_eq!(read["decision"]["effect"], "allow");
    assert!(read["decision"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "finance.read-receipts"));
    assert!(files_sessions(&leaves, "rita").len() >= 3);
    srv.verify();
}
