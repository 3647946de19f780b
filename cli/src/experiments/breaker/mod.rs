//! `storefront breaker`: fail one catalog replica on purpose (100 % injected
//! errors), then kill it outright, then bring it back, while reads flow
//! through the BFF; the BFF's circuit breaker must isolate the replica and
//! let it back in.
//!
//! arrange ([`plan`]: the BFF's own breaker settings, the target, a
//! product) → act ([`act`]: five phases, each noting its [`evidence`] as it
//! goes, the fleet restored whatever happens) → a pure [`check`] of that
//! evidence → the report.

mod act;
mod check;
mod evidence;
mod plan;

use anyhow::Result;

use super::experiment::{Env, Experiment};
use crate::run::{Invariant, Report};
use evidence::Evidence;
use plan::Plan;

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// The catalog replica to fail, kill and restore.
    #[arg(long, default_value = "catalog-2")]
    pub target: String,
    /// Background reads through the BFF per second, during every phase.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub read_rate: u32,
    /// Requests pinned to the open replica (X-Lab-Upstream) to time its fail-fast answer.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pinned: u32,
    /// Bound on the p99 of those pinned requests (ms).
    #[arg(long, default_value_t = 50)]
    pub fail_fast_p99_ms: u64,
    /// How long the replica stays dead [default: 2 × the breaker's open time + 0.5 s, so it is probed while dead].
    #[arg(long)]
    pub dead_ms: Option<u64>,
    /// Slack allowed beyond the breaker's open time for it to close once the replica is back (ms).
    #[arg(long, default_value_t = 1000)]
    pub close_slack_ms: u64,
}

/// The experiment, for `experiment::run` and the gate's arms. Its
/// evidence is gathered phase by phase while it acts (see [`evidence`]),
/// so what `act` returns is the evidence and there is nothing left to
/// read afterwards; act also restores the fleet (chaos off, the replica
/// running) whatever happened, so there is nothing to clean up.
pub struct Breaker;

impl Experiment for Breaker {
    const NAME: &'static str = "breaker";
    type Params = Params;
    type Plan = Plan;
    type Acted = Evidence;
    type Evidence = ();

    /// As given; [`Experiment::record`] adds what the BFF said (its breaker
    /// settings and the dead time they imply).
    fn params(p: &Params) -> serde_json::Value {
        serde_json::json!({
            "target": p.target, "read_rate": p.read_rate, "pinned": p.pinned,
            "fail_fast_p99_ms": p.fail_fast_p99_ms, "dead_ms": p.dead_ms,
            "close_slack_ms": p.close_slack_ms,
        })
    }

    async fn arrange(env: &Env, p: &Params, seed: u64) -> Result<Plan> {
        plan::arrange(&env.ctx, &env.lab, p, seed).await
    }

    async fn act(env: &Env, p: &Params, plan: &Plan) -> Result<Evidence> {
        act::act(&env.ctx, &env.lab, p, plan).await
    }

    async fn evidence(_: &Env, _: &Params, _: &Plan, _: &Evidence) -> Result<()> {
        Ok(())
    }

    fn check(p: &Params, plan: &Plan, ev: &Evidence, _: &()) -> Vec<Invariant> {
        check::invariants(p, plan.settings, ev)
    }

    fn record(p: &Params, plan: Plan, ev: Evidence, _: (), report: &mut Report) {
        record(p, &plan, ev, report);
    }
}

/// The report beside the invariants: the parameters with the BFF's
/// settings, every outcome and latency, and the replica's timings.
fn record(p: &Params, plan: &Plan, ev: Evidence, report: &mut Report) {
    report.params = plan::params_json(p, plan.settings, plan.dead_for);
    report.outcomes = ev.reads;
    report.outcomes.merge(&ev.pinned);
    report.outcomes.merge(&ev.client_errors);
    report.latencies = ev.read_lat;
    report.latencies.merge(&ev.pinned_lat);
    if let Some(d) = ev.restarted_in {
        report.measure(
            "replica restart → ready",
            format!("{:.2} s", d.as_secs_f64()),
        );
    }
    if let Some(d) = ev.closed_after {
        report.measure(
            "replica ready → breaker closed",
            format!("{} ms", d.as_millis()),
        );
    }
    report.measure(
        "BFF counters for the target while dead",
        format!(
            "sent_calls {}, sent_probes {}, failures {}, rejected (fail-fast) {}",
            ev.dead_phase.sent_calls,
            ev.dead_phase.sent_probes,
            ev.dead_phase.failures,
            ev.dead_phase.rejected
        ),
    );
}
