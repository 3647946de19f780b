//! The checks, as pure functions of what was [`Observed`] and the [`Evidence`] (unit-tested with
//! failing evidence in `check/tests.rs`), and the latency split by window.

use std::time::Duration;

use super::evidence::{
    Answer, Evidence, ExpirySeen, JtiSeen, Observed, Probe, ReuseSeen, Revoked, Rotation, Sample,
    Superseded,
};
use super::plan::SAMPLE_EVERY;
use crate::clients::contract::identity::Record;
use crate::run::{Invariant, Latencies, Outcomes};

pub const LABEL_ROTATION: &str = "all requests, rotation windows (±1 s of a swap or the revoke)";
pub const LABEL_STEADY: &str = "all requests, steady windows";

const REPLACED: &str = "a lease revoked in Vault mid-load is replaced without a restart";
const SUPERSEDED: &str = "every superseded role is gone from pg_roles and holds no connection";

/// Every invariant, in the report's order: the load phase's, then the
/// superseded logins'.
pub fn invariants(ev: &Observed, after: &Evidence) -> Vec<Invariant> {
    vec![
        failed_requests(&ev.load.outcomes, ev.load.dropped),
        logins_rotated(&ev.rotation),
        match &ev.revoked {
            Ok(r) => replaced(r, &ev.history),
            Err(e) => Invariant::unknown(
                REPLACED,
                "a new login within 5 s",
                format!("the revoke itself failed: {e}"),
            ),
        },
        revoked_jti_rejected(&ev.rules.jti),
        reuse_revokes_family(&ev.rules.reuse),
        expired_token_rejected(&ev.rules.expiry),
        superseded_gone(&after.superseded),
    ]
}

/// Every arrival answered 200 with the body it should have.
pub fn failed_requests(outcomes: &Outcomes, dropped: u64) -> Invariant {
    let (mut total, mut failed) = (0, Vec::new());
    for (label, counts) in &outcomes.0 {
        for (outcome, n) in counts {
            total += n;
            if outcome != "200" {
                failed.push(format!("{label}: {n}× {outcome}"));
            }
        }
    }
    Invariant::check(
        "zero failed requests",
        failed.is_empty() && dropped == 0 && total > 0,
        "every request answered 200",
        if failed.is_empty() {
            format!("{total} of {total} answered 200")
        } else {
            failed.join("; ")
        },
        format!(
            "exact outcome of every arrival of the open-model load ({dropped} dropped by the generator)"
        ),
    )
}

/// Logins a run of `duration` needs at least when none may live longer
/// than `max_ttl`: ⌈duration / max_ttl⌉.
pub fn expected_logins(duration: Duration, max_ttl: Duration) -> u64 {
    (duration.as_secs_f64() / max_ttl.as_secs_f64()).ceil() as u64
}

/// At least ⌈duration / max_ttl⌉ distinct logins per instance.
pub fn logins_rotated(r: &Rotation) -> Invariant {
    let expected = expected_logins(r.duration, r.ttl) * r.instances as u64;
    Invariant::check(
        "the logins rotated at least as often as max_ttl forces",
        r.distinct as u64 >= expected,
        format!(
            "≥ {expected} distinct logins ({}s of load / {}s max_ttl, per instance)",
            r.duration.as_secs_f64(),
            r.ttl.as_secs()
        ),
        format!("{} distinct logins", r.distinct),
        format!(
            "Postgres: pg_stat_activity sampled every {} ms ({} failed samples); identity reports {} swaps during the load",
            SAMPLE_EVERY.as_millis(),
            r.sample_errors,
            r.swaps
        ),
    )
}

/// The revoked login must be succeeded in identity's history, soon.
pub fn replaced(revoked: &Revoked, history: &[Record]) -> Invariant {
    let expected = "a newer generation swapped in within 5 s of the revoke";
    let next = history.iter().find(|r| r.generation > revoked.generation);
    let observed = next.map(|r| {
        (
            r.swapped_in_at_ms.saturating_sub(revoked.at_ms),
            r.generation,
            r.reason.as_str(),
        )
    });
    Invariant::check(
        REPLACED,
        observed.as_ref().is_some_and(|(ms, ..)| *ms <= 5_000),
        expected,
        match &observed {
            Some((ms, g, reason)) => format!(
                "generation {} → {g} after {ms} ms ({reason})",
                revoked.generation
            ),
            None => format!("generation {} never replaced", revoked.generation),
        },
        format!(
            "PUT /v1/sys/leases/revoke of {}'s lease; identity's GET /lab/lease history",
            revoked.username
        ),
    )
}

/// `status (reason)` of an answer, or its error.
pub fn status_reason(r: &Answer) -> String {
    match r {
        Ok((s, body)) => match body["reason"].as_str() {
            Some(reason) => format!("{s} ({reason})"),
            None => s.to_string(),
        },
        Err(e) => format!("error: {e}"),
    }
}

