//! `storefront replay`: for each of K idempotency keys, N identical POSTs
//! released together; then the same key with a different body. The claims
//! service must let exactly one writer create the claim and replay it
//! byte-for-byte to everyone else, refuse the mismatch with 422, and hold
//! exactly one row per key. The control arm sends the same traffic down a
//! lab-only check-then-insert path, and the checks must catch what it does.
//!
//! plan ([`plan`]: seeded keys and claim bodies) → act ([`act`]: the
//! concurrent POSTs and the mismatch per key) → evidence ([`evidence`]:
//! rows per key in Postgres) → the pure [`check`].

mod act;
mod check;
mod evidence;
mod plan;

use anyhow::Result;
use serde_json::json;

use super::experiment::{Env, Experiment};
use crate::run::{Invariant, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Concurrent identical requests per key.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub n: u32,
    /// Idempotency keys, one round each.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keys: u32,
    /// Control arm: the naive check-then-insert path (needs lab_endpoints in the fleet profile).
    #[arg(long)]
    pub control: bool,
}

/// The replay experiment (see the module docs).
pub struct Replay;

impl Experiment for Replay {
    const NAME: &'static str = "replay";
    type Params = Params;
    type Plan = plan::Plan;
    type Acted = act::Acted;
    type Evidence = evidence::Evidence;

    fn params(p: &Params) -> serde_json::Value {
        json!({"n": p.n, "keys": p.keys, "control": p.control})
    }

    async fn arrange(env: &Env, p: &Params, seed: u64) -> Result<plan::Plan> {
        plan::plan(&env.lab, p, seed)
    }

    async fn act(env: &Env, p: &Params, plan: &plan::Plan) -> Result<act::Acted> {
        act::act(&env.lab, p, plan).await
    }

    async fn evidence(
        env: &Env,
        _: &Params,
        plan: &plan::Plan,
        _: &act::Acted,
    ) -> Result<evidence::Evidence> {
        evidence::rows(&env.lab.pg, plan).await
    }

    fn check(
        p: &Params,
        plan: &plan::Plan,
        acted: &act::Acted,
        ev: &evidence::Evidence,
    ) -> Vec<Invariant> {
        check::invariants(p, plan.table, &acted.keys, ev)
    }

    fn record(
        _: &Params,
        _: plan::Plan,
        acted: act::Acted,
        ev: evidence::Evidence,
        report: &mut Report,
    ) {
        let duplicates = check::duplicate_rows(&ev);
        if duplicates > 0 {
            report.measure("duplicate rows found", duplicates);
        }
        report.outcomes = acted.outcomes;
        report.latencies = acted.latencies;
    }
}
