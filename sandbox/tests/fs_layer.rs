//! The policy layer driven directly through fuse-backend-rs's transport-
//! independent `FileSystem` trait (what a virtio-fs transport would call),
//! without a kernel mount: requests the kernel never sends but a hostile
//! transport could.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/fs_support/mod.rs"]
mod fs_support;

use fs_support::Recorder;
use fuse_backend_rs::abi::fuse_abi::FsOptions;
use fuse_backend_rs::api::filesystem::{Context, FileSystem, ROOT_ID};
use stele_sandbox::fs::MediatedFs;
use stele_sandbox::{FileAccess, RefusalRule, Requester};

fn setup() -> (tempfile::TempDir, std::sync::Arc<Recorder>, MediatedFs) {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("a.txt"), b"A").unwrap();
    std::fs::create_dir(ws.path().join("secret")).unwrap();
    std::fs::write(ws.path().join("secret/k"), b"K").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", ws.path().join("link")).unwrap();
    let rec = Recorder::new();
    rec.deny(None, "secret");
    let fs = MediatedFs::new(ws.path(), rec.clone(), Requester::default()).unwrap();
    fs.layer().init(FsOptions::all()).unwrap();
    (ws, rec, fs)
}

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap()
}

#[test]
fn init_never_offers_readdirplus() {
    let ws = tempfile::tempdir().unwrap();
    let fs = MediatedFs::new(ws.path(), Recorder::new(), Requester::default()).unwrap();
    let opts = fs.layer().init(FsOptions::all()).unwrap();
    assert!(!opts.contains(FsOptions::DO_READDIRPLUS));
    assert!(!opts.contains(FsOptions::READDIRPLUS_AUTO));
    assert!(!opts.contains(FsOptions::ZERO_MESSAGE_OPEN));
    assert!(!opts.contains(FsOptions::WRITEBACK_CACHE));
    assert!(opts.contains(FsOptions::ATOMIC_O_TRUNC));
}

#[test]
fn dot_dot_and_slashes_are_refused_without_reaching_the_host() {
    let (_ws, rec, fs) = setup();
    let ctx = Context::default();
    for name in [c"..", c".", c"a/b", c"../etc"] {
        let e = fs.layer().lookup(&ctx, ROOT_ID, name).unwrap_err();
        assert_eq!(errno(e), libc::EACCES, "{name:?}");
    }
    // Not even asked: such names have no canonical workspace path. Each
    // refusal is reported, with its rule.
    assert!(rec.requests.lock().unwrap().is_empty());
    assert_eq!(fs.layer().known_inodes(), 1);
    assert_eq!(rec.refused(RefusalRule::ParentDir).len(), 2);
    let slashes: Vec<String> = rec
        .refused(RefusalRule::SlashInName)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(slashes, ["a/b", "../etc"]);
}

#[test]
fn serving_leaves_the_process_umask_alone() {
    // The passthrough sets the umask to 0 when it imports its root (at
    // INIT and DESTROY); stele's own files would then be world-writable.
    // SAFETY: umask has no preconditions; the previous value is restored.
    let before = unsafe { libc::umask(0o027) };
    let ws = tempfile::tempdir().unwrap();
    let fs = MediatedFs::new(ws.path(), Recorder::new(), Requester::default()).unwrap();
    fs.layer().init(FsOptions::all()).unwrap();
    fs.layer().destroy();
    // SAFETY: as above.
    let after = unsafe { libc::umask(before) };
    assert_eq!(after, 0o027, "umask became {after:o}");
}

#[test]
fn unknown_inodes_are_refused() {
    let (_ws, rec, fs) = setup();
    let ctx = Context::default();
    let e = fs.layer().lookup(&ctx, 4242, c"a.txt").unwrap_err();
    assert_eq!(errno(e), libc::ENOENT);
    let e = fs
        .layer()
        .open(&ctx, 4242, libc::O_RDONLY as u32, 0)
        .unwrap_err();
    assert_eq!(errno(e), libc::ENOENT);
    assert!(rec.requests.lock().unwrap().is_empty());
}