/// A probe whose login failed fails its rule (nothing could be shown).
fn judge<T>(
    probe: &Probe<T>,
    name: &str,
    expected: &str,
    evidence: &str,
    ran: impl FnOnce(&T) -> (bool, String),
) -> Invariant {
    match probe {
        Probe::NoLogin(login) => Invariant::check(
            name,
            false,
            expected,
            format!("login: {}", status_reason(login)),
            evidence,
        ),
        Probe::Ran(seen) => {
            let (holds, observed) = ran(seen);
            Invariant::check(name, holds, expected, observed, evidence)
        }
    }
}

pub fn revoked_jti_rejected(probe: &Probe<JtiSeen>) -> Invariant {
    judge(
        probe,
        "a revoked jti is rejected",
        "GET /userinfo 200, POST /revoke 200, then GET /userinfo 401 (revoked); Redis key identity:revoked:<jti> lives until exp",
        "identity's GET /userinfo (verifies the JWT, checks the Redis denylist; the BFF does not validate tokens yet); Redis TTL of the key",
        |s| {
            let holds = matches!(s.before, Ok((200, _)))
                && matches!(&s.revoke, Ok((200, b)) if b["revoked"] == true)
                && matches!(&s.after, Ok((401, b)) if b["reason"] == "revoked")
                && matches!(s.key_ttl, Ok(t) if t > 0 && t <= s.ttl);
            let key = match &s.key_ttl {
                Ok(t) => format!("{t} s of {} s", s.ttl),
                Err(e) => format!("unreadable ({e})"),
            };
            (
                holds,
                format!(
                    "{} → revoke {} → {}; key TTL {key}",
                    status_reason(&s.before),
                    status_reason(&s.revoke),
                    status_reason(&s.after),
                ),
            )
        },
    )
}

pub fn reuse_revokes_family(probe: &Probe<ReuseSeen>) -> Invariant {
    judge(
        probe,
        "a reused refresh token revokes its family",
        "refresh r1 → 200 (r2); r1 again → 400 (reuse_detected); r2 → 400 (family_revoked); Postgres: family revoked_reason = reuse_detected",
        "POST /token grant_type=refresh_token; identity.refresh_families joined on sha256(r1)",
        |s| {
            let successor = s
                .successor
                .as_ref()
                .map_or_else(|| "no r2".into(), status_reason);
            let family = match &s.family {
                Ok(r) => r.clone().unwrap_or_else(|| "not revoked".into()),
                Err(e) => format!("unreadable ({e})"),
            };
            let holds = matches!(s.rotated, Ok((200, _)))
                && status_reason(&s.reused) == "400 (reuse_detected)"
                && successor == "400 (family_revoked)"
                && family == "reuse_detected";
            (
                holds,
                format!(
                    "{}; r1 again {}; r2 {successor}; family {family}",
                    status_reason(&s.rotated),
                    status_reason(&s.reused)
                ),
            )
        },
    )
}

pub fn expired_token_rejected(probe: &Probe<ExpirySeen>) -> Invariant {
    judge(
        probe,
        "an expired access token is rejected",
        "a token minted with a 1 s lifetime gets 401 (expired) from GET /userinfo within 5 s",
        "POST /token with the lab-only access_ttl_secs = 1 (and the lab admin token), then GET /userinfo polled every 100 ms",
        |s| {
            let last = s.last.as_ref().map(status_reason).unwrap_or_default();
            (
                last == "401 (expired)",
                format!(
                    "{last} after {} ms ({} accepted before)",
                    s.took_ms, s.accepted
                ),
            )
        },
    )
}

/// Every login seen but the current one(s) is gone from Postgres; or why
/// that could not be judged (`Err`: identity was not restored).
pub fn superseded_gone(s: &Result<Superseded, String>) -> Invariant {
    let s = match s {
        Ok(s) => s,
        Err(e) => {
            return Invariant::unknown(
                SUPERSEDED,
                "none left",
                format!("identity could not be restored after the run: {e}"),
            );
        }
    };
    let expected = format!(
        "0 of {} superseded logins left, within {} s",
        s.gone.len(),
        s.limit.as_secs()
    );
    match &s.left {
        Err(e) => Invariant::unknown(SUPERSEDED, expected, format!("Postgres read failed: {e}")),
        Ok((roles, sessions)) => {
            let clear = roles.is_empty() && sessions.is_empty();
            Invariant::check(
                SUPERSEDED,
                clear && !s.gone.is_empty(),
                expected,
                if clear {
                    format!("0 of {} left after {} ms", s.gone.len(), s.took.as_millis())
                } else {
                    format!("roles left: {roles:?}; with sessions: {sessions:?}")
                },
                format!(
                    "Postgres: pg_roles and pg_stat_activity for every login seen except the current one(s) {:?}",
                    s.current
                ),
            )
        }
    }
}

/// Latency of every request, split by whether it was sent within `half`
/// of an event (a swap, the revoke).
pub fn split_windows(samples: &[Sample], events_ms: &[u64], half: Duration) -> Latencies {
    let half = half.as_millis() as u64;
    let mut out = Latencies::default();
    for s in samples {
        let near = events_ms.iter().any(|e| s.sent_ms.abs_diff(*e) <= half);
        out.record(if near { LABEL_ROTATION } else { LABEL_STEADY }, s.latency);
    }
    out
}

#[cfg(test)]
mod tests;
