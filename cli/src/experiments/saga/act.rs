//! Placing the run's orders: `POST /checkout` with each order's
//! Idempotency-Key, retried with the same key while checkout is down (a
//! crashed orchestrator is the point of `--crash orchestrator`), a few
//! repeated on purpose to check the key gives the same saga; and the crash
//! itself, fired once half the orders are placed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::check::Placed;
use super::plan::{Crash, Planned};
use crate::clients::checkout::Checkout;
use crate::clients::contract::checkout::{CheckoutBody, Item, eur};
use crate::fleet::Ctx;
use crate::fleet::control::{self, How};
use crate::run::record::{Latencies, Outcomes, outcome_of};

/// Label of the POST latencies and outcomes.
pub const LABEL_POST: &str = "POST /checkout";
/// Label of the repeated POSTs.
pub const LABEL_REPEAT: &str = "POST /checkout (same key again)";
/// Every `REPEAT_EVERY`-th order is POSTed a second time.
const REPEAT_EVERY: usize = 10;

/// What placing produced.
pub struct Placing {
    pub placed: Vec<Placed>,
    pub outcomes: Outcomes,
    pub latencies: Latencies,
    /// The crash: how long the restart took, or why it failed.
    pub crash: Option<Result<Duration, String>>,
}

fn body(plan: &Planned) -> CheckoutBody {
    CheckoutBody {
        items: plan
            .items
            .iter()
            .map(|&(product_id, quantity)| Item {
                product_id,
                quantity,
            })
            .collect(),
        card_number: plan.scenario.card().to_owned(),
        provider: plan.provider,
        currency: eur(),
    }
}

/// POSTs until checkout answers 2xx or 4xx, or `deadline`; the order id.
async fn post(
    checkout: &Checkout,
    plan: &Planned,
    label: &str,
    deadline: Instant,
    out: &mut Outcomes,
    lat: &mut Latencies,
) -> Option<(StatusCode, Uuid)> {
    // Backing off keeps the retries of a down checkout few: each connection
    // attempt takes an ephemeral port, and one that happens to equal
    // checkout's own port (a TCP self-connect) would keep it from binding
    // again when the fleet's ports lie in the ephemeral range.
    let mut pause = Duration::from_millis(50);
    loop {
        let t = Instant::now();
        let sent = checkout.place(&plan.key, &body(plan)).await;
        lat.record(label, t.elapsed());
        let (outcome, placed) = match sent {
            Ok(p) => (outcome_of(&Ok(p.status)), Some(p)),
            Err(e) => (outcome_of(&Err(e)), None),
        };
        out.add(label, outcome);
        if let Some(placed) = placed {
            if placed.status.is_success() {
                return Some((placed.status, placed.order_id?));
            }
            if placed.status.is_client_error() {
                return None;
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// How to place the orders.
pub struct Placement<'a> {
    pub ctx: &'a Ctx,
    pub http: &'a reqwest::Client,
    /// checkout's base URLs.
    pub checkout: &'a [String],
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// Sagas unfinished at once, at most: a slot is taken before an order's
    /// POST and given back when its saga has finished (read from checkout's
    /// table). `None`: no bound, every accepted order's saga runs at once.
    pub in_flight: Option<usize>,
    /// Where the sagas' ends are read when `in_flight` is set.
    pub pg: &'a sqlx::PgPool,
    /// What to kill once half the orders are placed.
    pub crash: Option<Crash>,
    /// Give up retrying a POST after this.
    pub deadline: Instant,
    /// Receives each order id as it is accepted.
    pub accepted: Arc<Mutex<Vec<Uuid>>>,
}

/// Places every order, crashing the chosen service once half are placed.
pub async fn place(how: Placement<'_>, plans: Vec<Planned>) -> Placing {
    let Placement {
        ctx,
        http,
        checkout,
        concurrency,
        in_flight,
        pg,
        crash,
        deadline,
        accepted,
    } = how;
    let n = plans.len();
    let done = Arc::new(AtomicUsize::new(0));
    let slots = in_flight.map(|k| Arc::new(Semaphore::new(k.max(1))));
    let placing = futures::stream::iter(plans)
        .map(|plan| {
            let (done, accepted) = (done.clone(), accepted.clone());
            let base = &checkout[plan.index % checkout.len()];
            let checkout = Checkout::new(http.clone(), base.clone());
            let slots = slots.clone();
            async move {
                // Closed: the slot is held until this order's saga ends.
                let _slot = match &slots {
                    Some(s) => s.clone().acquire_owned().await.ok(),
                    None => None,
                };
                let (mut out, mut lat) = (Outcomes::default(), Latencies::default());
                let first = post(&checkout, &plan, LABEL_POST, deadline, &mut out, &mut lat).await;
                if let Some((_, id)) = first {
                    accepted.lock().expect("not poisoned").push(id);
                }
                let replay_same = match first {
                    Some((_, id)) if plan.index % REPEAT_EVERY == 0 => {
                        let again =
                            post(&checkout, &plan, LABEL_REPEAT, deadline, &mut out, &mut lat)
                                .await;
                        Some(again == Some((StatusCode::OK, id)))
                    }
                    _ => None,
                };
                done.fetch_add(1, Ordering::SeqCst);
                if let (Some(_), Some((_, id))) = (&slots, first) {
                    wait_finished(pg, id, deadline).await;
                }
                let placed = Placed {
                    order_id: first.map(|(_, id)| id),
                    plan,
                    replay_same,
                };
                (placed, out, lat)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>();
    let crashing = async {
        let which = crash?;
        while done.load(Ordering::SeqCst) < n / 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(
            crash_and_restart(ctx, which.instance())
                .await
                .map_err(|e| format!("{e:#}")),
        )
    };
    let (results, crash) = tokio::join!(placing, crashing);
    let mut placing = Placing {
        placed: Vec::with_capacity(n),
        outcomes: Outcomes::default(),
        latencies: Latencies::default(),
        crash,
    };
    for (placed, out, lat) in results {
        placing.placed.push(placed);
        placing.outcomes.merge(&out);
        placing.latencies.merge(&lat);
    }
    placing.placed.sort_by_key(|p| p.plan.index);
    placing
}

/// How often a held slot looks for its saga's end.
const FINISHED_POLL: Duration = Duration::from_millis(10);

/// Polls checkout's table until saga `id` has finished, or `deadline`.
async fn wait_finished(pg: &sqlx::PgPool, id: Uuid, deadline: Instant) {
    while Instant::now() < deadline {
        let finished: Option<bool> = sqlx::query_scalar(
            "SELECT finished_at IS NOT NULL FROM checkout.sagas WHERE order_id = $1",
        )
        .bind(id)
        .fetch_optional(pg)
        .await
        .ok()
        .flatten();
        if finished == Some(true) {
            return;
        }
        tokio::time::sleep(FINISHED_POLL).await;
    }
}

/// SIGKILLs the instance and starts it again; the time until it is ready.
async fn crash_and_restart(ctx: &Ctx, instance: &str) -> Result<Duration> {
    tokio::task::block_in_place(|| control::stop(ctx, instance, How::Crash))?;
    control::start(ctx, instance).await
}
