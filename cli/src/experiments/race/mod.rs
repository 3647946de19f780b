//! `storefront race`: N clients read the same product's ETag, wait on a
//! barrier, and send the same conditional stock decrement. xmin-based OCC
//! must let exactly one win and turn the rest into 412s; then every client
//! retries (re-read, re-apply) until its decrement lands, and no update may
//! be lost. The control arm sends the same decrements down a lab-only blind
//! read-modify-write path, and the checks must catch the lost updates.
//!
//! arrange ([`plan`]: a product of its own per round) → act ([`act`]: the
//! racing decrements, the replicas' convergence, the retries) → evidence
//! ([`evidence`]: each product's stock in Postgres) → the pure [`check`].

mod act;
mod check;
mod evidence;
mod plan;

use anyhow::{Context, Result};
use serde_json::json;

use super::experiment::{Env, Experiment};
use crate::run::{Invariant, Lab, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Concurrent clients per round.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub n: u32,
    /// Rounds, each on a product of its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Control arm: blind read-modify-write with no precondition (needs lab_endpoints in the fleet profile).
    #[arg(long)]
    pub control: bool,
    /// How long both replicas may take to serve the winner's version.
    #[arg(long, default_value_t = 2000)]
    pub convergence_bound_ms: u64,
}

/// The race experiment (see the module docs).
pub struct Race;

impl Experiment for Race {
    const NAME: &'static str = "race";
    type Params = Params;
    type Plan = plan::Plan;
    type Acted = act::Acted;
    type Evidence = evidence::Evidence;

    fn params(p: &Params) -> serde_json::Value {
        json!({"n": p.n, "rounds": p.rounds, "control": p.control})
    }

    async fn arrange(env: &Env, p: &Params, seed: u64) -> Result<plan::Plan> {
        plan::arrange(&env.lab, p, seed).await
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
        evidence::read(&env.lab.pg, plan).await
    }

    fn check(
        p: &Params,
        plan: &plan::Plan,
        acted: &act::Acted,
        ev: &evidence::Evidence,
    ) -> Vec<Invariant> {
        check::invariants(p, plan, acted, ev)
    }

    fn record(
        _: &Params,
        plan: plan::Plan,
        acted: act::Acted,
        _: evidence::Evidence,
        report: &mut Report,
    ) {
        let lost = check::lost(&plan, &acted);
        if lost > 0 {
            report.measure("lost updates found", lost);
        }
        if let Some(h) = acted.latencies.get(act::LABEL_CONVERGENCE) {
            report.measure(
                "replica convergence (max)",
                format!("{:.2} ms", h.max() as f64 / 1000.0),
            );
        }
        report.outcomes = acted.outcomes;
        report.latencies = acted.latencies;
    }

    async fn clean_up(env: &Env, plan: &plan::Plan) {
        plan::delete(&env.lab.pg, plan).await
    }
}

/// The token the control arms send to `/lab/…` routes: the fleet profile's
/// bff `BFF_ADMIN_TOKEN`, which the fleet hands every service as
/// `LAB_ADMIN_TOKEN` (lab routes answer 401 without it).
pub(super) fn lab_admin_token(lab: &Lab) -> Result<String> {
    let root = crate::fleet::project_root()?;
    let (profile, _) = crate::fleet::profile::FleetProfile::load(&root, &lab.state.profile)?;
    crate::fleet::services::lab_admin_token(&profile)
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "profile `{}` sets no BFF_ADMIN_TOKEN in the bff's env, so the fleet gives the services no LAB_ADMIN_TOKEN and every /lab/ route answers 401",
                lab.state.profile
            )
        })
}
