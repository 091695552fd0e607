#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The web app in a real browser: the real `stele serve` (mock model over
//! the real wire, the process sandbox), Debian's chromium driven by
//! Playwright for Python (`tests/web/journeys.py`, installed by
//! `scripts/setup-web`). Accounts with passwords: ana (finance member), abe
//! (finance approver), olga (ops member). Each test runs one journey and
//! then checks the log. Screenshots are taken on every run (a page that
//! cannot be drawn fails); they replace docs/images/ only with
//! `STELE_WEB_DOCS_IMAGES=1`, so a test run leaves the checkout clean. Plus the
//! serving itself over HTTP (types, caching, headers) without a browser.

mod e2e_common;
mod server_support;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use server_support::{runtime, Server};
use stele_tests::mock_model::Turn;
use stele_tests::sandbox_available;

const PASSWORD: &str = "a long passphrase for the web tests";
/// A team rule the denial journey runs into.
const NO_PAYROLL: &str = r#"
@id("test.no-payroll")
forbid (principal, action == Action::"file.read", resource is File)
when { resource.path like "receipts/payroll*" };
"#;
const XSS: &str = "<img src=x onerror=alert(1)>";

/// The venv's python with Playwright (`scripts/setup-web`), and chromium: missing is a failure.
fn browser_python() -> PathBuf {
    let venv = std::env::var_os("STELE_WEB_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/stele-web-venv"));
    let py = venv.join("bin/python");
    let has_playwright = Command::new(&py)
        .args(["-c", "import playwright.sync_api"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_playwright,
        "the web tests need Playwright for Python in {} — run scripts/setup-web",
        venv.display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "the web tests need Debian's chromium (/usr/bin/chromium) — run scripts/setup-web"
    );
    py
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Add `name` to `team` with `role` and the test password.
fn add_account(srv: &Server, name: &str, team: &str, role: &str) {
    let mut c = Command::new(stele_tests::stele_bin())
        .args([
            "user",
            "add",
            name,
            "--team",
            team,
            "--role",
            role,
            "--password-stdin",
            "--config",
        ])
        .arg(&srv.config)
        .env("STELE_STATE_DIR", &srv.s.state)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A server whose bundle knows ana, abe (finance) and olga (ops), with their passwords.
fn web_server(extra: &str) -> Server {
    let mut srv = Server::start(extra, "");
    // The gate's teams come from the bundle's members file: restart with them in it.
    srv.stop();
    let members = srv.dir.path().join("policy/members.toml");
    let mut m = std::fs::read_to_string(&members).unwrap();
    m.push_str("ana = [\"finance\"]\nabe = [\"finance\"]\nolga = [\"ops\"]\n");
    std::fs::write(&members, m).unwrap();
    for (name, team, role) in [
        ("ana", "finance", "member"),
        ("abe", "finance", "approver"),
        ("olga", "ops", "member"),
    ] {
        add_account(&srv, name, team, role);
    }
    srv.spawn();
    srv
}

/// Where screenshots go: docs/images/ when asked (`STELE_WEB_DOCS_IMAGES=1`,
/// to refresh the docs' pictures), else a folder in the target directory.
fn shots_dir() -> PathBuf {
    if std::env::var_os("STELE_WEB_DOCS_IMAGES").is_some_and(|v| v == "1") {
        return repo().join("docs/images");
    }
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-shots")
}

/// Run `journey` of tests/web/journeys.py; its facts, or a failure with its output.
fn journey(srv: &Server, journey: &str) -> Value {
    let py = browser_python();
    let shots = shots_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let o = Command::new(py)
        .arg(repo().join("tests/web/journeys.py"))
        .arg(journey)
        .env("STELE_WEB_BASE", &srv.base)
        .env("STELE_WEB_PASSWORD", PASSWORD)
        .env("STELE_WEB_SHOTS", &shots)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "journey {journey} failed:\n{out}\n{}\n--- server ---\n{}",
        String::from_utf8_lossy(&o.stderr),
        srv.stderr()
    );
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("journey {journey}: no facts line ({e}):\n{out}"))
}