#[test]
fn denied_lookup_creates_no_inode() {
    let (_ws, rec, fs) = setup();
    let ctx = Context::default();
    let e = fs.layer().lookup(&ctx, ROOT_ID, c"secret").unwrap_err();
    assert_eq!(errno(e), libc::EACCES);
    assert!(rec.saw(FileAccess::List, "secret"));
    assert_eq!(fs.layer().known_inodes(), 1);
    let entry = fs.layer().lookup(&ctx, ROOT_ID, c"a.txt").unwrap();
    assert_eq!(entry.attr.st_mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(fs.layer().known_inodes(), 2);
    fs.layer().forget(&ctx, entry.inode, 1);
    assert_eq!(fs.layer().known_inodes(), 1);
}

#[test]
fn symlink_inodes_are_never_opened_server_side() {
    let (_ws, rec, fs) = setup();
    let ctx = Context::default();
    let entry = fs.layer().lookup(&ctx, ROOT_ID, c"link").unwrap();
    assert_eq!(entry.attr.st_mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(
        fs.layer().readlink(&ctx, entry.inode).unwrap(),
        b"/etc/hostname"
    );
    let e = fs
        .layer()
        .open(&ctx, entry.inode, libc::O_RDONLY as u32, 0)
        .unwrap_err();
    assert_eq!(errno(e), libc::ELOOP);
    // Nor used as a directory to look names up in.
    let e = fs.layer().lookup(&ctx, entry.inode, c"x").unwrap_err();
    assert_eq!(errno(e), libc::ENOTDIR);
    assert!(!rec.saw(FileAccess::Read, "link"));
}

#[test]
fn an_allowed_create_that_fails_still_closes_its_decision() {
    let (_ws, rec, fs) = setup();
    let ctx = Context::default();
    let args = fuse_backend_rs::abi::fuse_abi::CreateIn {
        flags: (libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) as u32,
        mode: 0o644,
        umask: 0,
        fuse_flags: 0,
    };
    let e = fs
        .layer()
        .create(&ctx, ROOT_ID, c"a.txt", args)
        .unwrap_err();
    assert_eq!(errno(e), libc::EEXIST);
    assert!(rec.saw(FileAccess::Write, "a.txt"));
    let reports = rec.closes_for("a.txt");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!((reports[0].bytes_read, reports[0].bytes_written), (0, 0));
    assert_eq!(reports[0].sha256_after_write, None);
}

#[test]
fn id_map_translates_owners_both_ways() {
    use fuse_backend_rs::abi::fuse_abi::SetattrValid;
    use stele_sandbox::fs::IdMap;
    let (ws, _rec, fs) = setup();
    // SAFETY: plain id getters.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let fs = fs.with_id_map(IdMap {
        host_uid: uid,
        host_gid: gid,
        sandbox_uid: 1234,
        sandbox_gid: 1235,
    });
    let layer = fs.layer();
    let ctx = Context::default();

    let entry = layer.lookup(&ctx, ROOT_ID, c"a.txt").unwrap();
    assert_eq!((entry.attr.st_uid, entry.attr.st_gid), (1234, 1235));
    let (st, _) = layer.getattr(&ctx, entry.inode, None).unwrap();
    assert_eq!((st.st_uid, st.st_gid), (1234, 1235));

    // The sandbox user acts as the server itself.
    let mut c = Context {
        uid: 1234,
        gid: 1235,
        pid: 0,
    };
    layer.id_remap(&mut c).unwrap();
    assert_eq!((c.uid, c.gid), (0, 0));
    let mut other = Context {
        uid: 77,
        gid: 77,
        pid: 0,
    };
    layer.id_remap(&mut other).unwrap();
    assert_eq!(other.uid, 77);

    // chown to the sandbox user maps to the host owner; anything else is EPERM.
    let mut attr = st;
    attr.st_uid = 1234;
    let (out, _) = layer
        .setattr(&ctx, entry.inode, attr, None, SetattrValid::UID)
        .unwrap();
    assert_eq!(out.st_uid, 1234);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(ws.path().join("a.txt")).unwrap().uid(),
        uid
    );
    attr.st_uid = 42;
    let e = layer
        .setattr(&ctx, entry.inode, attr, None, SetattrValid::UID)
        .unwrap_err();
    assert_eq!(errno(e), libc::EPERM);

    // Host owners with no counterpart inside show as the overflow id.
    if uid == 0 {
        std::fs::write(ws.path().join("theirs"), b"t").unwrap();
        std::os::unix::fs::chown(ws.path().join("theirs"), Some(4242), Some(4242)).unwrap();
        let e = layer.lookup(&ctx, ROOT_ID, c"theirs").unwrap();
        assert_eq!((e.attr.st_uid, e.attr.st_gid), (65534, 65534));
    }
}
