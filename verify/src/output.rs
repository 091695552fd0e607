//! Writing to stdout and stderr without panicking when the reader goes away
//! (`stele-verify … | head -1`): a closed pipe is the reader's choice and
//! later output is dropped; any other write error is remembered and the
//! command exits with [`EXIT_OUTPUT_FAILED`], so output is never silently
//! short. Report files are written whole or not at all.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// Exit code when the output could not be written.
pub const EXIT_OUTPUT_FAILED: u8 = 74;

const OK: u8 = 0;
const DONE: u8 = 1;

static STDOUT: AtomicU8 = AtomicU8::new(OK);
static STDERR: AtomicU8 = AtomicU8::new(OK);
static FIRST_ERROR: Mutex<Option<String>> = Mutex::new(None);

fn write(to_stdout: bool, args: std::fmt::Arguments<'_>) {
    let state = if to_stdout { &STDOUT } else { &STDERR };
    if state.load(Ordering::Relaxed) != OK {
        return;
    }
    let r = if to_stdout {
        let mut w = std::io::stdout().lock();
        w.write_fmt(args).and_then(|()| w.flush())
    } else {
        std::io::stderr().lock().write_fmt(args)
    };
    if let Err(e) = r {
        state.store(DONE, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut first = FIRST_ERROR.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                let name = if to_stdout {
                    "standard output"
                } else {
                    "standard error"
                };
                *first = Some(format!("could not write to {name}: {e}"));
            }
        }
    }
}

/// Write to standard output.
pub fn out(args: std::fmt::Arguments<'_>) {
    write(true, args);
}

/// Write to standard error.
pub fn err(args: std::fmt::Arguments<'_>) {
    write(false, args);
}

/// The first write error other than a closed pipe.
pub fn failure() -> Option<String> {
    FIRST_ERROR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Write `bytes` to `path` whole: into a temporary file beside it, synced,
/// then renamed over it.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}
