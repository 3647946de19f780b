//! `storefront saga`: N orders through the checkout saga with the chosen
//! failures injected (sandbox test cards, a sold-out item), every genuine
//! webhook re-delivered 1–3 times out of order, forged and stale webhooks
//! sent, and optionally the orchestrator or payments killed (SIGKILL) and
//! restarted mid-run. Then the ground truth: every saga terminal within the
//! bound, completed orders took stock once and were captured once, failed
//! ones hold neither, money and stock add up, the compensations recorded
//! match the failures injected, the outboxes drained, no dead letter
//! appeared, no forgery changed anything.
//!
//! arrange ([`arrange`]: fixture products of its own) → act ([`act`],
//! [`webhooks`]) → check (the shop's invariants by the one checker,
//! [`crate::check`]; the saga's own from [`evidence`], judged by the pure
//! [`check`]).

mod act;
mod check;
mod crc;
mod evidence;
mod plan;
mod webhooks;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

pub use plan::{Crash, FailAt};

use super::{Invariant, Lab, Report};
use crate::fleet::Ctx;
use plan::Fixture;

/// Fixture products per run.
const FIXTURES: usize = 8;
/// Their starting stock: ample, so only the sold-out product refuses.
const FIXTURE_STOCK: i32 = 100_000;
/// How long the run waits, after every saga ended, for messages to settle.
const QUIET_BOUND: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Orders to place.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub orders: u32,
    /// Failure to inject: half the orders (a fifth per kind for `mixed`); none: every order should complete.
    #[arg(long, value_enum)]
    pub fail_at: Option<FailAt>,
    /// Kill (SIGKILL) and restart this service once half the orders are placed.
    #[arg(long, value_enum)]
    pub crash: Option<Crash>,
    /// Orders placed concurrently.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub concurrency: u32,
    /// Forged webhooks to send, the kinds in turn [default: a tenth of the
    /// orders, at least one of each of the 5 kinds].
    #[arg(long)]
    pub forged: Option<u32>,
    /// Every saga must be terminal within this many seconds of the first order.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub bound_secs: u64,
}

/// The run's fixture products (category `lab`, kept: reservations point at
/// them); `run` tells this run's apart.
async fn arrange(lab: &Lab, seed: u64, run: &str) -> Result<(Vec<Fixture>, i64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fixtures = Vec::with_capacity(FIXTURES);
    for i in 0..=FIXTURES {
        let sold_out = i == FIXTURES;
        let price_cents = rng.random_range(50..=500) * 10;
        let stock = if sold_out { 0 } else { FIXTURE_STOCK };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO catalog.products (sku, name, description, category, price_cents, stock) \
             VALUES ($1, 'Saga fixture', 'Created by storefront saga', 'lab', $2, $3) RETURNING id",
        )
        .bind(format!("SAGA-{seed}-{run}-{i}"))
        .bind(price_cents)
        .bind(stock)
        .fetch_one(&lab.pg)
        .await
        .context("arrange: cannot insert fixture products (is the catalog migrated?)")?;
        if sold_out {
            return Ok((fixtures, id));
        }
        fixtures.push(Fixture {
            id,
            price_cents,
            start_stock: stock,
        });
    }
    unreachable!("the loop returns at the sold-out fixture")
}

/// The lab admin token payments' `/lab/sign` needs: the running fleet's
/// profile's bff `BFF_ADMIN_TOKEN`, which the fleet hands every service as
/// `LAB_ADMIN_TOKEN`; `None` if it sets none (signing then says why).
fn lab_token(lab: &Lab) -> Result<Option<String>> {
    let root = crate::fleet::project_root()?;
    let (profile, _) = crate::fleet::profile::FleetProfile::load(&root, &lab.state.profile)?;
    Ok(crate::fleet::services::lab_admin_token(&profile).map(str::to_owned))
}

