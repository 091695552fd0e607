//! The agent's file operations on a host folder (no VM): what they do
//! inside the folder, and the escapes `cap-std` refuses.

use super::*;

struct Folder {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
    dir: Dir,
}

fn folder() -> Folder {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ws");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "SECRET").unwrap();
    let dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority()).unwrap();
    Folder {
        _tmp: tmp,
        root,
        outside,
        dir,
    }
}

fn ok(dir: &Dir, op: FsOp) -> FsReply {
    match perform(dir, &op) {
        FsOutcome::Ok(r) => r,
        FsOutcome::Err(e) => panic!("{op:?}: {e}"),
    }
}

fn err(dir: &Dir, op: FsOp) -> FsError {
    match perform(dir, &op) {
        FsOutcome::Ok(r) => panic!("{op:?} succeeded: {r:?}"),
        FsOutcome::Err(e) => e,
    }
}

fn read(path: &str) -> FsOp {
    FsOp::Read {
        path: path.into(),
        offset: 0,
        len: 1 << 20,
    }
}

fn write(path: &str, data: &[u8], at: WriteAt, create: Create) -> FsOp {
    FsOp::Write {
        path: path.into(),
        data: Bytes(data.to_vec()),
        at,
        create,
        mode: 0o640,
    }
}

#[test]
fn operations_inside_the_folder() {
    let f = folder();
    let d = &f.dir;
    ok(
        d,
        FsOp::Mkdir {
            path: "a/b".into(),
            parents: Parents::Create,
            mode: 0o750,
        },
    );
    let w = ok(
        d,
        write("a/b/f.txt", b"hello", WriteAt::Truncate, Create::New),
    );
    assert_eq!(w, FsReply::Written(FsWritten { bytes: 5, size: 5 }));
    ok(
        d,
        write("a/b/f.txt", b" world", WriteAt::Append, Create::Existing),
    );
    ok(
        d,
        write("a/b/f.txt", b"J", WriteAt::Offset(0), Create::Existing),
    );
    assert_eq!(
        std::fs::read(f.root.join("a/b/f.txt")).unwrap(),
        b"Jello world"
    );
    let got = ok(
        d,
        FsOp::Read {
            path: "a/b/f.txt".into(),
            offset: 6,
            len: 3,
        },
    );
    assert_eq!(
        got,
        FsReply::Data(FsData {
            data: Bytes(b"wor".to_vec()),
            size: 11
        })
    );
    // Past the end: nothing, and no allocation of the asked length.
    let got = ok(
        d,
        FsOp::Read {
            path: "a/b/f.txt".into(),
            offset: u64::MAX,
            len: 1 << 20,
        },
    );
    assert_eq!(
        got,
        FsReply::Data(FsData {
            data: Bytes(Vec::new()),
            size: 11
        })
    );
    let FsReply::Stat(st) = ok(
        d,
        FsOp::Stat {
            path: "a/b/f.txt".into(),
            links: Links::Follow,
        },
    ) else {
        panic!("not a stat")
    };
    assert_eq!((st.kind, st.size), (FsKind::File, 11));
    assert_eq!(st.mode & 0o700, 0o600);
    ok(
        d,
        FsOp::Rename {
            from: "a/b/f.txt".into(),
            to: "a/g.txt".into(),
        },
    );
    std::os::unix::fs::symlink("g.txt", f.root.join("a/link")).unwrap();
    let FsReply::Entries(l) = ok(
        d,
        FsOp::List {
            path: "a".into(),
            max_entries: 10,
        },
    ) else {
        panic!("not a listing")
    };
    let names: Vec<(&str, FsKind)> = l.entries.iter().map(|e| (&*e.name, e.kind)).collect();
    assert_eq!(
        names,
        [
            ("b", FsKind::Dir),
            ("g.txt", FsKind::File),
            ("link", FsKind::Symlink)
        ]
    );
    assert_eq!(l.listing, Listing::Complete);
    let FsReply::Entries(l) = ok(
        d,
        FsOp::List {
            path: String::new(),
            max_entries: 0,
        },
    ) else {
        panic!("not a listing")
    };
    assert_eq!((l.entries.len(), l.listing), (0, Listing::Truncated));
    // A link inside the folder is followed inside it.
    let got = ok(d, read("a/link"));
    assert!(matches!(got, FsReply::Data(FsData { ref data, .. }) if data.0 == b"Jello world"));
    assert_eq!(
        err(d, write("a/g.txt", b"x", WriteAt::Truncate, Create::New)).kind,
        FsErrorKind::AlreadyExists
    );
    assert_eq!(
        err(
            d,
            FsOp::Remove {
                path: "a".into(),
                what: RemoveWhat::EmptyDir
            }
        )
        .kind,
        FsErrorKind::DirectoryNotEmpty
    );
    assert_eq!(err(d, read("a")).kind, FsErrorKind::IsADirectory);
    assert_eq!(err(d, read("nope")).kind, FsErrorKind::NotFound);
    ok(
        d,
        FsOp::Remove {
            path: "a".into(),
            what: RemoveWhat::Tree,
        },
    );
    assert!(!f.root.join("a").exists());
}

