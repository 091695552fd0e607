//! Server-sent events read from a byte stream, incrementally: an event is
//! handed out only once its terminating blank line has arrived, so an event
//! cut by a dropped connection is never half-delivered (the reconnect, with
//! `Last-Event-ID`, replays it whole).

/// One complete event: its `id:` (the session's event number) and `data:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field, when it is a number.
    pub id: Option<u64>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// Bytes in, complete events out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    id: Option<u64>,
    data: Option<String>,
}

impl SseParser {
    /// Feed `chunk`; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            self.line(&line, &mut out);
        }
        out
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            let id = self.id.take();
            if let Some(data) = self.data.take() {
                out.push(SseEvent { id, data });
            }
            return;
        }
        // A comment (the server's heartbeat).
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => self.id = value.trim().parse().ok(),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            // `event:`, `retry:` and unknown fields carry nothing this client uses.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_are_complete_or_not_at_all() {
        let mut p = SseParser::default();
        let text = b": heartbeat\n\nid: 1\ndata: {\"a\":1}\n\nid: 2\r\ndata: x\r\ndata: y\r\n\r\nid: 3\ndata: {\"cut";
        // Fed byte by byte, the result is the same as at once.
        let mut all = Vec::new();
        for b in text.iter() {
            all.extend(p.push(std::slice::from_ref(b)));
        }
        assert_eq!(
            all,
            vec![
                SseEvent {
                    id: Some(1),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    id: Some(2),
                    data: "x\ny".into()
                },
            ]
        );
        // The cut event never comes out.
        assert!(SseParser::default().push(b"id: 3\ndata: {\"cut").is_empty());
    }
}
