//! `storefront rotate`: steady open-model load on the identity service
//! (logins, refreshes, userinfo, revocations — all reaching its database)
//! while its Vault-issued Postgres credentials rotate every few seconds, and
//! the CLI revokes the current lease through Vault's API mid-run.
//!
//! Arrange: shorten the Vault role's TTLs (`--ttl` is the credential's
//! lifetime: `max_ttl`; `default_ttl` is half) and make identity pick them
//! up now (`POST /lab/rotate`). Act ([`act`], [`probes`]): drive the load;
//! sample Postgres's `pg_stat_activity` for the logins in use; revoke the
//! current lease halfway; probe the token rules meanwhile. Check (the pure
//! [`check`] of the [`evidence`]): no request failed, the logins rotated at
//! least as often as `max_ttl` forces, the revoked lease was replaced, every
//! superseded role is gone from `pg_roles`, and the token rules held. The
//! role's TTLs are restored whatever happens.
//!
//! The control arm (`--control`) switches identity to naive rotation (old
//! leases revoked before their pool drains, no retry): the checks must
//! catch the failed requests.
//!
//! Identity's `/lab/…` routes and its lab-only `access_ttl_secs` need the
//! lab admin token (the fleet gives every service the profile's bff
//! `BFF_ADMIN_TOKEN` as `LAB_ADMIN_TOKEN`); the experiment sends it on those
//! calls only, never on the load's requests.
//!
//! [`Rotate`] is the [`Experiment`]: its command and verify's arms run
//! it through [`super::experiment::run`].

mod act;
mod check;
mod evidence;
mod identity;
mod plan;
mod probes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

pub use plan::Params;

use super::experiment::{Env, Experiment};
use crate::run::{Invariant, Lab, Report, summarize};
use evidence::Evidence;
use plan::{RoleTtls, SERVICE, WINDOW};

/// The experiment, for [`super::experiment::run`] and `verify`'s arms.
pub struct Rotate;

/// What arrange set up: the instances, the lab admin token, and the
/// role's TTLs to put back.
pub struct Setup {
    urls: Vec<String>,
    admin: String,
    original: RoleTtls,
    seed: u64,
    /// Set once identity has been restored (by the evidence phase, or by
    /// clean-up when act or evidence failed first).
    restored: AtomicBool,
}

impl Experiment for Rotate {
    const NAME: &'static str = "rotate";
    type Params = Params;
    type Plan = Setup;
    type Acted = act::Acted;
    type Evidence = Evidence;

    fn params(p: &Params) -> serde_json::Value {
        json!({"duration_s": p.duration.as_secs_f64(), "rps": p.rps, "ttl_s": p.ttl.as_secs(), "control": p.control})
    }

    async fn arrange(env: &Env, p: &Params, seed: u64) -> Result<Setup> {
        arrange(&env.lab, p, seed).await
    }

    async fn act(env: &Env, p: &Params, plan: &Setup) -> Result<act::Acted> {
        act::run(&env.lab, &plan.admin, p, plan.seed, &plan.urls).await
    }

    async fn evidence(env: &Env, p: &Params, plan: &Setup, acted: &act::Acted) -> Result<Evidence> {
        Ok(read_evidence(&env.lab, p, plan, acted).await)
    }

    fn check(_: &Params, _: &Setup, acted: &act::Acted, ev: &Evidence) -> Vec<Invariant> {
        check::invariants(&acted.observed, ev)
    }

    fn record(_: &Params, _: Setup, acted: act::Acted, _: Evidence, report: &mut Report) {
        measure(report, acted);
    }

    async fn clean_up(env: &Env, plan: &Setup) {
        clean_up(&env.lab, plan).await;
    }
}

/// Checks identity's lab endpoints answer, keeps the role's TTLs and sets
/// the run's short ones.
async fn arrange(lab: &Lab, p: &Params, seed: u64) -> Result<Setup> {
    let urls = lab.urls(SERVICE)?.to_vec();
    let admin = identity::admin_token(lab)?;
    for base in &urls {
        identity::lease(lab, &admin, base).await?;
    }
    let original = identity::role_ttls(lab).await?;
    identity::set_role_ttls(lab, RoleTtls::for_run(p.ttl)).await?;
    Ok(Setup {
        urls,
        admin,
        original,
        seed,
        restored: AtomicBool::new(false),
    })
}

/// Restores identity (TTLs, safe mode, fresh credentials), then reads
/// which superseded logins are left.
async fn read_evidence(lab: &Lab, p: &Params, setup: &Setup, acted: &act::Acted) -> Evidence {
    setup.restored.store(true, Ordering::SeqCst);
    let superseded = match restore(lab, &setup.admin, &setup.urls, setup.original).await {
        Ok(current) => {
            let gone = acted
                .seen
                .iter()
                .filter(|n| !current.contains(n))
                .cloned()
                .collect();
            let limit = p.ttl + Duration::from_secs(15);
            Ok(evidence::superseded(&lab.pg, gone, current, limit).await)
        }
        Err(e) => Err(format!("{e:#}")),
    };
    Evidence { superseded }
}

/// Restores identity if the evidence phase did not get to it (act or
/// evidence failed); the role's TTLs are put back whatever happened.
async fn clean_up(lab: &Lab, setup: &Setup) {
    if !setup.restored.swap(true, Ordering::SeqCst) {
        let _ = restore(lab, &setup.admin, &setup.urls, setup.original).await;
    }
}

/// Puts the role's TTLs back, every instance in safe mode with fresh
/// credentials; the logins they use now.
async fn restore(
    lab: &Lab,
    admin: &str,
    urls: &[String],
    original: RoleTtls,
) -> Result<Vec<String>> {
    identity::set_role_ttls(lab, original).await?;
    let mut current = Vec::new();
    for base in urls {
        identity::set_naive(lab, admin, base, false).await?;
        identity::rotate_now(lab, admin, base).await?;
        current.push(identity::current_login(lab, admin, base).await?);
    }
    Ok(current)
}

/// The figures beside the verdict: p99 per window, rotations, logins,
/// the generator's health; the load's outcomes and latencies.
fn measure(report: &mut Report, acted: act::Acted) {
    let act::Acted {
        observed,
        samples,
        events,
        ..
    } = acted;
    let (run, rotation) = (observed.load, observed.rotation);
    let windows = check::split_windows(&samples, &events, WINDOW);
    for label in [check::LABEL_ROTATION, check::LABEL_STEADY] {
        if let Some(h) = windows.get(label) {
            report.measure(
                &format!("p99, {label}"),
                format!("{:.2} ms ({} requests)", summarize(h).p99_ms, h.len()),
            );
        }
    }
    report.measure(
        "rotations during the load (identity's swaps)",
        rotation.swaps,
    );
    report.measure(
        "distinct logins seen in pg_stat_activity",
        rotation.distinct,
    );
    report.measure(
        "arrivals sent / dropped, worst send lag",
        format!(
            "{} / {}, {:.1} ms",
            run.sent,
            run.dropped,
            run.max_send_lag.as_secs_f64() * 1000.0
        ),
    );
    report.outcomes = run.outcomes;
    report.latencies = run.latencies;
    report.latencies.merge(&windows);
}
