//! When a caught-up sink looks at the log again, and who the feed's own
//! entries say ran it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use stele_audit::CommitWatch;

/// How a caught-up sink learns that the log grew.
#[derive(Debug, Clone)]
pub enum Wake {
    /// Poll the log's size every `poll_ms` (`stele audit feed run`: the
    /// writer is another process).
    Poll,
    /// Wake as soon as the writer in this process commits (`stele serve`,
    /// which holds the log), polling every `poll_ms` only as a fallback.
    OnCommit(CommitWatch),
}

/// Longest wait before the stop flag is looked at again (a long `poll_ms`
/// must not hold up a stop).
const STOP_CHECK: Duration = Duration::from_millis(100);

impl Wake {
    /// Wait until the log grew past `size` (or might have: `poll` passed),
    /// or `stop` is set.
    pub fn wait(&self, size: u64, poll: Duration, stop: &AtomicBool) {
        let deadline = Instant::now() + poll;
        loop {
            let now = Instant::now();
            if now >= deadline || stop.load(Ordering::Relaxed) {
                return;
            }
            let slice = (deadline - now).min(STOP_CHECK);
            match self {
                Wake::Poll => std::thread::sleep(slice),
                Wake::OnCommit(w) => {
                    if w.wait_past(size, slice) > size {
                        return;
                    }
                }
            }
        }
    }
}

/// Who runs the feed: named in its entries (`data.command`), so a reader of
/// the log can tell the CLI's feed from the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedHost {
    /// `stele audit feed run`.
    AuditFeedRun,
    /// `stele serve` with `[[feed]]` sinks.
    Serve,
}

impl FeedHost {
    /// The command, as the entries name it.
    pub fn command(self) -> &'static str {
        match self {
            FeedHost::AuditFeedRun => "audit feed run",
            FeedHost::Serve => "serve",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_ends_even_an_hour_long_poll() {
        let stop = AtomicBool::new(true);
        let began = Instant::now();
        Wake::Poll.wait(0, Duration::from_secs(3600), &stop);
        // Returned at once instead of after the hour (no timing bound
        // needed: the test would hang otherwise).
        assert!(began.elapsed() < Duration::from_secs(3600));
    }

    #[test]
    fn the_host_names_its_command() {
        assert_eq!(FeedHost::Serve.command(), "serve");
        assert_eq!(FeedHost::AuditFeedRun.command(), "audit feed run");
    }
}
