//! `storefront hostile`: the shop as an attacker meets it. A seeded plan of
//! hostile requests per class (encoded traversal, NUL bytes, overflowing
//! numbers, malformed, deeply nested and huge bodies, odd methods, bad ids,
//! forged and stale webhooks, forged tokens and `alg: none`, lab and admin
//! calls without the token), through the BFF and directly, plus a burst of
//! wrong-password logins. Then the ground truth: every request answered and
//! refused with a 4xx problem+json, no 5xx, no private path reachable, no
//! breaker opened, every table's rows and checksum unchanged, identity's
//! memory bounded. `--control` mixes in what a broken shop lets through, so
//! the checkers are shown to fail.
//!
//! plan ([`plan`], pure and seeded) → act ([`act`], over [`wire`], a raw
//! HTTP/1.1 client that sends paths exactly as written) → evidence
//! ([`evidence`]) → the pure [`check`].

mod act;
mod check;
mod evidence;
mod identities;
mod plan;
mod slow;
mod wire;

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use std::collections::BTreeMap;

use super::experiment::{Env, Experiment};
use crate::clients::bff_admin::BffAdmin as Gateway;
use crate::fleet::Ctx;
use crate::run::{Invariant, Lab, Latencies, Outcomes, Report};
use check::{Evidence, TableEvidence};

/// How long the shop may take to go quiet (earlier runs' background work)
/// before the "before" snapshot, and to settle after.
const QUIET_BOUND: Duration = Duration::from_secs(30);
/// Identity's default failed-login window prefix (its `throttle.rs`).
const THROTTLE_PREFIX: &str = "identity:login-attempts:";
/// Probes in flight at once.
const CONCURRENCY: usize = 16;

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Requests per class (every class's variants at least once, then drawn by the seed).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub per_class: u32,
    /// Wrong-password logins sent to identity all at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub guesses: u32,
    /// Identity's resident memory must stay at or under this many MiB while guessed at.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=65536))]
    pub rss_bound_mib: u32,
    /// Control arm: mix in what a broken shop accepts (an honest write, a
    /// public path filed as private, catalog failing behind the BFF); must FAIL.
    #[arg(long)]
    pub control: bool,
}

/// A product of the run's own, for the control arm's honest write.
async fn arrange(lab: &Lab, seed: u64) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO catalog.products (sku, name, description, category, price_cents, stock) \
         VALUES ($1, 'Hostile fixture', 'Created by storefront hostile', 'lab', 1000, 10) \
         RETURNING id",
    )
    .bind(format!("HOSTILE-{seed}-{:08x}", rand::random::<u32>()))
    .fetch_one(&lab.pg)
    .await
    .context("arrange: cannot insert the fixture product (is the catalog migrated?)")
}

/// The hostile experiment (see the module docs).
pub struct Hostile;

/// What arrange made: the fixture, a stolen session, the shop before, the
/// seeded probes.
pub struct Plan {
    gw: Gateway,
    /// The control arm's fixture product.
    fixture: Option<i64>,
    /// The tables' rows and checksums before, once the shop was quiet.
    before: Result<Result<evidence::Tables, Vec<String>>, String>,
    breakers_before: Option<evidence::BreakerTotals>,
    /// Service → authority to send raw requests to.
    targets: BTreeMap<String, String>,
    probes: Vec<plan::Probe>,
    seed: u64,
}

/// What the attack saw. Hostile reads its ground truth (tables, breakers,
/// identity's memory) at the moments the attack brackets, before its
/// clean-up, so acting takes those readings too.
pub struct Acted {
    evidence: Evidence,
    outcomes: Outcomes,
    latencies: Latencies,
    measurements: Vec<(String, String)>,
}

impl Experiment for Hostile {
    const NAME: &'static str = "hostile";
    type Params = Params;
    type Plan = Plan;
    type Acted = Acted;
    /// Read while acting (see [`Acted`]).
    type Evidence = ();

