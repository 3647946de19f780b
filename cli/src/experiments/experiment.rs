//! The shape every experiment shares, as a trait: arrange → act → evidence
//! → a pure check of the evidence → invariants, then the report. One
//! generic [`run`] drives the phases, tells the lab's
//! [`Progress`](crate::run::Progress) about each phase and each invariant
//! judged, times the run and concludes the [`Report`].
//! `verify` runs experiments through [`Arm`]s (built by [`arm`]): an
//! experiment's arm is its name, what the gate expects of it and the
//! command line it would be given.
//!
//! # Implementing it
//! A module per experiment (`experiments/<x>/`): `plan.rs` (pure, seeded),
//! `act.rs` (drives requests, records every outcome and latency),
//! `evidence.rs` (reads the ground truth), `check.rs` (pure: evidence in,
//! invariants out, unit tested with failing evidence). Its `mod.rs` ties
//! them together:
//!
//! ```ignore
//! pub struct Race;
//!
//! impl Experiment for Race {
//!     const NAME: &'static str = "race";
//!     type Params = Params;           // its clap::Args, as today
//!     type Plan = plan::Plan;         // what arrange made (fixtures, ids)
//!     type Acted = act::Acted;        // what the clients saw
//!     type Evidence = Evidence;       // what the databases say afterwards
//!
//!     fn params(p: &Params) -> serde_json::Value {
//!         json!({"n": p.n, "rounds": p.rounds, "control": p.control})
//!     }
//!     async fn arrange(env: &Env, p: &Params, seed: u64) -> Result<plan::Plan> {
//!         plan::arrange(&env.lab, p, seed).await
//!     }
//!     async fn act(env: &Env, p: &Params, plan: &plan::Plan) -> Result<act::Acted> {
//!         act::race(&env.lab, p, plan).await
//!     }
//!     async fn evidence(env: &Env, _: &Params, plan: &plan::Plan, _: &act::Acted) -> Result<Evidence> {
//!         evidence::read(&env.lab.pg, plan).await
//!     }
//!     fn check(p: &Params, plan: &plan::Plan, acted: &act::Acted, ev: &Evidence) -> Vec<Invariant> {
//!         check::invariants(p, plan, acted, ev)
//!     }
//!     // Optional: outcomes, latencies and measurements for the report.
//!     fn record(_: &Params, _: plan::Plan, acted: act::Acted, _: Evidence, report: &mut Report) {
//!         report.outcomes = acted.outcomes;
//!         report.latencies = acted.latencies;
//!     }
//!     // Optional: undo what arrange made; runs even when act or evidence failed.
//!     async fn clean_up(env: &Env, plan: &plan::Plan) { plan::delete(&env.lab.pg, plan).await }
//! }
//! ```
//! (`async fn` in the impl is fine: the trait asks for `impl Future + Send`,
//! so each phase's future must be `Send`, which the compiler checks.)
//!
//! Its command runs `experiment::run::<Race>(&env, &params, seed)`; the
//! gate lists `arm::<Race>("race --control", Expect::Fail, &["--n", "20",
//! "--control"])`.

use std::future::Future;
use std::time::Instant;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::fleet::Ctx;
use crate::run::{Invariant, Lab, Report};

/// What an experiment runs against: the fleet's context (to restart or
/// kill its processes) and the lab's connections to it; progress goes to
/// the lab's [`Progress`](crate::run::Progress).
pub struct Env {
    pub ctx: Ctx,
    pub lab: Lab,
}

impl Env {
    pub fn new(ctx: Ctx, lab: Lab) -> Self {
        Self { ctx, lab }
    }
}

/// An experiment: see the module docs for how to implement one.
pub trait Experiment {
    /// The report's `experiment` and the subcommand's name.
    const NAME: &'static str;
    /// Its command line, parsed by clap (the same flags for the command and the gate).
    type Params: clap::Args + clap::FromArgMatches + Send + Sync;
    /// What arrange made: fixtures, ids, the seeded plan.
    type Plan: Send + Sync;
    /// What acting saw: every outcome and latency, what the faults did.
    type Acted: Send + Sync;
    /// The ground truth read afterwards.
    type Evidence: Send + Sync;

    /// The parameters as the report shows them.
    fn params(p: &Self::Params) -> serde_json::Value;

    /// Makes the run's own data and its plan.
    fn arrange(
        env: &Env,
        p: &Self::Params,
        seed: u64,
    ) -> impl Future<Output = Result<Self::Plan>> + Send;

    /// Drives the fleet, recording what every client saw.
    fn act(
        env: &Env,
        p: &Self::Params,
        plan: &Self::Plan,
    ) -> impl Future<Output = Result<Self::Acted>> + Send;

    /// Reads the ground truth.
    fn evidence(
        env: &Env,
        p: &Self::Params,
        plan: &Self::Plan,
        acted: &Self::Acted,
    ) -> impl Future<Output = Result<Self::Evidence>> + Send;

    /// The invariants, judged from what was planned, seen and read. Pure:
    /// no I/O, so a unit test can feed it failing evidence.
    fn check(
        p: &Self::Params,
        plan: &Self::Plan,
        acted: &Self::Acted,
        ev: &Self::Evidence,
    ) -> Vec<Invariant>;

