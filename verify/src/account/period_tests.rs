//! The period builder on hand-made entries: the three kinds of silence
//! (logging stopped, a writer that ended without closing, an open log that
//! fell silent), clipping to the window, erasures of any kind that names
//! commitments, clock steps and unsynchronised states as findings.

#![allow(clippy::unwrap_used)]

use stele_audit::clock::ns_of_ts;
use stele_audit::event::{Actor, EventKind};
use stele_audit::leaf::Leaf;

use super::period::{PeriodBuilder, Window};

fn leaf(seq: u64, ts: &str, kind: EventKind, data: Option<serde_json::Value>) -> Leaf {
    Leaf {
        actor: Actor {
            host: "h".into(),
            principal: "p".into(),
            runtime: "r".into(),
            teams: vec![],
        },
        boot: "0123456789abcdef".into(),
        data,
        decision: None,
        kind,
        log: "l".into(),
        outcome: None,
        payload: vec![],
        prev: None,
        refs: None,
        seq,
        session: None,
        target: None,
        ts: ts.into(),
        v: 1,
    }
}

fn window(since: &str, until: &str) -> Window {
    Window {
        since_ns: ns_of_ts(since).unwrap(),
        until_ns: ns_of_ts(until).unwrap(),
        gap_s: 120,
    }
}

fn t(hms: &str) -> String {
    format!("2026-12-01T{hms}.000000Z")
}

#[test]
fn silences_are_told_apart_and_only_unexplained_ones_are_findings() {
    let w = window(&t("10:00:00"), &t("12:00:00"));
    let mut b = PeriodBuilder::new(w);
    let ls = [
        leaf(0, &t("09:00:00"), EventKind::LogGenesis, None),
        // An open log silent from 09:00 to 10:30: clipped to 10:00.
        leaf(1, &t("10:30:00"), EventKind::Heartbeat, None),
        leaf(2, &t("10:31:00"), EventKind::LogClose, None),
        // Logging stopped, recorded: not a finding.
        leaf(3, &t("11:00:00"), EventKind::LogOpen, None),
        // A writer that vanished without log.close.
        leaf(4, &t("11:10:00"), EventKind::LogOpen, None),
        leaf(5, &t("11:11:00"), EventKind::Heartbeat, None),
        // Short silences are no gap.
        leaf(6, &t("11:12:30"), EventKind::Heartbeat, None),
    ];
    let inside: Vec<bool> = ls.iter().map(|l| b.add(l)).collect();
    assert_eq!(inside, [false, true, true, true, true, true, true]);
    let p = b.finish(&[], ns_of_ts(&t("11:20:00")).unwrap());
    let gaps: Vec<(&str, &str, &str, u64)> = p
        .gaps
        .iter()
        .map(|g| (g.from.as_str(), g.to.as_str(), g.state.as_str(), g.seconds))
        .collect();
    let (a, b2, c, d) = (t("10:00:00"), t("10:30:00"), t("10:31:00"), t("11:00:00"));
    let (e, f, g, h) = (t("11:00:00"), t("11:10:00"), t("11:12:30"), t("11:20:00"));
    assert_eq!(
        gaps,
        [
            (a.as_str(), b2.as_str(), "log open, no entry", 1800),
            (c.as_str(), d.as_str(), "log closed", 1740),
            (
                e.as_str(),
                f.as_str(),
                "writer ended without log.close",
                600
            ),
            // After the last entry, up to now (the window ends later).
            (g.as_str(), h.as_str(), "log open, no entry", 450),
        ]
    );
    assert_eq!(p.entries, 6);
    let logging: Vec<&str> = p.logging.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(logging, ["log.close", "log.open", "log.open"]);
    assert_eq!(p.findings.len(), 3, "{:?}", p.findings);
    assert!(p.findings.iter().all(|f| f.starts_with("logging gap")));
    assert!(!p.findings.iter().any(|f| f.contains("log closed")));
}

#[test]
fn erasures_of_any_kind_clock_steps_and_unsynced_states_are_reported() {
    let w = window(&t("10:00:00"), &t("11:00:00"));
    let mut b = PeriodBuilder::new(w);
    let commits = serde_json::json!(["sha256s:AAAA", "sha256s:BBBB"]);
    let clock = serde_json::json!({"esterror_us": 0, "maxerror_us": 16000000, "reason": "log.open",
        "source": "tsc", "state": "error", "status": 64, "synced": false});
    let ls = [
        leaf(
            0,
            &t("10:00:00"),
            EventKind::LogGenesis,
            Some(serde_json::json!({"clock": clock})),
        ),
        leaf(
            1,
            &t("10:01:00"),
            EventKind::Redaction,
            Some(serde_json::json!({"commits": commits, "reason": "GDPR art. 17"})),
        ),
        // A kind this version does not know by name but that names erased
        // commitments (a retention expiry) is an erasure too.
        leaf(
            2,
            &t("10:02:00"),
            EventKind::PolicyLoad,
            Some(serde_json::json!({"commits": ["sha256s:CCCC"], "class": "pci-12-months"})),
        ),
        leaf(
            3,
            &t("10:03:00"),
            EventKind::ClockStep,
            Some(serde_json::json!({"across": "writer",
            "before": t("10:03:00"), "by_us": 5_000_000, "carried": t("10:03:00"),
            "direction": "back", "reading": t("10:02:55")})),
        ),
        leaf(4, &t("10:03:00"), EventKind::Heartbeat, None),
    ];
    for l in &ls {
        b.add(l);
    }
    let p = b.finish(&[], ns_of_ts(&t("10:04:00")).unwrap());
    let er: Vec<(u64, u64, &str)> = p
        .erasures
        .iter()
        .map(|e| (e.seq, e.count, e.reason.as_str()))
        .collect();
    assert_eq!(er, [(1, 2, "GDPR art. 17"), (2, 1, "pci-12-months")]);
    assert_eq!(p.clock_states.len(), 1);
    assert!(!p.clock_states[0].synced);
    assert_eq!(p.clock_steps.len(), 1);
    assert_eq!(p.clock_steps[0].by_us, 5_000_000);
    assert!(
        p.findings
            .iter()
            .any(|f| f.contains("stepped back by 5000000")),
        "{:?}",
        p.findings
    );
    assert!(
        p.findings.iter().any(|f| f.contains("not synchronised")),
        "{:?}",
        p.findings
    );
}

#[test]
fn entries_outside_the_window_are_not_counted_but_bound_its_silences() {
    let w = window(&t("10:00:00"), &t("11:00:00"));
    let mut b = PeriodBuilder::new(w);
    b.add(&leaf(0, &t("09:59:59"), EventKind::LogGenesis, None));
    b.add(&leaf(1, &t("11:00:00"), EventKind::Heartbeat, None));
    let p = b.finish(&[], ns_of_ts(&t("12:00:00")).unwrap());
    assert_eq!(p.entries, 0);
    assert_eq!(p.gaps.len(), 1);
    assert_eq!(p.gaps[0].seconds, 3600);
    assert_eq!(p.gaps[0].state, "log open, no entry");
}
