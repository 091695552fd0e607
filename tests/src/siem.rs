//! Receivers for the SIEM feed tests and benchmark: a real `rsyslogd`
//! listening over TLS (certificates made by `openssl`), and a Splunk HEC
//! and an OTLP/HTTP logs endpoint written here over the real wire formats
//! (HEC JSON events with `Authorization: Splunk`; protobuf
//! `ExportLogsServiceRequest`). Every record received is kept with the log
//! index, leaf hash and kind it names, to check order and completeness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use serde_json::Value;

/// One record as a receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The log index it names.
    pub seq: u64,
    /// The leaf hash it names (hex).
    pub leaf_hash: String,
    /// `tool.intent`, `finding.logging_gap`, …
    pub label: String,
    /// The OCSF event.
    pub event: Value,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&o.stderr)))
    }
}

/// A CA and a server certificate for `localhost` and 127.0.0.1, by `openssl`.
#[derive(Debug)]
pub struct TestCa {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
}

impl TestCa {
    /// Make one in `dir` (files named with `name`).
    pub fn make(dir: &Path, name: &str) -> Result<Self, String> {
        let p = |f: &str| dir.join(format!("{name}-{f}"));
        let ossl = || {
            let mut c = Command::new("openssl");
            c.stdout(Stdio::null());
            c
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(ossl().args(["req", "-x509"]).args(ec).args([
            "-keyout",
            &p("ca.key").display().to_string(),
            "-out",
            &p("ca.pem").display().to_string(),
            "-days",
            "2",
            "-subj",
            &format!("/CN=stele test CA {name}"),
        ]))?;
        run(ossl().arg("req").args(ec).args([
            "-keyout",
            &p("srv.key").display().to_string(),
            "-out",
            &p("srv.csr").display().to_string(),
            "-subj",
            "/CN=localhost",
        ]))?;
        std::fs::write(
            p("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| e.to_string())?;
        run(ossl().args(["x509", "-req"]).args([
            "-in",
            &p("srv.csr").display().to_string(),
            "-CA",
            &p("ca.pem").display().to_string(),
            "-CAkey",
            &p("ca.key").display().to_string(),
            "-CAcreateserial",
            "-out",
            &p("srv.pem").display().to_string(),
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf").display().to_string(),
        ]))?;
        Ok(Self {
            ca: p("ca.pem"),
            cert: p("srv.pem"),
            key: p("srv.key"),
        })
    }
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Where `rsyslogd` is, if installed (`scripts/setup-siem`).
pub fn rsyslogd() -> Option<PathBuf> {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A real rsyslogd receiving RFC 5425 (TLS, octet counting) on a port.
#[derive(Debug)]
pub struct Rsyslog {
    child: Option<Child>,
    dir: PathBuf,
    /// The port.
    pub port: u16,
    /// The file it writes each message's structured data and text to.
    pub out: PathBuf,
}

impl Rsyslog {
    /// Start it in `dir` with `ca`'s server certificate on `port`.
    pub fn start(dir: &Path, ca: &TestCa, port: u16) -> Result<Self, String> {
        let bin = rsyslogd().ok_or("rsyslogd is not installed (run scripts/setup-siem)")?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = dir.join("received.log");
        let conf = dir.join("rsyslog.conf");
        let d = |p: &Path| p.display().to_string();
        std::fs::write(
            &conf,
            format!(
                r#"global(maxMessageSize="512k" workDirectory="{work}"
  DefaultNetstreamDriver="ossl" DefaultNetstreamDriverCAFile="{ca}"
  DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" ruleset="feed")
template(name="feedline" type="string" string="%msgid% %structured-data% %msg%\n")
ruleset(name="feed") {{ action(type="omfile" file="{out}" template="feedline" flushOnTXEnd="on" asyncWriting="off") }}
"#,
                work = d(dir),
                ca = d(&ca.ca),
                cert = d(&ca.cert),
                key = d(&ca.key),
                out = d(&out),
            ),
        )
        .map_err(|e| e.to_string())?;
        let pid = dir.join("rsyslogd.pid");
        let _ = std::fs::remove_file(&pid);
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let r = Self {
            child: Some(child),
            dir: dir.to_path_buf(),
            port,
            out,
        };
        // Listening?
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "rsyslogd did not listen on {port} (config {})",
                    conf.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(r)
    }

    /// Stop it (SIGTERM, then wait).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every message written so far, parsed (`MSGID SD MSG` per line).
    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (label, rest) = line.split_once(' ')?;
                let at = rest.find("] ")?;
                let (sd, msg) = (&rest[..at], &rest[at + 2..]);
                let msg = msg.trim_start_matches('\u{feff}');
                let event: Value = serde_json::from_str(msg).ok()?;
                let attr = |k: &str| {
                    let i = sd.find(&format!(" {k}=\""))? + k.len() + 3;
                    sd[i..].split('"').next().map(str::to_string)
                };
                Some(Received {
                    seq: attr("seq")?.parse().ok()?,
                    leaf_hash: attr("leaf")?,
                    label: label.to_string(),
                    event,
                })
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How the HTTP receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As the real thing.
    Normal,
    /// 503 (HEC "server is busy"; OTLP unavailable).
    Busy,
    /// 200 with a body that is not the protocol's answer.
    Garbage,
    /// Normal, after sleeping this long per request.
    Slow(Duration),
    /// HEC with indexer acknowledgement: answer an `ackId`, acknowledge on the second poll.
    Ack,
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    token: String,
    received: Vec<Received>,
    /// Records received (kept or not).
    count: u64,
    /// Whether records are kept (a benchmark only counts them).
    keep: bool,
    requests: u64,
    acks_polled: u64,
}

/// A HEC and OTLP/HTTP receiver on 127.0.0.1.
#[derive(Debug)]
pub struct HttpReceiver {
    inner: Arc<Mutex<Inner>>,
    /// Its address.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HttpReceiver {
    /// Start one accepting HEC token `token`, on `port` (0: any).
    pub fn start(token: &str, port: u16) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            mode: Mode::Normal,
            token: token.to_string(),
            received: Vec::new(),
            count: 0,
            keep: true,
            requests: 0,
            acks_polled: 0,
        }));
        Self::serve(inner, port)
    }

    fn serve(inner: Arc<Mutex<Inner>>, port: u16) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = axum::Router::new()
                    .route("/services/collector/event", axum::routing::post(hec_event))
                    .route("/services/collector/ack", axum::routing::post(hec_ack))
                    .route("/v1/logs", axum::routing::post(otlp_logs))
                    .with_state(state);
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        Ok(Self {
            inner,
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Change how it answers.
    pub fn set_mode(&self, m: Mode) {
        lock(&self.inner).mode = m;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.inner).received.clone()
    }

    /// Records received so far (also when not kept).
    pub fn count(&self) -> u64 {
        lock(&self.inner).count
    }

    /// Count records without keeping them (for a million of them).
    pub fn count_only(&self) {
        lock(&self.inner).keep = false;
    }

    /// Requests answered so far (any outcome).
    pub fn requests(&self) -> u64 {
        lock(&self.inner).requests
    }

    /// Ack polls answered so far.
    pub fn acks_polled(&self) -> u64 {
        lock(&self.inner).acks_polled
    }

    /// Stop listening (connections are refused until [`HttpReceiver::restart`]).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Listen again on the same port, keeping what was received.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let start = Instant::now();
        loop {
            match Self::serve(self.inner.clone(), self.addr.port()) {
                Ok(mut s) => {
                    self.stop = s.stop.take();
                    self.thread = s.thread.take();
                    return Ok(());
                }
                Err(e) if start.elapsed() > Duration::from_secs(5) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keep(inner: &Mutex<Inner>, got: Vec<Received>) {
    let mut g = lock(inner);
    g.count += got.len() as u64;
    if g.keep {
        g.received.extend(got);
    }
}

async fn before(inner: &Mutex<Inner>) -> Mode {
    let mode = {
        let mut g = lock(inner);
        g.requests += 1;
        g.mode
    };
    if let Mode::Slow(d) = mode {
        tokio::time::sleep(d).await;
    }
    mode
}

fn json(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn hec_event(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mode = before(&inner).await;
    let token = lock(&inner).token.clone();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Splunk {token}") {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"text": "Invalid authorization", "code": 3}),
        );
    }
    match mode {
        Mode::Busy => {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"text": "Server is busy", "code": 9}),
            )
        }
        Mode::Garbage => return (StatusCode::OK, "<html>welcome</html>").into_response(),
        _ => {}
    }
    // The HEC wire: JSON event objects one after another.
    let mut got = Vec::new();
    for v in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        let Ok(v) = v else {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"text": "Invalid data format", "code": 6}),
            );
        };
        let (Some(event), Some(fields), Some(_time)) = (
            v.get("event"),
            v.get("fields"),
            v.get("time").and_then(Value::as_f64),
        ) else {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"text": "Event field is required", "code": 12}),
            );
        };
        let f = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        got.push(Received {
            seq: f("stele_seq").parse().unwrap_or(u64::MAX),
            leaf_hash: f("stele_leaf_hash"),
            label: f("stele_record"),
            event: event.clone(),
        });
    }
    keep(&inner, got);
    if mode == Mode::Ack {
        return json(
            StatusCode::OK,
            serde_json::json!({"text": "Success", "code": 0, "ackId": 7}),
        );
    }
    json(
        StatusCode::OK,
        serde_json::json!({"text": "Success", "code": 0}),
    )
}

