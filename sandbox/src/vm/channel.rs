//! The host end of the guest channel: one reader thread demultiplexes the
//! agent's frames to the commands waiting for them and to proxy streams,
//! which it connects to stele's egress proxy.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::error::VmError;
use super::protocol::{
    read_frame, write_frame, Bytes, ExitReport, FsOutcome, GuestMsg, HostMsg, ReadyReport,
    StreamKind, CHUNK,
};

/// What a waiting command receives.
#[derive(Debug)]
pub(crate) enum ExecEvent {
    /// A chunk of output.
    Output(StreamKind, Vec<u8>),
    /// The command finished.
    Exited(ExitReport),
    /// The answer to a ping.
    Pong,
    /// The answer to a file request.
    Fs(FsOutcome),
    /// The command could not be started.
    Failed {
        /// Why.
        error: String,
        /// The errno, when there is one.
        errno: Option<i32>,
    },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The channel to one guest agent.
pub(crate) struct Channel {
    writer: Mutex<UnixStream>,
    execs: Mutex<HashMap<u64, mpsc::Sender<ExecEvent>>>,
    upstreams: Mutex<HashMap<u64, TcpStream>>,
    proxy: Option<SocketAddr>,
    alive: AtomicBool,
}

impl Channel {
    /// Wait up to `timeout` for the agent's `Ready`, then serve the channel
    /// on a background thread. Proxy streams go to `proxy` (none: refused).
    pub fn start(
        stream: UnixStream,
        timeout: Duration,
        proxy: Option<SocketAddr>,
    ) -> Result<(Arc<Channel>, ReadyReport), VmError> {
        let err = |e: std::io::Error| VmError::Channel(e.to_string());
        let reader = stream.try_clone().map_err(err)?;
        reader.set_read_timeout(Some(timeout)).map_err(err)?;
        let mut reader = BufReader::with_capacity(1 << 16, reader);
        let first: Option<GuestMsg> = read_frame(&mut reader).map_err(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                VmError::BootTimeout {
                    timeout_ms: timeout.as_millis(),
                    detail: "no ready message from the agent".into(),
                }
            } else {
                VmError::Channel(e.to_string())
            }
        })?;
        let ready = match first {
            Some(GuestMsg::Ready(r)) => r,
            Some(other) => {
                return Err(VmError::Channel(format!(
                    "expected ready from the agent, got {other:?}"
                )))
            }
            None => return Err(VmError::Channel("the agent closed the channel".into())),
        };
        reader.get_ref().set_read_timeout(None).map_err(err)?;
        let channel = Arc::new(Channel {
            writer: Mutex::new(stream),
            execs: Mutex::new(HashMap::new()),
            upstreams: Mutex::new(HashMap::new()),
            proxy,
            alive: AtomicBool::new(true),
        });
        let me = channel.clone();
        std::thread::Builder::new()
            .name("stele-vm-channel".into())
            .spawn(move || me.read_loop(reader))
            .map_err(err)?;
        Ok((channel, ready))
    }

    /// Send one message to the agent.
    pub fn send(&self, msg: &HostMsg) -> Result<(), VmError> {
        if !self.alive.load(Ordering::SeqCst) {
            return Err(VmError::Channel("the guest agent is gone".into()));
        }
        write_frame(&mut *lock(&self.writer), msg).map_err(|e| VmError::Channel(e.to_string()))
    }

    /// Route events of command `id` to the returned receiver.
    pub fn register(&self, id: u64) -> mpsc::Receiver<ExecEvent> {
        let (tx, rx) = mpsc::channel();
        lock(&self.execs).insert(id, tx);
        rx
    }

    /// Stop routing events of command `id`.
    pub fn unregister(&self, id: u64) {
        lock(&self.execs).remove(&id);
    }

    fn read_loop(self: Arc<Self>, mut reader: BufReader<UnixStream>) {
        while let Ok(Some(msg)) = read_frame::<_, GuestMsg>(&mut reader) {
            self.dispatch(msg);
        }
        self.alive.store(false, Ordering::SeqCst);
        // Waiting commands see their sender dropped.
        lock(&self.execs).clear();
        for (_, s) in lock(&self.upstreams).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn dispatch(self: &Arc<Self>, msg: GuestMsg) {
        let to_exec = |id: u64, ev: ExecEvent| {
            if let Some(tx) = lock(&self.execs).get(&id) {
                let _ = tx.send(ev);
            }
        };
        match msg {
            GuestMsg::Ready(_) => {}
            GuestMsg::Pong { id } => to_exec(id, ExecEvent::Pong),
            GuestMsg::FsDone { id, outcome } => to_exec(id, ExecEvent::Fs(outcome)),
            GuestMsg::Output { id, stream, data } => to_exec(id, ExecEvent::Output(stream, data.0)),
            GuestMsg::Exited(report) => to_exec(report.id, ExecEvent::Exited(report)),
            GuestMsg::Failed { id, error, errno } => {
                to_exec(id, ExecEvent::Failed { error, errno })
            }
            GuestMsg::ProxyOpen { stream } => self.open_upstream(stream),
            GuestMsg::ProxyData { stream, data } => {
                let up = lock(&self.upstreams)
                    .get(&stream)
                    .and_then(|s| s.try_clone().ok());
                if let Some(mut up) = up {
                    if up.write_all(&data.0).is_err() {
                        self.close_upstream(stream);
                    }
                }
            }
            GuestMsg::ProxyClose { stream } => {
                if let Some(s) = lock(&self.upstreams).get(&stream) {
                    let _ = s.shutdown(Shutdown::Write);
                }
            }
        }
    }

    /// Connect a new guest proxy client to the egress proxy.
    fn open_upstream(self: &Arc<Self>, stream: u64) {
        let connected = self
            .proxy
            .ok_or(())
            .and_then(|addr| TcpStream::connect(addr).map_err(|_| ()));
        let up = match connected {
            Ok(s) => s,
            Err(()) => {
                let _ = self.send(&HostMsg::ProxyClose { stream });
                return;
            }
        };
        let _ = up.set_nodelay(true);
        let Ok(reader) = up.try_clone() else {
            let _ = self.send(&HostMsg::ProxyClose { stream });
            return;
        };
        lock(&self.upstreams).insert(stream, up);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("stele-vm-proxy-{stream}"))
            .spawn(move || me.pump_upstream(reader, stream));
        if spawned.is_err() {
            self.close_upstream(stream);
        }
    }

    /// Egress proxy → guest client.
    fn pump_upstream(&self, mut up: TcpStream, stream: u64) {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match up.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = HostMsg::ProxyData {
                        stream,
                        data: Bytes(buf[..n].to_vec()),
                    };
                    if self.send(&msg).is_err() {
                        break;
                    }
                }
            }
        }
        self.close_upstream(stream);
    }

    fn close_upstream(&self, stream: u64) {
        if let Some(s) = lock(&self.upstreams).remove(&stream) {
            let _ = s.shutdown(Shutdown::Both);
            let _ = self.send(&HostMsg::ProxyClose { stream });
        }
    }
}