    fn params(p: &Params) -> serde_json::Value {
        json!({"per_class": p.per_class, "guesses": p.guesses,
               "rss_bound_mib": p.rss_bound_mib, "control": p.control})
    }

    async fn arrange(env: &Env, p: &Params, seed: u64) -> Result<Plan> {
        let (ctx, lab) = (&env.ctx, &env.lab);
        let gw = Gateway::connect(ctx)?;
        let fixture = if p.control {
            Some(arrange(lab, seed).await?)
        } else {
            None
        };
        // Sign-ins write identity's rows: before the snapshot.
        let stolen = identities::arrange(lab).await?;
        let before = evidence::quiet_tables(&lab.pg, QUIET_BOUND)
            .await
            .map_err(|e| format!("{e:#}"));
        let breakers_before = evidence::breakers(&gw).await.ok();
        let targets = act::authorities(lab);
        let mut probes = plan::probes(seed, p.per_class as usize);
        probes.extend(identities::probes(&stolen, p.per_class as usize));
        let token = crate::fleet::services::lab_admin_token(&ctx.profile);
        probes.extend(slow::replayed_webhooks(lab, token, p.per_class as usize).await?);
        Ok(Plan {
            gw,
            fixture,
            before,
            breakers_before,
            targets,
            probes,
            seed,
        })
    }

    async fn act(env: &Env, p: &Params, plan: &Plan) -> Result<Acted> {
        attack(&env.ctx, &env.lab, p, plan).await
    }

    async fn evidence(_: &Env, _: &Params, _: &Plan, _: &Acted) -> Result<()> {
        Ok(())
    }

    fn check(_: &Params, _: &Plan, acted: &Acted, _: &()) -> Vec<Invariant> {
        check::judge(&acted.evidence)
    }

    fn record(_: &Params, _: Plan, acted: Acted, _: (), report: &mut Report) {
        report.outcomes = acted.outcomes;
        report.latencies = acted.latencies;
        report.measurements.extend(acted.measurements);
    }
}

