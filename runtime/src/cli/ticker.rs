//! Progress for anything that takes more than a second: on a terminal
//! (stderr), one line that says what is happening and for how long,
//! rewritten in place and cleared when the work ends. Without a terminal
//! nothing is drawn (a log file gets no spinner frames).

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Held while a person is asked something (an approval prompt): no line
/// is drawn over the question.
static HOLD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Stop drawing progress lines (and clear the one shown) until [`release`].
pub fn hold() {
    HOLD.fetch_add(1, Ordering::SeqCst);
    // The drawing thread clears its line at its next tick; a prompt printed
    // now starts on a line of its own either way. Only a terminal has a
    // line to clear: a pipe or a log file gets no control characters.
    if std::io::stderr().is_terminal() {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

/// Draw progress lines again.
pub fn release() {
    let _ = HOLD.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

/// `inner`, with progress lines held while it asks a person.
pub fn quiet_while_asking(inner: Box<dyn crate::gate::Approver>) -> Box<dyn crate::gate::Approver> {
    use crate::gate::approval::{ApprovalEvent, Observed};
    Box::new(Observed::new(inner, |e: ApprovalEvent<'_>| match e {
        ApprovalEvent::Asked { .. } => hold(),
        ApprovalEvent::Answered { .. } => release(),
    }))
}

/// How long work may take before the line appears.
const QUIET_FOR: Duration = Duration::from_secs(1);
/// How often the line is redrawn.
const EVERY: Duration = Duration::from_millis(250);

/// A running progress line; dropping it clears the line.
#[derive(Debug)]
pub struct Ticker {
    shared: Option<Arc<Shared>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    label: Mutex<String>,
    done: AtomicBool,
    drawn: AtomicBool,
    started: Instant,
}

impl Ticker {
    /// Start a line saying `label` (shown after a second, on a terminal only).
    pub fn start(label: &str) -> Ticker {
        if !std::io::stderr().is_terminal() {
            return Ticker {
                shared: None,
                thread: None,
            };
        }
        let shared = Arc::new(Shared {
            label: Mutex::new(crate::terminal_safe::line(label)),
            done: AtomicBool::new(false),
            drawn: AtomicBool::new(false),
            started: Instant::now(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("stele-progress".into())
            .spawn(move || draw_until_done(&s))
            .ok();
        Ticker {
            shared: Some(shared),
            thread,
        }
    }

    /// Say what is happening now.
    pub fn set(&self, label: &str) {
        if let Some(s) = &self.shared {
            *s.label.lock().unwrap_or_else(PoisonError::into_inner) =
                crate::terminal_safe::line(label);
        }
    }

    /// Print `line` above the progress line (which is redrawn after it).
    pub fn println(&self, line: &str) {
        match &self.shared {
            Some(s) if s.drawn.load(Ordering::Relaxed) => {
                let _ = writeln!(std::io::stderr(), "\r\x1b[2K{line}");
            }
            _ => crate::errln!("{line}"),
        }
    }
}

fn draw_until_done(s: &Shared) {
    let mut frame = 0usize;
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    while !s.done.load(Ordering::Relaxed) {
        std::thread::sleep(EVERY);
        let elapsed = s.started.elapsed();
        if elapsed < QUIET_FOR || s.done.load(Ordering::Relaxed) {
            continue;
        }
        if HOLD.load(Ordering::SeqCst) > 0 {
            s.drawn.store(false, Ordering::Relaxed);
            continue;
        }
        let label = s
            .label
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        frame = frame.wrapping_add(1);
        // Cut to fit a narrow terminal without wrapping (a wrapped line
        // cannot be rewritten in place).
        let text: String = format!("{} {label} ({})", FRAMES[frame % 4], elapsed_text(elapsed))
            .chars()
            .take(100)
            .collect();
        let _ = write!(std::io::stderr(), "\r\x1b[2K{text}");
        s.drawn.store(true, Ordering::Relaxed);
    }
}

/// `42s`, `3m05s`.
pub fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.done.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            if s.drawn.load(Ordering::Relaxed) {
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_reads_as_minutes_and_seconds() {
        assert_eq!(elapsed_text(Duration::from_millis(900)), "0s");
        assert_eq!(elapsed_text(Duration::from_secs(59)), "59s");
        assert_eq!(elapsed_text(Duration::from_secs(185)), "3m05s");
    }
}
