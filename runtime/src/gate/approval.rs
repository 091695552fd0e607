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

/// The answer to give when no person can be asked (`--approve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApproveMode {
    /// Refuse every request that needs approval (the default).
    Deny,
    /// Approve every request that needs approval; each approval is logged as given by the flag.
    Allow,
    /// Ask on the terminal; refuse when there is none.
    Prompt,
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
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
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
        let mut err = std::io::stderr();
        let _ = write!(err, "\n── approval needed ──\n{text}\nApprove? [y/N] ");
        let _ = err.flush();
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
