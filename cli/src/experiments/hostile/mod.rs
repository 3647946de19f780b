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

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::breaker::Gateway;
use super::{Lab, Report};
use crate::fleet::Ctx;
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

pub async fn run(ctx: &Ctx, lab: &Lab, p: &Params, seed: u64) -> Result<Report> {
    let started = Instant::now();
    let mut report = Report::new(
        "hostile",
        seed,
        json!({"per_class": p.per_class, "guesses": p.guesses,
               "rss_bound_mib": p.rss_bound_mib, "control": p.control}),
    );
    let gw = Gateway::connect(ctx)?;
    let fixture = if p.control {
        Some(arrange(lab, seed).await?)
    } else {
        None
    };
    // Sign-ins write identity's rows: before the snapshot.
    let stolen = identities::arrange(lab).await?;
    let before = evidence::quiet_tables(&lab.pg, QUIET_BOUND).await;
    let breakers_before = evidence::breakers(&gw).await.ok();

    let targets = act::authorities(lab);
    let mut plan = plan::probes(seed, p.per_class as usize);
    plan.extend(identities::probes(&stolen, p.per_class as usize));
    let token = crate::fleet::services::lab_admin_token(&ctx.profile);
    plan.extend(slow::replayed_webhooks(lab, token, p.per_class as usize).await?);
    // Slow clients take the servers' read timeouts (10 s): held meanwhile.
    let slow_clients = {
        let bff = targets.get("bff").context("the fleet runs no BFF")?.clone();
        let catalog = targets
            .get("catalog")
            .context("the fleet runs no catalog")?
            .clone();
        tokio::spawn(async move { slow::slow_clients(&bff, &catalog).await })
    };
    let (mut seen, outcomes, latencies, skipped) =
        act::run_probes(&targets, plan, CONCURRENCY).await;
    report.outcomes.merge(&outcomes);
    report.latencies.merge(&latencies);

    let identity = targets
        .get("identity")
        .context("the fleet runs no identity service to guess passwords at")?;
    let pid = evidence::pids(&lab.state, "identity").first().copied();
    let guessed = act::guess(identity, pid, p.guesses as usize, seed).await;
    for g in &guessed.answers {
        report.outcomes.add("guessing", act::outcome(g));
    }
    report.latencies.merge(&guessed.latencies);

    if let Some(product) = fixture {
        let control = act::control(lab, &gw, product).await;
        match control {
            Ok(c) => {
                for s in &c {
                    report.outcomes.add("control", act::outcome(&s.result));
                }
                seen.extend(c);
            }
            Err(e) => report.measure("control arm", format!("could not run: {e:#}")),
        }
    }
    let breakers_after = evidence::breakers(&gw).await.ok();
    let tables = match before {
        Err(e) => TableEvidence::Unreadable(format!("{e:#}")),
        Ok(Err(moving)) => TableEvidence::NotQuiet(moving),
        Ok(Ok(before)) => match evidence::quiet_tables(&lab.pg, Duration::from_secs(10)).await {
            Err(e) => TableEvidence::Unreadable(format!("{e:#}")),
            Ok(Ok(after)) => TableEvidence::Compared {
                tables: before.len(),
                changed: evidence::changed(&before, &after),
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
        Ok(n) => report.measure("identity's login-throttle windows cleared after the run", n),
        Err(e) => report.measure("identity's login throttle", format!("not cleared: {e:#}")),
    }
    if let Some(product) = fixture {
        let _ = gw.clear_chaos().await;
        let probe = format!("{}/api/catalog/products/{product}", gw.url);
        let closed = evidence::wait_closed(&gw, &probe, Duration::from_secs(20)).await;
        report.measure(
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
                    report.outcomes.add("evasion", k);
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
            report.measure("rate-limit evasion", format!("not run: {e:#}"));
            None
        }
    };

    let (slow_headers, slow_bodies) = slow_clients.await.unwrap_or_default();
    for s in &slow_headers {
        report
            .outcomes
            .add("slow clients", format!("headers: {:?}", s.ended));
    }
    for s in &slow_bodies {
        report
            .outcomes
            .add("slow clients", format!("body: {:?}", s.ended));
    }

    let e = Evidence {
        slow_headers,
        slow_bodies,
        evasion,
        seen,
        guesses: guessed.answers,
        breakers_before,
        breakers_after,
        tables,
        rss_peak_mib: guessed.rss_peak_mib,
        rss_before_mib: guessed.rss_before_mib,
        rss_bound_mib: f64::from(p.rss_bound_mib),
    };
    report.measure("hostile requests sent", e.seen.len());
    if skipped > 0 {
        report.measure("skipped (service not in this fleet)", skipped);
    }
    for inv in check::judge(&e) {
        report.push(inv);
    }
    report.conclude(started.elapsed());
    Ok(report)
}
