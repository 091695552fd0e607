//! A local Python package index for the install tests: a real wheel, built
//! on the host with python's zipfile (no internet, no pip cache), served by
//! a PEP 503 "simple" index on the host's loopback. Every request is
//! recorded with the bytes sent back. [`npm`] is the same for npm.

pub mod npm;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The project as pip asks for it, and the module it installs.
pub const PROJECT: &str = "stele-probe";
pub const MODULE: &str = "stele_probe";
pub const WHEEL: &str = "stele_probe-1.0-py3-none-any.whl";
/// What `stele_probe.VALUE` says once installed.
pub const VALUE: &str = "from the local index";
/// Incompressible bytes in the wheel, so its size dominates any headers.
pub const BLOB_BYTES: usize = 300 * 1024;

/// Builds the wheel: a module, a data file of random bytes (stored, not
/// deflated) and the dist-info with a RECORD of real hashes. Prints the
/// wheel's SHA-256.
const MAKE_WHEEL: &str = r#"
import base64, hashlib, os, sys, zipfile
out, module, value, blob_bytes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
files = {
    f"{module}/__init__.py": (
        f"VALUE = {value!r}\n"
        "def blob():\n"
        "    import importlib.resources\n"
        f"    return importlib.resources.files({module!r}).joinpath('blob.bin').read_bytes()\n"
    ).encode(),
    f"{module}/blob.bin": os.urandom(blob_bytes),
    f"{module}-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: stele-probe\nVersion: 1.0\nSummary: stele install test\n",
    f"{module}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: stele-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, data in files.items():
    h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={h},{len(data)}")
record.append(f"{module}-1.0.dist-info/RECORD,,")
files[f"{module}-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
    for name, data in files.items():
        z.writestr(name, data)
print(hashlib.sha256(open(out, "rb").read()).hexdigest())
"#;

/// One request the index answered.
#[derive(Debug, Clone)]
pub struct Served {
    pub path: String,
    pub status: u16,
    pub bytes: u64,
}

/// The running index.
pub struct Index {
    pub port: u16,
    /// The wheel's size in bytes.
    pub wheel_size: u64,
    pub served: Arc<Mutex<Vec<Served>>>,
    _dir: tempfile::TempDir,
}

/// What a test server answers: path (a trailing `/` optional) → content type and body.
pub type Routes = BTreeMap<String, (&'static str, Vec<u8>)>;

/// Serve `routes` over HTTP/1.1 on the host's loopback, one thread per
/// connection, `Connection: close`; anything else is a 404. Every answer is
/// recorded with the bytes sent. `routes` is given the port (pages may
/// link back). Returns the port and the record.
pub fn serve(routes: impl FnOnce(u16) -> Routes) -> (u16, Arc<Mutex<Vec<Served>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let routes = routes(port);
    let served = Arc::new(Mutex::new(Vec::new()));
    let log = served.clone();
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let log = log.clone();
            let routes = routes.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
                let mut head = Vec::new();
                let mut b = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                // Origin form (the proxy rewrites) or absolute form.
                let target = line.split(' ').nth(1).unwrap_or("/").to_owned();
                let path = match target.find("://") {
                    Some(i) => target[i + 3..]
                        .find('/')
                        .map_or("/".to_owned(), |j| target[i + 3 + j..].to_owned()),
                    None => target,
                };
                let found = routes
                    .get(&path)
                    .or_else(|| routes.get(&format!("{path}/")))
                    .or_else(|| routes.get(path.trim_end_matches('/')));
                let (status, ctype, body): (u16, &str, &[u8]) = match found {
                    Some((ctype, body)) => (200, ctype, body),
                    None => (404, "text/plain", b"not here\n"),
                };
                let reason = if status == 200 { "OK" } else { "Not Found" };
                let mut resp = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                resp.extend_from_slice(body);
                let sent = s.write_all(&resp).map_or(0, |()| resp.len() as u64);
                let _ = s.flush();
                log.lock().unwrap().push(Served {
                    path,
                    status,
                    bytes: sent,
                });
            });
        }
    });
    (port, served)
}

pub fn host_python() -> PathBuf {
    // Debian's, as the demo test's readers; else whatever PATH has.
    let debian = Path::new("/usr/bin/python3");
    if debian.exists() {
        debian.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

impl Index {
    /// Build the wheel and serve `/simple/`, `/simple/stele-probe/` and the wheel.
    pub fn start() -> Index {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join(WHEEL);
        let o = Command::new(host_python())
            .arg("-c")
            .arg(MAKE_WHEEL)
            .arg(&wheel)
            .arg(MODULE)
            .arg(VALUE)
            .arg(BLOB_BYTES.to_string())
            .output()
            .expect("python3 on the host builds the test wheel (scripts/setup-demo installs it)");
        assert!(
            o.status.success(),
            "building the wheel: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let sha = String::from_utf8(o.stdout).unwrap().trim().to_owned();
        let bytes = std::fs::read(&wheel).unwrap();
        let wheel_size = bytes.len() as u64;
        let project_page = format!(
            "<!DOCTYPE html>\n<html><body>\n<a href=\"/files/{WHEEL}#sha256={sha}\">{WHEEL}</a>\n</body></html>\n"
        );
        let root_page = format!(
            "<!DOCTYPE html>\n<html><body>\n<a href=\"/simple/{PROJECT}/\">{PROJECT}</a>\n</body></html>\n"
        );
        let mut routes = Routes::new();
        routes.insert("/simple/".to_owned(), ("text/html", root_page.into_bytes()));
        routes.insert(
            format!("/simple/{PROJECT}/"),
            ("text/html", project_page.into_bytes()),
        );
        routes.insert(
            format!("/files/{WHEEL}"),
            ("application/octet-stream", bytes),
        );
        let (port, served) = serve(|_| routes);
        Index {
            port,
            wheel_size,
            served,
            _dir: dir,
        }
    }

    pub fn served(&self) -> Vec<Served> {
        self.served.lock().unwrap().clone()
    }
}