/// The attack, its control arm and its clean-up, with the readings that
/// bracket them.
async fn attack(ctx: &Ctx, lab: &Lab, p: &Params, plan: &Plan) -> Result<Acted> {
    let (gw, targets) = (&plan.gw, &plan.targets);
    let (mut outcomes, mut latencies) = (Outcomes::default(), Latencies::default());
    let mut measurements = Vec::new();
    // Slow clients take the servers' read timeouts (10 s): held meanwhile.
    let slow_clients = {
        let bff = targets.get("bff").context("the fleet runs no BFF")?.clone();
        let catalog = targets
            .get("catalog")
            .context("the fleet runs no catalog")?
            .clone();
        tokio::spawn(async move { slow::slow_clients(&bff, &catalog).await })
    };
    let (mut seen, probed, probe_latencies, skipped) =
        act::run_probes(targets, plan.probes.clone(), CONCURRENCY).await;
    outcomes.merge(&probed);
    latencies.merge(&probe_latencies);

    let identity = targets
        .get("identity")
        .context("the fleet runs no identity service to guess passwords at")?;
    let pid = evidence::pids(&lab.state, "identity").first().copied();
    let guessed = act::guess(identity, pid, p.guesses as usize, plan.seed).await;
    for g in &guessed.answers {
        outcomes.add("guessing", act::outcome(g));
    }
    latencies.merge(&guessed.latencies);

    if let Some(product) = plan.fixture {
        let control = act::control(lab, gw, product).await;
        match control {
            Ok(c) => {
                for s in &c {
                    outcomes.add("control", act::outcome(&s.result));
                }
                seen.extend(c);
            }
            Err(e) => measure(
                &mut measurements,
                "control arm",
                format!("could not run: {e:#}"),
            ),
        }
    }
    let breakers_after = evidence::breakers(gw).await.ok();
    let tables = match &plan.before {
        Err(e) => TableEvidence::Unreadable(e.clone()),
        Ok(Err(moving)) => TableEvidence::NotQuiet(moving.clone()),
        Ok(Ok(before)) => match evidence::quiet_tables(&lab.pg, Duration::from_secs(10)).await {
            Err(e) => TableEvidence::Unreadable(format!("{e:#}")),
            Ok(Ok(after)) => TableEvidence::Compared {
                tables: before.len(),
                changed: evidence::changed(before, &after),
            },
            // Still changing after the run: the changes are the run's.
            Ok(Err(moving)) => TableEvidence::Compared {
                tables: before.len(),
                changed: moving,
            },
        },
    };
    let prefix = ctx
        .profile
        .services
        .iter()
        .find(|s| s.name == "identity")
        .and_then(|s| s.env.get("LOGIN_THROTTLE_KEY_PREFIX").cloned())
        .unwrap_or_else(|| THROTTLE_PREFIX.to_owned());
    match evidence::clear_login_throttle(&lab.state.endpoints.redis_url, &prefix).await {
        Ok(n) => measure(
            &mut measurements,
            "identity's login-throttle windows cleared after the run",
            n,
        ),
        Err(e) => measure(
            &mut measurements,
            "identity's login throttle",
            format!("not cleared: {e:#}"),
        ),
    }
    if let Some(product) = plan.fixture {
        let _ = gw.clear_chaos().await;
        let probe = format!("{}/api/catalog/products/{product}", gw.url);
        let closed = evidence::wait_closed(gw, &probe, Duration::from_secs(20)).await;
        measure(
            &mut measurements,
            "breakers closed again after the control arm",
            closed.map_or_else(|e| format!("? ({e:#})"), |c| c.to_string()),
        );
    }

    // Last, as it empties this address's bucket: a new X-Session-Id per
    // request must buy no extra tokens.
    let evasion = match gw.config().await {
        Ok(cfg) => {
            let capacity = cfg["rate_limit"]["capacity"].as_u64().unwrap_or(0);
            let refill = cfg["rate_limit"]["refill_per_sec"].as_u64().unwrap_or(0);
            let n = (capacity * 3).clamp(30, 1500) as usize;
            let bff = targets.get("bff").context("the fleet runs no BFF")?;
            let (accepted, limited, other, took_secs) = identities::evade(bff, n).await;
            for (k, v) in [("200", accepted), ("429", limited), ("other", other)] {
                for _ in 0..v {
                    outcomes.add("evasion", k);
                }
            }
            Some(check::Evasion {
                sent: n as u64,
                accepted,
                limited,
                other,
                took_secs,
                capacity,
                refill,
            })
        }
        Err(e) => {
            measure(
                &mut measurements,
                "rate-limit evasion",
                format!("not run: {e:#}"),
            );
            None
        }
    };

    let (slow_headers, slow_bodies) = slow_clients.await.unwrap_or_default();
    for s in &slow_headers {
        outcomes.add("slow clients", format!("headers: {:?}", s.ended));
    }
    for s in &slow_bodies {
        outcomes.add("slow clients", format!("body: {:?}", s.ended));
    }

    let e = Evidence {
        slow_headers,
        slow_bodies,
        evasion,
        seen,
        guesses: guessed.answers,
        breakers_before: plan.breakers_before,
        breakers_after,
        tables,
        rss_peak_mib: guessed.rss_peak_mib,
        rss_before_mib: guessed.rss_before_mib,
        rss_bound_mib: f64::from(p.rss_bound_mib),
    };
    measure(&mut measurements, "hostile requests sent", e.seen.len());
    if skipped > 0 {
        measure(
            &mut measurements,
            "skipped (service not in this fleet)",
            skipped,
        );
    }
    Ok(Acted {
        evidence: e,
        outcomes,
        latencies,
        measurements,
    })
}

/// A figure for the report, beside the verdict.
fn measure(m: &mut Vec<(String, String)>, name: &str, value: impl ToString) {
    m.push((name.into(), value.to_string()));
}
