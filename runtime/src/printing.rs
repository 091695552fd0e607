//! Printing to stdout and stderr without panicking when the reader goes
//! away (`stele audit show | head -1`, a closed terminal): `println!`
//! panics on a write error, these macros never do. A closed pipe (EPIPE)
//! is the reader's choice to stop: later output is dropped and the command
//! ends as it would have. Any other write error (a full disk behind a
//! redirection) is remembered, and `stele` exits with
//! [`EXIT_OUTPUT_FAILED`] saying so, so output is never silently short.
//!
//! The crate denies `print!`, `println!`, `eprint!` and `eprintln!`
//! (`clippy::print_stdout`, `clippy::print_stderr`): every printing path
//! goes through here.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// Exit code when stdout or stderr could not be written (other than a
/// closed pipe).
pub const EXIT_OUTPUT_FAILED: u8 = 74;

const OK: u8 = 0;
const CLOSED: u8 = 1;
const FAILED: u8 = 2;

static STDOUT: AtomicU8 = AtomicU8::new(OK);
static STDERR: AtomicU8 = AtomicU8::new(OK);
static FIRST_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

impl Stream {
    fn state(self) -> &'static AtomicU8 {
        match self {
            Stream::Out => &STDOUT,
            Stream::Err => &STDERR,
        }
    }
}

/// Write `args` (and a line feed with `newline`) to `stream`; never panics.
pub fn write(stream: Stream, args: fmt::Arguments<'_>, newline: bool) {
    let state = stream.state();
    if state.load(Ordering::Relaxed) != OK {
        return;
    }
    let result = match stream {
        Stream::Out => {
            let mut w = std::io::stdout().lock();
            w.write_fmt(args)
                .and_then(|()| if newline { w.write_all(b"\n") } else { Ok(()) })
                .and_then(|()| w.flush())
        }
        Stream::Err => {
            let mut w = std::io::stderr().lock();
            w.write_fmt(args)
                .and_then(|()| if newline { w.write_all(b"\n") } else { Ok(()) })
        }
    };
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            state.store(CLOSED, Ordering::Relaxed);
        } else {
            state.store(FAILED, Ordering::Relaxed);
            let mut first = FIRST_ERROR.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                let name = match stream {
                    Stream::Out => "standard output",
                    Stream::Err => "standard error",
                };
                *first = Some(format!("could not write to {name}: {e}"));
            }
        }
    }
}

/// Whether the reader of `stream` has gone away (a closed pipe): a command
/// printing many lines may stop early.
pub fn closed(stream: Stream) -> bool {
    stream.state().load(Ordering::Relaxed) == CLOSED
}

/// The first write error other than a closed pipe, if any.
pub fn failure() -> Option<String> {
    FIRST_ERROR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// `println!` that never panics (see [`crate::printing`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::printing::write($crate::printing::Stream::Out, format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::printing::write($crate::printing::Stream::Out, format_args!($($arg)*), true)
    };
}

/// `print!` that never panics (see [`crate::printing`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::printing::write($crate::printing::Stream::Out, format_args!($($arg)*), false)
    };
}

/// `eprintln!` that never panics (see [`crate::printing`]).
#[macro_export]
macro_rules! errln {
    () => {
        $crate::printing::write($crate::printing::Stream::Err, format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::printing::write($crate::printing::Stream::Err, format_args!($($arg)*), true)
    };
}

/// `eprint!` that never panics (see [`crate::printing`]).
#[macro_export]
macro_rules! errout {
    ($($arg:tt)*) => {
        $crate::printing::write($crate::printing::Stream::Err, format_args!($($arg)*), false)
    };
}
