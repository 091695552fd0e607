//! A session's messages from a worker arrive in numbered batches (1, 2, …);
//! a batch retried after a lost answer repeats numbers already taken. The
//! [`Sequencer`] takes each number once and in order, so a retry never
//! duplicates and nothing is skipped.

/// The next number a session's messages must continue from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequencer {
    next: u64,
}

impl Default for Sequencer {
    fn default() -> Self {
        Sequencer { next: 1 }
    }
}

/// A batch that starts after a number not yet taken: something between was lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("messages from {from} on: the next message expected is {expected}")]
pub struct Gap {
    /// The batch's first number.
    pub from: u64,
    /// The number expected.
    pub expected: u64,
}

impl Sequencer {
    /// Continue from `next` (as the store keeps it; 1 before any message).
    pub fn at(next: u64) -> Sequencer {
        Sequencer { next: next.max(1) }
    }

    /// The next number expected.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The messages of the batch numbered `from`, `from + 1`, … not taken
    /// before (in order); the numbers already taken are skipped.
    pub fn accept<T>(&mut self, from: u64, batch: Vec<T>) -> Result<Vec<T>, Gap> {
        if from == 0 || from > self.next {
            return Err(Gap {
                from,
                expected: self.next,
            });
        }
        let skip = usize::try_from(self.next - from).unwrap_or(usize::MAX);
        let new: Vec<T> = batch.into_iter().skip(skip).collect();
        self.next += new.len() as u64;
        Ok(new)
    }

    /// The last number taken (0: none yet).
    pub fn acked(&self) -> u64 {
        self.next - 1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_retried_batch_is_taken_once() {
        let mut s = Sequencer::default();
        assert_eq!(s.accept(1, vec!["a", "b"]).unwrap(), vec!["a", "b"]);
        assert_eq!(s.acked(), 2);
        // The same batch again (its answer was lost): nothing new.
        assert!(s.accept(1, vec!["a", "b"]).unwrap().is_empty());
        // A retry that grew meanwhile: only the new part.
        assert_eq!(s.accept(1, vec!["a", "b", "c"]).unwrap(), vec!["c"]);
        assert_eq!(s.acked(), 3);
        assert_eq!(s.accept(4, vec!["d"]).unwrap(), vec!["d"]);
        assert_eq!(s.acked(), 4);
    }

    #[test]
    fn a_gap_is_refused_and_changes_nothing() {
        let mut s = Sequencer::default();
        s.accept(1, vec![1, 2]).unwrap();
        assert_eq!(
            s.accept(5, vec![5]).unwrap_err(),
            Gap {
                from: 5,
                expected: 3
            }
        );
        assert!(s.accept(0, vec![0]).is_err());
        assert_eq!(s.acked(), 2);
        assert_eq!(s.accept(3, vec![3]).unwrap(), vec![3]);
    }
}
