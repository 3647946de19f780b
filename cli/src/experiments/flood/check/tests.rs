use std::time::Duration;

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

#[test]
fn slow_rejections_fail() {
    let mut lat = Latencies::default();
    lat.record("accepted (200) (service time)", Duration::from_millis(2));
    lat.record("rejected (429) (service time)", Duration::from_millis(1));
    assert_eq!(rejections_cheaper(&lat).verdict, Verdict::Pass);
    for _ in 0..3 {
        lat.record("rejected (429) (service time)", Duration::from_millis(9));
    }
    assert_eq!(rejections_cheaper(&lat).verdict, Verdict::Fail);
    assert_eq!(
        rejections_cheaper(&Latencies::default()).verdict,
        Verdict::Unknown
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
    run.latencies
        .record("rejected (429) (service time)", Duration::from_millis(1));
    let acted = Acted {
        run,
        counts: vec![session(600, 500), session(600, 500)],
        spread: vec![vec![500], vec![500]],
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
