//! The checks, as pure functions of what the clients saw ([`Acted`]) and
//! what was read afterwards ([`Evidence`]); unit-tested with failing
//! evidence in `check/tests.rs`.

use super::act::{Acted, SessionCount, Timed};
use super::evidence::{Evidence, RetrySeen};
use super::plan::{Limits, OTHER, Params};
use crate::run::{Invariant, Outcomes};

/// What the checks judge by besides the evidence: the bucket (the BFFs'
/// own, and the one assumed: the control arm's capacity) and the users.
pub struct Judge<'a> {
    pub live: Limits,
    pub limits: Limits,
    pub names: &'a [&'a str],
}

/// Every invariant, in the report's order.
pub fn invariants(p: &Params, j: &Judge, acted: &Acted, ev: &Evidence) -> Vec<Invariant> {
    let counts = &acted.counts;
    let tolerance = f64::from(p.tolerance_pct) / 100.0;
    let accepted: u64 = counts.iter().map(|c| c.accepted).sum();
    vec![
        upper_bound(
            counts,
            j.limits,
            acted.run.took.as_secs_f64(),
            ev.failed_open,
        ),
        lower_bound(counts, j.limits, p.duration as f64, tolerance),
        rejections_valid(counts, j.live),
        no_server_errors(counts, &acted.run.outcomes),
        upstream_matches(accepted, ev.upstream_delta),
        retry_after(&ev.retry),
        rejections_cheaper(&acted.timed),
        spread_over_instances(&acted.spread, j.names),
    ]
}

/// After waiting Retry-After, a request succeeds.
pub fn retry_after(seen: &RetrySeen) -> Invariant {
    let name = "after waiting Retry-After, a request succeeds";
    let expected = "200 after sleeping Retry-After";
    match seen {
        RetrySeen::NeverRefused { user, sent } => Invariant::unknown(
            name,
            expected,
            format!("no 429 after {sent} requests as {user}"),
        ),
        RetrySeen::NoRetryAfter { user } => Invariant::check(
            name,
            false,
            expected,
            "429 without a usable Retry-After",
            format!("{user} drained"),
        ),
        RetrySeen::Retried {
            outcome,
            secs,
            user,
            sent,
            instances,
            refused_by,
            retried_at,
        } => Invariant::check(
            name,
            outcome == "200",
            expected,
            format!("{outcome} after {secs} s"),
            format!(
                "{user} drained with {sent} requests in bursts of 50 over {instances} BFF instance(s), refused by {refused_by}, retried at {retried_at}"
            ),
        ),
    }
}

fn describe(bad: &[String]) -> String {
    if bad.is_empty() {
        "every user".into()
    } else {
        bad.join("; ")
    }
}

/// accepted ≤ capacity + refill × W + 1 per session, W the run's length
/// (first arrival to last response: all the time the bucket could refill).
pub fn upper_bound(
    counts: &[SessionCount],
    l: Limits,
    window_secs: f64,
    failed_open: Option<f64>,
) -> Invariant {
    let bound = l.capacity as f64 + l.refill_per_sec as f64 * window_secs + 1.0;
    let bad: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| c.accepted as f64 > bound)
        .map(|(s, c)| format!("user #{s}: {} > {bound:.0}", c.accepted))
        .collect();
    let max = counts.iter().map(|c| c.accepted).max().unwrap_or(0);
    Invariant::check(
        "per user, all BFF instances together: accepted ≤ capacity + refill × D (+1)",
        bad.is_empty(),
        format!(
            "≤ {} + {} × {window_secs:.2} s + 1 = {bound:.0}",
            l.capacity, l.refill_per_sec
        ),
        if bad.is_empty() {
            format!("at most {max}")
        } else {
            describe(&bad)
        },
        format!(
            "200s counted per logged-in user, summed over every BFF instance; D = first arrival to last response; the BFFs failed open (Redis too slow) {} time(s) meanwhile",
            failed_open.map_or("?".into(), |n| n.to_string())
        ),
    )
}

/// accepted ≥ (1 − tolerance) × min(sent, capacity + refill × D) per
/// session: the limiter is not over-strict.
pub fn lower_bound(
    counts: &[SessionCount],
    l: Limits,
    duration_secs: f64,
    tolerance: f64,
) -> Invariant {
    let ideal = |c: &SessionCount| {
        (c.sent as f64).min(l.capacity as f64 + l.refill_per_sec as f64 * duration_secs)
    };
    let bad: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| (c.accepted as f64) < ((1.0 - tolerance) * ideal(c)).floor())
        .map(|(s, c)| {
            format!(
                "user #{s}: {} < {:.0}",
                c.accepted,
                ((1.0 - tolerance) * ideal(c)).floor()
            )
        })
        .collect();
    let min = counts.iter().map(|c| c.accepted).min().unwrap_or(0);
    Invariant::check(
        "per user: accepted not far below it (limiter not over-strict)",
        bad.is_empty() && !counts.is_empty(),
        format!(
            "≥ {:.0} % of min(sent, {} + {} × {duration_secs} s)",
            (1.0 - tolerance) * 100.0,
            l.capacity,
            l.refill_per_sec
        ),
        if bad.is_empty() {
            format!("at least {min}")
        } else {
            describe(&bad)
        },
        "200s counted per logged-in user over every BFF instance; D = the configured duration (arrivals span it)",
    )
}

