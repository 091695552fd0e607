//! The `add-checkpoint` request body:
//!
//! ```text
//! old <size>
//! <base64 consistency proof hash>   (zero or more lines)
//!
//! <signed checkpoint note>
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::merkle::Hash;

/// Largest accepted request body (a note plus at most 63 proof hashes fits easily).
pub const MAX_BODY: usize = 64 * 1024;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the client believes the witness holds.
    pub old: u64,
    /// Consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub note: String,
}

impl AddCheckpoint {
    /// The request body text.
    pub fn to_body(&self) -> String {
        let mut s = format!("old {}\n", self.old);
        for h in &self.proof {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.note);
        s
    }

    /// Parse a request body strictly.
    pub fn parse(body: &str) -> Result<Self, String> {
        if body.len() > MAX_BODY {
            return Err("request too large".into());
        }
        let (head, note) = body
            .split_once("\n\n")
            .ok_or("no blank line before the checkpoint")?;
        let mut lines = head.split('\n');
        let old_s = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or("first line must be `old <size>`")?;
        if old_s.is_empty()
            || !old_s.bytes().all(|b| b.is_ascii_digit())
            || (old_s.len() > 1 && old_s.starts_with('0'))
        {
            return Err("old size must be a decimal number".into());
        }
        let old = old_s.parse().map_err(|_| "old size out of range")?;
        let mut proof = Vec::new();
        for l in lines {
            let h: Hash = B64
                .decode(l)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or("bad proof line")?;
            if proof.len() == 63 {
                return Err("proof too long".into());
            }
            proof.push(h);
        }
        Ok(Self {
            old,
            proof,
            note: note.to_string(),
        })
    }
}
