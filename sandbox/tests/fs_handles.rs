//! Handles of the mediated layer: every open is its own decided handle with
//! its own figures, also when read-only opens share a host descriptor; and
//! the server's CPU placement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/fs_support/mod.rs"]
mod fs_support;

use std::io;
use std::sync::Arc;

use fs_support::{fuse_available, Mounted, Recorder};
use fuse_backend_rs::abi::fuse_abi::FsOptions;
use fuse_backend_rs::api::filesystem::{Context, FileSystem, ZeroCopyWriter, ROOT_ID};
use fuse_backend_rs::file_buf::FileVolatileSlice;
use fuse_backend_rs::file_traits::FileReadWriteVolatile;
use stele_sandbox::fs::MediatedFs;
use stele_sandbox::{FileAccess, Requester};

/// Collects what the layer reads for the kernel.
struct Sink(Vec<u8>);

impl io::Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ZeroCopyWriter for Sink {
    fn write_from(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        let mut buf = vec![0u8; count];
        // SAFETY: `buf` is exclusively ours for the duration of the call.
        let slice = unsafe { FileVolatileSlice::from_mut_slice(&mut buf) };
        let n = f.read_at_volatile(slice, off)?;
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn available_bytes(&self) -> usize {
        usize::MAX
    }
}

/// Serialises the tests that mount: the pinning test looks at every server
/// thread of this process.
static MOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup(content: &[u8]) -> (tempfile::TempDir, Arc<Recorder>, MediatedFs, u64) {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("a.txt"), content).unwrap();
    let rec = Recorder::new();
    let fs = MediatedFs::new(ws.path(), rec.clone(), Requester::default()).unwrap();
    fs.layer().init(FsOptions::all()).unwrap();
    let inode = fs
        .layer()
        .lookup(&Context::default(), ROOT_ID, c"a.txt")
        .unwrap()
        .inode;
    (ws, rec, fs, inode)
}

fn open_ro(fs: &MediatedFs, inode: u64) -> io::Result<u64> {
    let (h, _, _) = fs
        .layer()
        .open(&Context::default(), inode, libc::O_RDONLY as u32, 0)?;
    Ok(h.unwrap())
}

fn read(fs: &MediatedFs, inode: u64, handle: u64, size: u32, off: u64) -> Vec<u8> {
    let mut sink = Sink(Vec::new());
    let n = fs
        .layer()
        .read(
            &Context::default(),
            inode,
            handle,
            &mut sink,
            size,
            off,
            None,
            0,
        )
        .unwrap();
    assert_eq!(n, sink.0.len());
    sink.0
}

fn release(fs: &MediatedFs, inode: u64, handle: u64) {
    fs.layer()
        .release(&Context::default(), inode, 0, handle, false, false, None)
        .unwrap();
}

fn read_decisions(rec: &Recorder) -> usize {
    rec.requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.access == FileAccess::Read && r.path == "a.txt")
        .count()
}

#[test]
fn read_only_opens_are_each_decided_and_counted_on_their_own() {
    let (_ws, rec, fs, inode) = setup(b"0123456789");
    let h1 = open_ro(&fs, inode).unwrap();
    let h2 = open_ro(&fs, inode).unwrap();
    assert_ne!(h1, h2, "one handle per open");
    assert_eq!(read_decisions(&rec), 2, "one decision per open");

    assert_eq!(read(&fs, inode, h1, 4, 0), b"0123");
    assert_eq!(read(&fs, inode, h2, 100, 0), b"0123456789");
    assert_eq!(read(&fs, inode, h1, 2, 4), b"45");
    release(&fs, inode, h2);
    release(&fs, inode, h1);

    let closes = rec.closes_for("a.txt");
    assert_eq!(closes.len(), 2);
    assert_ne!(
        closes[0].ticket, closes[1].ticket,
        "each report closes its own decision"
    );
    // h2 released first: 10 bytes; then h1: 4 + 2.
    let read: Vec<u64> = closes.iter().map(|c| c.bytes_read).collect();
    assert_eq!(read, vec![10, 6]);
    assert!(closes
        .iter()
        .all(|c| c.bytes_written == 0 && c.sha256_after_write.is_none()));

    // A released handle is gone: reading through it is refused.
    let mut sink = Sink(Vec::new());
    let e = fs
        .layer()
        .read(&Context::default(), inode, h1, &mut sink, 10, 0, None, 0)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
}

#[test]
fn a_shared_descriptor_does_not_outlive_a_denial() {
    let (_ws, rec, fs, inode) = setup(b"secret data");
    let h = open_ro(&fs, inode).unwrap();
    assert_eq!(read(&fs, inode, h, 100, 0), b"secret data");
    release(&fs, inode, h);
    // The host descriptor may still be open (idle); the next open is still
    // decided, and denied.
    rec.deny(Some(FileAccess::Read), "a.txt");
    let e = open_ro(&fs, inode).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    assert_eq!(read_decisions(&rec), 2);
    assert_eq!(
        rec.closes_for("a.txt").len(),
        1,
        "the denied open has no handle"
    );
}

