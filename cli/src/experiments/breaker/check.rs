//! The breaker run's seven invariants, as pure functions of the evidence
//! (no I/O), so unit tests feed each one failing evidence and see it fail.

use std::time::Duration;

use super::Params;
use super::evidence::{Evidence, admitted};
use super::plan::{CLIENT_ERRORS, PINNED, READS, Settings};
use crate::clients::bff_admin::Counters;
use crate::run::Invariant;
use crate::run::{Outcomes, summarize};

/// Every invariant of a run, in the report's order.
pub fn invariants(p: &Params, s: Settings, ev: &Evidence) -> Vec<Invariant> {
    vec![
        client_errors_not_counted(
            &p.target,
            &ev.client_errors,
            ev.client_phase,
            ev.closed_after_client_errors,
        ),
        opens_within(
            s.consecutive_failures,
            ev.failures_at_open,
            ev.reads_to_open,
        ),
        fails_fast(
            &ev.pinned,
            ev.pinned_lat.get(PINNED),
            ev.pinned_bad_retry_after,
            p.fail_fast_p99_ms,
        ),
        if ev.open_outlasted {
            Invariant::unknown(
                NO_CALLS_WHILE_OPEN,
                NO_CALLS_EXPECTED,
                "the open phase outlasted the breaker's open time (a slow machine?): a probe may have been due",
            )
        } else {
            no_calls_while_open(&p.target, ev.replica_served_delta, ev.open_phase)
        },
        dead_gets_only_probes(&p.target, ev.dead_phase, s, ev.dead_for),
        reads_keep_succeeding(&ev.reads),
        closes_within(
            &p.target,
            s.open + Duration::from_millis(p.close_slack_ms),
            ev.closed_after,
            ev.recovery,
            ev.served_after_recovery,
        ),
    ]
}

const NO_CALLS_WHILE_OPEN: &str = "while open, the replica receives no calls";
const NO_CALLS_EXPECTED: &str = "0 requests served by the replica; 0 attempts past the breaker";

pub fn client_errors_not_counted(
    target: &str,
    answered: &Outcomes,
    counted: Counters,
    still_closed: bool,
) -> Invariant {
    let total = answered.total(CLIENT_ERRORS);
    let client = answered.count_where(CLIENT_ERRORS, |o| o.starts_with('4'));
    // Some must have reached the replica (its own 4xx), or the run proved
    // only that the BFF refuses them.
    let reached = counted.sent_calls + counted.sent_probes;
    Invariant::check(
        "client errors never count against the breaker",
        total > 0
            && client == total
            && reached > 0
            && counted.failures == 0
            && counted.opened == 0
            && still_closed,
        format!("{total}/{total} 4xx, some answered by {target}; 0 failures counted; closed"),
        format!(
            "{client}/{total} 4xx, {reached} answered by {target}; {} failure(s) counted, opened {} time(s); {}",
            counted.failures,
            counted.opened,
            if still_closed { "closed" } else { "not closed" }
        ),
        format!(
            "encoded service name, NUL in the query, unknown and malformed ids, pinned with X-Lab-Upstream: {}; BFF /admin/breakers before and after",
            answered.summary(CLIENT_ERRORS)
        ),
    )
}

pub fn opens_within(threshold: u64, failures_at_open: Option<u64>, reads: u64) -> Invariant {
    let name = "the breaker opens within its configured failure count";
    let expected = format!("open after ≤ {threshold} failures");
    match failures_at_open {
        None => Invariant::check(
            name,
            false,
            expected,
            "never opened",
            format!(
                "GET /admin/breakers after each of {} sequential reads",
                4 * threshold + 10
            ),
        ),
        Some(f) => Invariant::check(
            name,
            f <= threshold && f > 0,
            expected,
            format!("open after {f} failures ({reads} reads)"),
            "BFF /admin/breakers: the target's failure counter from the chaos start to the first `open`",
        ),
    }
}

