//! A real PostgreSQL for tests and benchmarks: a temporary cluster made by
//! Debian's `initdb` and started by `pg_ctl` (package `postgresql`,
//! installed by `scripts/setup-postgres`), listening only on a Unix socket
//! in its own temporary folder (no TCP port to clash over), as the
//! unprivileged user `stele-pg` when the tests run as root (initdb refuses
//! root). The cluster is stopped and its folder removed when dropped.
//!
//! Where PostgreSQL is not installed, [`TempCluster::start`] prints a loud
//! `SKIPPED` line naming `scripts/setup-postgres` and gives None.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The system user the clusters run as when the tests run as root.
pub const PG_USER: &str = "stele-pg";
/// The cluster's superuser (trusted on the socket; no password).
pub const SUPERUSER: &str = "stele";

/// Whether the cluster syncs its writes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// As a production server does (for figures comparable to SQLite's FULL sync).
    Fsync,
    /// fsync off: faster, for tests that only check behaviour.
    NoFsync,
}

/// A running temporary cluster.
#[derive(Debug)]
pub struct TempCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_user: Option<String>,
    /// The server's options (`pg_ctl -o`).
    opts: String,
}

/// The newest `/usr/lib/postgresql/*/bin` holding initdb and pg_ctl.
pub fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0)
}

/// The uid and gid of `user`.
fn ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, user]).output().ok()?;
        if !o.status.success() {
            return None;
        }
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn checked(cmd: &mut Command) -> Result<Output, String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if o.status.success() {
        Ok(o)
    } else {
        Err(format!(
            "{cmd:?} exited {}: {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

fn skip(why: &str) -> Result<Option<TempCluster>, String> {
    eprintln!(
        "SKIPPED (PostgreSQL half): {why}; install it with scripts/setup-postgres \
         (scripts/setup runs it)"
    );
    Ok(None)
}

impl TempCluster {
    /// Make and start a cluster (fsync off); None (after a loud SKIPPED
    /// line) where PostgreSQL is not installed; an error when it is but
    /// does not start.
    pub fn start() -> Result<Option<TempCluster>, String> {
        TempCluster::start_with(Durability::NoFsync)
    }

    /// [`TempCluster::start`], syncing to disk as `durability` says.
    pub fn start_with(durability: Durability) -> Result<Option<TempCluster>, String> {
        let Some(bin) = bin_dir() else {
            return skip("no /usr/lib/postgresql/*/bin/initdb (Debian package postgresql)");
        };
        let as_user = if is_root() {
            if ids(PG_USER).is_none() {
                return skip(&format!(
                    "no system user {PG_USER} to run the test cluster as (initdb refuses root)"
                ));
            }
            Some(PG_USER.to_string())
        } else {
            None
        };
        // Short: the socket's path must fit in sun_path (~107 bytes).
        let dir = tempfile::Builder::new()
            .prefix("stele-pg.")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temporary folder: {e}"))?;
        if let Some(user) = &as_user {
            let (uid, gid) = ids(user).ok_or_else(|| format!("id {user}"))?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let fsync = match durability {
            Durability::Fsync => "on",
            Durability::NoFsync => "off",
        };
        let opts = format!(
            "-k {} -c listen_addresses= -c fsync={fsync} -c max_connections=200",
            dir.path().display()
        );
        let cluster = TempCluster {
            dir,
            bin,
            as_user,
            opts,
        };
        let data = cluster.data();
        checked(
            cluster
                .server_cmd("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale"])
                .args(["--no-sync", "--no-instructions"]),
        )?;
        cluster.run()?;
        Ok(Some(cluster))
    }

    /// Start the server (again, after [`TempCluster::stop`]).
    pub fn run(&self) -> Result<(), String> {
        checked(
            self.server_cmd("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "-o", &self.opts, "start"]),
        )
        .map(|_| ())
        .map_err(|e| format!("{e}\nserver log:\n{}", self.log()))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The folder holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A server-side program, run as the cluster's owner, in its folder.
    fn server_cmd(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = match &self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// A client program (psql, createdb) for this cluster's socket, as its superuser.
    fn client_cmd(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.arg("-h")
            .arg(self.socket_dir())
            .args(["-U", SUPERUSER])
            .current_dir(self.dir.path());
        c
    }

    /// Make database `name`; its URL (the socket folder percent-encoded as
    /// the host, as `[store] url` takes it).
    pub fn create_db(&self, name: &str) -> Result<String, String> {
        checked(self.client_cmd("createdb").arg(name))?;
        Ok(self.url(name))
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        let host = self.socket_dir().display().to_string().replace('/', "%2F");
        format!("postgres://{SUPERUSER}@{host}/{name}")
    }

    /// Run `sql` in database `db` with psql; its rows, one a line, fields
    /// separated by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let o = checked(self.client_cmd("psql").args([
            "-d",
            db,
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]))?;
        Ok(String::from_utf8_lossy(&o.stdout).trim_end().to_string())
    }

    /// Stop the server (immediately; its data is thrown away anyway).
    pub fn stop(&self) -> Result<(), String> {
        checked(self.server_cmd("pg_ctl").arg("-D").arg(self.data()).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]))
        .map(|_| ())
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if !self.data().join("postmaster.pid").exists() {
            return;
        }
        if let Err(e) = self.stop() {
            eprintln!("stopping the temporary PostgreSQL cluster: {e}");
        }
    }
}
