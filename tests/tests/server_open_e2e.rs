#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele serve --open` end to end: the desktop server prints a one-time
//! login link and opens it with the browser program ($STELE_BROWSER, here
//! a script that notes what it was asked to open). The link logs in the OS
//! user running the server (an admin of team `local`, made once): it works
//! once (the cookie then works on the API, CSRF included), a second use and
//! an expired link are refused, each attempt recorded as a login with
//! method `link`; --open refuses a non-loopback address.

mod e2e_common;
mod server_support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use server_support::{runtime, server_decisions, Server};
use stele_tests::mock_model::{Turn, Wire};

/// A `stele serve --open` of `srv`'s set-up: the child, its base URL and the link it printed.
struct Open {
    child: Child,
    base: String,
    link: String,
    stderr: mpsc::Receiver<String>,
}

fn serve_open(srv: &Server, ttl: &str, opened: &Path) -> Open {
    let script = srv.dir.path().join("browser.sh");
    std::fs::write(&script, "#!/bin/sh\nprintf '%s' \"$1\" > \"$OPENED\"\n").unwrap();
    stele_tests::share(&script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new(stele_tests::stele_bin())
        .args([
            "serve",
            "--open",
            "--listen",
            "127.0.0.1:0",
            "--link-ttl-secs",
            ttl,
        ])
        .arg("--config")
        .arg(&srv.config)
        .env("STELE_STATE_DIR", &srv.s.state)
        .env("USER", "not-a-member")
        .env("STELE_BROWSER", &script)
        .env("OPENED", opened)
        .envs(e2e_common::env(Wire::Anthropic, &srv.mock))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut seen = String::new();
    let base = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("never listening:\n{seen}"));
        seen.push_str(&l);
        seen.push('\n');
        if let Some(rest) = l.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let mut link = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut link)
        .unwrap();
    let link = link.trim().to_string();
    assert!(
        link.starts_with(&format!("{base}/api/v1/login/link/stl_")),
        "{link}\n{seen}"
    );
    Open {
        child,
        base,
        link,
        stderr: rx,
    }
}

