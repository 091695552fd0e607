//! The guest end of the egress path: a listener on 127.0.0.1:3128 (the
//! address `HTTP(S)_PROXY` names) whose connections are carried as streams
//! over the channel to the host, which hands each to stele's egress proxy.
//! The guest has no network interface, so this is its only way out.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use super::{Sender, Streams};
use crate::exec::PROXY_PORT;
use crate::vm::protocol::{Bytes, GuestMsg, CHUNK};

/// Listen and forward, on a background thread.
pub(crate) fn start(tx: Sender, streams: Streams) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", PROXY_PORT))
        .map_err(|e| format!("proxy forwarder: bind 127.0.0.1:{PROXY_PORT}: {e}"))?;
    std::thread::Builder::new()
        .name("forwarder".into())
        .spawn(move || accept_loop(&listener, &tx, &streams))
        .map_err(|e| format!("proxy forwarder: {e}"))?;
    Ok(())
}

fn accept_loop(listener: &TcpListener, tx: &Sender, streams: &Streams) {
    let next = Arc::new(AtomicU64::new(1));
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        let _ = client.set_nodelay(true);
        let Ok(reader) = client.try_clone() else {
            continue;
        };
        let id = next.fetch_add(1, Ordering::Relaxed);
        streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, client);
        tx.send(&GuestMsg::ProxyOpen { stream: id });
        let (tx, streams) = (tx.clone(), streams.clone());
        let _ = std::thread::Builder::new()
            .name(format!("fwd-{id}"))
            .spawn(move || from_client(reader, id, &tx, &streams));
    }
}

/// Client → host.
fn from_client(mut client: TcpStream, id: u64, tx: &Sender, streams: &Streams) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => tx.send(&GuestMsg::ProxyData {
                stream: id,
                data: Bytes(buf[..n].to_vec()),
            }),
        }
    }
    tx.send(&GuestMsg::ProxyClose { stream: id });
    let _ = client.shutdown(Shutdown::Read);
    let mut map = streams.lock().unwrap_or_else(PoisonError::into_inner);
    // Keep the stream if the host may still be sending the reply.
    if let Some(s) = map.get(&id) {
        if s.peer_addr().is_err() {
            map.remove(&id);
        }
    }
}

/// Host → client.
pub(crate) fn to_client(streams: &Streams, tx: &Sender, id: u64, data: &[u8]) {
    let stream = streams
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        .and_then(|s| s.try_clone().ok());
    let Some(mut s) = stream else { return };
    if s.write_all(data).is_err() {
        close(streams, id);
        tx.send(&GuestMsg::ProxyClose { stream: id });
    }
}

/// The host closed the stream: no more data for the client.
pub(crate) fn close(streams: &Streams, id: u64) {
    if let Some(s) = streams
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id)
    {
        let _ = s.shutdown(Shutdown::Write);
    }
}
