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
use stele_tests::mock_model::Wire;

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
