#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use super::*;

struct Fixture {
    _d: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for dir in ["home/.local/state/stele/keys", "home/work", "elsewhere"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("home/.local/state/stele/keys/log.key"), "k").unwrap();
        Fixture { _d: d, root }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn locs(&self) -> Vec<Location> {
        vec![
            Location::new(Kind::StateDir, self.p("home/.local/state/stele")),
            Location::new(
                Kind::SigningKey,
                self.p("home/.local/state/stele/keys/log.key"),
            ),
            // Missing: a later run would read it once created.
            Location::new(Kind::PolicySearch, self.p("home/.config/stele/policy")),
        ]
    }
}

fn overlap(r: Result<(), IsolationError>) -> (Overlap, Kind) {
    match r {
        Err(IsolationError::Overlap { overlap, kind, .. }) => (overlap, kind),
        other => panic!("expected an overlap, got {other:?}"),
    }
}

#[test]
fn a_workspace_holding_state_or_a_missing_policy_folder_is_refused() {
    let f = Fixture::new();
    let (o, k) = overlap(check(&f.p("home"), &f.locs()));
    assert_eq!((o, k), (Overlap::Holds, Kind::StateDir));
    // Only the future policy folder: still refused (the program could create it).
    let only_policy = &f.locs()[2..];
    let (o, k) = overlap(check(&f.p("home"), only_policy));
    assert_eq!((o, k), (Overlap::Holds, Kind::PolicySearch));
    // The root holds everything.
    assert!(check(Path::new("/"), &f.locs()).is_err());
    // A sibling folder is fine.
    check(&f.p("home/work"), &f.locs()).unwrap();
    check(&f.p("elsewhere"), &f.locs()).unwrap();
}

#[test]
fn a_workspace_inside_state_is_refused() {
    let f = Fixture::new();
    let (o, k) = overlap(check(&f.p("home/.local/state/stele/keys"), &f.locs()));
    assert_eq!((o, k), (Overlap::Inside, Kind::StateDir));
    // The same location, reached by `..` and a relative path.
    let rel = f.p("home/work/../.local/state/stele");
    assert!(check(&rel, &f.locs()).is_err());
}

#[test]
fn symlinks_are_followed_both_ways() {
    let f = Fixture::new();
    // A workspace that is a symlink to home.
    std::os::unix::fs::symlink(f.p("home"), f.p("elsewhere/link-to-home")).unwrap();
    let (o, _) = overlap(check(&f.p("elsewhere/link-to-home"), &f.locs()));
    assert_eq!(o, Overlap::Holds);
    // The key reached through a symlink that lives in the workspace: the
    // program could point it anywhere.
    std::os::unix::fs::symlink(f.p("home/.local/state/stele/keys"), f.p("home/work/keys")).unwrap();
    let through = [Location::new(
        Kind::SigningKey,
        f.p("home/work/keys/log.key"),
    )];
    let (o, k) = overlap(check(&f.p("home/work"), &through));
    assert_eq!(
        (o, k),
        (Overlap::Through(f.p("home/work")), Kind::SigningKey)
    );
    // A state folder configured as a symlink into the workspace.
    std::fs::create_dir_all(f.p("home/work/state")).unwrap();
    std::os::unix::fs::symlink(f.p("home/work/state"), f.p("elsewhere/state")).unwrap();
    let redirected = [Location::new(Kind::StateDir, f.p("elsewhere/state"))];
    let (o, _) = overlap(check(&f.p("home/work"), &redirected));
    assert_eq!(o, Overlap::Holds);
}

#[test]
fn a_key_with_two_names_is_refused() {
    let f = Fixture::new();
    let key = f.p("home/.local/state/stele/keys/log.key");
    std::fs::hard_link(&key, f.p("elsewhere/copy")).unwrap();
    match check(&f.p("home/work"), &f.locs()) {
        Err(IsolationError::HardLinks { links: 2, kind, .. }) => assert_eq!(kind, Kind::SigningKey),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_working_folder_may_hold_the_workspace_but_not_lie_in_it() {
    let f = Fixture::new();
    let cwd = |p: PathBuf| {
        [Location::new(
            Kind::McpCwd {
                server: "files".into(),
            },
            p,
        )]
    };
    check(&f.p("home/work"), &cwd(f.p("home"))).unwrap();
    let (o, _) = overlap(check(&f.p("home"), &cwd(f.p("home/work"))));
    assert_eq!(o, Overlap::Holds);
}

#[test]
fn messages_name_both_paths_and_what_to_do_escaped() {
    let f = Fixture::new();
    let odd = f.p("home/w\u{202e}\x1b[2J");
    std::fs::create_dir_all(&odd).unwrap();
    let state = [Location::new(Kind::StateDir, odd.join("state"))];
    let e = check(&odd, &state).unwrap_err().to_string();
    assert!(e.contains("contains stele's state folder"), "{e}");
    assert!(e.contains("STELE_STATE_DIR"), "{e}");
    assert!(e.contains("\\u{202e}\\u{1b}[2J/state"), "{e}");
    assert!(!e.contains('\x1b') && !e.contains('\u{202e}'), "{e:?}");
}
