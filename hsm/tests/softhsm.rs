//! The PKCS#11 signer against a real software token (SoftHSM v2, installed
//! by `scripts/setup-hsm`): one token in a temporary folder for this test
//! binary (a module is initialised once per process, so every test shares
//! it and uses its own key labels).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use ed25519_dalek::{Signature, VerifyingKey};
use stele_attest::Signer as _;
use stele_hsm::{generate, HsmError, Pkcs11Config, Pkcs11Signer};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "stele-test";
const PIN: &str = "1234-test-pin";

struct Hsm {
    dir: PathBuf,
}

/// The token, made once before the module is first loaded in this process.
fn hsm() -> &'static Hsm {
    static H: OnceLock<Hsm> = OnceLock::new();
    H.get_or_init(|| {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM is not installed: run scripts/setup-hsm (this test must run, not skip)"
        );
        let dir = tempfile::tempdir().unwrap().keep();
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
        // SAFETY (of the test): set before any thread loads the module.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        let st = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", TOKEN])
            .args(["--pin", PIN, "--so-pin", "5678-so"])
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let pin = dir.join("pin");
        std::fs::write(&pin, format!("{PIN}\n")).unwrap();
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
        Hsm { dir }
    })
}

/// One test at a time: a login or logout is per process and token, so the
/// reconnection test's logout would hit the others' sessions too.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static L: std::sync::Mutex<()> = std::sync::Mutex::new(());
    L.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn cfg(label: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: MODULE.into(),
        token: TOKEN.into(),
        label: label.into(),
        pin_file: Some(hsm().dir.join("pin")),
        pin_env: None,
    }
}

fn verifies(s: &Pkcs11Signer, msg: &[u8], sig: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(&s.public_key())
        .unwrap()
        .verify_strict(msg, &Signature::from_bytes(sig))
        .is_ok()
}

#[test]
fn key_made_in_the_token_signs_and_never_leaves_it() {
    let _serial = serial();
    let c = cfg("gen-1");
    let s = generate(&c, "audit.test.invalid/log").unwrap();
    assert_eq!(s.name(), "audit.test.invalid/log");
    let sig = s.sign(b"checkpoint body\n").unwrap();
    assert!(verifies(&s, b"checkpoint body\n", &sig));
    assert!(!verifies(&s, b"another body\n", &sig));

    // Reopened by label: the same key, its name from CKA_ID.
    let again = Pkcs11Signer::open(&c).unwrap();
    assert_eq!(again.public_key(), s.public_key());
    assert_eq!(again.verifier().to_string(), s.verifier().to_string());

    let p = Pkcs11Signer::protection(&c).unwrap();
    assert!(p.sensitive && !p.extractable, "{p:?}");
    assert!(p.always_sensitive && p.never_extractable, "{p:?}");

    // Asking the token for the private value directly gets nothing back,
    // and trying to make it extractable is refused.
    let ctx = Pkcs11::new(MODULE).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|sl| ctx.get_token_info(*sl).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    let sess = ctx.open_rw_session(slot).unwrap();
    let _ = sess.login(UserType::User, Some(&PIN.to_string().into()));
    let h = sess
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"gen-1".to_vec()),
        ])
        .unwrap()[0];
    let got = sess.get_attributes(h, &[AttributeType::Value]).unwrap();
    assert!(
        !got.iter().any(|a| matches!(a, Attribute::Value(_))),
        "the token revealed the private key: {got:?}"
    );
    assert!(sess
        .update_attributes(h, &[Attribute::Extractable(true)])
        .is_err());
    assert!(sess
        .update_attributes(h, &[Attribute::Sensitive(false)])
        .is_err());
}

#[test]
fn an_existing_label_is_not_overwritten() {
    let _serial = serial();
    let c = cfg("gen-twice");
    let first = generate(&c, "audit.test.invalid/log").unwrap();
    let e = generate(&c, "audit.test.invalid/log").unwrap_err();
    assert!(matches!(e, HsmError::Key { .. }), "{e}");
    assert!(e.to_string().contains("gen-twice"), "{e}");
    assert_eq!(
        Pkcs11Signer::open(&c).unwrap().public_key(),
        first.public_key()
    );
}

