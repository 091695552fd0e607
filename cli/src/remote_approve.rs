//! Answering a server session's approval at the terminal that follows it
//! (`stele --server URL run|watch` with `--approve prompt`): offered only
//! when the server lists the approval among those the caller may answer,
//! after checking that the text shown hashes to the `shown_sha256` the
//! answer echoes. The prompt gives way when someone else answers first (or
//! the deadline passes): the session is not held up by an open prompt.

use futures_util::StreamExt as _;
use stele_protocol::{
    ApprovalAnswer, ApprovalList, ApprovalOutcome, ApprovalRequest, DecisionEvent, SessionEvent,
};
use stele_runtime::errln;
use tokio::sync::mpsc;

use crate::api_client::ApiClient;
use crate::sse::SseParser;

/// The terminal's typed lines, read on a thread of their own (a read
/// cannot be cancelled; Ctrl-C must still detach, and a prompt that gives
/// way must not leave a second reader behind).
#[derive(Debug)]
pub struct Keyboard {
    lines: mpsc::UnboundedReceiver<String>,
}

impl Keyboard {
    /// Start reading stdin.
    pub fn start() -> Keyboard {
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                if tx.send(std::mem::take(&mut line)).is_err() {
                    return;
                }
            }
        });
        Keyboard { lines }
    }

    /// Forget lines typed so far: keys pressed before a question are no
    /// answer to it (as at `stele run`'s prompt).
    fn discard_typed(&mut self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// The next line typed; None when stdin closed.
    async fn answer(&mut self) -> Option<String> {
        self.lines.recv().await
    }

    /// Offer to answer approval `approval_id` of session `session` (whose
    /// events up to `last` were printed). Nothing here fails the run: the
    /// approval stays in the queue.
    pub async fn offer(&mut self, client: &ApiClient, session: &str, approval_id: &str, last: u64) {
        let mine: ApprovalList = match client.get("api/v1/approvals").await {
            Ok(l) => l,
            Err(e) => {
                errln!("   (cannot read the approvals queue: {e:#})");
                return;
            }
        };
        let Some(a) = mine
            .approvals
            .into_iter()
            .find(|a| a.approval_id == approval_id)
        else {
            errln!("   policy does not let you answer it; it waits for an approver");
            return;
        };
        // What is hashed is what was shown above: prove it before echoing the hash.
        let sha = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            a.shown.as_bytes(),
        ));
        if sha != a.shown_sha256 {
            errln!("   the server's text does not match its hash; not answering it here");
            return;
        }
        self.discard_typed();
        stele_runtime::errout!(
            "   answer it here? [y] grant, [n] refuse, [Enter] leave it in the queue: "
        );
        let typed = tokio::select! {
            typed = self.answer() => typed,
            () = settled_elsewhere(client, session, last) => {
                errln!("\n   answered elsewhere (or its deadline passed); going on");
                return;
            }
        };
        let outcome = match typed.as_deref().map(str::trim) {
            Some("y" | "yes") => ApprovalOutcome::Granted,
            Some("n" | "no") => ApprovalOutcome::Refused,
            _ => {
                errln!("   left in the queue");
                return;
            }
        };
        let body = ApprovalAnswer {
            shown_sha256: a.shown_sha256,
            outcome,
            ticket: None,
        };
        match client
            .post::<_, ApprovalRequest>(&format!("api/v1/approvals/{approval_id}"), &body)
            .await
        {
            Ok(done) => errln!(
                "   answered: {}",
                serde_json::to_value(done.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
            Err(e) => errln!("   your answer was not taken: {e:#}"),
        }
    }
}

/// Returns once the session's events after `last` show its waiting step
/// answered (granted, refused, expired) or the session ended; never when
/// they cannot be read (the prompt then stays until the person answers).
async fn settled_elsewhere(client: &ApiClient, session: &str, last: u64) {
    let path = format!("api/v1/sessions/{session}/events");
    let req = client.request(reqwest::Method::GET, &path).map(|r| {
        r.header(reqwest::header::ACCEPT, "text/event-stream")
            .header("last-event-id", last.to_string())
    });
    let resp = match req {
        Ok(r) => r.send().await.ok().filter(|r| r.status().is_success()),
        Err(_) => None,
    };
    if let Some(resp) = resp {
        let mut parser = SseParser::default();
        let mut body = resp.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            for ev in parser.push(&chunk) {
                match serde_json::from_str::<SessionEvent>(&ev.data) {
                    // The step waits on this approval: the next answer is its answer.
                    Ok(SessionEvent::Decision(
                        DecisionEvent::Granted { .. } | DecisionEvent::Refused { .. },
                    ))
                    | Ok(SessionEvent::End { .. }) => return,
                    _ => {}
                }
            }
        }
    }
    std::future::pending::<()>().await
}
