//! The ground truth in Postgres: the changes payments committed for the
//! run's orders and the outbox rows it wrote for them.

use anyhow::{Context, Result};
use sqlx::PgPool;
use uuid::Uuid;

use super::check::{Committed, OutboxRow};

/// The event type each announcing status causes (payments' state machine:
/// a payment that moves to one of these announces it).
const ANNOUNCING: &str = "CASE t.to_status \
     WHEN 'authorized' THEN 'payment_authorized' WHEN 'declined' THEN 'payment_declined' \
     WHEN 'captured' THEN 'payment_captured' WHEN 'capture_failed' THEN 'payment_capture_failed' \
     WHEN 'voided' THEN 'payment_voided' END";

/// Announcing changes committed for `orders`.
pub async fn committed(pg: &PgPool, orders: &[Uuid]) -> Result<Vec<Committed>> {
    let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(&format!(
        "SELECT p.order_id, p.payment_id, {ANNOUNCING} AS kind \
         FROM payments.payment_transitions t JOIN payments.payments p USING (payment_id) \
         WHERE p.order_id = ANY($1) AND ({ANNOUNCING}) IS NOT NULL \
           AND t.from_status IS DISTINCT FROM t.to_status"
    ))
    .bind(orders)
    .fetch_all(pg)
    .await
    .context("evidence: cannot read payments.payment_transitions")?;
    Ok(rows
        .into_iter()
        .map(|(order_id, payment_id, kind)| Committed {
            order_id,
            payment_id,
            kind,
        })
        .collect())
}

/// The outbox rows naming `orders`.
pub async fn outbox(pg: &PgPool, orders: &[Uuid]) -> Result<Vec<OutboxRow>> {
    let rows: Vec<(Uuid, Option<Uuid>, String, bool, bool)> = sqlx::query_as(
        "SELECT id, (payload->>'payment_id')::uuid, kind, published_at IS NOT NULL, \
                dead_at IS NOT NULL \
         FROM payments.outbox WHERE (payload->>'order_id')::uuid = ANY($1)",
    )
    .bind(orders)
    .fetch_all(pg)
    .await
    .context("evidence: cannot read payments.outbox")?;
    Ok(rows
        .into_iter()
        .map(|(id, payment_id, kind, published, dead)| OutboxRow {
            id,
            payment_id: payment_id.unwrap_or_default(),
            kind,
            published,
            dead,
        })
        .collect())
}
