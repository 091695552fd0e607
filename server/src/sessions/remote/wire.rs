//! What a worker and the server say to each other under
//! `/api/v1/worker/…` (JSON). A session's messages travel as [`WireMsg`]s:
//! the worker's [`WorkerMsg`]s without what the server already knows.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use stele_protocol::{ApprovalOutcome, ApprovalState, SessionState};

use crate::sessions::events::WorkerMsg;
use crate::sessions::worker::Job;
use crate::store::{ApprovalRecord, SessionRecord};

/// A `session.run` job's payload: the session, named by the server.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Payload {
    /// The session's id (its row shows it queued).
    pub session: String,
    /// What it runs.
    pub job: Job,
    /// The server's policy bundle (reachable on the worker's file system).
    #[schema(value_type = Option<String>)]
    pub policy: Option<PathBuf>,
    /// Who may answer its approvals.
    pub members: Vec<String>,
    /// Seconds an ask waits.
    pub ask_deadline_secs: u64,
    /// Whether the job starts the session or resumes one that paused on a
    /// worker (then it continues from the servers' copy of that worker's
    /// log, whichever worker claims it).
    #[serde(default)]
    pub start: Start,
}

/// How a `session.run` job begins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// A new session.
    #[default]
    New,
    /// A session that paused on a worker, resumed by a person.
    Resume,
}

/// `POST /api/v1/worker/claim`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The worker's name.
    pub name: String,
    /// Its log's public key (note verifier: its origin and key).
    pub verifier: String,
}

/// A claimed job.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Claimed {
    /// The job's id.
    pub job: i64,
    /// Which claim of it (quote it in every later request).
    pub attempt: i64,
    /// Seconds the lease lasts without a heartbeat.
    pub lease_secs: u64,
    /// The work.
    pub payload: Payload,
    /// Set when the claim continues a session whose earlier worker stopped
    /// after it had reached for effects: the worker imports the bundle and
    /// resumes the session from it, never running it again from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
}

/// A session to continue from what the servers hold of the log of the
/// worker that ran it before (docs/server.md "Workers: failover").
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Continuation {
    /// Why it continues here (which worker stopped), for people and the record.
    pub why: String,
    /// Where it continues from: `None` when the session is in the claiming
    /// worker's own log (it ran there last), which it resumes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ContinuationBundle>,
}

/// The bundle a session continues from, written by the server from the
/// shipped log of the worker it ran in last.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContinuationBundle {
    /// The `.tar` (standard base64), ending where the servers' copy of
    /// that log ends.
    pub bundle: String,
    /// That worker's log key (note verifier form), as the servers hold it:
    /// the bundle's checkpoint and entries must verify with it.
    pub vkey: String,
    /// The key that signed the bundle's manifest (the server's).
    pub exporter: String,
}

/// A session's messages, numbered from `from`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// The claim.
    pub attempt: i64,
    /// The first message's number (1, 2, …; a retry repeats numbers).
    pub from: u64,
    /// The messages, in order.
    pub messages: Vec<WireMsg>,
}

/// What the server has taken.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventsAck {
    /// The last message number taken.
    pub acked: u64,
}

/// What a session made of an answer the server passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictWire {
    /// Taken.
    Accepted,
    /// The giver's grant would not lift the rule; the question stays open.
    CannotLift,
    /// No one waits on that question any more.
    Gone,
}

/// One verdict, for the approval it answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerdictFor {
    /// The approval.
    pub approval: String,
    /// The verdict.
    pub verdict: VerdictWire,
}

/// `POST /api/v1/worker/jobs/{job}/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The claim.
    pub attempt: i64,
    /// Verdicts on answers passed on earlier.
    #[serde(default)]
    pub verdicts: Vec<VerdictFor>,
}

/// An answer given in the server's API to one of the session's questions.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DecisionWire {
    /// The approval.
    pub approval: String,
    /// Who answered.
    pub approver: String,
    /// How they authenticated.
    pub method: String,
    /// Their answer.
    pub outcome: ApprovalOutcome,
    /// Their reference.
    pub ticket: Option<String>,
}

/// The server's answer to a heartbeat: the lease runs on, and what to do.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatReply {
    /// Pause at the next safe point, for this reason.
    pub pause: Option<String>,
    /// Answers to pass to the session.
    pub decisions: Vec<DecisionWire>,
}

/// How a session finished on its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ended.
    Ended,
    /// It paused, resumable.
    Paused,
    /// It failed or never started.
    Failed,
}

/// `POST /api/v1/worker/jobs/{job}/finish`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    /// The claim.
    pub attempt: i64,
    /// How it finished.
    pub outcome: Outcome,
    /// Why (for a failure).
    pub reason: Option<String>,
}

/// One worker in `GET /api/v1/worker`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerInfo {
    /// Its name.
    pub name: String,
    /// Its log's public key (origin and key).
    pub verifier: String,
    /// The account its token belongs to.
    pub account: String,
    /// First claim (unix seconds).
    pub first_seen: i64,
    /// Last claim, heartbeat or report (unix seconds).
    pub last_seen: i64,
    /// The sessions it runs now.
    pub sessions: Vec<String>,
}

