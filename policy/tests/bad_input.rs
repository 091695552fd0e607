#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bad bundles are refused whole, with file and line.

mod common;

use common::{bundle, write, ORG_ALLOW_ALL_FILES};
use stele_policy::{Bundle, PolicyError};

fn load_err(files: &[(&str, &str)]) -> PolicyError {
    let dir = bundle(files);
    match Bundle::load(dir.path()) {
        Ok(_) => panic!("bundle should have been refused"),
        Err(e) => e,
    }
}

#[test]
fn syntax_error_names_file_and_line() {
    let e = load_err(&[(
        "org/a.cedar",
        "@id(\"org.ok\")\npermit (principal, action, resource is File);\n\n@id(\"org.bad\")\npermit (principal, action resource);\n",
    )]);
    match &e {
        PolicyError::Syntax { location, .. } => {
            assert_eq!(location.file, "org/a.cedar");
            assert_eq!(location.line, Some(5), "{e}");
        }
        other => panic!("expected a syntax error, got {other}"),
    }
    assert!(e.to_string().starts_with("org/a.cedar:5:"), "{e}");
}

#[test]
fn schema_violation_names_policy_and_line() {
    let e = load_err(&[(
        "org/a.cedar",
        "@id(\"org.ok\")\npermit (principal, action == Action::\"file.read\", resource is File);\n\
         @id(\"org.typo\")\npermit (principal, action == Action::\"file.read\", resource is File)\n\
         when { resource.pth like \"x/*\" };\n",
    )]);
    match &e {
        PolicyError::Schema {
            location, policy, ..
        } => {
            assert_eq!(policy, "org.typo");
            assert_eq!(location.file, "org/a.cedar");
            assert_eq!(location.line, Some(5), "{e}");
        }
        other => panic!("expected a schema error, got {other}"),
    }
}

#[test]
fn wrong_resource_type_for_action_is_a_schema_error() {
    let e = load_err(&[(
        "org/a.cedar",
        "@id(\"org.x\")\npermit (principal, action == Action::\"exec\", resource is File);\n",
    )]);
    assert!(matches!(e, PolicyError::Schema { .. }), "{e}");
}

#[test]
fn unknown_entity_type_is_refused() {
    let e = load_err(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        (
            "teams/ops/a.cedar",
            "@id(\"ops.x\")\npermit (principal in Group::\"ops\", action, resource);\n",
        ),
        ("members.toml", "[users]\nann = [\"ops\"]\n"),
    ]);
    match &e {
        PolicyError::Schema {
            location, message, ..
        } => {
            assert_eq!(location.file, "teams/ops/a.cedar");
            assert_eq!(location.line, Some(2));
            assert!(message.contains("Group"), "{message}");
        }
        other => panic!("expected a schema error, got {other}"),
    }
}

#[test]
fn unknown_action_is_refused() {
    let e = load_err(&[(
        "org/a.cedar",
        "@id(\"org.x\")\npermit (principal, action == Action::\"file.rename\", resource);\n",
    )]);
    assert!(matches!(e, PolicyError::Schema { .. }), "{e}");
}

#[test]
fn duplicate_ids_across_files_name_both_places() {
    let e = load_err(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        ("org/b.cedar", &format!("// another\n{ORG_ALLOW_ALL_FILES}")),
    ]);
    match &e {
        PolicyError::DuplicatePolicyId {
            location,
            id,
            first,
        } => {
            assert_eq!(id, "org.files");
            assert_eq!(first.file, "org/a.cedar");
            assert_eq!(first.line, Some(2));
            assert_eq!(location.file, "org/b.cedar");
            assert_eq!(location.line, Some(3));
        }
        other => panic!("expected a duplicate id error, got {other}"),
    }
}

#[test]
fn duplicate_ids_within_a_file_and_across_layers() {
    let e = load_err(&[(
        "org/a.cedar",
        &format!("{ORG_ALLOW_ALL_FILES}{ORG_ALLOW_ALL_FILES}"),
    )]);
    assert!(matches!(e, PolicyError::DuplicatePolicyId { .. }), "{e}");
    let e = load_err(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        ("project/a.cedar", ORG_ALLOW_ALL_FILES),
    ]);
    assert!(matches!(e, PolicyError::DuplicatePolicyId { .. }), "{e}");
}

#[test]
fn missing_id_is_refused() {
    let e = load_err(&[(
        "org/a.cedar",
        "\n\npermit (principal, action, resource is File);\n",
    )]);
    match &e {
        PolicyError::PolicyId { location, .. } => assert_eq!(location.line, Some(3)),
        other => panic!("expected a policy id error, got {other}"),
    }
}

