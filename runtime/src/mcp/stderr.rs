//! The tail of a stdio server's stderr, kept while it runs so that a
//! failure (a crash, a failed start, a broken listing) can be logged with
//! what the server said last. It outlives the connection: a server that
//! dies during start-up leaves no connection, only its tail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::task::JoinHandle;

/// How much of a server's stderr is kept (the tail).
pub const STDERR_TAIL: usize = 8 * 1024;

#[derive(Debug, Default)]
struct Inner {
    bytes: Mutex<VecDeque<u8>>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

/// The last [`STDERR_TAIL`] bytes a server wrote to stderr. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct StderrTail {
    inner: Arc<Inner>,
}

impl StderrTail {
    /// An empty tail (a server that has not started, or has no stderr).
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the end of what `err` produces, read on the current tokio
    /// runtime until the stream ends.
    pub fn follow<R: tokio::io::AsyncRead + Unpin + Send + 'static>(&self, mut err: R) {
        let inner = self.inner.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut t = inner.bytes.lock().unwrap_or_else(PoisonError::into_inner);
                t.extend(&buf[..n]);
                let excess = t.len().saturating_sub(STDERR_TAIL);
                t.drain(..excess);
            }
        });
        *self
            .inner
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reader);
    }

    /// What has been kept so far (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let t = self
            .inner
            .bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (a, b) = t.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).into_owned()
    }

    /// The tail once the stream has ended, waiting at most `grace` for the
    /// end (a server that has exited or been killed: everything it wrote is
    /// in the pipe). A stream still open after `grace` (a child of the
    /// server holding it) gives what was read by then.
    pub async fn settled(&self, grace: Duration) -> String {
        let reader = self
            .inner
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(r) = reader {
            let _ = tokio::time::timeout(grace, r).await;
        }
        self.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_only_the_tail_and_settles_at_the_end() {
        let (mut w, r) = tokio::io::duplex(1024);
        let tail = StderrTail::new();
        tail.follow(r);
        let head = vec![b'a'; STDERR_TAIL];
        tokio::io::AsyncWriteExt::write_all(&mut w, &head)
            .await
            .unwrap_or_default();
        tokio::io::AsyncWriteExt::write_all(&mut w, b"the end\n")
            .await
            .unwrap_or_default();
        drop(w);
        let t = tail.settled(Duration::from_secs(5)).await;
        assert_eq!(t.len(), STDERR_TAIL);
        assert!(t.ends_with("aaathe end\n"), "{t}");
    }

    #[tokio::test]
    async fn an_open_stream_gives_what_was_read_after_the_grace() {
        let (mut w, r) = tokio::io::duplex(1024);
        let tail = StderrTail::new();
        tail.follow(r);
        tokio::io::AsyncWriteExt::write_all(&mut w, b"still running")
            .await
            .unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = tail.settled(Duration::from_millis(50)).await;
        assert_eq!(t, "still running");
        drop(w);
    }
}