#[test]
fn mistakes_are_named_and_the_pin_never_shown() {
    let _serial = serial();
    generate(&cfg("named"), "audit.test.invalid/log").unwrap();
    // Wrong PIN: names the token and label, not the PIN.
    let bad_pin = hsm().dir.join("bad-pin");
    std::fs::write(&bad_pin, "0000-wrong\n").unwrap();
    std::fs::set_permissions(&bad_pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = cfg("named");
    c.pin_file = Some(bad_pin.clone());
    let e = Pkcs11Signer::open(&c).unwrap_err().to_string();
    assert!(
        e.contains("PIN is wrong") && e.contains(TOKEN) && e.contains("named"),
        "{e}"
    );
    assert!(!e.contains("0000-wrong") && !e.contains(PIN), "{e}");
    // A PIN file others can read is refused before it is read.
    std::fs::set_permissions(&bad_pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Pkcs11Signer::open(&c).unwrap_err().to_string();
    assert!(e.contains("chmod 600") && e.contains("bad-pin"), "{e}");
    // PIN from an unset variable; both sources; neither.
    let mut c = cfg("named");
    c.pin_file = None;
    c.pin_env = Some("STELE_TEST_PIN_UNSET".into());
    let e = Pkcs11Signer::open(&c).unwrap_err().to_string();
    assert!(e.contains("$STELE_TEST_PIN_UNSET is not set"), "{e}");
    c.pin_file = Some(hsm().dir.join("pin"));
    assert!(Pkcs11Signer::open(&c)
        .unwrap_err()
        .to_string()
        .contains("not both"));
    c.pin_file = None;
    c.pin_env = None;
    assert!(Pkcs11Signer::open(&c)
        .unwrap_err()
        .to_string()
        .contains("pin_file or pin_env"));
    // Unknown token: the labels present are listed.
    let mut c = cfg("named");
    c.token = "no-such-token".into();
    let e = Pkcs11Signer::open(&c).unwrap_err().to_string();
    assert!(e.contains("no-such-token") && e.contains(TOKEN), "{e}");
    // Unknown key label.
    let e = Pkcs11Signer::open(&cfg("never-made"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("never-made") && e.contains("no private key"),
        "{e}"
    );
    // Missing module; relative module path.
    let mut c = cfg("named");
    c.module = "/nonexistent/libpkcs11.so".into();
    let e = Pkcs11Signer::open(&c).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/libpkcs11.so"), "{e}");
    c.module = "libsofthsm2.so".into();
    assert!(Pkcs11Signer::open(&c)
        .unwrap_err()
        .to_string()
        .contains("absolute"));
    // Debug names where the key is, never the PIN.
    let s = Pkcs11Signer::open(&cfg("named")).unwrap();
    let d = format!("{s:?} {}", s.describe());
    assert!(d.contains("named") && !d.contains(PIN), "{d}");
}

#[test]
fn many_threads_sign_at_once_on_their_own_sessions() {
    let _serial = serial();
    let s = Arc::new(generate(&cfg("threads"), "audit.test.invalid/log").unwrap());
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                for j in 0..20 {
                    let msg = format!("{i}-{j}");
                    let sig = s.sign(msg.as_bytes()).unwrap();
                    assert!(verifies(&s, msg.as_bytes(), &sig));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let idle = s.idle_sessions();
    assert!((1..=64).contains(&idle), "{idle} idle sessions");
}

/// Log out every session behind the signer's back (what a token reset or
/// an HSM failover does to a client).
fn logout_everything() {
    let ctx = Pkcs11::new(MODULE).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|sl| ctx.get_token_info(*sl).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    let sess = ctx.open_ro_session(slot).unwrap();
    let _ = sess.login(UserType::User, Some(&PIN.to_string().into()));
    sess.logout().unwrap();
}

#[test]
fn a_lost_login_reconnects_and_a_failed_reconnect_signs_nothing() {
    let _serial = serial();
    let c = cfg("reconnect");
    let s = generate(&c, "audit.test.invalid/log").unwrap();
    s.sign(b"before").unwrap();
    logout_everything();
    // The pooled session is no longer logged in: one reconnect, then it signs.
    let sig = s.sign(b"after a logout").unwrap();
    assert!(verifies(&s, b"after a logout", &sig));

    // Now the reconnect itself fails (the PIN was changed under us): no
    // signature at all, and the error says why.
    let pin = hsm().dir.join("pin-reconnect");
    std::fs::write(&pin, PIN).unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut c2 = c.clone();
    c2.pin_file = Some(pin.clone());
    let s2 = Pkcs11Signer::open(&c2).unwrap();
    logout_everything();
    std::fs::write(&pin, "9999-not-it").unwrap();
    let e = s2.sign(b"must not be signed").unwrap_err().to_string();
    assert!(e.contains("PIN is wrong") && e.contains("reconnect"), "{e}");
    assert_eq!(s2.idle_sessions(), 0, "a failed session must not be pooled");
    // Once the token is reachable again, signing resumes.
    std::fs::write(&pin, PIN).unwrap();
    let sig = s2.sign(b"recovered").unwrap();
    assert!(verifies(&s2, b"recovered", &sig));
}
