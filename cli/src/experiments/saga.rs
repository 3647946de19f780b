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
//! arrange ([`arrange`]: fixture products of its own; [`plan`]: the
//! seeded orders) → act ([`act`], [`webhooks`]) → evidence (the shop's by
//! the one checker, [`crate::check`]; the saga's own from [`evidence`]) →
//! the pure [`check`].

mod act;
mod arrange;
mod check;
mod crc;
mod evidence;
mod plan;
mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use uuid::Uuid;

pub use plan::{Crash, FailAt};

use super::experiment::{Env, Experiment};
use crate::run::{Invariant, Report};

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
    /// Orders POSTed concurrently (a POST returns once the saga is
    /// accepted, so this does not bound the sagas running: see --in-flight).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub concurrency: u32,
    /// Sagas running at once, at most: an order is POSTed only when fewer
    /// than this many of the run's sagas are unfinished (a closed loop, for
    /// end-to-end latency at a known concurrency) [default: no bound].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub in_flight: Option<u32>,
    /// Forged webhooks to send, the kinds in turn [default: a tenth of the
    /// orders, at least one of each of the 5 kinds].
    #[arg(long)]
    pub forged: Option<u32>,
    /// Every saga must be terminal within this many seconds of the first order.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub bound_secs: u64,
}

/// The saga experiment (see the module docs).
pub struct Saga;

/// What arrange made: the fixtures, the seeded orders, the shop before.
pub struct Plan {
    pub seed: u64,
    pub orders: Vec<plan::Planned>,
    /// Forged webhooks to send.
    pub forged: usize,
    /// The fixtures' stock as inserted and the dead-letter depths, before.
    pub baseline: crate::check::Baseline,
    /// Orders are judged from here on.
    pub since: chrono::DateTime<chrono::Utc>,
    pub checkout: Vec<String>,
    pub payments: String,
    pub lab_token: Option<String>,
}

/// What acting saw.
pub struct Acted {
    pub placing: act::Placing,
    /// The accepted orders' ids.
    pub ids: Vec<Uuid>,
    /// When every saga was terminal (from the first order).
    pub all_done_at: Duration,
    /// Whether the orders' messages settled before the bound.
    pub quiesced: bool,
    pub chaos: webhooks::Chaos,
}

/// What the databases say afterwards.
pub struct Evidence {
    /// The shop's evidence, with what each order was meant to be.
    pub shop: crate::check::Shop,
    pub sagas: HashMap<Uuid, evidence::SagaRecord>,
    /// The saga's own evidence, for its pure check.
    pub saga: check::Evidence,
}

impl Experiment for Saga {
    const NAME: &'static str = "saga";
    type Params = Params;
    type Plan = Plan;
    type Acted = Acted;
    type Evidence = Evidence;

    fn params(p: &Params) -> serde_json::Value {
        json!({"orders": p.orders, "fail_at": p.fail_at, "crash": p.crash,
               "concurrency": p.concurrency, "in_flight": p.in_flight, "forged": forged(p), "bound_secs": p.bound_secs})
    }

    async fn arrange(env: &Env, p: &Params, seed: u64) -> Result<Plan> {
        let lab = &env.lab;
        let checkout = lab.urls("checkout")?.to_vec();
        let payments = lab.urls("payments")?[0].clone();
        let run = format!("{:08x}", rand::random::<u32>());
        let (fixtures, sold_out) = arrange::fixtures(lab, seed, &run).await?;
        let orders = plan::orders(
            &run,
            p.orders as usize,
            p.fail_at,
            seed,
            &fixtures,
            sold_out,
        );
        // The shop before: the fixtures' stock (as inserted) and the
        // dead-letter queues' depths.
        let stock = fixtures
            .iter()
            .map(|f| (f.id, i64::from(f.start_stock)))
            .collect();
        let baseline = crate::check::Baseline::with_stock(lab, stock).await;
        Ok(Plan {
            seed,
            orders,
            forged: forged(p),
            baseline,
            since: chrono::Utc::now(),
            checkout,
            payments,
            lab_token: arrange::lab_token(lab)?,
        })
    }

