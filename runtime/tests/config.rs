#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Configuration layers: managed values are enforced, bad files are refused
//! with file and line.

use std::path::PathBuf;

use stele_runtime::config::{read, ConfigError, ConfigFile, Layers};
use stele_runtime::gate::ApproveMode;

fn layers(managed: Option<ConfigFile>, user: Option<ConfigFile>) -> Layers {
    Layers {
        managed: managed.map(|m| (PathBuf::from("/etc/stele/config.toml"), m, "00".into())),
        user: user.map(|u| (PathBuf::from("/home/a/.config/stele/config.toml"), u)),
    }
}

#[test]
fn managed_wins_and_a_contrary_flag_is_refused() {
    let managed = ConfigFile {
        policy: Some("/srv/policy".into()),
        approve: Some(ApproveMode::Deny),
        ..Default::default()
    };
    let user = ConfigFile {
        policy: Some("/home/a/p".into()),
        model: Some("ollama:llama3".into()),
        ..Default::default()
    };
    let l = layers(Some(managed), Some(user));
    assert_eq!(
        l.pick("policy", None, |c| c.policy.clone()).unwrap(),
        Some("/srv/policy".into())
    );
    let e = l
        .pick("policy", Some(PathBuf::from("/tmp/loose")), |c| {
            c.policy.clone()
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Managed {
                field: "policy",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("/etc/stele/config.toml"), "{e}");
    // The same value as managed is fine.
    assert!(l
        .pick("approve", Some(ApproveMode::Deny), |c| c.approve)
        .is_ok());
    assert!(l
        .pick("approve", Some(ApproveMode::Allow), |c| c.approve)
        .is_err());
    // Not managed: the flag beats the user's file, which beats nothing.
    assert_eq!(
        l.pick("model", Some("openai:gpt".into()), |c| c.model.clone())
            .unwrap(),
        Some("openai:gpt".into())
    );
    assert_eq!(
        l.pick("model", None, |c| c.model.clone()).unwrap(),
        Some("ollama:llama3".into())
    );
    assert_eq!(l.pick("max_steps", None, |c| c.max_steps).unwrap(), None);
}

#[test]
fn bad_files_name_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("config.toml");
    std::fs::write(&p, "policy = \"/srv/policy\"\n\napprove = \"sometimes\"\n").unwrap();
    let e = read(&p).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConfigError::Parse { line: 3, .. }), "{text}");
    assert!(text.contains("config.toml"), "{text}");
    std::fs::write(&p, "polcy = \"/srv/policy\"\n").unwrap();
    let e = read(&p).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("polcy"), "{e}");
    assert!(read(&d.path().join("missing.toml")).unwrap().is_none());
    std::fs::write(&p, "network = \"proxy\"\nmax_steps = 7\n").unwrap();
    let (f, digest) = read(&p).unwrap().unwrap();
    assert_eq!(f.max_steps, Some(7));
    assert_eq!(digest.len(), 64);
}