#[test]
fn reads_through_a_shared_descriptor_see_host_changes() {
    let (ws, _rec, fs, inode) = setup(b"old contents");
    let h = open_ro(&fs, inode).unwrap();
    assert_eq!(read(&fs, inode, h, 100, 0), b"old contents");
    release(&fs, inode, h);
    // Same inode, rewritten in place on the host.
    std::fs::write(ws.path().join("a.txt"), b"new").unwrap();
    let h = open_ro(&fs, inode).unwrap();
    assert_eq!(read(&fs, inode, h, 100, 0), b"new");
    release(&fs, inode, h);
}

#[test]
fn handles_left_open_are_reported_when_the_server_stops() {
    if !fuse_available() {
        return;
    }
    let _serial = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    use std::io::Read;
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("a.txt"), b"0123456789").unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    let mut f1 = std::fs::File::open(m.path("a.txt")).unwrap();
    let f2 = std::fs::File::open(m.path("a.txt")).unwrap();
    let mut buf = [0u8; 3];
    f1.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"012");
    // Unmounted and stopped with both still open: no RELEASE will come.
    drop(m);
    let closes = rec.closes_for("a.txt");
    assert_eq!(closes.len(), 2, "{closes:?}");
    let mut read: Vec<u64> = closes.iter().map(|c| c.bytes_read).collect();
    read.sort_unstable();
    // The kernel read the whole (10-byte) file for the 3 bytes asked.
    assert_eq!(read, vec![0, 10]);
    drop((f1, f2));
}

#[test]
fn writable_opens_keep_their_own_descriptor_and_hash() {
    let (ws, rec, fs, inode) = setup(b"abc");
    let ctx = Context::default();
    let (w, _, _) = fs
        .layer()
        .open(&ctx, inode, libc::O_RDWR as u32, 0)
        .unwrap();
    let w = w.unwrap();
    let r = open_ro(&fs, inode).unwrap();
    assert_eq!(read(&fs, inode, w, 10, 0), b"abc");
    assert_eq!(read(&fs, inode, r, 10, 0), b"abc");
    release(&fs, inode, r);
    release(&fs, inode, w);
    assert_eq!(std::fs::read(ws.path().join("a.txt")).unwrap(), b"abc");
    // O_RDWR asks two decisions, each closed with the same figures.
    let closes = rec.closes_for("a.txt");
    assert_eq!(closes.len(), 3);
    assert!(closes.iter().all(|c| c.bytes_read == 3));
}

#[test]
fn the_server_runs_on_the_cpu_it_was_given() {
    if !fuse_available() {
        return;
    }
    let _serial = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let cpu = stele_sandbox::fs::current_cpu().unwrap();
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("f"), b"x").unwrap();
    let rec = Recorder::new();
    let m = Mounted::with(ws.path(), rec.clone(), |fs| fs.with_cpu(cpu));
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"x");
    let mut found = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        // A thread of another test may end while this looks.
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.starts_with("stele-fuse") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(allowed, cpu.to_string());
        found += 1;
    }
    // One request reader and the two parked standby readers (`standby.rs`).
    assert_eq!(found, 3, "server threads");
}

#[test]
fn repeated_opens_through_the_kernel_are_each_decided() {
    if !fuse_available() {
        return;
    }
    let _serial = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("a.txt"), b"receipt").unwrap();
    let rec = Recorder::new();
    let m = Mounted::new(ws.path(), rec.clone());
    for _ in 0..3 {
        assert_eq!(std::fs::read(m.path("a.txt")).unwrap(), b"receipt");
    }
    rec.deny(Some(FileAccess::Read), "a.txt");
    let e = std::fs::read(m.path("a.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    drop(m);
    assert_eq!(read_decisions(&rec), 4);
    let closes = rec.closes_for("a.txt");
    assert_eq!(closes.len(), 3);
    assert!(closes.iter().all(|c| c.bytes_read == 7), "{closes:?}");
}

#[test]
fn several_server_threads_serve_and_stop() {
    if !fuse_available() {
        return;
    }
    let _serial = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let ws = tempfile::tempdir().unwrap();
    for i in 0..4 {
        std::fs::write(ws.path().join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    let rec = Recorder::new();
    let m = Mounted::with(ws.path(), rec.clone(), |fs| fs.with_server_threads(2));
    std::thread::scope(|s| {
        for i in 0..4 {
            let path = m.path(&format!("f{i}"));
            s.spawn(move || {
                for _ in 0..50 {
                    assert_eq!(
                        std::fs::read(&path).unwrap(),
                        format!("file {i}").as_bytes()
                    );
                }
            });
        }
    });
    // Stopping while mounted wakes and joins both threads (the test would
    // hang otherwise).
    m.stop_while_mounted();
    for i in 0..4 {
        let closes = rec.closes_for(&format!("f{i}"));
        assert_eq!(closes.len(), 50);
        assert!(closes.iter().all(|c| c.bytes_read == 6));
    }
}
