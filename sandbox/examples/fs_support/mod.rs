//! Shared by the FUSE tests and the file benchmark: a real FUSE mount of a
//! [`MediatedFs`] on the host (needs root and /dev/fuse), and a recording
//! mediator with simple rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use stele_sandbox::fs::{FsServer, MediatedFs, MediatedLayer};
use stele_sandbox::{
    FileAccess, FileChangeReport, FileCloseReport, FileRefusal, FileRequest, Mediator,
    NetCloseReport, NetRequest, NetVerdict, Refusal, RefusalRule, Requester, Ticket, Verdict,
};

/// A rule: return `Some(reason)` to deny the request.
pub type Rule = Box<dyn Fn(&FileRequest) -> Option<String> + Send + Sync>;

/// Records every request and close report; denies what its rules deny.
pub struct Recorder {
    rules: Mutex<Vec<Rule>>,
    pub requests: Mutex<Vec<FileRequest>>,
    pub closes: Mutex<Vec<FileCloseReport>>,
    pub changes: Mutex<Vec<FileChangeReport>>,
    pub refusals: Mutex<Vec<FileRefusal>>,
    /// When false, nothing is recorded (benchmark mode: decisions still run).
    pub record: bool,
    next: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::with_recording(true))
    }

    pub fn with_recording(record: bool) -> Self {
        Recorder {
            rules: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            closes: Mutex::new(Vec::new()),
            changes: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            record,
            next: AtomicU64::new(1),
        }
    }

    /// Deny `access` on `path` and everything below it.
    pub fn deny(&self, access: Option<FileAccess>, path: &str) {
        let path = path.to_owned();
        self.rules
            .lock()
            .unwrap()
            .push(Box::new(move |r: &FileRequest| {
                let under = r.path == path || r.path.starts_with(&format!("{path}/"));
                (under && access.is_none_or(|a| a == r.access)).then(|| format!("test rule {path}"))
            }));
    }

    /// Whether a request with this access and path was seen.
    pub fn saw(&self, access: FileAccess, path: &str) -> bool {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.access == access && r.path == path)
    }

    /// Close reports for `path`.
    pub fn closes_for(&self, path: &str) -> Vec<FileCloseReport> {
        self.closes
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }

    /// The close reports for `path` once `n` have arrived, or what arrived
    /// within 5 s: RELEASE is asynchronous, so a report can follow the exit
    /// of the program that closed the file.
    pub fn closes_settled(&self, path: &str, n: usize) -> Vec<FileCloseReport> {
        let t = std::time::Instant::now();
        loop {
            let got = self.closes_for(path);
            if got.len() >= n || t.elapsed() > std::time::Duration::from_secs(5) {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Refusals reported with `rule`, as (path, detail).
    pub fn refused(&self, rule: RefusalRule) -> Vec<(String, String)> {
        self.refusals
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.rule == rule)
            .map(|r| (r.path.clone(), r.detail.clone()))
            .collect()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
        self.closes.lock().unwrap().clear();
        self.changes.lock().unwrap().clear();
        self.refusals.lock().unwrap().clear();
    }
}

impl Mediator for Recorder {
    fn file_access(&self, req: &FileRequest) -> Verdict {
        if self.record {
            self.requests.lock().unwrap().push(req.clone());
        }
        for rule in self.rules.lock().unwrap().iter() {
            if let Some(reason) = rule(req) {
                return Verdict::Deny(reason.into());
            }
        }
        Verdict::Allow(Ticket(self.next.fetch_add(1, Ordering::Relaxed)))
    }

    fn file_closed(&self, report: &FileCloseReport) {
        if self.record {
            self.closes.lock().unwrap().push(report.clone());
        }
    }

    fn file_changed(&self, report: &FileChangeReport) {
        if self.record {
            self.changes.lock().unwrap().push(*report);
        }
    }

    fn file_refused(&self, refusal: &FileRefusal) -> Refusal {
        self.refusals.lock().unwrap().push(refusal.clone());
        Refusal::new(refusal.reason())
    }

    fn net_connect(&self, _req: &NetRequest) -> NetVerdict {
        NetVerdict::Deny("files only".into())
    }

    fn net_closed(&self, _report: &NetCloseReport) {}
}

/// True when this host can run real FUSE mounts; otherwise says so loudly.
pub fn fuse_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && Path::new("/dev/fuse").exists() {
        true
    } else {
        eprintln!("SKIPPED: needs /dev/fuse and root");
        false
    }
}

/// A mediated workspace mounted at `mountpoint`; unmounted on drop.
pub struct Mounted {
    pub mountpoint: PathBuf,
    _dir: tempfile::TempDir,
    server: Option<FsServer>,
}

impl Mounted {
    /// Mount `root` through a `MediatedFs` asking `mediator`.
    pub fn new(root: &Path, mediator: Arc<dyn Mediator>) -> Mounted {
        Self::with(root, mediator, |fs| fs)
    }

    /// Like `new`, with the file system adjusted by `configure` before it is served.
    pub fn with(
        root: &Path,
        mediator: Arc<dyn Mediator>,
        configure: impl FnOnce(MediatedFs) -> MediatedFs,
    ) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let dev: OwnedFd = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/fuse")
            .unwrap()
            .into();
        let opts = MediatedFs::mount_options(dev.as_raw_fd(), 0, 0);
        let src = CString::new("stele-test").unwrap();
        let target = CString::new(mountpoint.as_os_str().as_encoded_bytes()).unwrap();
        let fstype = CString::new("fuse").unwrap();
        let data = CString::new(opts).unwrap();
        // SAFETY: all pointers are valid NUL-terminated strings for the call.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount: {}", std::io::Error::last_os_error());
        let fs = configure(MediatedFs::new(root, mediator, Requester::default()).unwrap());
        let server = fs.serve(dev).unwrap();
        Mounted {
            mountpoint,
            _dir: dir,
            server: Some(server),
        }
    }

    /// The layer being served.
    pub fn layer(&self) -> &Arc<MediatedLayer> {
        self.server.as_ref().unwrap().layer()
    }

    /// FUSE requests served so far, per opcode.
    pub fn request_counts(&self) -> Vec<(String, u64)> {
        self.server
            .as_ref()
            .map(|s| s.request_counts())
            .unwrap_or_default()
    }

    /// Stop the server while the file system is still mounted (as the
    /// process backend does: the server goes before the mount), then unmount.
    pub fn stop_while_mounted(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().unwrap();
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let target = CString::new(self.mountpoint.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid path string; a failed plain unmount falls back to a lazy one.
        unsafe {
            if libc::umount2(target.as_ptr(), 0) != 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
        if let Some(server) = self.server.take() {
            server.stop().unwrap();
        }
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .try_into()
        .unwrap()
}