pub async fn run(ctx: &Ctx, lab: &Lab, p: &Params, seed: u64) -> Result<Report> {
    let started = Instant::now();
    let forged = p
        .forged
        .unwrap_or((p.orders / 10).max(webhooks::FORGERY_KINDS as u32)) as usize;
    let mut report = Report::new(
        "saga",
        seed,
        json!({"orders": p.orders, "fail_at": p.fail_at, "crash": p.crash,
               "concurrency": p.concurrency, "forged": forged, "bound_secs": p.bound_secs}),
    );
    let checkout = lab.urls("checkout")?.to_vec();
    let payments = lab.urls("payments")?[0].clone();

    let run = format!("{:08x}", rand::random::<u32>());
    let (fixtures, sold_out) = arrange(lab, seed, &run).await?;
    let plans = plan::orders(
        &run,
        p.orders as usize,
        p.fail_at,
        seed,
        &fixtures,
        sold_out,
    );
    // The shop before: the fixtures' stock (as inserted) and the
    // dead-letter queues' depths.
    let baseline = crate::check::Baseline::with_stock(
        lab,
        fixtures
            .iter()
            .map(|f| (f.id, i64::from(f.start_stock)))
            .collect(),
    )
    .await;
    let since = chrono::Utc::now();

    // Act: chaos beside the orders; the bound counts from the first order.
    let deadline = Instant::now() + Duration::from_secs(p.bound_secs);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let target = webhooks::Target {
        pg: lab.pg.clone(),
        http: lab.http.clone(),
        payments: payments.clone(),
        lab_token: lab_token(lab)?,
    };
    let chaos = tokio::spawn(webhooks::run(
        target,
        accepted.clone(),
        forged,
        seed,
        stop_rx,
    ));
    let how = act::Placement {
        ctx,
        http: &lab.http,
        checkout: &checkout,
        concurrency: p.concurrency as usize,
        crash: p.crash,
        deadline,
        accepted: accepted.clone(),
    };
    let placing = act::place(how, plans).await;
    let ids: Vec<Uuid> = placing.placed.iter().filter_map(|x| x.order_id).collect();
    let terminal = crate::check::gather::wait_terminal(&lab.pg, &ids, deadline).await;
    let all_done_at = started.elapsed();
    let quiesced = terminal == ids.len()
        && crate::check::gather::wait_quiet(&lab.pg, &ids, Instant::now() + QUIET_BOUND).await;
    let _ = stop_tx.send(true);
    let chaos = chaos.await.context("webhook chaos task")??;

    // Check: the shop's invariants over the run's orders (the one checker),
    // and the saga's own beside them.
    let scope = crate::check::Scope {
        since,
        select: crate::check::Select::Orders(ids.clone()),
    };
    let reading = crate::check::Reading {
        baseline,
        claims: false,
        bound: Duration::from_secs(p.bound_secs),
        quiesced,
    };
    let mut shop = crate::check::read(lab, &scope, &ids, &reading).await?;
    check::shop_evidence(&placing.placed, &mut shop);
    let sagas = evidence::sagas(&lab.pg, &ids).await?;
    let forged_ids: Vec<String> = chaos.forged.iter().map(|(id, _)| id.clone()).collect();
    let ev = check::Evidence {
        sagas: sagas.iter().map(|(id, s)| (*id, s.seen.clone())).collect(),
        forged_applied: evidence::applied(&lab.pg, &forged_ids).await?,
        forged: chaos.forged.clone(),
        replays: chaos.replays.clone(),
    };
    for inv in check::invariants(&placing.placed, &ev, &shop) {
        report.push(inv);
    }
    if let Some(Err(why)) = &placing.crash {
        report.push(Invariant::unknown(
            "the crashed service came back",
            "restarted and ready",
            why,
        ));
    }

    // Report.
    report.outcomes = placing.outcomes;
    for (scenario, count) in check::planned_counts(&placing.placed) {
        for _ in 0..count {
            report.outcomes.add("orders planned", scenario.label());
        }
    }
    for s in sagas.values() {
        let label = match &s.seen.failure {
            Some(f) => format!("{} ({f})", s.seen.state),
            None => s.seen.state.clone(),
        };
        report.outcomes.add("sagas ended", label);
    }
    for (status, n) in &chaos.replays {
        for _ in 0..*n {
            report.outcomes.add("webhooks re-delivered", status.clone());
        }
    }
    for (_, status) in &chaos.forged {
        report.outcomes.add("webhooks forged", status.clone());
    }
    report.latencies = placing.latencies;
    report.latencies.merge(&evidence::timings(&sagas));
    measure(&mut report, &sagas, placing.crash.as_ref(), all_done_at);
    report.conclude(started.elapsed());
    Ok(report)
}

/// Throughput and the crash's restart time.
fn measure(
    report: &mut Report,
    sagas: &std::collections::HashMap<Uuid, evidence::SagaRecord>,
    crash: Option<&Result<Duration, String>>,
    all_done_at: Duration,
) {
    let first = sagas.values().map(|s| s.created_at).min();
    let last = sagas.values().filter_map(|s| s.finished_at).max();
    let completed = sagas
        .values()
        .filter(|s| s.seen.state == "completed")
        .count();
    if let (Some(first), Some(last)) = (first, last) {
        let secs = (last - first).to_std().unwrap_or_default().as_secs_f64();
        if secs > 0.0 {
            report.measure(
                "sagas finished per second",
                format!("{:.1}", sagas.len() as f64 / secs),
            );
            report.measure(
                "completed sagas per second",
                format!("{:.1}", completed as f64 / secs),
            );
        }
        report.measure(
            "first saga created → last saga finished",
            format!("{secs:.2} s"),
        );
    }
    report.measure(
        "all sagas terminal after",
        format!("{:.2} s", all_done_at.as_secs_f64()),
    );
    if let Some(Ok(took)) = crash {
        report.measure(
            "crashed service ready again after",
            format!("{:.2} s", took.as_secs_f64()),
        );
    }
}
