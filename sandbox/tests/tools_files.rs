//! The agent file tools (cap-std on the workspace): behaviour, mediation,
//! close reports, and every escape route refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "process_support/mod.rs"]
mod support;

use std::os::unix::fs::symlink;
use std::sync::Arc;

use std::os::unix::fs::FileTypeExt;
use stele_sandbox::exec::Truncation;

use stele_sandbox::tools::{Creation, EntryKind, ToolError, WorkspaceTools};
use stele_sandbox::{FileAccess, RefusalRule, Requester};
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
fn escapes_are_refused_and_reported() {
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
    for (p, rule) in [
        ("/etc/passwd", RefusalRule::Absolute),
        ("../secret.txt", RefusalRule::ParentDir),
        ("d/../../etc/passwd", RefusalRule::ParentDir),
        ("abs-link", RefusalRule::SymlinkEscape),
        ("d/rel-link", RefusalRule::SymlinkEscape),
        ("proc-link", RefusalRule::SymlinkEscape),
        ("dir-link/secret.txt", RefusalRule::SymlinkEscape),
        ("/proc/self/root/etc/passwd", RefusalRule::Absolute),
        ("a\u{1b}[2Jb", RefusalRule::ControlCharacter),
        ("nul\0byte", RefusalRule::ControlCharacter),
    ] {
        let r = t.read(p, 100);
        assert!(
            matches!(&r, Err(ToolError::Refused { rule: got, action: "file.read", .. }) if *got == rule),
            "{p}: {r:?}"
        );
        let w = t.write(p, b"pwned");
        assert!(
            matches!(&w, Err(ToolError::Refused { rule: got, action: "file.write", .. }) if *got == rule),
            "{p}: {w:?}"
        );
        // Each refusal reached the mediator, named by its rule.
        let n = rec.refused(rule).len();
        assert!(n >= 2, "{p}: {n} {rule:?} refusals reported");
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
        "outside"
    );
    assert!(!std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("pwned"));
    // The escapes were refused before the mediator was ever asked to allow.
    assert!(
        rec.files.lock().unwrap().is_empty(),
        "{:?}",
        rec.files.lock().unwrap()
    );
    // Refused paths are reported printable: the escape byte is escaped.
    assert!(rec
        .refused(RefusalRule::ControlCharacter)
        .iter()
        .any(|(p, _)| p == "a\\u{1b}[2Jb"));
    // A symlink that stays inside is resolved to its target before asking.
    std::fs::write(ws.path().join("d/real.txt"), "in").unwrap();
    symlink("real.txt", ws.path().join("d/inner-link")).unwrap();
    assert_eq!(t.read("d/inner-link", 10).unwrap().path, "d/real.txt");
    assert_eq!(rec.asked(FileAccess::Read), ["d/real.txt"]);
}

#[test]
fn the_root_is_dot_for_listing_search_and_stat() {
    let ws = workspace();
    std::fs::create_dir(ws.path().join("data")).unwrap();
    std::fs::write(ws.path().join("data/sales.csv"), "region,total\nnorth,12\n").unwrap();
    std::fs::write(ws.path().join("top.txt"), "north star\n").unwrap();
    let (t, rec) = tools(ws.path(), Rule::AllowFiles);
    for root in ["", ".", "./", ".//"] {
        let names: Vec<String> = t.list(root).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["data", "top.txt"], "{root:?}");
        assert_eq!(t.stat(root).unwrap().path, ".");
    }
    let hits = t.search("north", None, 10).unwrap();
    let mut got: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
    got.sort();
    assert_eq!(got, ["data/sales.csv", "top.txt"]);
    // Policy is asked about the root as ".", never as "".
    let asked: Vec<String> = rec
        .files
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(asked.contains(&".".to_string()), "{asked:?}");
    assert!(!asked.iter().any(String::is_empty), "{asked:?}");
    // The root is no file: reading or writing it is a reported refusal.
    assert!(matches!(
        t.read(".", 10),
        Err(ToolError::Refused {
            rule: RefusalRule::NotRegular,
            ..
        })
    ));
    assert!(matches!(
        t.write("", b"x"),
        Err(ToolError::Refused {
            rule: RefusalRule::NotRegular,
            ..
        })
    ));
    // A policy that refuses the root refuses listing it, under ".".
    let (t, rec) = tools(ws.path(), Rule::AllowFiles);
    rec.deny_path(".");
    assert!(matches!(t.list("."), Err(ToolError::Denied { ref path, .. }) if path == "."));
}