pub fn fails_fast(
    pinned: &Outcomes,
    lat: Option<&hdrhistogram::Histogram<u64>>,
    bad_retry_after: u64,
    bound_ms: u64,
) -> Invariant {
    let name = "while open, requests to that upstream fail fast";
    let expected = format!("all 503 with Retry-After, p99 ≤ {bound_ms} ms");
    let Some(lat) = lat else {
        return Invariant::unknown(
            name,
            expected,
            "no request was pinned (the breaker never opened)",
        );
    };
    let total = pinned.total(PINNED);
    let rejected = pinned.count(PINNED, "503");
    let p99 = summarize(lat).p99_ms;
    Invariant::check(
        name,
        rejected == total && bad_retry_after == 0 && p99 <= bound_ms as f64,
        expected,
        format!("{rejected}/{total} 503, {bad_retry_after} without Retry-After, p99 {p99:.2} ms"),
        format!(
            "requests pinned with X-Lab-Upstream: {}",
            pinned.summary(PINNED)
        ),
    )
}

pub fn no_calls_while_open(target: &str, replica_delta: Option<f64>, bff: Counters) -> Invariant {
    let Some(delta) = replica_delta else {
        return Invariant::unknown(
            NO_CALLS_WHILE_OPEN,
            NO_CALLS_EXPECTED,
            format!("{target}'s /metrics could not be read"),
        );
    };
    Invariant::check(
        NO_CALLS_WHILE_OPEN,
        delta == 0.0 && admitted(bff) == 0,
        NO_CALLS_EXPECTED,
        format!(
            "replica served {delta}; BFF sent {} call(s), {} probe(s), {} hit chaos; {} refused fast",
            bff.sent_calls, bff.sent_probes, bff.injected, bff.rejected
        ),
        format!(
            "{target}'s own /metrics http_requests_total (except /metrics) and BFF /admin/breakers counters, over the open phase"
        ),
    )
}

pub fn dead_gets_only_probes(
    target: &str,
    bff: Counters,
    s: Settings,
    dead_for: Duration,
) -> Invariant {
    // One half-open episode per open period, plus the one in progress.
    let episodes = dead_for.as_millis() as u64 / s.open.as_millis().max(1) as u64 + 1;
    let bound = episodes * s.half_open_probes;
    Invariant::check(
        "the dead replica receives no calls (only half-open probes)",
        bff.sent_calls == 0 && bff.sent_probes <= bound,
        format!("0 calls, ≤ {bound} probe(s) in {} ms", dead_for.as_millis()),
        format!("{} call(s), {} probe(s)", bff.sent_calls, bff.sent_probes),
        format!(
            "{target} is dead, so it has no /metrics: counted on the BFF's side (bff_upstream_sent_total via /admin/breakers)"
        ),
    )
}

pub fn reads_keep_succeeding(reads: &Outcomes) -> Invariant {
    let total = reads.total(READS);
    let ok = reads.count(READS, "200");
    if total == 0 {
        return Invariant::unknown(
            "reads through the BFF keep succeeding",
            "every read 200",
            "no read was made",
        );
    }
    Invariant::check(
        "reads through the BFF keep succeeding",
        ok == total,
        format!("{total}/{total} 200"),
        format!("{ok}/{total} 200 ({} failed)", total - ok),
        format!("background reads in every phase: {}", reads.summary(READS)),
    )
}

pub fn closes_within(
    target: &str,
    bound: Duration,
    took: Option<Duration>,
    recovery: Counters,
    served_after: Option<f64>,
) -> Invariant {
    let name = "after recovery the breaker half-opens and closes within its configured time";
    let expected = format!(
        "closed ≤ {} ms after the replica is ready, through a probe",
        bound.as_millis()
    );
    let Some(took) = took else {
        return Invariant::check(
            name,
            false,
            expected,
            "not closed",
            "GET /admin/breakers polled every 20 ms",
        );
    };
    Invariant::check(
        name,
        took <= bound && recovery.sent_probes >= 1,
        expected,
        format!(
            "closed after {} ms, {} probe(s)",
            took.as_millis(),
            recovery.sent_probes
        ),
        format!(
            "GET /admin/breakers polled every 20 ms; {target}'s own /metrics then counts {} request(s)",
            served_after.map_or("no".into(), |n| n.to_string())
        ),
    )
}

#[cfg(test)]
mod tests;