fn stop(o: &mut Open) {
    let _ = Command::new("kill")
        .args(["-TERM", &o.child.id().to_string()])
        .status();
    let began = Instant::now();
    while o.child.try_wait().unwrap().is_none() {
        assert!(began.elapsed() < Duration::from_secs(20), "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn os_user() -> String {
    let o = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[test]
fn a_login_link_works_once_and_not_after_it_expires() {
    let mut srv = Server::start("", "");
    srv.stop();
    let opened = srv.dir.path().join("opened");
    let mut open = serve_open(&srv, "300", &opened);
    // The browser program was asked to open exactly the printed link.
    let began = Instant::now();
    while std::fs::read_to_string(&opened).unwrap_or_default() != open.link {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the browser was not opened with the link"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let me = os_user();
    let rt = runtime();
    rt.block_on(async {
        let b = browser();
        let r = b.get(&open.link).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert!(
            cookies
                .iter()
                .any(|c| c.starts_with("stele_session=") && c.contains("HttpOnly")),
            "{cookies:?}"
        );
        let csrf = cookies
            .iter()
            .find_map(|c| c.strip_prefix("stele_csrf="))
            .and_then(|c| c.split(';').next())
            .unwrap()
            .to_string();
        // The cookie works on the API.
        let r = b
            .get(format!("{}/api/v1/approvals", open.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        // A state-changing request with the session's CSRF token works too
        // (logout, which also ends the session).
        let r = b
            .post(format!("{}/api/v1/logout", open.base))
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        // A second use, from any browser: refused, naming why.
        for client in [browser(), b] {
            let r = client.get(&open.link).send().await.unwrap();
            assert_eq!(r.status(), 401);
            assert!(r.headers().get("set-cookie").is_none());
            let p: Value = r.json().await.unwrap();
            assert!(
                p["detail"].as_str().unwrap().contains("used already"),
                "{p}"
            );
            assert!(p["audit_entry"].is_u64(), "{p}");
        }
        // A made-up link: refused.
        let r = browser()
            .get(format!("{}/api/v1/login/link/stl_forged", open.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    });
    stop(&mut open);
    let _ = &open.stderr;
    // Again, with a link that expires in a second: used after two, refused.
    let mut late = serve_open(&srv, "1", &opened);
    std::thread::sleep(Duration::from_millis(2100));
    rt.block_on(async {
        let r = browser().get(&late.link).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("set-cookie").is_none());
        let p: Value = r.json().await.unwrap();
        assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    });
    stop(&mut late);
    let leaves = srv.leaves();
    let logins: Vec<(String, String, String)> = server_decisions(&leaves, "login")
        .into_iter()
        .filter(|l| l["data"]["method"] == "link")
        .map(|l| {
            (
                l["actor"]["principal"].as_str().unwrap().to_string(),
                l["decision"]["effect"].as_str().unwrap().to_string(),
                l["decision"]["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(logins.len(), 5, "{logins:?}");
    assert_eq!(
        (logins[0].0.as_str(), logins[0].1.as_str()),
        (me.as_str(), "allow")
    );
    for (who, effect, _) in &logins[1..3] {
        assert_eq!((who.as_str(), effect.as_str()), (me.as_str(), "deny"));
    }
    assert_eq!(logins[3].0, "anonymous");
    assert_eq!(
        (logins[4].0.as_str(), logins[4].1.as_str()),
        (me.as_str(), "deny")
    );
    assert!(logins[4].2.contains("expired"), "{logins:?}");
    assert_eq!(server_decisions(&leaves, "login.link").len(), 2);
    // The account was made once, recorded, admin of team local.
    let made: Vec<&Value> = leaves
        .iter()
        .filter(|l| l.to_string().contains("account.add") && l.to_string().contains("\"local\""))
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    srv.verify();
}

#[test]
fn open_refuses_an_address_other_than_loopback() {
    let mut srv = Server::start("", "");
    srv.stop();
    let o = srv
        .s
        .run(&[
            "serve",
            "--open",
            "--listen",
            "0.0.0.0:0",
            "--config",
            srv.config.to_str().unwrap(),
        ])
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("loopback"), "{err}");
    // The link's lifetime goes only with --open, and is at most an hour.
    for args in [
        &["serve", "--link-ttl-secs", "5"][..],
        &["serve", "--open", "--link-ttl-secs", "3601"],
        &["serve", "--open", "--link-ttl-secs", "0"],
    ] {
        let o = srv.s.run(args).unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

/// `stele serve --open` started in `cwd` with `args` (only printing its
/// link, no user or system policy folder): its child, base URL, link and
/// everything it printed on stderr up to the link's line.
fn serve_desktop(srv: &Server, cwd: &Path, args: &[&str]) -> (Open, String) {
    let xdg = srv.dir.path().join("xdg-config");
    std::fs::create_dir_all(&xdg).unwrap();
    let mut child = Command::new(stele_tests::stele_bin())
        .args(["serve", "--open", "--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(cwd)
        .env("STELE_STATE_DIR", &srv.s.state)
        .env("XDG_CONFIG_HOME", &xdg)
        .env("USER", "not-a-member")
        .env("STELE_BROWSER", "")
        .envs(e2e_common::env(Wire::Anthropic, &srv.mock))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut seen = String::new();
    let mut base = None;
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("never printed its link:\n{seen}"));
        seen.push_str(&l);
        seen.push('\n');
        if let Some(rest) = l.split("listening on ").nth(1) {
            base = Some(rest.split_whitespace().next().unwrap().to_string());
        }
        if l.contains("with this one-time link") {
            break;
        }
    }
    let mut link = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut link)
        .unwrap();
    let open = Open {
        child,
        base: base.unwrap(),
        link: link.trim().to_string(),
        stderr: rx,
    };
    (open, seen)
}

/// Log in with the link: a browser with the session cookie, and its CSRF token.
async fn log_in(link: &str) -> (reqwest::Client, String) {
    let b = browser();
    let r = b.get(link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let csrf = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            let v = v.to_str().unwrap();
            v.strip_prefix("stele_csrf=")
                .map(|c| c.split(';').next().unwrap().to_string())
        })
        .unwrap();
    (b, csrf)
}

async fn wait_session(b: &reqwest::Client, base: &str, id: &str, want: &[&str]) -> Value {
    let began = Instant::now();
    loop {
        let s: Value = b
            .get(format!("{base}/api/v1/sessions/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if want.iter().any(|w| s["state"] == *w) {
            return s;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "never {want:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A project folder: a note, a secret beside it, an outbox.
fn project(root: &Path) -> std::path::PathBuf {
    let p = root.join("project");
    std::fs::create_dir_all(p.join("outbox")).unwrap();
    std::fs::write(p.join("notes.txt"), "Client: Acme\nAmount: 10.50 EUR\n").unwrap();
    std::fs::write(p.join(".env"), "API_KEY=sk-live-do-not-read\n").unwrap();
    stele_tests::share(&p).unwrap();
    std::fs::canonicalize(&p).unwrap()
}

#[test]
fn the_desktop_default_works_in_the_folder_it_was_started_in() {
    let srv = Server::prepare("", "");
    let proj = project(srv.dir.path());
    let me = os_user();
    // No configuration at all: the folder it was started in is workspace
    // `local`, and the built-in desktop bundle (the OS user in team local)
    // decides; the banner says both.
    let (mut open, banner) = serve_desktop(&srv, &proj, &[]);
    assert!(
        banner.contains(&format!("workspace local: {}", proj.display()))
            && banner.contains("the folder `stele serve --open` was started in")
            && banner.contains("the built-in desktop bundle")
            && banner.contains("secrets (.env")
            && banner.contains("ask you first"),
        "{banner}"
    );
    let members = std::fs::read_dir(srv.s.state.join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("desktop-builtin-")
        })
        .map(|p| std::fs::read_to_string(p.join("members.toml")).unwrap())
        .unwrap();
    assert!(
        members.contains(&format!("\"{me}\" = [\"local\"]")),
        "{members}"
    );
    let rt = runtime();
    let id = rt.block_on(async {
        let (b, csrf) = log_in(&open.link).await;
        let w: Value = b
            .get(format!("{}/api/v1/workspaces", open.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(w["workspaces"][0]["name"], "local", "{w}");
        assert_eq!(w["workspaces"].as_array().unwrap().len(), 1, "{w}");
        // The files of the folder it was started in, the secret left out of reach.
        let r = b
            .get(format!("{}/api/v1/workspaces/local/files/.env", open.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
        let r = b
            .get(format!(
                "{}/api/v1/workspaces/local/files/notes.txt",
                open.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Acme"));
        // A session starts (the model it may use is Anthropic's own API,
        // which this machine cannot reach: the mock is refused by the bundle).
        let r = b
            .post(format!("{}/api/v1/sessions", open.base))
            .header("x-csrf-token", &csrf)
            .json(
                &serde_json::json!({"workspace": "local", "task": "summarise notes.txt",
                "model": "anthropic:claude-sonnet-4-5"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        wait_session(&b, &open.base, &id, &["ended", "failed"]).await;
        id
    });
    stop(&mut open);
    let leaves = srv.leaves();
    let refused: Vec<&Value> = e2e_common::of_session(&leaves, &id)
        .into_iter()
        .filter(|l| l["decision"]["effect"] == "deny")
        .collect();
    assert!(
        refused.iter().any(|l| l["kind"] == "policy.decision"
            && l["actor"]["teams"] == serde_json::json!(["local"])
            && l["decision"]["layer"] == "org"
            && l["decision"]["reason"]
                .as_str()
                .unwrap()
                .contains("model.request")),
        "the mock model is refused by the built-in desktop bundle: {refused:?}"
    );
    srv.verify();
}

#[test]
fn the_desktop_policy_runs_a_task_with_strict_protections() {
    if !stele_tests::sandbox_available("the_desktop_policy_runs_a_task_with_strict_protections") {
        return;
    }
    let srv = Server::prepare("", "");
    let proj = project(srv.dir.path());
    let me = os_user();
    // A minimal configuration: the desktop template (pinned to the mock on
    // this machine), the person listed in its members.toml as a copy of it
    // would; the workspace given with --workspace.
    let policy = stele_tests::template_for_mock("desktop", &srv.dir.path().join("desktop"));
    std::fs::write(
        policy.join("members.toml"),
        format!("[users]\n\"{me}\" = [\"local\"]\n"),
    )
    .unwrap();
    let config = srv.dir.path().join("desktop.toml");
    std::fs::write(
        &config,
        format!("[server]\npolicy = {policy:?}\nmodel = \"anthropic:claude-sonnet-4-5\"\n"),
    )
    .unwrap();
    let elsewhere = srv.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (mut open, banner) = serve_desktop(
        &srv,
        &elsewhere,
        &[
            "--config",
            config.to_str().unwrap(),
            "--workspace",
            proj.to_str().unwrap(),
        ],
    );
    assert!(
        banner.contains(&format!(
            "workspace local: {} (--workspace)",
            proj.display()
        )),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("policy: {}", policy.display())),
        "{banner}"
    );
    // The demo's shape: read, a secret refused, a letter to outbox/ that asks.
    for t in [
        Turn::new().tool_use("r", "file_read", serde_json::json!({"path": "notes.txt"})),
        Turn::new().tool_use("s", "file_read", serde_json::json!({"path": ".env"})),
        Turn::new().tool_use(
            "w",
            "file_write",
            serde_json::json!({"path": "outbox/letter.txt", "content": "Dear Acme"}),
        ),
        Turn::new().tool_use("f", "final_answer", serde_json::json!({"answer": "sent"})),
    ] {
        srv.mock.push(t.into());
    }
    let rt = runtime();
    let id = rt.block_on(async {
        let (b, csrf) = log_in(&open.link).await;
        let r = b
            .post(format!("{}/api/v1/sessions", open.base))
            .header("x-csrf-token", &csrf)
            .json(&serde_json::json!({"workspace": "local", "task": "write to Acme"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        // The ask waits in the person's own queue; they answer it.
        let began = Instant::now();
        let a = loop {
            let l: Value = b
                .get(format!("{}/api/v1/approvals", open.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(a) = l["approvals"].as_array().and_then(|a| a.first()).cloned() {
                break a;
            }
            assert!(began.elapsed() < Duration::from_secs(60), "no ask appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            !proj.join("outbox/letter.txt").exists(),
            "written before the answer"
        );
        let r = b
            .post(format!(
                "{}/api/v1/approvals/{}",
                open.base,
                a["approval_id"].as_str().unwrap()
            ))
            .header("x-csrf-token", &csrf)
            .json(&serde_json::json!({"shown_sha256": a["shown_sha256"], "outcome": "granted"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        wait_session(&b, &open.base, &id, &["ended"]).await;
        id
    });
    stop(&mut open);
    assert_eq!(
        std::fs::read_to_string(proj.join("outbox/letter.txt")).unwrap(),
        "Dear Acme"
    );
    let leaves = srv.leaves();
    let mine = e2e_common::of_session(&leaves, &id);
    let denied: Vec<&&Value> = mine
        .iter()
        .filter(|l| {
            l["decision"]["effect"] == "deny" && l.to_string().contains("desktop.no-secrets")
        })
        .collect();
    assert_eq!(
        denied.len(),
        1,
        "the .env read is refused by desktop.no-secrets"
    );
    assert!(
        mine.iter().any(|l| l["kind"] == "approval.grant"
            && l["actor"]["principal"].as_str().is_some()
            && l.to_string().contains(&me)),
        "the person granted the outbox write"
    );
    assert!(mine
        .iter()
        .any(|l| l.to_string().contains("desktop.outbox-needs-approval")));
    // The secret never went to the model.
    for r in srv.mock.requests() {
        assert!(!r.text().contains("sk-live-do-not-read"));
    }
    srv.verify();
}