#[test]
fn fifos_sockets_and_directories_are_refused_without_blocking() {
    let ws = workspace();
    let fifo = std::ffi::CString::new(ws.path().join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
    let _sock = std::os::unix::net::UnixListener::bind(ws.path().join("sock")).unwrap();
    std::fs::create_dir(ws.path().join("dir")).unwrap();
    std::fs::write(ws.path().join("ok.txt"), "fine").unwrap();
    let (t, rec) = tools(ws.path(), Rule::AllowFiles);
    let started = std::time::Instant::now();
    for p in ["pipe", "sock", "dir"] {
        assert!(
            matches!(
                t.read(p, 10),
                Err(ToolError::Refused {
                    rule: RefusalRule::NotRegular,
                    ..
                })
            ),
            "{p}"
        );
        assert!(
            matches!(
                t.write(p, b"x"),
                Err(ToolError::Refused {
                    rule: RefusalRule::NotRegular,
                    ..
                })
            ),
            "{p}"
        );
        assert!(
            matches!(t.edit(p, "a", "b"), Err(ToolError::Refused { .. })),
            "{p}"
        );
    }
    // A search walks past them (it reads regular files only).
    assert_eq!(t.search("fine", None, 10).unwrap().len(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // None of them was ever opened for reading: no decision was asked.
    let read: Vec<String> = rec.asked(FileAccess::Read);
    assert!(!read.iter().any(|p| p == "pipe" || p == "sock"), "{read:?}");
    let refused = rec.refused(RefusalRule::NotRegular);
    assert!(
        refused.iter().any(|(p, d)| p == "pipe" && d == "a FIFO"),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|(p, d)| p == "sock" && d == "a socket"),
        "{refused:?}"
    );
    // The FIFO still has no writer waiting on it, and nothing was written.
    assert!(std::fs::symlink_metadata(ws.path().join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn hard_linked_files_are_decided_under_every_name() {
    let ws = workspace();
    std::fs::create_dir_all(ws.path().join("receipts")).unwrap();
    std::fs::create_dir_all(ws.path().join("reports")).unwrap();
    std::fs::write(ws.path().join("receipts/r1.csv"), "protected").unwrap();
    std::fs::hard_link(
        ws.path().join("receipts/r1.csv"),
        ws.path().join("reports/r1.csv"),
    )
    .unwrap();
    let (t, rec) = tools(ws.path(), Rule::AllowFiles);
    rec.deny_path("receipts");
    // Writing or reading the allowed name reaches the protected file: refused.
    assert!(matches!(
        t.write("reports/r1.csv", b"changed"),
        Err(ToolError::Denied { .. })
    ));
    assert!(matches!(
        t.read("reports/r1.csv", 100),
        Err(ToolError::Denied { .. })
    ));
    assert!(matches!(
        t.edit("reports/r1.csv", "protected", "x"),
        Err(ToolError::Denied { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("receipts/r1.csv")).unwrap(),
        "protected"
    );
    // Both names were asked; the program's own name among them.
    let written = rec.asked(FileAccess::Write);
    assert!(
        written.contains(&"reports/r1.csv".to_string()),
        "{written:?}"
    );
    assert!(
        written.contains(&"receipts/r1.csv".to_string()),
        "{written:?}"
    );
    // A search skips it too (each refusal decided and reported).
    assert!(t.search("protected", None, 10).unwrap().is_empty());
    // With both names allowed, both are decided and reported closed.
    let (t, rec) = tools(ws.path(), Rule::AllowFiles);
    t.write("reports/r1.csv", b"both allowed").unwrap();
    let closed: Vec<String> = rec
        .closes
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.path.clone())
        .collect();
    assert!(
        closed.contains(&"receipts/r1.csv".to_string())
            && closed.contains(&"reports/r1.csv".to_string()),
        "{closed:?}"
    );
    // A name outside the workspace cannot be decided: refused.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("shared.txt"), "x").unwrap();
    std::fs::hard_link(ws.path().join("shared.txt"), outside.path().join("alias")).unwrap();
    for r in [
        t.read("shared.txt", 10).err(),
        t.write("shared.txt", b"y").err(),
    ] {
        assert!(
            matches!(
                r,
                Some(ToolError::Refused {
                    rule: RefusalRule::HardLinkUnresolved,
                    ..
                })
            ),
            "{r:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("alias")).unwrap(),
        "x"
    );
}

#[test]
fn written_files_get_a_sane_mode_and_lose_setid_bits() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let ws = workspace();
    // As root, a workspace of another user: what the tool creates is theirs.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(ws.path(), Some(12345), Some(12346)).unwrap();
    }
    let (t, _rec) = tools(ws.path(), Rule::AllowFiles);
    t.write("new.txt", b"x").unwrap();
    let m = std::fs::metadata(ws.path().join("new.txt")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640, "{:o}", m.mode());
    let owner = std::fs::metadata(ws.path()).unwrap();
    assert_eq!((m.uid(), m.gid()), (owner.uid(), owner.gid()));
    // A pre-existing setuid file rewritten by the tool loses the bit.
    std::fs::write(ws.path().join("suid"), "old").unwrap();
    std::fs::set_permissions(
        ws.path().join("suid"),
        std::fs::Permissions::from_mode(0o6755),
    )
    .unwrap();
    t.write("suid", b"new").unwrap();
    let m = std::fs::metadata(ws.path().join("suid")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755, "{:o}", m.mode());
}

#[test]
fn names_policy_cannot_see_are_listed_escaped_and_skipped_by_search() {
    use std::os::unix::ffi::OsStrExt;
    let ws = workspace();
    let odd = std::ffi::OsStr::from_bytes(b"bad\xffname.txt");
    std::fs::write(ws.path().join(odd), "needle").unwrap();
    std::fs::write(ws.path().join("x\u{202e}txt.exe"), "needle").unwrap();
    let (t, rec) = tools(ws.path(), Rule::AllowFiles);
    let names: Vec<String> = t.list(".").unwrap().into_iter().map(|e| e.name).collect();
    assert!(names.contains(&"bad\\xffname.txt".to_string()), "{names:?}");
    assert!(
        names.contains(&"x\\u{202e}txt.exe".to_string()),
        "{names:?}"
    );
    // The UTF-8 one is searched (its hit names it as it is); the other is
    // refused as a name policy cannot see, and reported.
    let hits = t.search("needle", None, 10).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(rec
        .refused(RefusalRule::NotUtf8)
        .iter()
        .any(|(p, _)| p == "bad\\xffname.txt"));
}
