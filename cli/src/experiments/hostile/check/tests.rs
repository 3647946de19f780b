//! hostile's checks fed failing evidence: each invariant fails when its evidence says so.

use super::*;

fn answer(status: u16, problem: bool) -> Answer {
    Answer {
        status,
        content_type: Some(if problem {
            "application/problem+json".into()
        } else {
            "text/plain".into()
        }),
        retry_after: false,
        body_head: String::new(),
    }
}

fn seen(class: &'static str, expect: Expect, a: Result<Answer, NoAnswer>) -> Seen {
    Seen {
        class,
        expect,
        what: "x GET /y".into(),
        result: a,
    }
}

fn good() -> Evidence {
    let b = BreakerTotals {
        opened: 2,
        failures: 7,
        not_closed: 0,
    };
    let cut = |ended| super::super::slow::Slow {
        what: "x".into(),
        ended: Some(ended),
        after: std::time::Duration::from_secs(10),
    };
    Evidence {
        slow_headers: vec![cut(super::super::slow::Ended::Closed)],
        slow_bodies: vec![cut(super::super::slow::Ended::Answered {
            status: 408,
            problem: true,
        })],
        evasion: Some(Evasion {
            sent: 600,
            accepted: 210,
            limited: 390,
            other: 0,
            took_secs: 0.5,
            capacity: 200,
            refill: 100,
        }),
        seen: vec![
            seen("nul", Expect::Refused, Ok(answer(400, true))),
            seen("traversal", Expect::Private, Ok(answer(404, true))),
        ],
        guesses: vec![Ok(answer(401, true)), Ok(answer(429, true))],
        breakers_before: Some(b),
        breakers_after: Some(b),
        tables: TableEvidence::Compared {
            tables: 12,
            changed: vec![],
        },
        rss_peak_mib: Some(90.0),
        rss_before_mib: Some(60.0),
        rss_bound_mib: 256.0,
    }
}

fn failed(e: &Evidence) -> Vec<String> {
    judge(e)
        .into_iter()
        .filter(|i| i.verdict != crate::run::Verdict::Pass)
        .map(|i| i.name)
        .collect()
}

#[test]
fn a_clean_run_passes_every_invariant() {
    assert_eq!(failed(&good()), Vec::<String>::new());
}

#[test]
fn an_accepted_hostile_request_fails() {
    let mut e = good();
    e.seen
        .push(seen("overflow", Expect::Refused, Ok(answer(202, false))));
    assert_eq!(
        failed(&e),
        vec!["every hostile request refused with a 4xx, none accepted"]
    );
}

#[test]
fn a_reachable_private_path_fails() {
    let mut e = good();
    e.seen
        .push(seen("traversal", Expect::Private, Ok(answer(200, false))));
    assert_eq!(
        failed(&e),
        vec![
            "no private path reachable (metrics, readiness, lab, admin, via traversal or directly)"
        ]
    );
}

#[test]
fn a_500_fails_and_so_does_its_bare_body() {
    let mut e = good();
    e.seen
        .push(seen("nul", Expect::Refused, Ok(answer(500, false))));
    let f = failed(&e);
    assert!(f.iter().any(|n| n.starts_with("no 5xx")), "{f:?}");
    assert!(f.iter().any(|n| n.contains("problem+json")), "{f:?}");
}

#[test]
fn shed_guesses_pass_but_a_bare_503_does_not() {
    let mut e = good();
    let mut s = answer(503, true);
    s.retry_after = true;
    e.guesses.push(Ok(s));
    assert!(failed(&e).is_empty());
    e.guesses.push(Ok(answer(503, true)));
    let f = failed(&e);
    assert!(f.iter().any(|n| n.starts_with("no 5xx")), "{f:?}");
    assert!(
        f.iter().any(|n| n.starts_with("password guessing")),
        "{f:?}"
    );
}

#[test]
fn a_successful_guess_fails() {
    let mut e = good();
    e.guesses.push(Ok(answer(200, false)));
    assert!(
        failed(&e)
            .iter()
            .any(|n| n.starts_with("password guessing"))
    );
}

#[test]
fn a_hang_fails() {
    let mut e = good();
    e.seen
        .push(seen("malformed", Expect::Refused, Err(NoAnswer::Timeout)));
    assert_eq!(
        failed(&e),
        vec!["every hostile request answered (no hang, no dropped connection)"]
    );
}

#[test]
fn an_opened_breaker_or_a_counted_failure_fails() {
    let mut e = good();
    e.breakers_after = Some(BreakerTotals {
        opened: 2,
        failures: 8,
        not_closed: 0,
    });
    assert_eq!(
        failed(&e),
        vec!["no breaker opened and no upstream failure counted"]
    );
    e.breakers_after = None;
    assert_eq!(
        failed(&e),
        vec!["no breaker opened and no upstream failure counted"]
    );
}

#[test]
fn a_changed_table_fails_and_a_busy_shop_is_unknown() {
    let mut e = good();
    e.tables = TableEvidence::Compared {
        tables: 12,
        changed: vec!["catalog.products (1 → 1 rows)".into()],
    };
    assert_eq!(
        failed(&e),
        vec!["every table's rows and checksum unchanged by the rejected requests"]
    );
    e.tables = TableEvidence::NotQuiet(vec!["payments.outbox".into()]);
    let inv = judge(&e);
    let rows = inv
        .iter()
        .find(|i| i.name.starts_with("every table"))
        .unwrap();
    assert_eq!(rows.verdict, crate::run::Verdict::Unknown);
}

#[test]
fn evading_the_rate_limit_with_fresh_session_ids_fails() {
    let mut e = good();
    if let Some(v) = e.evasion.as_mut() {
        v.accepted = 600;
        v.limited = 0;
    }
    assert_eq!(
        failed(&e),
        vec!["a new X-Session-Id per request buys no extra tokens (one bucket per address)"]
    );
}

#[test]
fn a_slow_client_still_held_open_fails() {
    let mut e = good();
    e.slow_bodies[0].ended = None;
    assert_eq!(
        failed(&e),
        vec![
            "slow clients are cut off (unfinished headers closed, a stalled body answered 408 problem+json)"
        ]
    );
}

#[test]
fn identity_over_its_memory_bound_fails() {
    let mut e = good();
    e.rss_peak_mib = Some(2800.0);
    assert_eq!(
        failed(&e),
        vec!["identity's RSS ≤ 256 MiB while guessed at"]
    );
}