fn of_kind<'a>(leaves: &'a [Value], session: &str, kind: &str) -> Vec<&'a Value> {
    e2e_common::of_session(leaves, session)
        .into_iter()
        .filter(|l| l["kind"] == kind)
        .collect()
}

#[test]
fn web_an_approver_answers_an_analysts_ask_from_the_inbox() {
    if !sandbox_available("web_an_approver_answers_an_analysts_ask_from_the_inbox") {
        return;
    }
    let mut srv = web_server(e2e_common::EXEC_NEEDS_APPROVAL);
    srv.mock.push(
        Turn::new()
            .text("Computing it with python.")
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", "print(6*7)"]}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "42"}))
            .into(),
    );
    let facts = journey(&srv, "approval");
    let session = facts["session"].as_str().unwrap();
    srv.stop();
    let leaves = srv.leaves();
    let grants = of_kind(&leaves, session, "approval.grant");
    assert_eq!(grants.len(), 1, "one grant, by the approver in the browser");
    let g = grants[0];
    assert_eq!(g["data"]["approver"], "abe", "{g}");
    assert_eq!(g["data"]["ticket"], "CHG-42", "{g}");
    // The page answered with the hash of exactly what it showed.
    assert_eq!(g["data"]["shown_sha256"], facts["shown_sha256"], "{g}");
    let start = of_kind(&leaves, session, "session.start");
    assert_eq!(start[0]["actor"]["principal"], "ana");
    srv.verify();
}

#[test]
fn web_a_denial_is_shown_with_its_rule_and_layer() {
    if !sandbox_available("web_a_denial_is_shown_with_its_rule_and_layer") {
        return;
    }
    let mut srv = web_server(NO_PAYROLL);
    std::fs::write(srv.ws.join("receipts/payroll.txt"), "salaries\n").unwrap();
    srv.mock.push(
        Turn::new()
            .tool_use("r", "file_read", json!({"path": "receipts/payroll.txt"}))
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "refused"}))
            .into(),
    );
    let facts = journey(&srv, "denial");
    assert_eq!(facts["rule"], "test.no-payroll");
    assert_eq!(facts["layer"], "team:finance");
    srv.stop();
    srv.verify();
}