#[test]
fn missing_org_layer_is_refused() {
    let e = load_err(&[(
        "teams/ops/a.cedar",
        "@id(\"ops.x\")\npermit (principal, action, resource is File);\n",
    )]);
    assert!(matches!(e, PolicyError::Layout { .. }), "{e}");
    assert!(e.to_string().contains("org layer"), "{e}");
    // An org folder without policy files is no better.
    let dir = bundle(&[]);
    std::fs::create_dir(dir.path().join("org")).unwrap();
    let e = Bundle::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("org layer"), "{e}");
    // A policy file without policies is refused, naming it.
    let e = load_err(&[("org/empty.cedar", "// nothing\n")]);
    assert!(e.to_string().starts_with("org/empty.cedar: "), "{e}");
    assert!(e.to_string().contains("holds no policies"), "{e}");
}

#[test]
fn members_naming_unknown_team_is_refused_with_line() {
    let e = load_err(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        (
            "teams/finance/a.cedar",
            "@id(\"f.x\")\nforbid (principal, action, resource is Host);\n",
        ),
        (
            "members.toml",
            "[users]\nalice = [\"finance\"]\nbob = [\"finance\", \"fnance\"]\n",
        ),
    ]);
    match &e {
        PolicyError::Members { location, message } => {
            assert_eq!(location.file, "members.toml");
            assert_eq!(location.line, Some(3));
            assert!(message.contains("fnance"), "{message}");
        }
        other => panic!("expected a members error, got {other}"),
    }
}

#[test]
fn members_syntax_error_and_missing_file() {
    let e = load_err(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        ("members.toml", "[users]\nalice = [\"x\"\n"),
    ]);
    assert!(matches!(e, PolicyError::Members { .. }), "{e}");
    let dir = bundle(&[("org/a.cedar", ORG_ALLOW_ALL_FILES)]);
    std::fs::remove_file(dir.path().join("members.toml")).unwrap();
    let e = Bundle::load(dir.path()).unwrap_err();
    assert!(matches!(e, PolicyError::Members { .. }), "{e}");
}

#[test]
fn schema_file_must_be_the_stele_schema() {
    let changed =
        stele_policy::STELE_SCHEMA.replace("entity Tool { name: String };", "entity Tool;");
    let e = load_err(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        ("schema.cedarschema", &changed),
    ]);
    match &e {
        PolicyError::SchemaFile { location, .. } => assert!(location.line.is_some()),
        other => panic!("expected a schema file error, got {other}"),
    }
    let dir = bundle(&[("org/a.cedar", ORG_ALLOW_ALL_FILES)]);
    std::fs::remove_file(dir.path().join("schema.cedarschema")).unwrap();
    assert!(matches!(
        Bundle::load(dir.path()).unwrap_err(),
        PolicyError::SchemaFile { .. }
    ));
}

#[test]
fn stray_policy_files_and_symlinks_are_refused() {
    let e = load_err(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        ("extra.cedar", ORG_ALLOW_ALL_FILES),
    ]);
    assert!(matches!(e, PolicyError::Layout { .. }), "{e}");
    let e = load_err(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        ("org/nested/b.cedar", "// x\n"),
    ]);
    assert!(matches!(e, PolicyError::Layout { .. }), "{e}");
    let dir = bundle(&[("org/a.cedar", ORG_ALLOW_ALL_FILES)]);
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "x.cedar", ORG_ALLOW_ALL_FILES);
    std::os::unix::fs::symlink(
        outside.path().join("x.cedar"),
        dir.path().join("org/x.cedar"),
    )
    .unwrap();
    let e = Bundle::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("symlink"), "{e}");
}

#[test]
fn a_good_bundle_loads() {
    // Control for the tests above: the same scaffolding without the defect.
    let dir = bundle(&[("org/a.cedar", ORG_ALLOW_ALL_FILES)]);
    let b = Bundle::load(dir.path()).unwrap();
    assert_eq!(b.policy_count(), 1);
}

#[test]
fn policy_naming_unknown_team_is_refused() {
    let e = load_err(&[
        ("org/a.cedar", ORG_ALLOW_ALL_FILES),
        ("teams/finance/a.cedar", "@id(\"f.x\")\nforbid (principal, action, resource is Host);\n"),
        (
            "org/b.cedar",
            "// ceiling for finance\n@id(\"org.finance-no-net\")\nforbid (principal in Team::\"fnance\", action, resource is Host);\n",
        ),
    ]);
    match &e {
        PolicyError::Schema {
            location,
            policy,
            message,
        } => {
            assert_eq!(policy, "org.finance-no-net");
            assert_eq!(location.file, "org/b.cedar");
            assert_eq!(location.line, Some(2));
            assert!(message.contains("fnance"), "{message}");
        }
        other => panic!("expected a schema error, got {other}"),
    }
}
