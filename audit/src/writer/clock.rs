//! The writer's clock: one reading per batch, the `clock.*` entries it
//! calls for, and the clock state a `session.start` carries
//! (`crate::clock`).

use super::Writer;
use crate::clock::Reason;
use crate::error::AuditError;
use crate::event::{Event, EventKind};

impl Writer {
    /// Read the clock for the batch about to be built: the `clock.step`
    /// entries to write before it and the `clock.state` entries to write
    /// after it.
    pub(crate) fn read_clock(&mut self) -> (Vec<Event>, Vec<Event>) {
        let o = self.watch.observe(self.clock.as_ref(), None, &self.last_ts);
        self.now = crate::clock::ts_of_ns(o.wall_ns);
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for (kind, data) in o.entries {
            let ev = Event::new(kind, self.actor.clone()).with_data(data);
            match kind {
                EventKind::ClockStep => before.push(ev),
                _ => after.push(ev),
            }
        }
        // The genesis entry is index 0 and alone in its commit (it
        // carries the clock's state itself).
        if self.frontier.size() == 0 {
            before.clear();
            after.clear();
        }
        (before, after)
    }

    /// A session starts with the clock's state: the `clock` member of its
    /// `session.start` data (in the session's own sub-chain, so a session
    /// export carries it). The member is the log's to write.
    pub(super) fn clock_into_session_start(&mut self, ev: &mut Event) -> Result<(), AuditError> {
        let data = ev.data.get_or_insert_with(|| serde_json::json!({}));
        let Some(obj) = data.as_object_mut() else {
            return Ok(());
        };
        if obj.contains_key("clock") {
            return Err(AuditError::Invalid(
                "session.start data.clock is written by the log, not by its caller".into(),
            ));
        }
        let clock = self.watch.state_now(self.clock.as_ref(), Reason::Session);
        obj.insert("clock".into(), clock);
        Ok(())
    }
}
