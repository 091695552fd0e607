//! Asking a human: on a terminal, a prompt showing exactly what would happen;
//! without one, the configured answer. Never a silent allow.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Mutex;

/// What the approver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalAnswer {
    /// Granted or refused.
    pub outcome: stele_policy::ApprovalOutcome,
    /// Who answered: a user id, like principals (`User::"…"` in policies).
    /// For a configured answer (`--approve`), the person who configured it:
    /// the session's principal.
    pub approver: String,
    /// How: `tty` (the terminal prompt), `flag` (`--approve allow|deny`),
    /// `no-terminal` (a prompt with no terminal to show it on: refused),
    /// or another front end's name.
    pub method: String,
    /// The reference the approver gave with the answer (a change ticket).
    pub ticket: Option<String>,
    /// More about the method, for the record (`--approve=allow`).
    pub detail: Option<String>,
}

/// A person an approver can put a question to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachable {
    /// User id.
    pub approver: String,
    /// The method they would answer through.
    pub method: String,
}

/// Decides `Ask` requests.
pub trait Approver: Send + Sync + std::fmt::Debug {
    /// Show `text` (exactly what would happen) and return the answer.
    fn ask(&self, text: &str) -> ApprovalAnswer;

    /// [`Approver::ask`], for an approver that hears from several people:
    /// `could_lift(approver, method)` says whether a grant by that person,
    /// given that way, would lift the rule (policy's segregation of duties),
    /// so that an answer that could not is refused to its giver and the
    /// question stays open for someone who can. The gate re-decides with
    /// the answer either way.
    fn ask_checked(&self, text: &str, could_lift: &dyn Fn(&str, &str) -> bool) -> ApprovalAnswer {
        let _ = could_lift;
        self.ask(text)
    }

    /// Who could answer, and how. Before asking, the gate checks that one
    /// of them could lift the rule (a rule that needs someone other than
    /// the requester is refused, not asked, when only the requester is
    /// there).
    fn reachable(&self) -> Vec<Reachable>;
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

/// A fixed answer, given without asking anyone, recorded as such.
#[derive(Debug)]
pub struct FlagApprover {
    mode: stele_policy::ApprovalOutcome,
    who: String,
    method: String,
    detail: String,
}

impl FlagApprover {
    /// A fixed answer in the name of `who` (a user id), given through
    /// `method`, with `detail` for the record.
    pub fn new(
        outcome: stele_policy::ApprovalOutcome,
        who: &str,
        method: &str,
        detail: &str,
    ) -> Self {
        Self {
            mode: outcome,
            who: who.to_string(),
            method: method.to_string(),
            detail: detail.to_string(),
        }
    }
}

impl Approver for FlagApprover {
    fn ask(&self, _text: &str) -> ApprovalAnswer {
        ApprovalAnswer {
            outcome: self.mode,
            approver: self.who.clone(),
            method: self.method.clone(),
            ticket: None,
            detail: Some(self.detail.clone()),
        }
    }

    fn reachable(&self) -> Vec<Reachable> {
        vec![Reachable {
            approver: self.who.clone(),
            method: self.method.clone(),
        }]
    }
}

/// The line the terminal prompt starts with; the shown text follows it.
pub const PROMPT_START: &str = "── approval needed ──\n";
/// What follows the shown text on the terminal.
pub const PROMPT_END: &str = "\nApprove? [y/N; y TICKET to give a reference] ";

/// Longest ticket a person may type, in characters.
pub const MAX_TICKET_CHARS: usize = 128;

/// Read an answer line: `y`/`yes` (any case) grants, optionally followed by
/// a ticket (a reference such as a change number: printable, no spaces at
/// either end, at most [`MAX_TICKET_CHARS`]); anything else refuses. A
/// ticket that is not acceptable refuses too (nothing is granted on input
/// stele could not record exactly).
pub fn parse_answer(line: &str) -> (stele_policy::ApprovalOutcome, Option<String>) {
    use stele_policy::ApprovalOutcome::{Granted, Refused};
    let line = line.trim();
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    if !word.eq_ignore_ascii_case("y") && !word.eq_ignore_ascii_case("yes") {
        return (Refused, None);
    }
    if rest.is_empty() {
        return (Granted, None);
    }
    let printable = rest.chars().all(|c| {
        !c.is_control() && terminal_safe(&c.to_string(), Newlines::Escape).len() == c.len_utf8()
    });
    if rest.chars().count() > MAX_TICKET_CHARS || !printable {
        return (Refused, None);
    }
    (Granted, Some(rest.to_string()))
}

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
    fn reachable(&self) -> Vec<Reachable> {
        // A terminal has one person at it: the one who started the session.
        vec![Reachable {
            approver: self.who.clone(),
            method: "tty".into(),
        }]
    }

