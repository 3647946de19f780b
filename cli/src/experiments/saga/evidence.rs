//! Reading the ground truth: checkout's sagas and their step history,
//! catalog's reservations and stock, payments' payments, provider ledger
//! and outbox, and the dead-letter queues' depths (the broker's counts, as
//! each service's /metrics relays them). Every wait is bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::check::{DlqSeen, OutboxSeen, PaymentSeen, ReservationSeen, SagaSeen};
use crate::experiments::record::Latencies;

/// The outboxes the run's messages pass through.
pub const OUTBOXES: [&str; 2] = ["payments.outbox", "checkout.outbox"];
/// Payment statuses that wait for something (a webhook, a command).
const UNSETTLED: &str =
    "('pending', 'authorized', 'capture_requested', 'capture_failed', 'void_requested')";

/// A saga with its timings.
pub struct SagaRecord {
    pub seen: SagaSeen,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `(state entered, when)`, repeats collapsed.
    pub entered: Vec<(String, DateTime<Utc>)>,
}

#[derive(sqlx::FromRow)]
struct SagaRow {
    order_id: Uuid,
    state: String,
    failure: Option<String>,
    amount_cents: Option<i64>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

/// Reads the sagas of `ids` with their histories.
pub async fn sagas(pg: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, SagaRecord>> {
    let rows: Vec<SagaRow> = sqlx::query_as(
        "SELECT order_id, state, failure, amount_cents, created_at, finished_at \
         FROM checkout.sagas WHERE order_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading checkout.sagas")?;
    let steps: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT order_id, to_state, at FROM checkout.saga_steps WHERE order_id = ANY($1) \
         ORDER BY order_id, version",
    )
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading checkout.saga_steps")?;
    let mut entered: HashMap<Uuid, Vec<(String, DateTime<Utc>)>> = HashMap::new();
    for (id, state, at) in steps {
        let list = entered.entry(id).or_default();
        if list.last().is_none_or(|(last, _)| *last != state) {
            list.push((state, at));
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let entered = entered.remove(&row.order_id).unwrap_or_default();
            let seen = SagaSeen {
                terminal: row.finished_at.is_some(),
                state: row.state,
                failure: row.failure,
                amount_cents: row.amount_cents,
                path: entered.iter().map(|(s, _)| s.clone()).collect(),
            };
            let record = SagaRecord {
                seen,
                created_at: row.created_at,
                finished_at: row.finished_at,
                entered,
            };
            (row.order_id, record)
        })
        .collect())
}

