//! Running `stele` on a pseudo-terminal (util-linux `script`) and answering
//! its approval prompt as a person would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stele_runtime::gate::approval::{PROMPT_END, PROMPT_START};

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Run `c` on a pseudo-terminal (util-linux `script`), answer the approval
/// prompt with `answer` once it is on the screen (`None`: expect no prompt),
/// and return the exit code and everything the terminal showed (line ends as
/// `\n`).
pub fn run_on_pty(c: &Command, answer: Option<&str>) -> Option<(i32, String)> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: util-linux `script` is needed for a pseudo-terminal");
        return None;
    }
    let line: Vec<String> = std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| sh_quote(&a.to_string_lossy()))
        .collect();
    let mut pty = Command::new("script");
    pty.args(["-qefc", &line.join(" "), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            pty.env(k, v);
        }
    }
    let mut child = pty.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = child.stdout.take().unwrap();
    let screen = Arc::new(Mutex::new(Vec::new()));
    let sink = screen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let shown =
        |s: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&s.lock().unwrap()).replace("\r\n", "\n");
    let started = Instant::now();
    let mut answered = false;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("hung on the terminal:\n{}", shown(&screen));
        }
        if let (false, Some(answer)) = (answered, answer) {
            if shown(&screen).contains(PROMPT_END) {
                stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
                stdin.flush().unwrap();
                answered = true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    reader.join().unwrap();
    let screen = shown(&screen);
    match answer {
        Some(_) => assert!(answered, "no prompt appeared:\n{screen}"),
        None => assert!(!screen.contains(PROMPT_START), "prompted:\n{screen}"),
    }
    Some((code, screen))
}

/// The text between the prompt's frame on the terminal.
pub fn prompt_text(screen: &str) -> &str {
    let start = screen.find(PROMPT_START).expect("prompt shown") + PROMPT_START.len();
    let len = screen[start..].find(PROMPT_END).expect("prompt ends");
    &screen[start..start + len]
}
