//! `storefront flood`: open-model load through the BFF, above its users'
//! refill rate, checking the token bucket from outside: per user, what
//! was accepted against `capacity + refill × time`; every refusal a 429
//! with a usable `Retry-After`; no 5xx; the catalog's own request count
//! equal to what the BFF accepted; and a refused client that waits
//! `Retry-After` gets in.
//!
//! Buckets belong to verified users, so each "session" is a seeded customer
//! logged in at identity (`POST /token`, password grant) whose requests carry
//! `Authorization: Bearer` (and an `X-Session-Id`, for a BFF that still keys
//! anonymous sessions by it). When the fleet runs several BFF instances on
//! one Redis (profile `two-bff`), each user's requests go to every instance
//! in turn, and the bound is judged on the acceptances of all instances
//! together: one bucket, however many gateways.
//!
//! The expectations come from the running BFF (`GET /admin/config`, with
//! the profile's admin token), not from the profile file, which may have
//! been edited since the fleet booted. The hidden `--expect-capacity` is
//! the control arm: a wrong capacity must fail the run.
//!
//! arrange ([`arrange`]: the live bucket, users logged in, buckets full,
//! counters read) → act ([`act`]: the flood) → evidence ([`evidence`]:
//! counters again, the Retry-After probe) → the pure [`check`].
//! [`Flood`] is the [`Experiment`]: its command and verify's arms run
//! it through [`super::experiment::run`].

mod act;
mod arrange;
mod check;
mod counters;
mod evidence;
mod plan;

use anyhow::Result;
use serde_json::json;

pub use plan::Params;

use super::experiment::{Env, Experiment};
use crate::run::{Invariant, Report, summarize};
use act::{Acted, DIRECT, VIA};
use arrange::Setup;
use evidence::Evidence;
use plan::MAX_IN_FLIGHT;

/// The experiment, for [`super::experiment::run`] and `verify`'s arms.
pub struct Flood;

impl Experiment for Flood {
    const NAME: &'static str = "flood";
    type Params = Params;
    type Plan = Setup;
    type Acted = Acted;
    type Evidence = Evidence;

    /// The flags; [`Flood::record`] completes them with what arrange read.
    fn params(p: &Params) -> serde_json::Value {
        json!({
            "rps": p.rps, "duration_s": p.duration, "sessions": p.sessions,
            "tolerance_pct": p.tolerance_pct, "compare_direct": p.compare_direct,
            "expect_capacity (control)": p.expect_capacity,
        })
    }

    async fn arrange(env: &Env, p: &Params, seed: u64) -> Result<Setup> {
        arrange::arrange(&env.ctx, &env.lab, p, seed).await
    }

    async fn act(env: &Env, p: &Params, setup: &Setup) -> Result<Acted> {
        Ok(act::flood(&env.lab, p, setup).await)
    }

    async fn evidence(env: &Env, p: &Params, setup: &Setup, _: &Acted) -> Result<Evidence> {
        evidence::read(&env.lab, setup, p.compare_direct).await
    }

    fn check(p: &Params, setup: &Setup, acted: &Acted, ev: &Evidence) -> Vec<Invariant> {
        check::invariants(p, &judge(setup), acted, ev)
    }

    fn record(p: &Params, setup: Setup, acted: Acted, ev: Evidence, report: &mut Report) {
        record(p, &setup, acted, ev, report);
    }
}

fn judge(setup: &Setup) -> check::Judge<'_> {
    check::Judge {
        live: setup.live,
        limits: setup.limits,
        names: setup.names,
    }
}

/// The report's parameters (with the live bucket), outcomes per user,
/// latencies and figures.
fn record(p: &Params, setup: &Setup, acted: Acted, ev: Evidence, report: &mut Report) {
    let live = setup.live;
    report.params = json!({
        "rps": p.rps, "duration_s": p.duration, "sessions": p.sessions,
        "users": setup.names, "bff instances": setup.bffs,
        "tolerance_pct": p.tolerance_pct, "compare_direct": p.compare_direct,
        "bucket (from GET /admin/config)": {"capacity": live.capacity, "refill_per_sec": live.refill_per_sec},
        "expect_capacity (control)": p.expect_capacity,
    });
    let Acted { run, counts, .. } = acted;
    report.outcomes = run.outcomes;
    for (s, c) in counts.iter().enumerate() {
        let label = format!("user {}", setup.names[s]);
        for (outcome, n) in [
            ("200", c.accepted),
            ("429", c.rejected),
            ("other", c.sent - c.accepted - c.rejected),
        ] {
            if n > 0 {
                *report
                    .outcomes
                    .0
                    .entry(label.clone())
                    .or_default()
                    .entry(outcome.into())
                    .or_default() += n;
            }
        }
    }
    report.latencies = run.latencies;
    report.measure(
        "arrivals",
        format!(
            "{} sent, {} dropped (in-flight bound {MAX_IN_FLIGHT}), worst send lag {:.1} ms, took {:.2} s",
            run.sent,
            run.dropped,
            run.max_send_lag.as_secs_f64() * 1000.0,
            run.took.as_secs_f64()
        ),
    );
    let per_session = f64::from(p.rps) / p.sessions as f64;
    if per_session <= live.refill_per_sec as f64 {
        report.measure(
            "note",
            format!("{per_session:.0}/s per session is not above the refill rate: nothing should be refused once the burst is spent"),
        );
    }
    if let Some(bench) = ev.bench {
        if let (Some(v), Some(d)) = (bench.latencies.get(VIA), bench.latencies.get(DIRECT)) {
            let (v, d) = (summarize(v), summarize(d));
            report.measure(
                "BFF added latency (cached GET, sequential)",
                format!(
                    "p50 {:.3} ms vs {:.3} ms direct (+{:.3}); p99 {:.3} ms vs {:.3} ms (+{:.3})",
                    v.p50_ms,
                    d.p50_ms,
                    v.p50_ms - d.p50_ms,
                    v.p99_ms,
                    d.p99_ms,
                    v.p99_ms - d.p99_ms
                ),
            );
        }
        report.latencies.merge(&bench.latencies);
        report.outcomes.merge(&bench.outcomes);
    }
}