    /// Fills the report's outcomes, latencies and measurements (after the
    /// invariants are in it). Default: nothing beyond the invariants.
    fn record(
        p: &Self::Params,
        plan: Self::Plan,
        acted: Self::Acted,
        ev: Self::Evidence,
        report: &mut Report,
    ) {
        let _ = (p, plan, acted, ev, report);
    }

    /// Undoes what arrange made; runs after evidence, and also when act or
    /// evidence failed. Default: nothing to undo.
    fn clean_up(env: &Env, plan: &Self::Plan) -> impl Future<Output = ()> + Send {
        let _ = (env, plan);
        async {}
    }
}

/// Runs one experiment through its phases and returns its concluded report.
pub async fn run<E: Experiment>(env: &Env, p: &E::Params, seed: u64) -> Result<Report> {
    let started = Instant::now();
    let phase = |phase: &str| env.lab.progress.phase(format!("{}: {phase}", E::NAME));
    let mut report = Report::new(E::NAME, seed, E::params(p));
    phase("arrange");
    let plan = E::arrange(env, p, seed).await?;
    phase("act");
    let gathered = match E::act(env, p, &plan).await {
        Ok(acted) => {
            phase("evidence");
            E::evidence(env, p, &plan, &acted)
                .await
                .map(|ev| (acted, ev))
        }
        Err(e) => Err(e),
    };
    E::clean_up(env, &plan).await;
    let (acted, ev) = gathered?;
    phase("check");
    for inv in E::check(p, &plan, &acted, &ev) {
        report.push(inv);
    }
    E::record(p, plan, acted, ev, &mut report);
    report.conclude(started.elapsed());
    env.lab.progress.judged(&report.invariants, report.verdict);
    Ok(report)
}

/// What the gate expects an arm to conclude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Pass,
    /// A control arm: its checkers must catch the broken behaviour.
    Fail,
}

/// Runs an arm: its arguments parsed, the experiment run.
pub type Runner =
    for<'a> fn(&'a Env, &'static [&'static str], u64) -> BoxFuture<'a, Result<Report>>;

/// One arm of the gate, object-safe: any experiment behind one `fn`.
#[derive(Clone, Copy)]
pub struct Arm {
    pub name: &'static str,
    pub expect: Expect,
    /// Its command line, as `storefront <experiment>` would take it.
    pub args: &'static [&'static str],
    pub run: Runner,
    /// Whether `args` parse (a wrong flag is caught by a unit test, not in CI).
    pub parses: fn(&[&str]) -> Result<()>,
}

impl Arm {
    pub fn run<'a>(&self, env: &'a Env, seed: u64) -> BoxFuture<'a, Result<Report>> {
        (self.run)(env, self.args, seed)
    }
}

/// The arm of experiment `E` named `name`, run with `args`.
pub fn arm<E: Experiment>(name: &'static str, expect: Expect, args: &'static [&'static str]) -> Arm
where
    E::Params: 'static,
{
    Arm {
        name,
        expect,
        args,
        run: run_arm::<E>,
        parses: parses::<E::Params>,
    }
}

/// Whether `args` parse as `T` (for [`Arm::parses`]).
pub fn parses<T: clap::Args + clap::FromArgMatches>(args: &[&str]) -> Result<()> {
    parse::<T>("arm", args).map(drop)
}

fn run_arm<'a, E: Experiment>(
    env: &'a Env,
    args: &'static [&'static str],
    seed: u64,
) -> BoxFuture<'a, Result<Report>>
where
    E::Params: 'static,
{
    Box::pin(async move {
        let p: E::Params = parse(E::NAME, args)?;
        run::<E>(env, &p, seed).await
    })
}

/// Parameters as their command line would give them (so an arm reads like
/// the command it runs, and its defaults stay the experiment's own); a
/// wrong argument is an error naming it, never a panic.
pub fn parse<T: clap::Args + clap::FromArgMatches>(experiment: &str, args: &[&str]) -> Result<T> {
    #[derive(clap::Parser)]
    struct Line<T: clap::Args + clap::FromArgMatches> {
        #[command(flatten)]
        params: T,
    }
    let line = std::iter::once(experiment).chain(args.iter().copied());
    <Line<T> as clap::Parser>::try_parse_from(line)
        .map(|l| l.params)
        .map_err(|e| anyhow::anyhow!("{}", e.render()))
        .with_context(|| format!("`{experiment}` cannot take the arguments {args:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Args)]
    struct P {
        #[arg(long, default_value_t = 3)]
        n: u32,
        #[arg(long)]
        control: bool,
    }

    #[test]
    fn parse_takes_an_arms_command_line_and_keeps_the_defaults() {
        let p: P = parse("x", &["--control"]).unwrap();
        assert!(p.control);
        assert_eq!(p.n, 3);
    }

    #[test]
    fn a_wrong_argument_is_an_error_naming_it_not_a_panic() {
        let e = parse::<P>("x", &["--nope"]).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("--nope"), "{text}");
    }
}
