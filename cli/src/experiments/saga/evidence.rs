//! Reading what only the saga run needs: checkout's sagas with their step
//! history (outcomes, compensations, timings) and which forged webhooks
//! payments applied. The shop's evidence (reservations, payments, stock,
//! outboxes, dead letters) is [`crate::check`]'s.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::check::SagaSeen;
use crate::run::record::Latencies;

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