    async fn act(env: &Env, p: &Params, plan: &Plan) -> Result<Acted> {
        let (lab, started) = (&env.lab, Instant::now());
        // Chaos beside the orders; the bound counts from the first order.
        let deadline = started + Duration::from_secs(p.bound_secs);
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let target = webhooks::Target {
            pg: lab.pg.clone(),
            http: lab.http.clone(),
            payments: plan.payments.clone(),
            lab_token: plan.lab_token.clone(),
        };
        let chaos = webhooks::run(target, accepted.clone(), plan.forged, plan.seed, stop_rx);
        let chaos = tokio::spawn(chaos);
        let how = act::Placement {
            ctx: &env.ctx,
            http: &lab.http,
            checkout: &plan.checkout,
            concurrency: p.concurrency as usize,
            in_flight: p.in_flight.map(|k| k as usize),
            pg: &lab.pg,
            crash: p.crash,
            deadline,
            accepted: accepted.clone(),
        };
        let placing = act::place(how, plan.orders.clone()).await;
        let ids: Vec<Uuid> = placing.placed.iter().filter_map(|x| x.order_id).collect();
        let terminal = crate::check::gather::wait_terminal(&lab.pg, &ids, deadline).await;
        let all_done_at = started.elapsed();
        let quiesced = terminal == ids.len()
            && crate::check::gather::wait_quiet(&lab.pg, &ids, Instant::now() + QUIET_BOUND).await;
        let _ = stop_tx.send(true);
        let chaos = chaos.await.context("webhook chaos task")??;
        Ok(Acted {
            placing,
            ids,
            all_done_at,
            quiesced,
            chaos,
        })
    }

    async fn evidence(env: &Env, p: &Params, plan: &Plan, acted: &Acted) -> Result<Evidence> {
        let lab = &env.lab;
        let ids = &acted.ids;
        let scope = crate::check::Scope {
            since: plan.since,
            select: crate::check::Select::Orders(ids.clone()),
        };
        let reading = crate::check::Reading {
            baseline: plan.baseline.clone(),
            claims: false,
            bound: Duration::from_secs(p.bound_secs),
            quiesced: acted.quiesced,
        };
        let mut shop = crate::check::read(lab, &scope, ids, &reading).await?;
        check::shop_evidence(&acted.placing.placed, &mut shop);
        let sagas = evidence::sagas(&lab.pg, ids).await?;
        let forged_ids: Vec<String> = acted
            .chaos
            .forged
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        let saga = check::Evidence {
            sagas: sagas.iter().map(|(id, s)| (*id, s.seen.clone())).collect(),
            forged_applied: evidence::applied(&lab.pg, &forged_ids).await?,
            forged: acted.chaos.forged.clone(),
            replays: acted.chaos.replays.clone(),
        };
        Ok(Evidence { shop, sagas, saga })
    }

    fn check(_: &Params, _: &Plan, acted: &Acted, ev: &Evidence) -> Vec<Invariant> {
        let mut out = check::invariants(&acted.placing.placed, &ev.saga, &ev.shop);
        out.extend(check::crash(acted.placing.crash.as_ref()));
        out
    }

    fn record(_: &Params, _: Plan, acted: Acted, ev: Evidence, report: &mut Report) {
        let Acted { placing, chaos, .. } = acted;
        report.outcomes = placing.outcomes;
        for (scenario, count) in check::planned_counts(&placing.placed) {
            for _ in 0..count {
                report.outcomes.add("orders planned", scenario.label());
            }
        }
        for s in ev.sagas.values() {
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
        report.latencies.merge(&evidence::timings(&ev.sagas));
        measure(report, &ev.sagas, placing.crash.as_ref(), acted.all_done_at);
    }
}

/// Forged webhooks to send: as asked, or a tenth of the orders, at least
/// one of each kind.
fn forged(p: &Params) -> usize {
    p.forged
        .unwrap_or((p.orders / 10).max(webhooks::FORGERY_KINDS as u32)) as usize
}

/// Throughput and the crash's restart time.
fn measure(
    report: &mut Report,
    sagas: &HashMap<Uuid, evidence::SagaRecord>,
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
