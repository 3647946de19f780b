//! Each invariant fed failing evidence (and a whole run's passing evidence
//! once), through the per-invariant functions and through [`invariants`].

use std::time::Duration;

use super::*;
use crate::run::Latencies;
use crate::run::Verdict;

fn settings() -> Settings {
    Settings {
        consecutive_failures: 5,
        open: Duration::from_secs(2),
        half_open_probes: 1,
    }
}

fn params() -> Params {
    Params {
        target: "catalog-2".into(),
        read_rate: 50,
        pinned: 100,
        fail_fast_p99_ms: 50,
        dead_ms: None,
        close_slack_ms: 1000,
    }
}

/// What a healthy run observes: every invariant holds.
fn passing() -> Evidence {
    let mut ev = Evidence::default();
    for o in ["404", "400", "404", "400"] {
        ev.client_errors.add(CLIENT_ERRORS, o);
    }
    ev.client_phase = Counters {
        sent_calls: 2,
        successes: 2,
        ..Counters::default()
    };
    ev.closed_after_client_errors = true;
    ev.reads_to_open = 5;
    ev.failures_at_open = Some(5);
    for _ in 0..100 {
        ev.pinned.add(PINNED, "503");
        ev.pinned_lat.record(PINNED, Duration::from_millis(2));
        ev.reads.add(READS, "200");
    }
    ev.replica_served_delta = Some(0.0);
    ev.open_phase = Counters {
        rejected: 100,
        ..Counters::default()
    };
    ev.dead_for = Duration::from_millis(4500);
    ev.dead_phase = Counters {
        sent_probes: 2,
        failures: 2,
        ..Counters::default()
    };
    ev.closed_after = Some(Duration::from_millis(2100));
    ev.recovery = Counters {
        sent_probes: 1,
        ..Counters::default()
    };
    ev.served_after_recovery = Some(5.0);
    ev
}

fn verdicts(ev: &Evidence) -> Vec<(String, Verdict)> {
    invariants(&params(), settings(), ev)
        .into_iter()
        .map(|i| (i.name, i.verdict))
        .collect()
}

/// The verdict of the invariant named `name` (by its start).
fn verdict_of(ev: &Evidence, name: &str) -> Verdict {
    let all = verdicts(ev);
    all.iter()
        .find(|(n, _)| n.starts_with(name))
        .unwrap_or_else(|| panic!("no invariant {name:?} in {all:?}"))
        .1
}

#[test]
fn a_healthy_run_passes_all_seven_invariants_under_their_names() {
    let v = verdicts(&passing());
    let names: Vec<&str> = v.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "client errors never count against the breaker",
            "the breaker opens within its configured failure count",
            "while open, requests to that upstream fail fast",
            "while open, the replica receives no calls",
            "the dead replica receives no calls (only half-open probes)",
            "reads through the BFF keep succeeding",
            "after recovery the breaker half-opens and closes within its configured time",
        ]
    );
    assert!(v.iter().all(|(_, v)| *v == Verdict::Pass), "{v:?}");
}

/// Makes one invariant's evidence bad.
type Spoil = fn(&mut Evidence);

#[test]
fn each_invariant_fails_on_its_own_bad_evidence() {
    let cases: [(&str, Spoil); 7] = [
        ("client errors", |ev| ev.client_phase.failures = 1),
        ("the breaker opens", |ev| ev.failures_at_open = None),
        ("while open, requests", |ev| ev.pinned.add(PINNED, "200")),
        ("while open, the replica", |ev| {
            ev.replica_served_delta = Some(3.0)
        }),
        ("the dead replica", |ev| ev.dead_phase.sent_calls = 1),
        ("reads through the BFF", |ev| ev.reads.add(READS, "502")),
        ("after recovery", |ev| ev.closed_after = None),
    ];
    for (name, spoil) in cases {
        let mut ev = passing();
        spoil(&mut ev);
        assert_eq!(verdict_of(&ev, name), Verdict::Fail, "{name}");
        // Only that one: the others still pass on the same evidence.
        let others = verdicts(&ev)
            .into_iter()
            .filter(|(n, v)| !n.starts_with(name) && *v != Verdict::Pass)
            .count();
        assert_eq!(others, 0, "{name} spoiled another invariant");
    }
}

#[test]
fn an_open_phase_that_outlasted_the_open_time_is_not_judged() {
    let mut ev = passing();
    ev.open_outlasted = true;
    // Even with a call leaked: a probe may legitimately have been due.
    ev.open_phase.sent_probes = 1;
    assert_eq!(verdict_of(&ev, "while open, the replica"), Verdict::Unknown);
}