    fn ask(&self, text: &str) -> ApprovalAnswer {
        let _guard = self.lock.lock();
        let refused = ApprovalAnswer {
            outcome: stele_policy::ApprovalOutcome::Refused,
            approver: self.who.clone(),
            method: "tty".into(),
            ticket: None,
            detail: None,
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
        let (outcome, ticket) = parse_answer(&line);
        ApprovalAnswer {
            outcome,
            ticket,
            ..refused
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
    fn reachable(&self) -> Vec<Reachable> {
        self.inner.reachable()
    }

    fn ask(&self, text: &str) -> ApprovalAnswer {
        self.ask_checked(text, &|_, _| true)
    }

    fn ask_checked(&self, text: &str, could_lift: &dyn Fn(&str, &str) -> bool) -> ApprovalAnswer {
        (self.on)(ApprovalEvent::Asked { shown: text });
        let answer = self.inner.ask_checked(text, could_lift);
        (self.on)(ApprovalEvent::Answered {
            shown: text,
            answer: &answer,
        });
        answer
    }
}

/// The approver for a run: `Prompt` uses the terminal when there is one and
/// refuses otherwise. Every answer is in the name of `principal`, the person
/// who started the run (at its terminal, or by its flag): a rule that needs
/// someone else's approval is refused.
pub fn approver_for(mode: ApproveMode, principal: &str) -> Box<dyn Approver> {
    use stele_policy::ApprovalOutcome::{Granted, Refused};
    match mode {
        ApproveMode::Deny => Box::new(FlagApprover::new(
            Refused,
            principal,
            "flag",
            "--approve=deny",
        )),
        ApproveMode::Allow => Box::new(FlagApprover::new(
            Granted,
            principal,
            "flag",
            "--approve=allow",
        )),
        ApproveMode::Prompt if TtyApprover::available() => Box::new(TtyApprover::new(principal)),
        ApproveMode::Prompt => Box::new(FlagApprover::new(
            Refused,
            principal,
            "no-terminal",
            "no terminal to ask on (stdin and stderr must both be one)",
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
                "alice",
                "flag",
                "--approve=deny",
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
    fn answers_and_tickets() {
        use stele_policy::ApprovalOutcome::{Granted, Refused};
        for (line, want) in [
            ("y\n", (Granted, None)),
            ("YES\n", (Granted, None)),
            ("  y  CHG-1234 \n", (Granted, Some("CHG-1234".to_string()))),
            ("yes INC 42\n", (Granted, Some("INC 42".to_string()))),
            ("n\n", (Refused, None)),
            ("\n", (Refused, None)),
            ("yep\n", (Refused, None)),
            ("no CHG-1\n", (Refused, None)),
            // A ticket stele could not record exactly refuses.
            ("y CHG\x1b[2J\n", (Refused, None)),
            ("y A\u{202e}B\n", (Refused, None)),
        ] {
            assert_eq!(parse_answer(line), want, "{line:?}");
        }
        let long = format!("y {}", "x".repeat(MAX_TICKET_CHARS + 1));
        assert_eq!(parse_answer(&long), (Refused, None));
        let max = format!("y {}", "x".repeat(MAX_TICKET_CHARS));
        assert_eq!(parse_answer(&max).0, Granted);
    }

    #[test]
    fn every_configured_answer_is_in_the_principals_name() {
        let mut modes = vec![ApproveMode::Deny, ApproveMode::Allow];
        // With a terminal, Prompt would wait for someone to answer.
        if Terminal::detect() == Terminal::Absent {
            modes.push(ApproveMode::Prompt);
        }
        for mode in modes {
            let a = approver_for(mode, "alice");
            let reach = a.reachable();
            assert_eq!(reach.len(), 1, "{mode:?}");
            assert_eq!(reach[0].approver, "alice", "{mode:?}");
            let answer = a.ask("x");
            assert_eq!(answer.approver, "alice", "{mode:?}");
            assert_eq!(answer.method, reach[0].method, "{mode:?}");
        }
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