#[test]
fn web_markup_and_terminal_escapes_from_the_model_and_file_names_render_as_text() {
    if !sandbox_available(
        "web_markup_and_terminal_escapes_from_the_model_and_file_names_render_as_text",
    ) {
        return;
    }
    let mut srv = web_server("");
    let name = format!("reports/{XSS}.txt");
    srv.mock.push(
        Turn::new()
            .text(&format!(
                "Writing {XSS} now \u{1b}[31mRED\u{1b}[0m <script>window.__xss=1</script>"
            ))
            .tool_use(
                "w",
                "file_write",
                json!({"path": name, "content": format!("{XSS}\n")}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use(
                "f",
                "final_answer",
                json!({"answer": format!("wrote {XSS}")}),
            )
            .into(),
    );
    journey(&srv, "xss");
    // The file name was real: the payload reached the workspace as a name.
    assert!(srv.ws.join(&name).exists());
    srv.stop();
    srv.verify();
}

#[test]
fn web_a_user_of_another_team_sees_nothing() {
    if !sandbox_available("web_a_user_of_another_team_sees_nothing") {
        return;
    }
    let mut srv = web_server("");
    srv.mock.push(
        Turn::new()
            .text("Hello from finance.")
            .tool_use("f", "final_answer", json!({"answer": "hello"}))
            .into(),
    );
    let facts = journey(&srv, "other_team");
    let session = facts["session"].as_str().unwrap();
    srv.stop();
    let leaves = srv.leaves();
    // olga's refused views are in the log.
    let refused: Vec<&Value> = server_support::server_decisions(&leaves, "session.view")
        .into_iter()
        .filter(|l| l["actor"]["principal"] == "olga" && l["decision"]["effect"] == "deny")
        .collect();
    assert!(refused.len() >= 3, "page, API and stream views refused");
    assert!(refused.iter().all(|l| l["data"]["session"] == session));
    srv.verify();
}

#[test]
fn web_csp_is_sent_and_an_injected_inline_script_does_not_run() {
    let srv = web_server("");
    journey(&srv, "csp");
}

/// What the server answers for `path` (status, headers, body).
fn fetch(
    srv: &Server,
    path: &str,
    etag: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    runtime().block_on(async {
        let mut r = srv.http.get(srv.url(path));
        if let Some(t) = etag {
            r = r.header("if-none-match", t);
        }
        let r = r.send().await.unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, h, r.bytes().await.unwrap().to_vec())
    })
}

#[test]
fn web_assets_are_served_embedded_typed_cached_and_with_security_headers() {
    let srv = Server::start("", "");
    let (s, h, page) = fetch(&srv, "/", None);
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    let page = String::from_utf8(page).unwrap();
    // The page names this build's version of its files.
    let at = page.find("/static/").unwrap();
    let version = page[at + 8..].split('/').next().unwrap().to_string();
    assert_eq!(version.len(), 16, "{page}");
    assert!(!page.contains("{{VERSION}}"));
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_eq!(fetch(&srv, "/", Some(&etag)).0, 304);
    for (file, ctype) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("pages/session.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        let (s, h, body) = fetch(&srv, &format!("/static/{version}/{file}"), None);
        assert_eq!(s, 200, "{file}");
        assert_eq!(h["content-type"], ctype, "{file}");
        assert_eq!(
            h["cache-control"], "public, max-age=31536000, immutable",
            "{file}"
        );
        let on_disk = std::fs::read(repo().join("server/web").join(file)).unwrap();
        assert_eq!(body, on_disk, "{file}: not the file in server/web/");
        let etag = h["etag"].to_str().unwrap();
        let (s, _, body) = fetch(&srv, &format!("/static/{version}/{file}"), Some(etag));
        assert_eq!((s, body.len()), (304, 0), "{file}");
        // Another version's URL is not cached as immutable.
        let (s, h, _) = fetch(&srv, &format!("/static/0000000000000000/{file}"), None);
        assert_eq!((s, h["cache-control"].to_str().unwrap()), (200, "no-cache"));
    }
    // Nothing outside the embedded files: no path tricks, no index.html twice.
    for bad in [
        "index.html",
        "../Cargo.toml",
        "..%2FCargo.toml",
        "pages%2F..%2Fapp.js",
        "nope.js",
    ] {
        let (s, h, _) = fetch(&srv, &format!("/static/{version}/{bad}"), None);
        assert_eq!(s, 404, "{bad}");
        assert_eq!(h["content-type"], "application/problem+json", "{bad}");
    }
    // The security headers on the app, its files, the API, its refusals and 404s.
    for path in [
        "/",
        &format!("/static/{version}/app.js"),
        "/api/v1/sessions",
        "/healthz",
        "/no/such/thing",
    ] {
        let (_, h, _) = fetch(&srv, path, None);
        let csp = h["content-security-policy"].to_str().unwrap();
        for need in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(need), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["cross-origin-opener-policy"], "same-origin", "{path}");
    }
}

/// Run `name` of tests/web/review_journeys.py, its downloads saved in `out`.
fn review_journey(srv: &Server, name: &str, out: &std::path::Path) -> Value {
    let py = browser_python();
    let shots = shots_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let o = Command::new(py)
        .arg(repo().join("tests/web/review_journeys.py"))
        .arg(name)
        .env("STELE_WEB_BASE", &srv.base)
        .env("STELE_WEB_PASSWORD", PASSWORD)
        .env("STELE_WEB_SHOTS", &shots)
        .env("STELE_WEB_OUT", out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "journey {name} failed:\n{text}\n{}\n--- server ---\n{}",
        String::from_utf8_lossy(&o.stderr),
        srv.stderr()
    );
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("journey {name}: no facts line ({e}):\n{text}"))
}