pub fn rejections_valid(counts: &[SessionCount], l: Limits) -> Invariant {
    let rejected: u64 = counts.iter().map(|c| c.rejected).sum();
    let bad: u64 = counts.iter().map(|c| c.bad_rejections).sum();
    Invariant::check(
        "every rejection is a 429 with a valid Retry-After",
        bad == 0,
        format!(
            "Retry-After in 1..={} s, RateLimit r=0, RateLimit-Policy, on every 429",
            l.longest_retry_after()
        ),
        format!("{bad} of {rejected} 429s malformed"),
        "headers of every 429",
    )
}

pub fn no_server_errors(counts: &[SessionCount], outcomes: &Outcomes) -> Invariant {
    let errors: u64 = counts.iter().map(|c| c.errors).sum();
    Invariant::equal(
        "no 5xx",
        0,
        errors,
        format!(
            "5xx and transport errors; other outcomes: {}",
            outcomes.summary(OTHER)
        ),
    )
}

pub fn upstream_matches(accepted: u64, upstream_delta: Option<f64>) -> Invariant {
    let name = "the upstream's own request count equals the accepted count";
    match upstream_delta {
        None => Invariant::unknown(
            name,
            accepted,
            "a catalog replica's /metrics could not be read",
        ),
        Some(d) => Invariant::check(
            name,
            d == accepted as f64,
            accepted,
            d,
            "sum over catalog replicas of http_requests_total{method=GET,route=/products/{id}} before/after, vs 200s seen",
        ),
    }
}

/// Each user's acceptances came from every BFF instance: else a run on two
/// instances would judge one of them only, and the shared bucket would go
/// untested. (Trivially true on one instance.)
pub fn spread_over_instances(accepted: &[Vec<u64>], names: &[&str]) -> Invariant {
    let instances = accepted.first().map_or(0, Vec::len);
    let bad: Vec<String> = accepted
        .iter()
        .zip(names)
        .filter(|(by, _)| by.contains(&0))
        .map(|(by, n)| format!("{n}: {by:?}"))
        .collect();
    let shown: Vec<String> = accepted
        .iter()
        .zip(names)
        .map(|(by, n)| format!("{n} {by:?}"))
        .collect();
    Invariant::check(
        "each user's requests were accepted by every BFF instance",
        bad.is_empty() && !accepted.is_empty(),
        format!("> 0 from each of {instances} instance(s), per user"),
        if bad.is_empty() {
            shown.join(", ")
        } else {
            describe(&bad)
        },
        "200s per (user, instance); each user's successive requests go to the instances in turn",
    )
}

/// Refusals must be cheaper than acceptances: the median 429 (a Redis round
/// trip) against the median 200 (the same plus the upstream call), both
/// from their actual send.
///
/// Only answers sent from the first 429's send on are compared: before it
/// every answer is a 200, and a bucket drains only late in the run, so a
/// stall of the machine in its last second would weigh on the 429s alone
/// and fail a comparison of the whole run's medians (CI saw 13.13 ms
/// against 12.44 ms so). From then on 200s and 429s interleave, and a stall
/// weighs on both.
pub fn rejections_cheaper(timed: &[Timed]) -> Invariant {
    let name = "rejections are fast (median 429 ≤ median 200, service time)";
    let Some(from) = timed.iter().filter(|t| t.rejected).map(|t| t.sent).min() else {
        return Invariant::unknown(name, "both 200s and 429s", "no 429 came");
    };
    let (mut refused, mut accepted) = (Vec::new(), Vec::new());
    for t in timed.iter().filter(|t| t.sent >= from) {
        if t.rejected {
            refused.push(t.took);
        } else {
            accepted.push(t.took);
        }
    }
    let (Some(r), Some(a)) = (median_ms(&mut refused), median_ms(&mut accepted)) else {
        return Invariant::unknown(
            name,
            "both 200s and 429s",
            "no 200 was sent after the first 429",
        );
    };
    Invariant::check(
        name,
        r <= a,
        format!("≤ {a:.2} ms"),
        format!("{r:.2} ms"),
        format!(
            "exact medians of the {} 429s and the {} 200s sent from the first 429's send on, timed from the actual send",
            refused.len(),
            accepted.len()
        ),
    )
}

/// The exact median (the lower of the middle two) in milliseconds.
fn median_ms(d: &mut [std::time::Duration]) -> Option<f64> {
    if d.is_empty() {
        return None;
    }
    let mid = (d.len() - 1) / 2;
    let (_, m, _) = d.select_nth_unstable(mid);
    Some(m.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests;
