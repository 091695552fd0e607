//! A local npm registry for the install tests: a real package tarball,
//! built on the host with python's tarfile, and its packument (`GET /<name>`)
//! whose `dist.tarball` points back at the server under the name the test
//! allows (`allowed.test`), with the tarball's real `integrity` (SHA-512)
//! and `shasum` (SHA-1), so npm checks what it downloads.

use std::process::Command;
use std::sync::{Arc, Mutex};

use super::{host_python, serve, Routes, Served};

/// The package as npm asks for it (`require()`d by the same name).
pub const PACKAGE: &str = "stele-probe";
pub const VERSION: &str = "1.0.0";
/// What `require('stele-probe').VALUE` says once installed.
pub const VALUE: &str = "from the local registry";
/// Incompressible bytes in the tarball, so its size dominates any headers.
pub const BLOB_BYTES: usize = 300 * 1024;

/// Builds `package/{package.json,index.js,blob.bin}` as a gzipped tar the
/// way `npm pack` lays it out; prints the SHA-512 (base64) and SHA-1 (hex).
const MAKE_TARBALL: &str = r#"
import base64, hashlib, io, json, os, sys, tarfile
out, name, version, value, blob_bytes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
files = {
    "package/package.json": json.dumps({"name": name, "version": version, "main": "index.js"}).encode(),
    "package/index.js": (
        f"exports.VALUE = {json.dumps(value)};\n"
        "exports.blob = () => require('fs').readFileSync(require('path').join(__dirname, 'blob.bin'));\n"
    ).encode(),
    "package/blob.bin": os.urandom(blob_bytes),
}
with tarfile.open(out, "w:gz") as t:
    for path, data in files.items():
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(data))
data = open(out, "rb").read()
print(base64.b64encode(hashlib.sha512(data).digest()).decode(), hashlib.sha1(data).hexdigest())
"#;

/// The running registry.
pub struct Registry {
    pub port: u16,
    /// The tarball's size in bytes.
    pub tarball_size: u64,
    /// Its path on the server.
    pub tarball_path: String,
    pub served: Arc<Mutex<Vec<Served>>>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Build the tarball and serve `/stele-probe` and the tarball.
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join(format!("{PACKAGE}-{VERSION}.tgz"));
        let o = Command::new(host_python())
            .arg("-c")
            .arg(MAKE_TARBALL)
            .arg(&tgz)
            .args([PACKAGE, VERSION, VALUE, &BLOB_BYTES.to_string()])
            .output()
            .expect("python3 on the host builds the test tarball (scripts/setup-demo installs it)");
        assert!(
            o.status.success(),
            "building the tarball: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = String::from_utf8(o.stdout).unwrap();
        let (sha512, sha1) = out.trim().split_once(' ').unwrap();
        let (sha512, sha1) = (sha512.to_owned(), sha1.to_owned());
        let bytes = std::fs::read(&tgz).unwrap();
        let tarball_size = bytes.len() as u64;
        let tarball_path = format!("/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz");
        let path = tarball_path.clone();
        let (port, served) = serve(move |port| {
            let packument = serde_json::json!({
                "name": PACKAGE,
                "dist-tags": { "latest": VERSION },
                "versions": { VERSION: {
                    "name": PACKAGE,
                    "version": VERSION,
                    "main": "index.js",
                    "dist": {
                        "tarball": format!("http://allowed.test:{port}{path}"),
                        "integrity": format!("sha512-{sha512}"),
                        "shasum": sha1,
                    },
                }},
            });
            let mut routes = Routes::new();
            routes.insert(
                format!("/{PACKAGE}"),
                ("application/json", packument.to_string().into_bytes()),
            );
            routes.insert(path, ("application/octet-stream", bytes));
            routes
        });
        Registry {
            port,
            tarball_size,
            tarball_path,
            served,
            _dir: dir,
        }
    }

    pub fn served(&self) -> Vec<Served> {
        self.served.lock().unwrap().clone()
    }
}
