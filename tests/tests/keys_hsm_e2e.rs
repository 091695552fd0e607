//! `stele keys` with a key in a real PKCS#11 token (SoftHSM v2, installed
//! by `scripts/setup-hsm`): the key made in the token by `keys init
//! --pkcs11`, the log signed by it through the configuration's
//! `[signing.pkcs11]`, a rotation to a key file, and the export checked
//! offline by `stele-verify` across the rotation.
//!
//! Needs `target/<profile>/stele` and `stele-verify` (`cargo build -p
//! stele-cli --bin stele -p stele-verify`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stele_tests::{stele_bin, Stele};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "stele-e2e";
const PIN: &str = "e2e-pin-4321";
const ORIGIN: &str = "test.example/hsm-e2e";

fn verify_bin() -> PathBuf {
    let b = stele_bin().with_file_name("stele-verify");
    assert!(
        b.exists(),
        "{} is missing: build it with `cargo build -p stele-verify`",
        b.display()
    );
    b
}

/// A SoftHSM token in `dir`, and the PIN file (0600).
fn token(dir: &Path) -> (PathBuf, PathBuf) {
    assert!(
        Path::new(MODULE).exists(),
        "SoftHSM is not installed: run scripts/setup-hsm (this test must run, not skip)"
    );
    std::fs::create_dir(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .unwrap();
    let o = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", TOKEN])
        .args(["--pin", PIN, "--so-pin", "5678-so"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pin = dir.join("pin");
    std::fs::write(&pin, format!("{PIN}\n")).unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    (conf, pin)
}

struct Env {
    s: Stele,
    conf: PathBuf,
    user_config: PathBuf,
    managed: PathBuf,
}

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        self.s
            .run_env(
                args,
                &[
                    ("SOFTHSM2_CONF", self.conf.to_str().unwrap()),
                    ("STELE_CONFIG", self.user_config.to_str().unwrap()),
                    ("STELE_MANAGED_CONFIG", self.managed.to_str().unwrap()),
                ],
            )
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "stele {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "stele {args:?} succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

fn signing_section(pin: &Path, label: &str) -> String {
    format!(
        "[signing]\npkcs11 = {{ module = \"{MODULE}\", token = \"{TOKEN}\", label = \"{label}\", pin_file = \"{}\" }}\n",
        pin.display()
    )
}

/// The verifier key on the `verifier key: …` line of `out`.
fn verifier_line(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("verifier key: "))
        .unwrap_or_else(|| panic!("no verifier key in {out}"))
        .to_string()
}

#[test]
fn a_token_key_signs_the_log_rotates_to_a_file_and_the_export_verifies() {
    let d = tempfile::tempdir().unwrap();
    let (conf, pin) = token(d.path());
    let state = d.path().join("state");
    let e = Env {
        s: Stele::new(&state),
        conf,
        user_config: d.path().join("config.toml"),
        managed: d.path().join("managed.toml"),
    };
    let db = d.path().join("audit.db");
    let db_s = db.to_str().unwrap();
    let pin_s = pin.to_str().unwrap();

    // The key is made in the token, and `keys init --pkcs11` says so.
    let out = e.ok(&[
        "keys",
        "init",
        "--pkcs11",
        "--module",
        MODULE,
        "--token",
        TOKEN,
        "--label",
        "log-a",
        "--pin-file",
        pin_s,
        "--origin",
        ORIGIN,
        "--json",
    ]);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["origin"], ORIGIN, "{info}");
    assert_eq!(info["created"], true, "{info}");
    let token_key = info["verifier"].as_str().unwrap().to_string();
    // An existing label is never overwritten.
    let again = e.fails(&[
        "keys",
        "init",
        "--pkcs11",
        "--module",
        MODULE,
        "--token",
        TOKEN,
        "--label",
        "log-a",
        "--pin-file",
        pin_s,
        "--origin",
        ORIGIN,
    ]);
    assert!(again.contains("already exists"), "{again}");

    // The configuration names the token key: every command uses it, and no
    // key file exists anywhere in the state folder.
    std::fs::write(&e.user_config, signing_section(&pin, "log-a")).unwrap();
    assert_eq!(e.ok(&["keys", "show"]).trim(), token_key);
    e.ok(&["audit", "init", "--db", db_s]);
    e.ok(&["audit", "show", "--db", db_s]);
    let v = e.ok(&["audit", "verify", "--db", db_s]);
    assert!(v.starts_with("OK"), "{v}");
    let v = e.ok(&["audit", "verify", "--db", db_s, "--vkey", &token_key]);
    assert!(v.starts_with("OK"), "{v}");
    assert!(
        !state.join("keys").join("log.key").exists(),
        "a key file was made although the token key is configured"
    );

    // A managed `[signing]` wins over the user's: a managed key label the
    // token does not hold stops the command, naming the field and file.
    std::fs::write(&e.managed, signing_section(&pin, "no-such-key")).unwrap();
    let err = e.fails(&["audit", "show", "--db", db_s]);
    assert!(
        err.contains("[signing.pkcs11]")
            && err.contains("managed.toml")
            && err.contains("no-such-key"),
        "{err}"
    );
    assert!(!err.contains(PIN), "the PIN is shown: {err}");
    std::fs::remove_file(&e.managed).unwrap();

    // Rotate to a file key with the same origin.
    let new_key = d.path().join("new.key");
    let new_s = new_key.to_str().unwrap();
    let file_key = verifier_line(&e.ok(&["keys", "init", "--key", new_s, "--origin", ORIGIN]));
    assert_ne!(file_key, token_key);
    let r = e.ok(&[
        "keys",
        "rotate",
        "--db",
        db_s,
        "--to-key",
        new_s,
        "--reason",
        "e2e rotation",
    ]);
    assert!(r.contains("key.rotation"), "{r}");
    let boundary = r
        .split("checkpoints from size ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .unwrap_or_else(|| panic!("no boundary in {r}"))
        .to_string();

    // The token key no longer opens the log for writing.
    let err = e.fails(&["audit", "show", "--db", db_s]);
    assert!(err.contains(&file_key) || err.contains("key"), "{err}");

    // With the file key: verified across the rotation, with either key
    // given as the trusted one.
    std::fs::remove_file(&e.user_config).unwrap();
    e.ok(&["audit", "show", "--db", db_s, "--key", new_s]);
    for trusted in [&file_key, &token_key] {
        let v = e.ok(&["audit", "verify", "--db", db_s, "--vkey", trusted]);
        assert!(v.starts_with("OK"), "{v}");
    }
    let v = e.ok(&["audit", "verify", "--db", db_s, "--key", new_s]);
    assert!(v.starts_with("OK"), "{v}");

    // The export verifies offline, and shows both keys' ranges.
    let exp = d.path().join("export");
    e.ok(&[
        "audit",
        "export",
        "--db",
        db_s,
        "--key",
        new_s,
        "--out",
        exp.to_str().unwrap(),
    ]);
    for trusted in [&file_key, &token_key] {
        let o = Command::new(verify_bin())
            .args([exp.to_str().unwrap(), "--key", trusted])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "stele-verify --key {trusted}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A stranger's key is refused (the check can fail).
    let stranger = d.path().join("stranger.key");
    let stranger_key = verifier_line(&e.ok(&[
        "keys",
        "init",
        "--key",
        stranger.to_str().unwrap(),
        "--origin",
        ORIGIN,
    ]));
    let o = Command::new(verify_bin())
        .args([exp.to_str().unwrap(), "--key", &stranger_key])
        .output()
        .unwrap();
    assert!(!o.status.success(), "a stranger's key verified the export");

    // Revoking the token key from the rotation's boundary is recorded
    // (the boundary checkpoint also carries the new key's signature);
    // revoking the current key is refused.
    let rv = e.ok(&[
        "keys",
        "revoke",
        &token_key,
        "--from-size",
        &boundary,
        "--reason",
        "e2e test",
        "--db",
        db_s,
        "--key",
        new_s,
    ]);
    assert!(rv.contains("key.revocation"), "{rv}");
    let err = e.fails(&[
        "keys",
        "revoke",
        &file_key,
        "--from-size",
        "1",
        "--reason",
        "e2e test",
        "--db",
        db_s,
        "--key",
        new_s,
    ]);
    assert!(!err.is_empty());
    let v = e.ok(&["audit", "verify", "--db", db_s, "--key", new_s]);
    assert!(v.starts_with("OK"), "{v}");
}

/// `stele audit bench --signer configured` signs with the configuration's
/// token key — on a fresh log and on a cached `--existing` one — and its
/// log verifies under the token's verifier key only; `--signer memory`
/// signs with the in-process key. The figures include checkpoint signing.
#[test]
fn audit_bench_with_the_configured_signer_signs_with_the_token() {
    let d = tempfile::tempdir().unwrap();
    let (conf, pin) = token(d.path());
    let e = Env {
        s: Stele::new(&d.path().join("state")),
        conf,
        user_config: d.path().join("config.toml"),
        managed: d.path().join("managed.toml"),
    };
    // Without [signing.pkcs11] the configured signer is refused, by name.
    let err = e.fails(&["audit", "bench", "--signer", "configured", "--entries", "8"]);
    assert!(err.contains("[signing.pkcs11]"), "{err}");
    let out = e.ok(&[
        "keys",
        "init",
        "--pkcs11",
        "--module",
        MODULE,
        "--token",
        TOKEN,
        "--label",
        "bench",
        "--pin-file",
        pin.to_str().unwrap(),
        "--origin",
        ORIGIN,
    ]);
    let token_key = verifier_line(&out);
    std::fs::write(&e.user_config, signing_section(&pin, "bench")).unwrap();
    let cache = d.path().join("cache");
    for (signer, existing) in [
        ("configured", "0"),
        ("configured", "300"),
        ("memory", "300"),
    ] {
        let keep = d.path().join(format!("kept-{signer}-{existing}"));
        let out = e.ok(&[
            "audit",
            "bench",
            "--signer",
            signer,
            "--writers",
            "4",
            "--entries",
            "40",
            "--serial",
            "6",
            "--existing",
            existing,
            "--cache",
            cache.to_str().unwrap(),
            "--keep",
            keep.to_str().unwrap(),
            "--json",
        ]);
        let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let db = keep.join("bench-audit.db");
        let db_s = db.to_str().unwrap();
        let vkey = std::fs::read_to_string(keep.join("bench-audit.vkey")).unwrap();
        assert_eq!(r["verifier"], vkey.trim(), "{r}");
        assert!(r["signatures"].as_u64().unwrap() > 0, "{r}");
        assert!(
            r["existing"].as_u64().unwrap() >= existing.parse().unwrap(),
            "{r}"
        );
        let under_token = e.run(&["audit", "verify", "--db", db_s, "--vkey", &token_key]);
        if signer == "configured" {
            assert_eq!(vkey.trim(), token_key, "{signer} {existing}");
            assert!(r["signer"].as_str().unwrap().contains("PKCS#11"), "{r}");
            assert!(
                under_token.status.success(),
                "the bench log does not verify under the token key: {}",
                String::from_utf8_lossy(&under_token.stderr)
            );
        } else {
            assert_ne!(vkey.trim(), token_key);
            assert!(r["signer"].as_str().unwrap().contains("memory"), "{r}");
            assert!(
                !under_token.status.success(),
                "memory log verified under the token key"
            );
            let own = e.ok(&["audit", "verify", "--db", db_s, "--vkey", vkey.trim()]);
            assert!(own.starts_with("OK"), "{own}");
        }
    }
}
