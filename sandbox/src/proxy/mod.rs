//! The egress proxy: HTTP CONNECT and plain-HTTP forwarding, every
//! destination decided by the [`Mediator`](crate::Mediator).

use std::net::TcpListener;
use std::sync::Arc;

use crate::{Mediator, Requester};

/// Errors from starting or stopping the egress proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// An I/O error on the listener.
    #[error("proxy listener: {0}")]
    Io(#[from] std::io::Error),
    /// Not implemented yet (skeleton).
    #[error("not implemented")]
    Unimplemented,
}

/// A running egress proxy; [`EgressProxy::stop`] ends it.
#[derive(Debug)]
pub struct EgressProxy {
    _private: (),
}

impl EgressProxy {
    /// Serve HTTP CONNECT and plain-HTTP proxy connections accepted on
    /// `listener`, asking the mediator for every (host, port).
    pub fn serve(
        listener: TcpListener,
        mediator: Arc<dyn Mediator>,
        requester: Requester,
    ) -> Result<EgressProxy, ProxyError> {
        let _ = (listener, mediator, requester);
        Err(ProxyError::Unimplemented)
    }

    /// Stop accepting, close open connections and join the proxy threads.
    pub fn stop(self) -> Result<(), ProxyError> {
        Ok(())
    }
}
