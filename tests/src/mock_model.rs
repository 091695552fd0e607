//! A mock model server for tests: speaks the real Anthropic Messages and OpenAI Chat Completions
//! wire formats (streamed as SSE, or whole JSON bodies), answers from a queue of scripted
//! [`Reply`]s, records every request it receives, and injects faults on demand.
//!
//! It listens on 127.0.0.1 only, on its own thread and tokio runtime, so both async tests and
//! plain tests that run the `stele` binary can use it. Dropping it stops it. Beyond the queue,
//! a responder ([`MockModel::respond_with`]) can answer from the request itself (a model that
//! reads its tool results), and [`Reply::Outage`] closes the port for a while (connections
//! refused), then listens again on the same port.
//!
//! ```no_run
//! use stele_tests::mock_model::{MockModel, Reply, Turn};
//! let mock = MockModel::start()?;
//! mock.push(Reply::rate_limited("1"));
//! mock.push(Turn::new().text("Reading.").tool_use("t1", "read_file", serde_json::json!({"path": "a"})).into());
//! // point a provider at mock.base_url(), then inspect mock.requests()
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

mod handle;
mod script;
mod wire;
pub use script::{Block, Reply, Turn, Wire};

/// Answers a request when the queue is empty.
pub type Responder = Box<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

/// A request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The wire format (from the path); `None` for unknown paths (answered 404).
    pub wire: Option<Wire>,
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    replies: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
    responder: Option<Responder>,
    /// Tells the server loop to close the port for a while.
    outage: Option<tokio::sync::mpsc::UnboundedSender<Duration>>,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(s: &SharedState) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running mock server.
pub struct MockModel {
    addr: SocketAddr,
    state: SharedState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MockModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockModel")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MockModel {
    /// Start a server on 127.0.0.1 with an OS-chosen port.
    pub fn start() -> std::io::Result<Self> {
        let state = SharedState::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (outage_tx, outage_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
        lock(&state).outage = Some(outage_tx);
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("mock-model".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(serve(shared, addr_tx, stop_rx, outage_rx));
                rt.shutdown_timeout(Duration::from_millis(200));
            })?;
        let addr = addr_rx
            .recv()
            .map_err(|_| std::io::Error::other("mock model thread ended before listening"))??;
        Ok(Self {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Answer requests with `f` whenever the queue is empty.
    pub fn respond_with(&self, f: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) {
        lock(&self.state).responder = Some(Box::new(f));
    }

    /// `http://127.0.0.1:PORT`, the base URL to give a provider.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queue a reply for the next request.
    pub fn push(&self, reply: Reply) {
        lock(&self.state).replies.push_back(reply);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// How many queued replies have not been used.
    pub fn pending(&self) -> usize {
        lock(&self.state).replies.len()
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Listen, answer, and on an outage close the port for a while and listen again on it.
async fn serve(
    shared: SharedState,
    addr_tx: std::sync::mpsc::Sender<std::io::Result<SocketAddr>>,
    mut stop_rx: tokio::sync::oneshot::Receiver<()>,
    mut outage_rx: tokio::sync::mpsc::UnboundedReceiver<Duration>,
) {
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(l) => l,
        Err(e) => {
            let _ = addr_tx.send(Err(e));
            return;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            let _ = addr_tx.send(Err(e));
            return;
        }
    };
    let _ = addr_tx.send(Ok(addr));
    let mut listener = Some(listener);
    loop {
        let Some(l) = listener.take() else { return };
        // Requests of real sessions may be large (a conversation holding a big tool input).
        let app = axum::Router::new()
            .fallback(handle::handle)
            .layer(axum::extract::DefaultBodyLimit::max(512 << 20))
            .with_state(shared.clone());
        // Stop abruptly: a stalled response must not keep the test waiting.
        tokio::select! {
            _ = axum::serve(l, app) => return,
            _ = &mut stop_rx => return,
            d = outage_rx.recv() => {
                let Some(d) = d else { return };
                // The listener is dropped with the serve future: connections are refused.
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = &mut stop_rx => return,
                }
                // Listen on the same port again (the listener sets SO_REUSEADDR).
                let mut tries = 0;
                listener = loop {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => break Some(l),
                        Err(_) if tries < 50 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(_) => break None,
                    }
                };
            }
        }
    }
}
