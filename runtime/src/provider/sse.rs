//! An incremental parser for `text/event-stream` bodies (server-sent events).
//!
//! Bytes arrive in arbitrary chunks: a line, an event or even a UTF-8 character may be split
//! across them, so the parser buffers until a complete line is available.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SseEvent {
    /// The `event:` field, empty when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// Where its lines are in the whole body: `[start, end)` byte offsets, the blank line that
    /// ends it included (comments and blank lines between events are in no event's span).
    pub span: (u64, u64),
}

/// Incremental SSE parser.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    event: String,
    data: Vec<String>,
    /// Bytes consumed so far.
    pos: u64,
    /// Where the event being read began (its first field line).
    start: Option<u64>,
}

impl SseParser {
    /// Feed a chunk; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.line.is_empty() && b != b'\n' && b != b'\r' && self.start.is_none() && b != b':'
            {
                self.start = Some(self.pos);
            }
            self.pos += 1;
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&line, &mut out);
            } else {
                self.line.push(b);
            }
        }
        out
    }

    /// The end of the body: an event not yet terminated by a blank line is dispatched anyway,
    /// since some servers omit the final blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut out);
        }
        self.line_done(b"", &mut out);
        out.pop()
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            let start = self.start.take().unwrap_or(self.pos);
            if !self.data.is_empty() {
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data).join("\n"),
                    span: (start, self.pos),
                });
            }
            self.event.clear();
            return;
        }
        if line.first() == Some(&b':') {
            return; // comment / keep-alive
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {} // id, retry: not used by model APIs
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn split_anywhere() {
        let body =
            "event: a\ndata: {\"x\":\r\ndata: 1}\n\n: ping\n\nevent: b\ndata: é\n\ndata: [DONE]";
        for cut in 0..body.len() {
            let (l, r) = body.as_bytes().split_at(cut);
            let mut p = SseParser::default();
            let mut evs = p.feed(l);
            evs.extend(p.feed(r));
            evs.extend(p.finish());
            assert_eq!(evs.len(), 3, "cut at {cut}");
            assert_eq!(evs[0].event, "a");
            assert_eq!(evs[0].data, "{\"x\":\n1}");
            assert_eq!(evs[1].data, "é");
            assert_eq!(evs[2].event, "");
            assert_eq!(evs[2].data, "[DONE]");
            // Spans cover each event's own lines, never the comment between them.
            let text = |e: &SseEvent| &body[e.span.0 as usize..e.span.1 as usize];
            assert_eq!(text(&evs[0]), "event: a\ndata: {\"x\":\r\ndata: 1}\n\n");
            assert_eq!(text(&evs[1]), "event: b\ndata: é\n\n");
            assert_eq!(text(&evs[2]), "data: [DONE]");
        }
    }
}
