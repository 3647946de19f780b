use std::time::Duration;

use serde_json::json;

use super::*;
use crate::clients::contract::identity::Reason;
use crate::experiments::rotate::evidence::Rules;
use crate::load::open::OpenRun;
use crate::run::{Outcomes, Verdict};

fn ok(status: u16, body: serde_json::Value) -> Answer {
    Ok((status, body))
}

#[test]
fn any_non_200_or_drop_fails_the_run() {
    let mut o = Outcomes::default();
    o.add("GET /userinfo", "200");
    assert_eq!(failed_requests(&o, 0).verdict, Verdict::Pass);
    assert_eq!(failed_requests(&o, 1).verdict, Verdict::Fail);
    o.add("POST /token (refresh)", "500");
    let inv = failed_requests(&o, 0);
    assert_eq!(inv.verdict, Verdict::Fail);
    assert!(inv.observed.contains("1× 500"), "{}", inv.observed);
    assert_eq!(
        failed_requests(&Outcomes::default(), 0).verdict,
        Verdict::Fail
    );
}

#[test]
fn max_ttl_bounds_the_number_of_logins() {
    let secs = Duration::from_secs;
    assert_eq!(expected_logins(secs(20), secs(5)), 4);
    assert_eq!(expected_logins(secs(12), secs(5)), 3);
    assert_eq!(expected_logins(secs(60), secs(5)), 12);
}

fn rotation(distinct: usize, instances: usize) -> Rotation {
    Rotation {
        distinct,
        instances,
        duration: Duration::from_secs(10),
        ttl: Duration::from_secs(4),
        sample_errors: 0,
        swaps: 3,
    }
}

#[test]
fn fewer_logins_than_max_ttl_forces_fail_per_instance() {
    assert_eq!(logins_rotated(&rotation(3, 1)).verdict, Verdict::Pass);
    assert_eq!(logins_rotated(&rotation(2, 1)).verdict, Verdict::Fail);
    // Two instances rotate their own credentials: twice as many.
    assert_eq!(logins_rotated(&rotation(5, 2)).verdict, Verdict::Fail);
    assert_eq!(logins_rotated(&rotation(6, 2)).verdict, Verdict::Pass);
}

#[test]
fn requests_near_an_event_land_in_the_rotation_window() {
    let sample = |sent_ms, ms| Sample {
        sent_ms,
        latency: Duration::from_millis(ms),
    };
    let samples = [
        sample(900, 5),
        sample(2_500, 50),
        sample(3_000, 40),
        sample(9_000, 6),
    ];
    let w = split_windows(&samples, &[2_000], Duration::from_secs(1));
    assert_eq!(w.get(LABEL_ROTATION).unwrap().len(), 2, "±1 s, inclusive");
    assert_eq!(w.get(LABEL_STEADY).unwrap().len(), 2);
}

fn revoked() -> Revoked {
    Revoked {
        at_ms: 10_000,
        username: "v-token-identity-x".into(),
        generation: 3,
    }
}

/// Generation `generation`, swapped in at `at_ms` for `reason`.
fn record(generation: u64, at_ms: u64, reason: Reason) -> Record {
    Record {
        generation,
        username: format!("v-token-identity-{generation}"),
        lease_id: Some(format!("database/creds/identity/{generation}")),
        reason,
        lease_ttl_secs: Some(4),
        requested_at_ms: at_ms.saturating_sub(20),
        swapped_in_at_ms: at_ms,
        swapped_out_at_ms: None,
        drained_at_ms: None,
        revoked_at_ms: None,
        renewals: 0,
    }
}

#[test]
fn a_revoked_generation_never_replaced_or_replaced_late_fails() {
    let history = vec![
        record(3, 5_000, Reason::MaxTtl),
        record(4, 10_120, Reason::ConnectionFailed),
    ];
    let inv = replaced(&revoked(), &history);
    assert_eq!(inv.verdict, Verdict::Pass);
    assert_eq!(
        inv.observed,
        "generation 3 → 4 after 120 ms (connection_failed)"
    );
    assert_eq!(replaced(&revoked(), &history[..1]).verdict, Verdict::Fail);
    let late = vec![record(4, 16_000, Reason::RenewalRefused)];
    assert_eq!(replaced(&revoked(), &late).verdict, Verdict::Fail);
}

fn jti(after: Answer, key_ttl: Result<i64, String>) -> Probe<JtiSeen> {
    Probe::Ran(JtiSeen {
        before: ok(200, json!({"sub": "alice"})),
        revoke: ok(200, json!({"revoked": true})),
        after,
        key_ttl,
        ttl: 300,
    })
}

#[test]
fn a_revoked_jti_still_accepted_or_a_denylist_key_outliving_the_token_fails() {
    let refused = || ok(401, json!({"reason": "revoked"}));
    assert_eq!(
        revoked_jti_rejected(&jti(refused(), Ok(299))).verdict,
        Verdict::Pass
    );
    let accepted = revoked_jti_rejected(&jti(ok(200, json!({"sub": "alice"})), Ok(299)));
    assert_eq!(accepted.verdict, Verdict::Fail);
    assert!(
        accepted.observed.contains("revoke 200 → 200"),
        "{}",
        accepted.observed
    );
    for key_ttl in [Ok(301), Ok(-2), Err("connection refused".into())] {
        assert_eq!(
            revoked_jti_rejected(&jti(refused(), key_ttl)).verdict,
            Verdict::Fail
        );
    }
    let no_login = revoked_jti_rejected(&Probe::NoLogin(ok(503, json!({}))));
    assert_eq!(no_login.verdict, Verdict::Fail);
    assert_eq!(no_login.observed, "login: 503");
}