#[test]
fn web_a_reviewer_filters_reads_the_timeline_verifies_and_takes_the_evidence_away() {
    if !sandbox_available(
        "web_a_reviewer_filters_reads_the_timeline_verifies_and_takes_the_evidence_away",
    ) {
        return;
    }
    let mut srv = web_server(NO_PAYROLL);
    // Read-only reviewers: rex of finance, otto of ops.
    add_account(&srv, "rex", "finance", "reviewer");
    add_account(&srv, "otto", "ops", "reviewer");
    std::fs::write(srv.ws.join("receipts/payroll.txt"), "salaries\n").unwrap();
    for turn in [
        Turn::new().tool_use("r", "file_read", json!({"path": "receipts/payroll.txt"})),
        Turn::new().tool_use("f", "final_answer", json!({"answer": "refused"})),
        // The clean session writes a file whose name is markup: the timeline shows it as text.
        Turn::new().tool_use(
            "w",
            "file_write",
            json!({"path": format!("reports/{XSS}.txt"), "content": "x\n"}),
        ),
        Turn::new().tool_use("f", "final_answer", json!({"answer": "hello"})),
    ] {
        srv.mock.push(turn.into());
    }
    let out = tempfile::tempdir().unwrap();
    let facts = review_journey(&srv, "review", out.path());
    let session = facts["session"].as_str().unwrap();
    let verifier = facts["verifier"].as_str().unwrap();
    // The command the page showed names the file it saved and the log's key.
    let export = PathBuf::from(facts["export"].as_str().unwrap());
    let file = export.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        facts["command"],
        format!("stele-verify {file} --key '{verifier}'")
    );
    // The downloaded bundle passes the offline verifier; one changed byte fails it.
    let verify = |p: &std::path::Path| {
        Command::new(e2e_common::demo_session::verify_bin())
            .arg(p)
            .args(["--key", verifier])
            .output()
            .unwrap()
    };
    let o = verify(&export);
    assert!(
        o.status.success(),
        "stele-verify refused the page's export: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut bytes = std::fs::read(&export).unwrap();
    let at = bytes
        .windows(session.len())
        .rposition(|w| w == session.as_bytes())
        .unwrap();
    bytes[at] ^= 0x01;
    let bad = out.path().join("tampered.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let o = verify(&bad);
    assert!(!o.status.success(), "stele-verify passed a tampered bundle");
    // The downloaded proof checks against the key, for the denial's entry; one byte changed fails.
    let v = stele_attest::NoteVerifier::parse(verifier).unwrap();
    let proof = std::fs::read_to_string(facts["proof"].as_str().unwrap()).unwrap();
    let ok = stele_audit::proof::verify(&proof, &v).unwrap();
    assert_eq!(Some(ok.index), facts["denial_index"].as_u64());
    // And as a reviewer checks the file at a terminal.
    let o = srv
        .s
        .run(&[
            "audit",
            "verify-proof",
            facts["proof"].as_str().unwrap(),
            "--vkey",
            verifier,
        ])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut lines: Vec<String> = proof.split('\n').map(str::to_string).collect();
    let mut leaf = b64
        .decode(lines[1].strip_prefix("extra ").unwrap())
        .unwrap();
    let mid = leaf.len() / 2;
    leaf[mid] ^= 0x01;
    lines[1] = format!("extra {}", b64.encode(leaf));
    assert!(stele_audit::proof::verify(&lines.join("\n"), &v).is_err());
    srv.stop();
    let leaves = srv.leaves();
    let denial = &leaves[ok.index as usize];
    assert_eq!(denial["decision"]["effect"], "deny");
    assert_eq!(denial["decision"]["policies"][0], "test.no-payroll");
    // rex's reads are in the log; otto's were refused, and recorded.
    assert!(leaves.iter().any(|l| l["kind"] == "audit.read"
        && l["actor"]["principal"] == "rex"
        && l["data"]["command"] == "api timeline"));
    assert!(leaves.iter().any(|l| l["kind"] == "audit.export"));
    let refused: Vec<&Value> = leaves
        .iter()
        .filter(|l| {
            l["actor"]["principal"] == "otto"
                && l["decision"]["effect"] == "deny"
                && l["data"]["session"] == session
        })
        .collect();
    assert!(refused.len() >= 3, "{refused:?}");
    srv.verify();
}
// ---- The operations journeys (tests/web/ops_journeys.py): files, stop and
// continue, schedules, the admin page, OIDC sign-in.

/// Finance may also read reports/ (to read an upload and to download a task's report).
const READ_REPORTS: &str = r#"
@id("test.read-reports")
permit (principal in Team::"finance", action == Action::"file.read", resource is File)
when { resource.path like "reports/*" };
"#;

/// The limit of one upload in the files journey.
const UPLOAD_LIMIT: u64 = 64 * 1024;

/// As [`web_server`], with `server_toml` in `[server]`, listening on
/// `listen`, and an admin `ada` (finance) too.
fn ops_server(extra: &str, server_toml: &str, listen: &str) -> Server {
    let mut srv = Server::start_on(extra, server_toml, listen);
    srv.stop();
    let members = srv.dir.path().join("policy/members.toml");
    let mut m = std::fs::read_to_string(&members).unwrap();
    m.push_str("ana = [\"finance\"]\nabe = [\"finance\"]\nolga = [\"ops\"]\nada = [\"finance\"]\n");
    std::fs::write(&members, m).unwrap();
    for (name, team, role) in [
        ("ana", "finance", "member"),
        ("abe", "finance", "approver"),
        ("olga", "ops", "member"),
        ("ada", "finance", "admin"),
    ] {
        add_account(&srv, name, team, role);
    }
    srv.spawn();
    srv
}

/// Run `journey` of tests/web/ops_journeys.py with `env`; its facts.
fn ops_journey(srv: &Server, journey: &str, env: &[(&str, String)]) -> Value {
    let py = browser_python();
    let shots = shots_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let o = Command::new(py)
        .arg(repo().join("tests/web/ops_journeys.py"))
        .arg(journey)
        .env("STELE_WEB_BASE", &srv.base)
        .env("STELE_WEB_PASSWORD", PASSWORD)
        .env("STELE_WEB_SHOTS", &shots)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "journey {journey} failed:\n{out}\n{}\n--- server ---\n{}",
        String::from_utf8_lossy(&o.stderr),
        srv.stderr()
    );
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("journey {journey}: no facts line ({e}):\n{out}"))
}

