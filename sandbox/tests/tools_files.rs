//! The agent file tools (cap-std on the workspace): behaviour, mediation,
//! close reports, and every escape route refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::os::unix::fs::symlink;
use std::sync::Arc;

use stele_sandbox::exec::Truncation;
use stele_sandbox::tools::{Creation, EntryKind, ToolError, WorkspaceTools};
use stele_sandbox::{FileAccess, Requester};
use support::{workspace, Recorder, Rule};

fn tools(ws: &std::path::Path, rule: Rule) -> (WorkspaceTools, Arc<Recorder>) {
    let rec = Recorder::new(rule);
    let t = WorkspaceTools::open(ws, rec.clone(), Requester::default()).unwrap();
    (t, rec)
}

fn sha(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().try_into().unwrap()
}

#[test]
fn write_read_edit_list_stat() {
    let ws = workspace();
    let (t, rec) = tools(ws.path(), Rule::AllowFiles);
    std::fs::create_dir(ws.path().join("src")).unwrap();
    let w = t.write("src/a.txt", b"hello world\n").unwrap();
    assert_eq!(w.creation, Creation::Created);
    assert_eq!(w.sha256, sha(b"hello world\n"));
    assert_eq!(
        std::fs::read(ws.path().join("src/a.txt")).unwrap(),
        b"hello world\n"
    );
    let r = t.read("./src//a.txt", 5).unwrap();
    assert_eq!(r.path, "src/a.txt");
    assert_eq!(r.content, b"hello");
    assert_eq!(r.truncation, Truncation::Truncated { total_bytes: 12 });
    let e = t.edit("src/a.txt", "world", "there").unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.path().join("src/a.txt")).unwrap(),
        "hello there\n"
    );
    assert_eq!(e.sha256, sha(b"hello there\n"));
    assert!(matches!(
        t.edit("src/a.txt", "absent", "x"),
        Err(ToolError::NoMatch(_))
    ));
    t.write("src/b.txt", b"l l l").unwrap();
    assert!(matches!(
        t.edit("src/b.txt", "l", "x"),
        Err(ToolError::NotUnique { count: 3, .. })
    ));
    let l = t.list("src").unwrap();
    assert_eq!(
        l.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["a.txt", "b.txt"]
    );
    assert_eq!(l[0].kind, EntryKind::File);
    let s = t.stat("src/a.txt").unwrap();
    assert_eq!((s.kind, s.size), (EntryKind::File, 12));
    assert_eq!(t.stat("").unwrap().kind, EntryKind::Dir);
    // Mediation and close reports.
    assert!(rec
        .asked(FileAccess::Write)
        .contains(&"src/a.txt".to_string()));
    assert!(rec
        .asked(FileAccess::Read)
        .contains(&"src/a.txt".to_string()));
    assert!(rec.asked(FileAccess::List).contains(&"src".to_string()));
    let closes = rec.closes.lock().unwrap().clone();
    assert!(closes
        .iter()
        .any(|c| c.path == "src/a.txt" && c.sha256_after_write == Some(sha(b"hello there\n"))));
}

#[test]
fn glob_and_search() {
    let ws = workspace();
    let (t, _rec) = tools(ws.path(), Rule::AllowFiles);
    std::fs::create_dir_all(ws.path().join("a/b")).unwrap();
    std::fs::write(
        ws.path().join("a/b/x.rs"),
        "fn main() {}\nlet needle = 1;\n",
    )
    .unwrap();
    std::fs::write(ws.path().join("a/y.txt"), "no match\nneedle here\n").unwrap();
    std::fs::write(ws.path().join("z.rs"), "nothing\n").unwrap();
    symlink("/etc", ws.path().join("etc-link")).unwrap();
    assert_eq!(t.glob("**/*.rs", 100).unwrap(), ["a/b/x.rs", "z.rs"]);
    let hits = t.search("needle", None, 100).unwrap();
    let mut got: Vec<(String, usize)> = hits.iter().map(|h| (h.path.clone(), h.line)).collect();
    got.sort();
    assert_eq!(
        got,
        [("a/b/x.rs".to_string(), 2), ("a/y.txt".to_string(), 2)]
    );
    let hits = t.search("needle", Some("**/*.txt"), 100).unwrap();
    assert_eq!(hits.len(), 1);
    // The symlink to /etc is never followed by the walk.
    assert!(t.search("root:", None, 100).unwrap().is_empty());
}

#[test]
fn denied_access_is_refused_and_recorded() {
    let ws = workspace();
    std::fs::write(ws.path().join("f.txt"), "secret").unwrap();
    let (t, rec) = tools(ws.path(), Rule::ReadOnly);
    assert_eq!(t.read("f.txt", 100).unwrap().content, b"secret");
    match t.write("f.txt", b"x") {
        Err(ToolError::Denied { action, path, .. }) => {
            assert_eq!((action, path.as_str()), ("file.write", "f.txt"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(ws.path().join("f.txt")).unwrap(),
        "secret"
    );
    let (t, rec2) = tools(ws.path(), Rule::DenyAll);
    assert!(matches!(
        t.read("f.txt", 100),
        Err(ToolError::Denied { .. })
    ));
    assert_eq!(rec2.asked(FileAccess::Read), ["f.txt"]);
    assert!(!rec.asked(FileAccess::Write).is_empty());
}

#[test]
fn escapes_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "outside").unwrap();
    let ws = workspace();
    let (t, rec) = tools(ws.path(), Rule::AllowFiles);
    std::fs::create_dir(ws.path().join("d")).unwrap();
    symlink(
        outside.path().join("secret.txt"),
        ws.path().join("abs-link"),
    )
    .unwrap();
    symlink("../../../../../../etc/passwd", ws.path().join("d/rel-link")).unwrap();
    symlink("/proc/self/root/etc/passwd", ws.path().join("proc-link")).unwrap();
    symlink(outside.path(), ws.path().join("dir-link")).unwrap();
    for p in [
        "/etc/passwd",
        "../secret.txt",
        "d/../../etc/passwd",
        "abs-link",
        "d/rel-link",
        "proc-link",
        "dir-link/secret.txt",
        "/proc/self/root/etc/passwd",
    ] {
        let r = t.read(p, 100);
        assert!(
            matches!(r, Err(ToolError::Escape(_) | ToolError::InvalidPath { .. })),
            "{p}: {r:?}"
        );
        let w = t.write(p, b"pwned");
        assert!(
            matches!(w, Err(ToolError::Escape(_) | ToolError::InvalidPath { .. })),
            "{p}: {w:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
        "outside"
    );
    assert!(!std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("pwned"));
    // The escapes were refused before the mediator was ever asked.
    assert!(
        rec.files.lock().unwrap().is_empty(),
        "{:?}",
        rec.files.lock().unwrap()
    );
    // A symlink that stays inside is resolved to its target before asking.
    std::fs::write(ws.path().join("d/real.txt"), "in").unwrap();
    symlink("real.txt", ws.path().join("d/inner-link")).unwrap();
    assert_eq!(t.read("d/inner-link", 10).unwrap().path, "d/real.txt");
    assert_eq!(rec.asked(FileAccess::Read), ["d/real.txt"]);
}
