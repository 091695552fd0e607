//! Approvals answered through the API. The [`WebApprover`] is the session's
//! `Approver`: it queues the question (the exact text shown and its
//! SHA-256, as the gate's `approval.request` entry hashes it), publishes an
//! `approval_requested` event, and parks the step until an answer that
//! policy accepts arrives or the deadline passes (refused, logged). A grant
//! by someone whose grant would not lift the rule (segregation of duties:
//! the bundle decides) is refused to its giver and the question stays open.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use stele_protocol::{ApprovalOutcome, ApprovalState, SessionEvent};
use stele_runtime::gate::approval::{ApprovalAnswer, Approver, Reachable};

use super::events::{WorkerMsg, WorkerTx};
use super::manager::Control;
use crate::store::ApprovalRecord;

/// What the session makes of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Taken: the step goes on with it.
    Accepted,
    /// A grant by this person would not lift the rule; the question stays open.
    CannotLift,
}

/// An answer on its way to the waiting session.
#[derive(Debug)]
pub struct Candidate {
    /// Who answers (from authentication).
    pub approver: String,
    /// How they authenticated.
    pub method: &'static str,
    /// The answer.
    pub outcome: ApprovalOutcome,
    /// Their reference, already checked.
    pub ticket: Option<String>,
    /// Where the verdict goes.
    pub reply: tokio::sync::oneshot::Sender<Verdict>,
}

/// The approvals sessions are waiting on, by id.
#[derive(Debug, Default)]
pub struct Pending {
    map: Mutex<HashMap<String, std_mpsc::Sender<Candidate>>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, std_mpsc::Sender<Candidate>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hand `c` to the session waiting on `id`; back if none waits (answered or expired).
    pub fn offer(&self, id: &str, c: Candidate) -> Result<(), Candidate> {
        match self.lock().get(id) {
            Some(tx) => tx.send(c).map_err(|e| e.0),
            None => Err(c),
        }
    }

    /// Session code waits on `id`: answers offered for it arrive on `tx`.
    pub fn wait_on(&self, id: &str, tx: std_mpsc::Sender<Candidate>) {
        self.lock().insert(id.to_string(), tx);
    }

    /// No one waits on `id` any more (answered, expired or gone).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Take every waiting question off the queue (the server is stopping):
    /// no answer reaches them any more, and their sessions stay parked,
    /// unanswered. Their ids.
    pub fn withdraw_all(&self) -> Vec<String> {
        self.lock().drain().map(|(id, _)| id).collect()
    }
}

/// The people who may answer, as the gate asks before asking: every member
/// of the bundle, through a token. (Which of them may answer a given
/// session is the server's decision; whether a grant lifts the rule, the bundle's.)
#[derive(Debug)]
pub struct WebApprover {
    /// The session's control (its id once started; parked while it waits).
    pub control: Arc<Control>,
    /// The person whose session asks.
    pub requester: String,
    /// Members of the bundle.
    pub members: Vec<String>,
    /// How long an ask waits.
    pub deadline: Duration,
    /// The session's events and queue.
    pub tx: WorkerTx,
    /// Where answers are found (the server's queue, or a remote worker's).
    pub pending: Arc<Pending>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl WebApprover {
    fn refused(&self, approver: &str, method: &str, detail: String) -> ApprovalAnswer {
        ApprovalAnswer {
            outcome: stele_policy::ApprovalOutcome::Refused,
            approver: approver.to_string(),
            method: method.to_string(),
            ticket: None,
            detail: Some(detail),
        }
    }
}

impl Approver for WebApprover {
    fn ask(&self, text: &str) -> ApprovalAnswer {
        // Without a policy check no grant can be taken: every answer would
        // be one the bundle was not asked about.
        self.ask_checked(text, &|_, _| false)
    }

    fn reachable(&self) -> Vec<Reachable> {
        self.members
            .iter()
            .map(|m| Reachable {
                approver: m.clone(),
                method: "token".into(),
            })
            .collect()
    }

    fn ask_checked(&self, text: &str, could_lift: &dyn Fn(&str, &str) -> bool) -> ApprovalAnswer {
        let id = format!("a-{}", uuid::Uuid::new_v4().simple());
        let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
        let now = time::OffsetDateTime::now_utc();
        let deadline_at = now + self.deadline;
        let session = self.control.id.get().cloned().unwrap_or_default();
        let (ctx, crx) = std_mpsc::channel();
        self.pending.wait_on(&id, ctx);
        let _ = self.tx.send(WorkerMsg::Ask(ApprovalRecord {
            id: id.clone(),
            session,
            shown: text.to_string(),
            shown_sha256: sha.clone(),
            requester: self.requester.clone(),
            deadline: deadline_at.unix_timestamp(),
            state: ApprovalState::Pending,
            approver: None,
        }));
        let event = SessionEvent::ApprovalRequested {
            approval_id: id.clone(),
            shown: text.to_string(),
            shown_sha256: sha,
            requester: self.requester.clone(),
            deadline: rfc3339(deadline_at),
        };
        if let Ok(v) = serde_json::to_value(&event) {
            let _ = self.tx.send(WorkerMsg::Event(v));
        }
        let until = Instant::now() + self.deadline;
        self.control.parked.store(true, Ordering::SeqCst);
        let answer = loop {
            let left = until.saturating_duration_since(Instant::now());
            match crx.recv_timeout(left) {
                Ok(c) => {
                    if c.outcome == ApprovalOutcome::Granted && !could_lift(&c.approver, c.method) {
                        let _ = c.reply.send(Verdict::CannotLift);
                        continue;
                    }
                    // Taken: no other answer reaches this question.
                    self.pending.forget(&id);
                    let _ = c.reply.send(Verdict::Accepted);
                    break ApprovalAnswer {
                        outcome: match c.outcome {
                            ApprovalOutcome::Granted => stele_policy::ApprovalOutcome::Granted,
                            ApprovalOutcome::Refused => stele_policy::ApprovalOutcome::Refused,
                        },
                        approver: c.approver,
                        method: c.method.to_string(),
                        ticket: c.ticket,
                        detail: Some(format!("approval {id} through the server's API")),
                    };
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Withdrawn by a shutdown: never answered by it. The
                    // question stays open in the log; the process exits
                    // around this thread, and the session resumes at restart.
                    loop {
                        std::thread::park();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.pending.forget(&id);
                    let _ = self
                        .tx
                        .send(WorkerMsg::Settled(id.clone(), ApprovalState::Expired));
                    break self.refused(
                        "system",
                        "deadline",
                        format!(
                            "approval {id}: no answer within {} s",
                            self.deadline.as_secs()
                        ),
                    );
                }
            }
        };
        self.control.parked.store(false, Ordering::SeqCst);
        let _ = self.tx.send(WorkerMsg::State(
            stele_protocol::SessionState::Running,
            None,
        ));
        answer
    }
}
