use std::time::{Duration, Instant};

use super::*;
use crate::load::open::OpenRun;
use crate::run::Verdict;

const L: Limits = Limits {
    capacity: 200,
    refill_per_sec: 100,
};

fn session(sent: u64, accepted: u64) -> SessionCount {
    SessionCount {
        sent,
        accepted,
        rejected: sent - accepted,
        ..SessionCount::default()
    }
}

#[test]
fn too_many_acceptances_fail_the_upper_bound() {
    assert_eq!(
        upper_bound(&[session(1500, 700)], L, 5.0, None).verdict,
        Verdict::Pass
    );
    assert_eq!(
        upper_bound(&[session(1500, 702)], L, 5.0, None).verdict,
        Verdict::Fail
    );
    // The control arm: judged against a wrong (smaller) capacity.
    let wrong = Limits { capacity: 20, ..L };
    assert_eq!(
        upper_bound(&[session(1500, 700)], wrong, 5.0, None).verdict,
        Verdict::Fail
    );
}

#[test]
fn too_few_acceptances_fail_the_lower_bound() {
    assert_eq!(
        lower_bound(&[session(1500, 690)], L, 5.0, 0.1).verdict,
        Verdict::Pass
    );
    assert_eq!(
        lower_bound(&[session(1500, 600)], L, 5.0, 0.1).verdict,
        Verdict::Fail
    );
    // Below the refill rate everything must pass the limiter.
    assert_eq!(
        lower_bound(&[session(100, 100)], L, 5.0, 0.0).verdict,
        Verdict::Pass
    );
    assert_eq!(
        lower_bound(&[session(100, 80)], L, 5.0, 0.1).verdict,
        Verdict::Fail
    );
    let wrong = Limits {
        capacity: 2000,
        ..L
    };
    assert_eq!(
        lower_bound(&[session(3000, 700)], wrong, 5.0, 0.1).verdict,
        Verdict::Fail
    );
    assert_eq!(lower_bound(&[], L, 5.0, 0.1).verdict, Verdict::Fail);
}

#[test]
fn a_bad_rejection_fails() {
    let mut s = session(10, 5);
    assert_eq!(rejections_valid(&[s], L).verdict, Verdict::Pass);
    s.bad_rejections = 1;
    assert_eq!(rejections_valid(&[s], L).verdict, Verdict::Fail);
}

#[test]
fn a_5xx_or_a_transport_error_fails() {
    let mut s = session(10, 5);
    assert_eq!(
        no_server_errors(&[s], &Outcomes::default()).verdict,
        Verdict::Pass
    );
    s.errors = 1;
    assert_eq!(
        no_server_errors(&[s], &Outcomes::default()).verdict,
        Verdict::Fail
    );
}

#[test]
fn an_upstream_count_off_by_one_fails() {
    assert_eq!(upstream_matches(10, Some(10.0)).verdict, Verdict::Pass);
    assert_eq!(upstream_matches(10, Some(11.0)).verdict, Verdict::Fail);
    assert_eq!(upstream_matches(10, None).verdict, Verdict::Unknown);
}

#[test]
fn a_user_no_instance_accepted_fails_the_spread_check() {
    let names = ["alice", "bob"];
    assert_eq!(
        spread_over_instances(&[vec![300, 310], vec![305, 299]], &names).verdict,
        Verdict::Pass
    );
    assert_eq!(
        spread_over_instances(&[vec![600, 0], vec![305, 299]], &names).verdict,
        Verdict::Fail
    );
    assert_eq!(spread_over_instances(&[], &[]).verdict, Verdict::Fail);
}

#[test]
fn the_bound_is_judged_on_acceptances_summed_over_instances() {
    // 400 via each of two BFFs: each half is within one bucket's bound,
    // the user's total is not.
    let per_instance = [session(800, 400), session(800, 400)];
    for half in &per_instance {
        assert_eq!(upper_bound(&[*half], L, 3.0, None).verdict, Verdict::Pass);
    }
    let combined = session(1600, 800);
    assert_eq!(
        upper_bound(&[combined], L, 3.0, None).verdict,
        Verdict::Fail
    );
}

/// `n` answers of one kind, sent `every` apart from `start` ms into the
/// run, each taking `ms`.
fn timed(base: Instant, start: u64, n: u64, rejected: bool, ms: u64) -> Vec<Timed> {
    (0..n)
        .map(|i| Timed {
            sent: base + Duration::from_millis(start + i * 10),
            rejected,
            took: Duration::from_millis(ms),
        })
        .collect()
}