#[test]
fn client_errors_that_count_or_are_not_4xx_fail() {
    let mut out = Outcomes::default();
    for o in ["404", "400", "404", "400"] {
        out.add(CLIENT_ERRORS, o);
    }
    let none = Counters {
        sent_calls: 2,
        ..Counters::default()
    };
    let counted = Counters {
        failures: 2,
        ..none
    };
    let opened = Counters { opened: 1, ..none };
    let never_sent = Counters::default();
    let v = |out: &Outcomes, c: Counters, closed: bool| {
        client_errors_not_counted("catalog-2", out, c, closed).verdict
    };
    assert_eq!(v(&out, none, true), Verdict::Pass);
    assert_eq!(v(&out, counted, true), Verdict::Fail);
    assert_eq!(v(&out, opened, true), Verdict::Fail);
    assert_eq!(v(&out, none, false), Verdict::Fail);
    assert_eq!(v(&Outcomes::default(), none, true), Verdict::Fail);
    assert_eq!(v(&out, never_sent, true), Verdict::Fail);
    out.add(CLIENT_ERRORS, "502");
    assert_eq!(v(&out, none, true), Verdict::Fail);
}

#[test]
fn opening_late_never_or_without_a_failure_fails() {
    assert_eq!(opens_within(5, Some(5), 10).verdict, Verdict::Pass);
    assert_eq!(opens_within(5, Some(6), 12).verdict, Verdict::Fail);
    assert_eq!(opens_within(5, Some(0), 1).verdict, Verdict::Fail);
    assert_eq!(opens_within(5, None, 30).verdict, Verdict::Fail);
}

#[test]
fn slow_refused_without_retry_after_or_forwarded_pinned_requests_fail() {
    let mut fast = Latencies::default();
    let mut out = Outcomes::default();
    for _ in 0..100 {
        fast.record(PINNED, Duration::from_millis(2));
        out.add(PINNED, "503");
    }
    let v = |out: &Outcomes, lat: &Latencies, bad: u64| {
        fails_fast(out, lat.get(PINNED), bad, 50).verdict
    };
    assert_eq!(v(&out, &fast, 0), Verdict::Pass);
    assert_eq!(v(&out, &fast, 1), Verdict::Fail);
    let mut slow = fast.clone();
    for _ in 0..10 {
        slow.record(PINNED, Duration::from_millis(300));
    }
    assert_eq!(v(&out, &slow, 0), Verdict::Fail);
    out.add(PINNED, "200");
    assert_eq!(v(&out, &fast, 0), Verdict::Fail);
    // Nothing pinned (never opened): not judged here, opens_within fails.
    assert_eq!(fails_fast(&out, None, 0, 50).verdict, Verdict::Unknown);
}

#[test]
fn a_call_reaching_an_open_replica_fails() {
    let quiet = Counters::default();
    let v = |delta, c| no_calls_while_open("c", delta, c).verdict;
    assert_eq!(v(Some(0.0), quiet), Verdict::Pass);
    assert_eq!(v(Some(1.0), quiet), Verdict::Fail);
    for leaked in [
        Counters {
            injected: 1,
            ..quiet
        },
        Counters {
            sent_calls: 1,
            ..quiet
        },
        Counters {
            sent_probes: 1,
            ..quiet
        },
    ] {
        assert_eq!(v(Some(0.0), leaked), Verdict::Fail, "{leaked:?}");
    }
    // Refusals are the point: they never count as calls.
    let refused = Counters {
        rejected: 100,
        ..quiet
    };
    assert_eq!(v(Some(0.0), refused), Verdict::Pass);
    assert_eq!(v(None, quiet), Verdict::Unknown);
}

#[test]
fn a_call_or_a_probe_storm_reaching_a_dead_replica_fails() {
    let quiet = Counters::default();
    let probes = Counters {
        sent_probes: 2,
        ..quiet
    };
    let dead = Duration::from_millis(4500);
    let v = |c| dead_gets_only_probes("c", c, settings(), dead).verdict;
    // 4.5 s / 2 s open → 2 episodes + the one in progress: ≤ 3 probes.
    assert_eq!(v(probes), Verdict::Pass);
    assert_eq!(
        v(Counters {
            sent_probes: 3,
            ..quiet
        }),
        Verdict::Pass
    );
    assert_eq!(
        v(Counters {
            sent_probes: 4,
            ..quiet
        }),
        Verdict::Fail
    );
    assert_eq!(
        v(Counters {
            sent_calls: 1,
            ..probes
        }),
        Verdict::Fail
    );
}

#[test]
fn any_failed_read_fails_and_no_read_is_unknown() {
    let mut reads = Outcomes::default();
    assert_eq!(reads_keep_succeeding(&reads).verdict, Verdict::Unknown);
    reads.add(READS, "200");
    assert_eq!(reads_keep_succeeding(&reads).verdict, Verdict::Pass);
    reads.add(READS, "error: connect");
    assert_eq!(reads_keep_succeeding(&reads).verdict, Verdict::Fail);
}

#[test]
fn closing_late_never_or_without_a_probe_fails() {
    let bound = Duration::from_secs(3);
    let probed = Counters {
        sent_probes: 1,
        ..Counters::default()
    };
    let v = |took: Option<u64>, c| {
        closes_within("c", bound, took.map(Duration::from_millis), c, Some(5.0)).verdict
    };
    assert_eq!(v(Some(2100), probed), Verdict::Pass);
    assert_eq!(v(Some(3000), probed), Verdict::Pass);
    assert_eq!(v(Some(3100), probed), Verdict::Fail);
    assert_eq!(v(None, probed), Verdict::Fail);
    assert_eq!(v(Some(10), Counters::default()), Verdict::Fail);
}