/// Polls until every saga of `ids` is terminal or `deadline`; how many are.
pub async fn wait_terminal(pg: &PgPool, ids: &[Uuid], deadline: Instant) -> usize {
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM checkout.sagas WHERE order_id = ANY($1) AND finished_at IS NOT NULL",
        )
        .bind(ids)
        .fetch_one(pg)
        .await
        .unwrap_or(0);
        if done as usize >= ids.len() || Instant::now() >= deadline {
            return done as usize;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the run's messages have settled — outboxes empty, the
/// provider owing no webhook, no payment of the run waiting — or `deadline`.
pub async fn wait_quiet(pg: &PgPool, ids: &[Uuid], deadline: Instant) -> bool {
    let sql = format!(
        "SELECT (SELECT count(*) FROM payments.outbox WHERE published_at IS NULL AND dead_at IS NULL) \
              + (SELECT count(*) FROM checkout.outbox WHERE published_at IS NULL AND dead_at IS NULL) \
              + (SELECT count(*) FROM payments.provider_deliveries d JOIN payments.provider_intents i \
                     USING (intent_id) JOIN payments.payments p USING (payment_id) \
                 WHERE d.delivered_at IS NULL AND p.order_id = ANY($1)) \
              + (SELECT count(*) FROM payments.payments WHERE order_id = ANY($1) AND status IN {UNSETTLED})"
    );
    loop {
        let busy: Option<i64> = sqlx::query_scalar(&sql).bind(ids).fetch_one(pg).await.ok();
        if busy == Some(0) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Catalog's reservations of `ids` (reservation id = order id).
pub async fn reservations(pg: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, ReservationSeen>> {
    let rows: Vec<(Uuid, String, Option<i64>, Option<i32>)> = sqlx::query_as(
        "SELECT r.reservation_id, r.status, i.product_id, i.quantity FROM catalog.reservations r \
         LEFT JOIN catalog.reservation_items i USING (reservation_id) \
         WHERE r.reservation_id = ANY($1) ORDER BY r.reservation_id, i.product_id",
    )
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading catalog.reservations")?;
    let mut out: HashMap<Uuid, ReservationSeen> = HashMap::new();
    for (id, status, product, quantity) in rows {
        let r = out.entry(id).or_insert_with(|| ReservationSeen {
            status,
            items: Vec::new(),
        });
        if let (Some(p), Some(q)) = (product, quantity) {
            r.items.push((p, q));
        }
    }
    Ok(out)
}

/// Payments of `ids`, with captures counted two ways.
pub async fn payments(pg: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, PaymentSeen>> {
    let rows: Vec<(Uuid, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT p.order_id, p.status, p.amount_cents, \
             (SELECT count(*) FROM payments.payment_transitions t \
              WHERE t.payment_id = p.payment_id AND t.to_status = 'captured'), \
             coalesce((SELECT i.captures FROM payments.provider_intents i \
                       WHERE i.payment_id = p.payment_id), 0)::bigint \
         FROM payments.payments p WHERE p.order_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading payments.payments")?;
    Ok(rows
        .into_iter()
        .map(
            |(id, status, amount_cents, into_captured, provider_captures)| {
                (
                    id,
                    PaymentSeen {
                        status,
                        amount_cents,
                        into_captured,
                        provider_captures,
                    },
                )
            },
        )
        .collect())
}

/// Stock of the fixture products now.
pub async fn stock(pg: &PgPool, products: &[i64]) -> Result<HashMap<i64, i32>> {
    let rows: Vec<(i64, i32)> =
        sqlx::query_as("SELECT id, stock FROM catalog.products WHERE id = ANY($1)")
            .bind(products)
            .fetch_all(pg)
            .await
            .context("reading catalog.products")?;
    Ok(rows.into_iter().collect())
}

/// `(pending, dead)` rows of each outbox.
pub async fn outbox_counts(pg: &PgPool) -> Result<Vec<(String, i64, i64)>> {
    let mut out = Vec::new();
    for table in OUTBOXES {
        let (pending, dead): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE published_at IS NULL AND dead_at IS NULL), \
                    count(*) FILTER (WHERE dead_at IS NOT NULL) FROM {table}"
        ))
        .fetch_one(pg)
        .await
        .with_context(|| format!("reading {table}"))?;
        out.push((table.to_owned(), pending, dead));
    }
    Ok(out)
}

/// Joins before/after outbox counts.
pub fn outboxes(before: &[(String, i64, i64)], after: &[(String, i64, i64)]) -> Vec<OutboxSeen> {
    after
        .iter()
        .map(|(name, pending, dead)| OutboxSeen {
            name: name.clone(),
            pending: *pending,
            dead_before: before.iter().find(|b| b.0 == *name).map_or(*dead, |b| b.2),
            dead_after: *dead,
        })
        .collect()
}

/// The value of `amqp_queue_dead_letters{queue="<queue>"}` in `base`'s /metrics.
pub async fn dead_letters(http: &reqwest::Client, base: &str, queue: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    parse_gauge(&text, "amqp_queue_dead_letters", queue)
}

fn parse_gauge(text: &str, metric: &str, queue: &str) -> Option<f64> {
    let prefix = format!("{metric}{{queue=\"{queue}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The dead-letter queues' depths now.
pub async fn dlqs(
    http: &reqwest::Client,
    payments: &str,
    checkout: &str,
) -> Vec<(String, Option<f64>)> {
    vec![
        (
            "payments.commands.dlq".into(),
            dead_letters(http, payments, "payments.commands").await,
        ),
        (
            "checkout.events.dlq".into(),
            dead_letters(http, checkout, "checkout.events").await,
        ),
    ]
}

/// [`dlqs`], waiting (at most `within`) until both are reported: a service
/// just started reports its queues within a second or two.
pub async fn dlqs_reported(
    http: &reqwest::Client,
    payments: &str,
    checkout: &str,
    within: Duration,
) -> Vec<(String, Option<f64>)> {
    let deadline = Instant::now() + within;
    loop {
        let seen = dlqs(http, payments, checkout).await;
        if seen.iter().all(|(_, v)| v.is_some()) || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Joins before/after DLQ depths.
pub fn dlq_seen(before: &[(String, Option<f64>)], after: &[(String, Option<f64>)]) -> Vec<DlqSeen> {
    after
        .iter()
        .map(|(queue, a)| DlqSeen {
            queue: queue.clone(),
            before: before.iter().find(|b| b.0 == *queue).and_then(|b| b.1),
            after: *a,
        })
        .collect()
}

/// How many of `event_ids` payments applied (a signed forgery is recorded,
/// as `unconfirmed` or not applicable, and must change nothing).
pub async fn applied(pg: &PgPool, event_ids: &[String]) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM payments.webhook_events WHERE event_id = ANY($1) AND outcome = 'applied'",
    )
        .bind(event_ids)
        .fetch_one(pg)
        .await
        .context("reading payments.webhook_events")
}

/// The step each saga state is, for the histograms.
fn step_label(state: &str) -> Option<&'static str> {
    Some(match state {
        "reserving" => "step StockReservation",
        "awaiting_authorization" => "step PaymentSession (authorization)",
        "awaiting_capture" => "step Capture",
        "voiding_payment" => "compensation VoidPayment",
        "releasing_stock" => "compensation ReleaseStock",
        _ => return None,
    })
}

/// End-to-end and per-step times from the histories.
pub fn timings(sagas: &HashMap<Uuid, SagaRecord>) -> Latencies {
    let mut lat = Latencies::default();
    for s in sagas.values() {
        if let Some(done) = s.finished_at {
            let d = (done - s.created_at).to_std().unwrap_or_default();
            lat.record(&format!("saga end-to-end ({})", s.seen.state), d);
        }
        for pair in s.entered.windows(2) {
            if let Some(label) = step_label(&pair[0].0) {
                lat.record(label, (pair[1].1 - pair[0].1).to_std().unwrap_or_default());
            }
        }
    }
    lat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_gauges_are_read_by_queue() {
        let text = "amqp_queue_messages{queue=\"payments.commands\"} 3\n\
                    amqp_queue_dead_letters{queue=\"payments.commands\"} 2\n";
        assert_eq!(
            parse_gauge(text, "amqp_queue_dead_letters", "payments.commands"),
            Some(2.0)
        );
        assert_eq!(
            parse_gauge(text, "amqp_queue_dead_letters", "checkout.events"),
            None
        );
    }
}