fn reuse(successor: Option<Answer>, family: Option<&str>) -> Probe<ReuseSeen> {
    Probe::Ran(ReuseSeen {
        rotated: ok(200, json!({})),
        reused: ok(400, json!({"reason": "reuse_detected"})),
        successor,
        family: Ok(family.map(str::to_owned)),
    })
}

#[test]
fn a_reused_refresh_token_whose_family_lives_on_fails() {
    let revoked = || Some(ok(400, json!({"reason": "family_revoked"})));
    assert_eq!(
        reuse_revokes_family(&reuse(revoked(), Some("reuse_detected"))).verdict,
        Verdict::Pass
    );
    let lives = reuse_revokes_family(&reuse(Some(ok(200, json!({}))), None));
    assert_eq!(lives.verdict, Verdict::Fail);
    assert!(
        lives.observed.ends_with("r2 200; family not revoked"),
        "{}",
        lives.observed
    );
    assert_eq!(
        reuse_revokes_family(&reuse(None, Some("reuse_detected"))).verdict,
        Verdict::Fail
    );
}

fn polled(last: Option<Answer>) -> Probe<ExpirySeen> {
    Probe::Ran(ExpirySeen {
        last,
        accepted: 10,
        took_ms: 1_050,
    })
}

#[test]
fn an_expired_token_still_accepted_fails() {
    let expired = Some(ok(401, json!({"reason": "expired"})));
    assert_eq!(
        expired_token_rejected(&polled(expired)).verdict,
        Verdict::Pass
    );
    let accepted = Some(ok(200, json!({"sub": "carol"})));
    assert_eq!(
        expired_token_rejected(&polled(accepted)).verdict,
        Verdict::Fail
    );
    let wrong_reason = Some(ok(401, json!({"reason": "revoked"})));
    assert_eq!(
        expired_token_rejected(&polled(wrong_reason)).verdict,
        Verdict::Fail
    );
    assert_eq!(expired_token_rejected(&polled(None)).verdict, Verdict::Fail);
}

fn superseded(gone: &[&str], roles: &[&str], sessions: &[&str]) -> Superseded {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Superseded {
        gone: owned(gone),
        current: owned(&["v-token-identity-now"]),
        limit: Duration::from_secs(19),
        left: Ok((owned(roles), owned(sessions))),
        took: Duration::from_millis(400),
    }
}

#[test]
fn a_superseded_role_left_or_still_connected_fails() {
    let old = ["v-token-identity-a", "v-token-identity-b"];
    assert_eq!(
        superseded_gone(&Ok(superseded(&old, &[], &[]))).verdict,
        Verdict::Pass
    );
    assert_eq!(
        superseded_gone(&Ok(superseded(&old, &old[..1], &[]))).verdict,
        Verdict::Fail
    );
    assert_eq!(
        superseded_gone(&Ok(superseded(&old, &[], &old[1..]))).verdict,
        Verdict::Fail
    );
    // No rotation at all: nothing superseded is no evidence of clean-up.
    assert_eq!(
        superseded_gone(&Ok(superseded(&[], &[], &[]))).verdict,
        Verdict::Fail
    );
    let mut unread = superseded(&old, &[], &[]);
    unread.left = Err("connection reset".into());
    assert_eq!(superseded_gone(&Ok(unread)).verdict, Verdict::Unknown);
    assert_eq!(
        superseded_gone(&Err("PUT /lab/rotation-mode: 500".into())).verdict,
        Verdict::Unknown
    );
}

#[test]
fn a_failed_revoke_leaves_the_replacement_unknown_and_keeps_the_order() {
    let mut outcomes = Outcomes::default();
    outcomes.add("GET /userinfo", "200");
    let ev = Observed {
        load: OpenRun {
            outcomes,
            ..OpenRun::default()
        },
        rotation: rotation(3, 1),
        revoked: Err("Vault answered 403".into()),
        history: Vec::new(),
        rules: Rules {
            jti: Probe::NoLogin(Err("connect".into())),
            reuse: Probe::NoLogin(Err("connect".into())),
            expiry: Probe::NoLogin(Err("connect".into())),
        },
    };
    let after = Evidence {
        superseded: Err("PUT /lab/rotation-mode: 500".into()),
    };
    let invs = invariants(&ev, &after);
    let names: Vec<&str> = invs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "zero failed requests",
            "the logins rotated at least as often as max_ttl forces",
            REPLACED,
            "a revoked jti is rejected",
            "a reused refresh token revokes its family",
            "an expired access token is rejected",
            SUPERSEDED,
        ]
    );
    assert_eq!(invs[2].verdict, Verdict::Unknown);
    assert!(invs[2].evidence.contains("Vault answered 403"));
}
