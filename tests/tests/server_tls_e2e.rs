#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stele serve` over TLS from certificate files: a self-signed
//! certificate made by the test (openssl), a reqwest client trusting only
//! it; browser cookies become `__Host-` and `Secure`; plain HTTP is still
//! refused on anything but loopback; a bad certificate or key, or only
//! one of the two, stops the server with a message naming it.

mod e2e_common;
mod server_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use server_support::{runtime, Server};

/// A self-signed certificate for 127.0.0.1: (cert.pem, key.pem).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        // A leaf, not a CA (webpki refuses a CA certificate as the server's).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian: apt-get install openssl)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (cert, key)
}

fn trusting(cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .cookie_store(true)
        .build()
        .unwrap()
}

fn tls_toml(cert: &Path, key: &Path) -> String {
    format!("tls_cert = {cert:?}\ntls_key = {key:?}\n")
}

#[test]
fn the_server_speaks_https_with_its_certificate_and_secure_host_cookies() {
    let d = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(d.path());
    let mut srv = Server::start_with("", &tls_toml(&cert, &key), "127.0.0.1:0", trusting(&cert));
    assert!(srv.base.starts_with("https://127.0.0.1:"), "{}", srv.base);
    let alice = srv.token("alice");
    let rt = runtime();
    rt.block_on(async {
        let r = srv
            .http
            .get(srv.url("/api/v1/sessions"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A client that does not trust the certificate gets no answer.
        let stranger = reqwest::Client::builder()
            .tls_built_in_root_certs(true)
            .build()
            .unwrap();
        assert!(stranger.get(srv.url("/healthz")).send().await.is_err());
        // Plain HTTP to the TLS port gets no API answer.
        let plain = srv.url("/healthz").replacen("https://", "http://", 1);
        let r = reqwest::get(&plain).await;
        assert!(
            r.map_or(true, |r| r.status() != 200),
            "plain HTTP answered on the TLS port"
        );
        // Browser cookies are __Host- and Secure under TLS.
        let pw = "a long passphrase for tls";
        let mut c = Command::new(stele_tests::stele_bin())
            .args([
                "user",
                "add",
                "tess",
                "--team",
                "finance",
                "--password-stdin",
                "--config",
            ])
            .arg(&srv.config)
            .env("STELE_STATE_DIR", &srv.s.state)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut c.stdin.take().unwrap(), pw.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
        let r = srv
            .http
            .post(srv.url("/api/v1/login/browser"))
            .json(&json!({"user": "tess", "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for name in ["__Host-stele_session=", "__Host-stele_csrf="] {
            let c = cookies
                .iter()
                .find(|c| c.starts_with(name))
                .unwrap_or_else(|| panic!("{name}: {cookies:?}"));
            assert!(
                c.contains("; Secure") && c.contains("Path=/") && !c.contains("Domain"),
                "{c}"
            );
        }
        let body: Value = r.json().await.unwrap();
        // The session cookie works over TLS (the client's jar sends Secure cookies to https).
        let r = srv
            .http
            .get(srv.url("/api/v1/sessions"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{body}");
    });
    srv.stop();
    srv.verify();
}

/// `stele serve` with `toml` as its [server] lines and `listen`: whether it
/// started listening, and what it printed.
fn try_serve(toml: &str, listen: &str) -> (bool, String) {
    let d = tempfile::tempdir().unwrap();
    let s = e2e_common::setup(d.path());
    let cfg = d.path().join("server.toml");
    std::fs::write(&cfg, format!("[server]\n{toml}")).unwrap();
    let mut child = Command::new(stele_tests::stele_bin())
        .args(["serve", "--listen", listen, "--config"])
        .arg(&cfg)
        .env("STELE_STATE_DIR", &s.state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let mut listening = false;
    for l in lines.by_ref().map_while(Result::ok) {
        err.push_str(&l);
        err.push('\n');
        if l.contains("listening on") {
            listening = true;
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(
        listening || !status.success(),
        "failed to start but exited 0:\n{err}"
    );
    (listening, err)
}

#[test]
fn plain_http_stays_loopback_only_and_bad_tls_files_stop_the_server() {
    let d = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(d.path());
    let (up, err) = try_serve("", "0.0.0.0:0");
    assert!(
        !up && err.contains("plain HTTP") && err.contains("tls_cert"),
        "{err}"
    );
    // With TLS, any address.
    let (up, err) = try_serve(&tls_toml(&cert, &key), "0.0.0.0:0");
    assert!(up && err.contains("https://"), "{err}");
    // Bad files, named.
    let junk = d.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    for (toml, want) in [
        (tls_toml(&junk, &key), "tls_cert"),
        (tls_toml(&cert, &junk), "tls_key"),
        (tls_toml(&d.path().join("missing.pem"), &key), "missing.pem"),
        (tls_toml(&key, &key), "tls_cert"),
        (format!("tls_cert = {cert:?}\n"), "tls_key"),
    ] {
        let (up, err) = try_serve(&toml, "127.0.0.1:0");
        assert!(!up && err.contains(want), "{toml}: {err}");
    }
}