#[test]
fn escapes_are_refused_before_any_access() {
    let f = folder();
    let d = &f.dir;
    let secret = f.outside.join("secret");
    std::os::unix::fs::symlink(&secret, f.root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", f.root.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("../outside", f.root.join("dir-link")).unwrap();
    let abs = secret.to_str().unwrap();
    for path in [
        "../outside/secret",
        abs,
        "/etc/passwd",
        "abs-link",
        "rel-link",
        "dir-link/secret",
    ] {
        assert_eq!(err(d, read(path)).kind, FsErrorKind::Escape, "read {path}");
        assert_eq!(
            err(d, write(path, b"x", WriteAt::Truncate, Create::IfMissing)).kind,
            FsErrorKind::Escape,
            "write {path}"
        );
        assert_eq!(
            err(
                d,
                FsOp::Stat {
                    path: path.into(),
                    links: Links::Follow
                }
            )
            .kind,
            FsErrorKind::Escape,
            "stat {path}"
        );
    }
    for path in ["..", "dir-link", "/"] {
        let e = err(
            d,
            FsOp::List {
                path: path.into(),
                max_entries: 10,
            },
        );
        assert_eq!(e.kind, FsErrorKind::Escape, "list {path}");
    }
    let e = err(
        d,
        FsOp::Mkdir {
            path: "../made".into(),
            parents: Parents::No,
            mode: 0o755,
        },
    );
    assert_eq!(e.kind, FsErrorKind::Escape);
    let e = err(
        d,
        FsOp::Rename {
            from: "../outside/secret".into(),
            to: "stolen".into(),
        },
    );
    assert_eq!(e.kind, FsErrorKind::Escape);
    let e = err(
        d,
        FsOp::Remove {
            path: abs.into(),
            what: RemoveWhat::File,
        },
    );
    assert_eq!(e.kind, FsErrorKind::Escape);
    // The link itself can be described without following it.
    let FsReply::Stat(st) = ok(
        d,
        FsOp::Stat {
            path: "abs-link".into(),
            links: Links::NoFollow,
        },
    ) else {
        panic!("not a stat")
    };
    assert_eq!(st.kind, FsKind::Symlink);
    // Nothing outside was touched.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "SECRET");
    assert!(!f.outside.join("../made").exists());
    assert!(!f.root.join("stolen").exists());
}

#[test]
fn caps_are_checked_before_any_access() {
    let f = folder();
    let e = err(
        &f.dir,
        FsOp::Read {
            path: "x".into(),
            offset: 0,
            len: u64::MAX,
        },
    );
    assert_eq!(e.kind, FsErrorKind::TooLarge);
    let e = err(&f.dir, read("a\0b"));
    assert_eq!(e.kind, FsErrorKind::InvalidRequest);
}

#[test]
fn fifos_sockets_and_the_root_are_refused_without_blocking() {
    let f = folder();
    let fifo = std::ffi::CString::new(f.root.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let _sock = std::os::unix::net::UnixListener::bind(f.root.join("sock")).unwrap();
    let started = std::time::Instant::now();
    for p in ["fifo", "sock"] {
        let e = err(&f.dir, read(p));
        assert!(
            matches!(e.kind, FsErrorKind::NotAFile | FsErrorKind::Io),
            "{p}: {e:?}"
        );
        for at in [WriteAt::Truncate, WriteAt::Append, WriteAt::Offset(0)] {
            let e = err(&f.dir, write(p, b"x", at, Create::IfMissing));
            assert!(
                matches!(e.kind, FsErrorKind::NotAFile | FsErrorKind::Io),
                "{p} {at:?}: {e:?}"
            );
        }
    }
    // Reading a FIFO with no writer would block for ever.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(err(&f.dir, read("fifo")).kind, FsErrorKind::NotAFile);
    // The workspace itself is a directory, listed as "" or ".".
    assert_eq!(err(&f.dir, read("")).kind, FsErrorKind::IsADirectory);
    for root in ["", "."] {
        let FsReply::Entries(l) = ok(
            &f.dir,
            FsOp::List {
                path: root.into(),
                max_entries: 10,
            },
        ) else {
            panic!("not a listing")
        };
        assert!(l.entries.iter().any(|e| e.name == "fifo"), "{root:?}");
    }
}
