//! Asking a human: on a terminal, a prompt showing exactly what would happen;
//! without one, the configured answer. Never a silent allow.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Mutex;

/// What the approver was shown and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalAnswer {
    /// Granted or refused.
    pub outcome: stele_policy::ApprovalOutcome,
    /// Who answered (a person, or `flag:--approve` for a configured answer).
    pub approver: String,
    /// How (`tty`, `flag`, …).
    pub method: String,
}

/// Decides `Ask` requests.
pub trait Approver: Send + Sync + std::fmt::Debug {
    /// Show `text` (exactly what would happen) and return the answer.
    fn ask(&self, text: &str) -> ApprovalAnswer;
}

/// How requests that need a human's approval are answered (`--approve`).
/// Unset, [`default_mode`] picks `prompt` on a terminal and `deny` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApproveMode {
    /// Refuse every request that needs approval (the default without a terminal).
    Deny,
    /// Approve every request that needs approval; each approval is logged as given by the flag.
    Allow,
    /// Ask on the terminal (the default with one); refuse when there is none.
    Prompt,
}

/// The mode when neither a flag nor the configuration sets one: ask on the
/// terminal when stdin and stderr are one, else refuse.
pub fn default_mode() -> ApproveMode {
    match Terminal::detect() {
        Terminal::Present => ApproveMode::Prompt,
        Terminal::Absent => ApproveMode::Deny,
    }
}

/// Whether a person can be asked at this process's terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// stdin and stderr are both terminals.
    Present,
    /// At least one of them is not.
    Absent,
}

impl Terminal {
    /// Look at stdin and stderr (what [`TtyApprover`] reads and writes).
    pub fn detect() -> Self {
        if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            Terminal::Present
        } else {
            Terminal::Absent
        }
    }
}

// The escaping rule is shared by every printing command.
pub use crate::terminal_safe::{terminal_safe, Newlines};