#[test]
fn slow_rejections_fail() {
    let base = Instant::now();
    let mut t = timed(base, 0, 5, false, 2);
    t.extend(timed(base, 1, 5, true, 1));
    assert_eq!(rejections_cheaper(&t).verdict, Verdict::Pass);
    t.extend(timed(base, 2, 6, true, 9));
    let slow = rejections_cheaper(&t);
    assert_eq!(slow.verdict, Verdict::Fail);
    assert_eq!(slow.observed, "9.00 ms");
    assert_eq!(rejections_cheaper(&[]).verdict, Verdict::Unknown);
    let no_429 = timed(base, 0, 5, false, 2);
    assert_eq!(rejections_cheaper(&no_429).verdict, Verdict::Unknown);
    let no_200_after = [timed(base, 0, 5, false, 2), timed(base, 100, 5, true, 1)].concat();
    assert_eq!(rejections_cheaper(&no_200_after).verdict, Verdict::Unknown);
}

#[test]
fn a_stall_after_the_bucket_drains_weighs_on_both_kinds_alike() {
    // CI's failing run, in small: fast 200s while the bucket is full, then
    // a stall while 200s and 429s interleave. The whole run's median 200
    // (the fast ones) is below the median 429, but over the same stretch
    // the 429s are still the cheaper.
    let base = Instant::now();
    let t = [
        timed(base, 0, 200, false, 2),
        timed(base, 2000, 100, false, 14),
        timed(base, 2000, 100, true, 13),
    ]
    .concat();
    let i = rejections_cheaper(&t);
    assert_eq!(i.verdict, Verdict::Pass, "{i:?}");
    assert_eq!(
        (i.expected.as_str(), i.observed.as_str()),
        ("≤ 14.00 ms", "13.00 ms")
    );
    assert!(
        i.evidence.contains("the 100 429s and the 100 200s"),
        "{}",
        i.evidence
    );
}

fn retried(outcome: &str) -> RetrySeen {
    RetrySeen::Retried {
        outcome: outcome.into(),
        secs: 1,
        user: "carol".into(),
        sent: 300,
        instances: 2,
        refused_by: "http://127.0.0.1:1".into(),
        retried_at: "http://127.0.0.1:2".into(),
    }
}

#[test]
fn a_refused_retry_or_a_429_without_retry_after_fails() {
    assert_eq!(retry_after(&retried("200")).verdict, Verdict::Pass);
    let refused = retry_after(&retried("429"));
    assert_eq!(refused.verdict, Verdict::Fail);
    assert_eq!(refused.observed, "429 after 1 s");
    let no_header = RetrySeen::NoRetryAfter {
        user: "carol".into(),
    };
    assert_eq!(retry_after(&no_header).verdict, Verdict::Fail);
    let never = RetrySeen::NeverRefused {
        user: "carol".into(),
        sent: 900,
    };
    assert_eq!(retry_after(&never).verdict, Verdict::Unknown);
}

#[test]
fn the_control_arms_wrong_capacity_fails_the_run_in_the_reports_order() {
    let p: Params = crate::experiments::experiment::parse(
        "flood",
        &["--duration", "3s", "--expect-capacity", "20"],
    )
    .unwrap();
    let names = ["alice", "bob"];
    let mut run = OpenRun {
        took: Duration::from_secs(3),
        ..OpenRun::default()
    };
    run.latencies
        .record("accepted (200) (service time)", Duration::from_millis(2));
    let base = Instant::now();
    let acted = Acted {
        run,
        counts: vec![session(600, 500), session(600, 500)],
        spread: vec![vec![500], vec![500]],
        timed: [timed(base, 0, 5, false, 2), timed(base, 1, 5, true, 1)].concat(),
    };
    let ev = Evidence {
        upstream_delta: Some(1000.0),
        failed_open: Some(0.0),
        retry: retried("200"),
        bench: None,
    };
    let judge = |capacity| Judge {
        live: L,
        limits: Limits { capacity, ..L },
        names: &names,
    };
    let verdicts = |j: &Judge| -> Vec<Verdict> {
        invariants(&p, j, &acted, &ev)
            .iter()
            .map(|i| i.verdict)
            .collect()
    };
    assert!(verdicts(&judge(200)).iter().all(|v| *v == Verdict::Pass));
    let control = verdicts(&judge(20));
    assert_eq!(control.len(), 8);
    assert_eq!(control[0], Verdict::Fail, "the upper bound is judged first");
}