async fn hec_ack(State(inner): State<Arc<Mutex<Inner>>>, body: Bytes) -> Response {
    let n = {
        let mut g = lock(&inner);
        g.acks_polled += 1;
        g.acks_polled
    };
    let ids: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = ids["acks"][0].as_u64().unwrap_or(0);
    json(
        StatusCode::OK,
        serde_json::json!({"acks": {id.to_string(): n >= 2}}),
    )
}

async fn otlp_logs(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mode = before(&inner).await;
    match mode {
        Mode::Busy => return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response(),
        Mode::Garbage => return (StatusCode::OK, "<html>welcome</html>").into_response(),
        _ => {}
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "protobuf only").into_response();
    }
    let Ok(req) = ExportLogsServiceRequest::decode(body.as_ref()) else {
        return (StatusCode::BAD_REQUEST, "not an ExportLogsServiceRequest").into_response();
    };
    let mut got = Vec::new();
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let attr = |k: &str| {
                    r.attributes
                        .iter()
                        .find(|a| a.key == k)
                        .and_then(|a| a.value.as_ref())
                        .and_then(|v| v.value.clone())
                };
                let seq = match attr("stele.log.index") {
                    Some(any_value::Value::IntValue(i)) => i as u64,
                    _ => u64::MAX,
                };
                let text = |v: Option<any_value::Value>| match v {
                    Some(any_value::Value::StringValue(s)) => s,
                    _ => String::new(),
                };
                let body = text(r.body.as_ref().and_then(|b| b.value.clone()));
                got.push(Received {
                    seq,
                    leaf_hash: text(attr("stele.leaf.hash")),
                    label: text(attr("stele.record")),
                    event: serde_json::from_str(&body).unwrap_or(Value::Null),
                });
            }
        }
    }
    keep(&inner, got);
    let resp = ExportLogsServiceResponse::default().encode_to_vec();
    (
        StatusCode::OK,
        [("content-type", "application/x-protobuf")],
        resp,
    )
        .into_response()
}

/// Wait until `f` holds or `secs` pass; whether it held.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