/// An argument list as an approver should read it: plain words as they are,
/// anything else double-quoted with escapes (`"a b"`, `"x\ny"`), so spaces,
/// quotes and line breaks inside an argument cannot pass for something else.
pub fn shown_argv(argv: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_alphanumeric() || "_@%+=:,./-".contains(c))
    };
    argv.iter()
        .map(|a| {
            if plain(a) {
                a.clone()
            } else {
                format!("{a:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Answers from a flag, recorded as such.
#[derive(Debug)]
pub struct FlagApprover {
    mode: stele_policy::ApprovalOutcome,
    who: String,
}

impl FlagApprover {
    /// A fixed answer on behalf of `who`.
    pub fn new(outcome: stele_policy::ApprovalOutcome, who: &str) -> Self {
        Self {
            mode: outcome,
            who: who.to_string(),
        }
    }
}

impl Approver for FlagApprover {
    fn ask(&self, _text: &str) -> ApprovalAnswer {
        ApprovalAnswer {
            outcome: self.mode,
            approver: self.who.clone(),
            method: "flag".into(),
        }
    }
}

/// The line the terminal prompt starts with; the shown text follows it.
pub const PROMPT_START: &str = "── approval needed ──\n";
/// What follows the shown text on the terminal.
pub const PROMPT_END: &str = "\nApprove? [y/N] ";

/// Drop input typed before the prompt appeared.
fn discard_typeahead() {
    // SAFETY: tcflush(2) on stdin's descriptor touches no memory of ours;
    // it fails harmlessly when stdin is not a terminal.
    unsafe {
        libc::tcflush(libc::STDIN_FILENO, libc::TCIFLUSH);
    }
}

/// Prompts on the controlling terminal (stderr + stdin); one prompt at a time.
#[derive(Debug)]
pub struct TtyApprover {
    who: String,
    lock: Mutex<()>,
}

impl TtyApprover {
    /// A prompt answered by `who` (the session's principal at this terminal).
    pub fn new(who: &str) -> Self {
        Self {
            who: who.to_string(),
            lock: Mutex::new(()),
        }
    }

    /// True when both stdin and stderr are terminals.
    pub fn available() -> bool {
        Terminal::detect() == Terminal::Present
    }
}

impl Approver for TtyApprover {
    fn ask(&self, text: &str) -> ApprovalAnswer {
        let _guard = self.lock.lock();
        let refused = ApprovalAnswer {
            outcome: stele_policy::ApprovalOutcome::Refused,
            approver: self.who.clone(),
            method: "tty".into(),
        };
        // Already made safe by the gate (so the hash is of what is shown);
        // again here, as a no-op then, for any other caller.
        let text = terminal_safe(text, Newlines::Keep);
        // Keys typed before the question was shown do not answer it.
        discard_typeahead();
        // One write, so nothing else printed can land inside the prompt.
        let prompt = format!("\n{PROMPT_START}{text}{PROMPT_END}");
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(prompt.as_bytes());
        let _ = err.flush();
        drop(err);
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return refused;
        }
        match line.trim() {
            "y" | "Y" | "yes" | "YES" | "Yes" => ApprovalAnswer {
                outcome: stele_policy::ApprovalOutcome::Granted,
                ..refused
            },
            _ => refused,
        }
    }
}

/// What an [`Observed`] approver reports, for progress output.
#[derive(Debug, Clone, Copy)]
pub enum ApprovalEvent<'a> {
    /// The approver is about to be asked; `shown` is exactly what it sees.
    Asked {
        /// The text shown.
        shown: &'a str,
    },
    /// The approver answered.
    Answered {
        /// The text that was shown.
        shown: &'a str,
        /// The answer.
        answer: &'a ApprovalAnswer,
    },
}

/// An approver whose questions and answers are also reported to `on`.
pub struct Observed<F> {
    inner: Box<dyn Approver>,
    on: F,
}

impl<F> Observed<F>
where
    F: Fn(ApprovalEvent<'_>) + Send + Sync,
{
    /// Report what `inner` is asked and answers to `on`.
    pub fn new(inner: Box<dyn Approver>, on: F) -> Self {
        Self { inner, on }
    }
}

impl<F> std::fmt::Debug for Observed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F> Approver for Observed<F>
where
    F: Fn(ApprovalEvent<'_>) + Send + Sync,
{
    fn ask(&self, text: &str) -> ApprovalAnswer {
        (self.on)(ApprovalEvent::Asked { shown: text });
        let answer = self.inner.ask(text);
        (self.on)(ApprovalEvent::Answered {
            shown: text,
            answer: &answer,
        });
        answer
    }
}

/// The approver for a run: `Prompt` uses the terminal when there is one and
/// refuses otherwise.
pub fn approver_for(mode: ApproveMode, principal: &str) -> Box<dyn Approver> {
    match mode {
        ApproveMode::Deny => Box::new(FlagApprover::new(
            stele_policy::ApprovalOutcome::Refused,
            "flag:--approve=deny",
        )),
        ApproveMode::Allow => Box::new(FlagApprover::new(
            stele_policy::ApprovalOutcome::Granted,
            "flag:--approve=allow",
        )),
        ApproveMode::Prompt if TtyApprover::available() => Box::new(TtyApprover::new(principal)),
        ApproveMode::Prompt => Box::new(FlagApprover::new(
            stele_policy::ApprovalOutcome::Refused,
            "no-terminal",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn argv_is_shown_unambiguously() {
        let argv: Vec<String> = ["python3", "-c", "print(1)\nprint(2)", "a b", "", "x=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shown_argv(&argv),
            "python3 -c \"print(1)\\nprint(2)\" \"a b\" \"\" x=1"
        );
        let esc = shown_argv(&["echo".into(), "\x1b[31mred".into()]);
        assert_eq!(terminal_safe(&esc, Newlines::Keep), esc);
        assert!(!esc.contains('\x1b'));
    }

    #[test]
    fn observed_reports_question_and_answer() {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let a = Observed::new(
            Box::new(FlagApprover::new(
                stele_policy::ApprovalOutcome::Refused,
                "flag:--approve=deny",
            )),
            move |e: ApprovalEvent<'_>| {
                let line = match e {
                    ApprovalEvent::Asked { shown } => format!("asked {shown}"),
                    ApprovalEvent::Answered { answer, .. } => format!("{:?}", answer.outcome),
                };
                log.lock().unwrap().push(line);
            },
        );
        let answer = a.ask("Run x");
        assert_eq!(answer.outcome, stele_policy::ApprovalOutcome::Refused);
        assert_eq!(*seen.lock().unwrap(), vec!["asked Run x", "Refused"]);
    }

    #[test]
    fn without_a_terminal_the_default_refuses() {
        // cargo test runs with stdin not a terminal in CI; when it is one,
        // the default is to ask.
        let expected = match Terminal::detect() {
            Terminal::Present => ApproveMode::Prompt,
            Terminal::Absent => ApproveMode::Deny,
        };
        assert_eq!(default_mode(), expected);
    }
}