/// The `file.open` entries of `who` on `path` (the person's or the agent's file accesses).
fn file_opens<'a>(leaves: &'a [Value], who: &str, path: &str) -> Vec<&'a Value> {
    leaves
        .iter()
        .filter(|l| {
            l["kind"] == "file.open"
                && l["actor"]["principal"] == who
                && l["target"]["path"] == path
        })
        .collect()
}

#[test]
fn web_files_are_browsed_uploaded_and_a_tasks_output_opened_with_hostile_names_inert() {
    if !sandbox_available(
        "web_files_are_browsed_uploaded_and_a_tasks_output_opened_with_hostile_names_inert",
    ) {
        return;
    }
    let toml = format!("max_upload_bytes = {UPLOAD_LIMIT}");
    let mut srv = ops_server(READ_REPORTS, &toml, "127.0.0.1:0");
    // Hostile names already in the workspace: markup with a right-to-left
    // override (listed, shown as text), and a terminal escape (not listable).
    let hostile = format!("{XSS}\u{202e}gpj.txt");
    std::fs::write(srv.ws.join("receipts").join(&hostile), "hostile\n").unwrap();
    std::fs::write(srv.ws.join("receipts/\u{1b}[31mred.txt"), "red\n").unwrap();
    srv.mock.push(
        Turn::new()
            .tool_use("r", "file_read", json!({"path": "reports/data.csv"}))
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use(
                "w",
                "file_write",
                json!({"path": "reports/summary.txt", "content": "november total: 1200\n"}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use("f", "final_answer", json!({"answer": "written"}))
            .into(),
    );
    let facts = ops_journey(
        &srv,
        "files",
        &[
            ("STELE_WEB_HOSTILE", hostile.clone()),
            ("STELE_WEB_UPLOAD_LIMIT", UPLOAD_LIMIT.to_string()),
        ],
    );
    let session = facts["session"].as_str().unwrap().to_string();
    // What was uploaded is there byte for byte; what was over the limit is not.
    assert_eq!(
        std::fs::read(srv.ws.join("reports/data.csv")).unwrap(),
        b"month,total\nnov,1200\n"
    );
    assert_eq!(
        std::fs::read(srv.ws.join(format!("reports/{XSS}.txt"))).unwrap(),
        b"inert\n"
    );
    assert!(!srv.ws.join("reports/too-big.bin").exists());
    srv.stop();
    let leaves = srv.leaves();
    // Each upload is ana's own file write, decided and recorded.
    for path in ["reports/data.csv".to_string(), format!("reports/{XSS}.txt")] {
        let w = file_opens(&leaves, "ana", &path);
        assert!(
            w.iter().any(|l| l["decision"]["effect"] == "allow"),
            "{path}: no allowed write of ana's: {w:?}"
        );
    }
    // The refused upload is recorded as refused, by its rule, and nothing was written.
    let big: Vec<&Value> = leaves
        .iter()
        .filter(|l| {
            l["actor"]["principal"] == "ana" && l["target"]["path"] == "reports/too-big.bin"
        })
        .collect();
    assert!(
        big.iter().any(|l| l["kind"] == "policy.decision"
            && l["decision"]["effect"] == "deny"
            && l["data"]["refusal"]["access"] == "file.write"),
        "{big:?}"
    );
    assert!(
        !big.iter().any(|l| l["decision"]["effect"] == "allow"),
        "{big:?}"
    );
    // The download of the hostile file and of the task's report are ana's reads.
    assert!(!file_opens(&leaves, "ana", &format!("receipts/{hostile}")).is_empty());
    let report_reads: Vec<&Value> = file_opens(&leaves, "ana", "reports/summary.txt")
        .into_iter()
        .filter(|l| l["session"]["id"] != session.as_str())
        .collect();
    assert!(
        !report_reads.is_empty(),
        "the report's download is recorded"
    );
    // The outputs the page listed are the session's recorded write.
    let outputs: Vec<&Value> = server_support::server_decisions(&leaves, "session.view")
        .into_iter()
        .filter(|l| l["data"]["outputs"] == true && l["data"]["session"] == session.as_str())
        .collect();
    assert!(
        !outputs.is_empty(),
        "the outputs view is a session.view decision"
    );
    srv.verify();
}

#[test]
fn web_a_session_is_stopped_and_continued_from_another_device() {
    if !sandbox_available("web_a_session_is_stopped_and_continued_from_another_device") {
        return;
    }
    let mut srv = ops_server("", "", "127.0.0.1:0");
    srv.mock.push(
        Turn::new()
            .tool_use(
                "x",
                "exec",
                json!({"argv": ["python3", "-c", "import time; time.sleep(6); print('slow step done')"]}),
            )
            .into(),
    );
    srv.mock.push(
        Turn::new()
            .tool_use(
                "f",
                "final_answer",
                json!({"answer": "finished after continuing"}),
            )
            .into(),
    );
    let facts = ops_journey(&srv, "stop_continue", &[]);
    let session = facts["session"].as_str().unwrap();
    srv.stop();
    let leaves = srv.leaves();
    let stops: Vec<&Value> = server_support::server_decisions(&leaves, "session.approve")
        .into_iter()
        .filter(|l| l["data"]["stop"] == session && l["decision"]["effect"] == "allow")
        .collect();
    assert_eq!(stops.len(), 1, "one stop, by ana");
    assert_eq!(stops[0]["actor"]["principal"], "ana");
    let resumes: Vec<&Value> = server_support::server_decisions(&leaves, "session.approve")
        .into_iter()
        .filter(|l| l["data"]["resume"] == session && l["decision"]["effect"] == "allow")
        .collect();
    assert_eq!(resumes.len(), 1, "one continue, from the second device");
    // The slow step ran once: stopping did not run it again, continuing did not either.
    let execs: Vec<&Value> = of_kind(&leaves, session, "exec.start");
    assert_eq!(execs.len(), 1, "{execs:?}");
    srv.verify();
}

#[test]
fn web_schedules_are_created_paused_and_inspected_and_a_bad_cron_is_named() {
    if !sandbox_available("web_schedules_are_created_paused_and_inspected_and_a_bad_cron_is_named")
    {
        return;
    }
    let srv = ops_server("", "", "127.0.0.1:0");
    // Each run holds a few seconds (so runs due meanwhile are skipped), then finishes.
    srv.mock.respond_with(|r| {
        if r.text().contains("tool_result") {
            Turn::new()
                .tool_use("f", "final_answer", json!({"answer": "tick done"}))
                .into()
        } else {
            Turn::new()
                .tool_use(
                    "x",
                    "exec",
                    json!({"argv": ["python3", "-c", "import time; time.sleep(3)"]}),
                )
                .into()
        }
    });
    let facts = ops_journey(&srv, "schedules", &[]);
    let sid = facts["schedule"].as_str().unwrap().to_string();
    assert!(
        !facts["bad_cron"].as_str().unwrap().trim().is_empty(),
        "the cron's problem is shown next to it: {facts}"
    );
    let token = srv.token("ana");
    let s: Value = runtime().block_on(async {
        srv.http
            .get(srv.url(&format!("/api/v1/schedules/{sid}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(s["paused"]["by"], "ana", "{s}");
    assert!(
        s.get("next_run").is_none(),
        "a paused schedule has no next run: {s}"
    );
    let mut srv = srv;
    srv.stop();
    let leaves = srv.leaves();
    let changes: Vec<&str> = server_support::server_decisions(&leaves, "schedule.manage")
        .into_iter()
        .filter(|l| l["data"]["schedule"] == sid.as_str() && l["decision"]["effect"] == "allow")
        .filter_map(|l| l["data"]["change"].as_str())
        .filter(|c| *c != "none")
        .collect();
    assert_eq!(
        changes,
        ["create", "pause", "unpause", "pause"],
        "each change recorded"
    );
    // Only the valid schedule was created: the refused ones left no schedule.
    let creates = server_support::server_decisions(&leaves, "schedule.manage")
        .into_iter()
        .filter(|l| l["data"]["change"] == "create")
        .count();
    assert_eq!(creates, 1);
    srv.verify();
}

/// `stele policy test BUNDLE`'s "N passed, M failed".
fn policy_test_counts(bundle: &std::path::Path) -> (u64, u64) {
    let o = Command::new(stele_tests::stele_bin())
        .args(["policy", "test"])
        .arg(bundle)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.ends_with(" failed"))
        .unwrap_or_else(|| panic!("no summary line: {out}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn web_the_admin_page_is_for_admins_and_says_403_to_a_member() {
    let mut srv = ops_server("", "", "127.0.0.1:0");
    // The bundle's tests: one that passes, one that fails (the page must say so).
    srv.stop();
    let bundle = srv.dir.path().join("policy");
    std::fs::create_dir_all(bundle.join("tests")).unwrap();
    let case = |name: &str, path: &str, decision: &str, reason: &[&str]| {
        json!({"name": name, "request": {"principal": "User::\"ana\"",
            "action": "Action::\"file.read\"", "resource": format!("File::\"{path}\""),
            "context": {}}, "entities": [], "decision": decision, "reason": reason,
            "num_errors": 0})
    };
    std::fs::write(
        bundle.join("tests/admin.json"),
        serde_json::to_string_pretty(&json!([
            case(
                "ana reads a receipt",
                "receipts/03.pdf",
                "allow",
                &["finance.read-receipts"]
            ),
            case(
                "wrong on purpose: ana reads HR",
                "hr/salaries.csv",
                "allow",
                &[]
            ),
        ]))
        .unwrap(),
    )
    .unwrap();
    srv.spawn();
    let facts = ops_journey(&srv, "admin", &[]);
    let (passed, failed) = policy_test_counts(&bundle);
    assert_eq!((passed, failed), (1, 1), "the bundle's tests as written");
    assert_eq!(
        (
            facts["tests"]["passed"].as_u64(),
            facts["tests"]["failed"].as_u64()
        ),
        (Some(passed), Some(failed)),
        "the page's test status is `stele policy test`'s"
    );
    srv.stop();
    let leaves = srv.leaves();
    let admin = server_support::server_decisions(&leaves, "admin");
    let allowed: Vec<&str> = admin
        .iter()
        .filter(|l| l["actor"]["principal"] == "ada" && l["decision"]["effect"] == "allow")
        .filter_map(|l| l["data"]["admin"].as_str())
        .collect();
    for what in ["users", "workspaces", "policy", "health"] {
        assert!(
            allowed.contains(&what),
            "ada's {what} read is recorded: {allowed:?}"
        );
    }
    let refused = admin
        .iter()
        .filter(|l| l["actor"]["principal"] == "ana" && l["decision"]["effect"] == "deny")
        .count();
    assert!(
        refused >= 8,
        "the page's and the API's refusals of ana are recorded ({refused})"
    );
    // The digest the page showed is the one in every decision of this server.
    assert!(admin
        .iter()
        .all(|l| l["decision"]["bundle"] == facts["digest"]));
    srv.verify();
}

#[test]
fn web_oidc_sign_in_goes_through_the_providers_form_to_the_sessions_list() {
    use server_support::oidc::{self, Provider};
    let port = stele_tests::siem::free_port();
    let redirect = format!("http://127.0.0.1:{port}/api/v1/oidc/callback");
    let op = Provider::start(oidc::CLIENT, oidc::SECRET, &redirect);
    let dir = tempfile::tempdir().unwrap();
    let toml = oidc::config(&op.issuer, port, dir.path(), "name = \"Test IdP\"");
    let mut srv = ops_server("", &toml, &format!("127.0.0.1:{port}"));
    runtime().block_on(async {
        let r = srv
            .http
            .get(format!("{}/__test/form?on=1", op.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    let facts = ops_journey(&srv, "oidc", &[("STELE_WEB_OIDC_ACCOUNT", "ana".into())]);
    assert_eq!(facts["user"], "ana");
    assert_eq!(facts["teams"], json!(["finance"]));
    srv.stop();
    let leaves = srv.leaves();
    let logins: Vec<&Value> = server_support::server_decisions(&leaves, "login")
        .into_iter()
        .filter(|l| l["data"]["method"] == "oidc")
        .collect();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0]["actor"]["principal"], "ana");
    assert_eq!(logins[0]["decision"]["effect"], "allow");
    srv.verify();
}

#[test]
fn web_login_methods_name_the_provider_only_when_configured() {
    let srv = Server::start("", "");
    let (s, _, body) = fetch(&srv, "/api/v1/login/methods", None);
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, json!({"password": true}), "no [oidc]: passwords only");
    // `me` needs a credential, like every other read.
    assert_eq!(fetch(&srv, "/api/v1/me", None).0, 401);
}