/// `GET /api/v1/worker`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerList {
    /// The workers this server has seen.
    pub workers: Vec<WorkerInfo>,
}

/// A session's message as it travels.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireMsg {
    /// The session is open in the worker's log.
    Started,
    /// It could not start: why.
    Failed {
        /// Why.
        why: String,
    },
    /// A progress event.
    Event {
        /// The event.
        #[schema(value_type = Object)]
        event: serde_json::Value,
    },
    /// Its state changed.
    State {
        /// The state.
        state: SessionState,
        /// Why.
        detail: Option<String>,
    },
    /// An approval waits.
    Ask {
        /// Its id.
        id: String,
        /// The text shown.
        shown: String,
        /// Its SHA-256.
        shown_sha256: String,
        /// Whose session asks.
        requester: String,
        /// When it expires (unix seconds).
        deadline: i64,
    },
    /// An approval was settled by the session (its deadline passed).
    Settled {
        /// Its id.
        id: String,
        /// How.
        state: ApprovalState,
    },
}

impl WireMsg {
    /// A worker's message as it travels (None: nothing the server needs).
    pub fn from_worker(m: WorkerMsg) -> Option<WireMsg> {
        Some(match m {
            WorkerMsg::Started(_) => WireMsg::Started,
            WorkerMsg::Claimed(_) | WorkerMsg::Resumed(_) => return None,
            WorkerMsg::Failed(why) => WireMsg::Failed { why },
            WorkerMsg::Event(event) => WireMsg::Event { event },
            WorkerMsg::State(state, detail) => WireMsg::State { state, detail },
            WorkerMsg::Ask(a) => WireMsg::Ask {
                id: a.id,
                shown: a.shown,
                shown_sha256: a.shown_sha256,
                requester: a.requester,
                deadline: a.deadline,
            },
            WorkerMsg::Settled(id, state) => WireMsg::Settled { id, state },
        })
    }

    /// The message for session `session`'s pump.
    pub fn into_worker(self, session: &str) -> WorkerMsg {
        match self {
            // The row exists since the session was queued.
            WireMsg::Started => WorkerMsg::State(SessionState::Running, None),
            WireMsg::Failed { why } => WorkerMsg::Failed(why),
            WireMsg::Event { event } => WorkerMsg::Event(event),
            WireMsg::State { state, detail } => WorkerMsg::State(state, detail),
            WireMsg::Ask {
                id,
                shown,
                shown_sha256,
                requester,
                deadline,
            } => WorkerMsg::Ask(ApprovalRecord {
                id,
                session: session.to_string(),
                shown,
                shown_sha256,
                requester,
                deadline,
                state: ApprovalState::Pending,
                approver: None,
            }),
            WireMsg::Settled { id, state } => WorkerMsg::Settled(id, state),
        }
    }

    /// Whether it shows the session reached for an effect (a tool call):
    /// from then on it is never run again from the start elsewhere.
    pub fn is_effect(&self) -> bool {
        matches!(self, WireMsg::Event { event } if event["event"] == "tool_call")
    }
}

/// A queued session's row.
pub fn queued_row(session: &str, job: &Job, detail: String, now: i64) -> SessionRecord {
    SessionRecord {
        id: session.to_string(),
        owner: job.principal.clone(),
        workspace: job.workspace.clone(),
        state: SessionState::Starting,
        detail: Some(detail),
        created: now,
        updated: now,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn messages_travel_as_json_and_arrive_for_their_session() {
        let ask = WorkerMsg::Ask(ApprovalRecord {
            id: "a-1".into(),
            session: "ignored: the server knows whose it is".into(),
            shown: "exec python3".into(),
            shown_sha256: "ab".into(),
            requester: "alice".into(),
            deadline: 7,
            state: ApprovalState::Pending,
            approver: None,
        });
        let wire = WireMsg::from_worker(ask).unwrap();
        let text = serde_json::to_string(&wire).unwrap();
        assert!(text.contains(r#""kind":"ask""#), "{text}");
        let back: WireMsg = serde_json::from_str(&text).unwrap();
        let WorkerMsg::Ask(a) = back.into_worker("s-9") else {
            panic!("not an ask")
        };
        assert_eq!((a.session.as_str(), a.id.as_str()), ("s-9", "a-1"));
        assert_eq!(a.state, ApprovalState::Pending);
        // The row exists since the session was queued: a start is a state change.
        assert!(matches!(
            WireMsg::Started.into_worker("s-9"),
            WorkerMsg::State(SessionState::Running, None)
        ));
        assert!(WireMsg::from_worker(WorkerMsg::Resumed("s-9".into())).is_none());
    }

    #[test]
    fn a_tool_call_is_an_effect_and_nothing_before_it_is() {
        let ev = |e: serde_json::Value| WireMsg::Event { event: e };
        assert!(ev(serde_json::json!({"event": "tool_call", "tool": "exec"})).is_effect());
        for e in ["start", "step", "text", "retry"] {
            assert!(!ev(serde_json::json!({ "event": e })).is_effect(), "{e}");
        }
        assert!(!WireMsg::Started.is_effect());
    }
}
