//! An order's story: its saga steps (checkout), the commands and events
//! each side put on the bus (both outboxes, with when they were published
//! and when the other side's inbox took them), payments' own transitions
//! and the provider's webhooks, in time order. Read from the databases as
//! the fleet's Postgres superuser, like the experiments' checks.

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::Row;

/// One line of the timeline.
#[derive(Debug, Serialize)]
pub struct Step {
    pub at: chrono::DateTime<chrono::Utc>,
    pub service: String,
    pub what: String,
    pub detail: String,
}

/// A recent order, to pick from.
#[derive(Debug, Serialize)]
pub struct Order {
    pub order_id: uuid::Uuid,
    pub state: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const TIMELINE: &str = r#"
SELECT at, 'checkout' AS service, 'saga step' AS what,
       coalesce(from_state, '(new)') || ' → ' || to_state || ' · ' || cause
         || coalesce(' · sends ' || command, '') AS detail
  FROM checkout.saga_steps WHERE order_id = $1
UNION ALL
SELECT o.created_at, 'checkout', 'outbox: ' || o.kind,
       'to ' || o.destination || ' · attempts ' || o.attempts
         || coalesce(' · published +' || round(extract(epoch FROM o.published_at - o.created_at) * 1000) || ' ms', ' · not published')
         || coalesce(' · payments took it +' || round(extract(epoch FROM i.processed_at - o.created_at) * 1000) || ' ms', '')
         || coalesce(' · dead: ' || o.last_error, '')
  FROM checkout.outbox o LEFT JOIN payments.inbox i ON i.message_id = o.id
 WHERE o.payload->>'order_id' = $1::text
UNION ALL
SELECT o.created_at, 'payments', 'outbox: ' || o.kind,
       'to ' || o.destination || ' · attempts ' || o.attempts
         || coalesce(' · published +' || round(extract(epoch FROM o.published_at - o.created_at) * 1000) || ' ms', ' · not published')
         || coalesce(' · checkout took it +' || round(extract(epoch FROM i.processed_at - o.created_at) * 1000) || ' ms', '')
  FROM payments.outbox o LEFT JOIN checkout.inbox i ON i.message_id = o.id
 WHERE o.payload->>'order_id' = $1::text
UNION ALL
SELECT t.at, 'payments', 'payment',
       coalesce(t.from_status, '(new)') || ' → ' || t.to_status || ' · ' || t.cause
  FROM payments.payment_transitions t JOIN payments.payments p USING (payment_id)
 WHERE p.order_id = $1
UNION ALL
SELECT w.received_at, 'payments', 'webhook: ' || w.event_type,
       w.provider || ' event ' || w.event_id || ' · ' || w.outcome
  FROM payments.webhook_events w JOIN payments.payments p ON p.provider_ref = w.provider_ref
 WHERE p.order_id = $1
ORDER BY 1
"#;

pub async fn timeline(admin_url: &str, order: uuid::Uuid) -> Result<Vec<Step>> {
    let mut c = connect(admin_url).await?;
    let rows = sqlx::query(TIMELINE)
        .bind(order)
        .fetch_all(&mut c)
        .await
        .context("reading the order's rows")?;
    rows.iter()
        .map(|r| {
            Ok(Step {
                at: r.try_get("at")?,
                service: r.try_get("service")?,
                what: r.try_get("what")?,
                detail: r
                    .try_get::<Option<String>, _>("detail")?
                    .unwrap_or_default(),
            })
        })
        .collect()
}

pub async fn recent(admin_url: &str) -> Result<Vec<Order>> {
    let mut c = connect(admin_url).await?;
    let rows = sqlx::query(
        "SELECT order_id, state, created_at FROM checkout.sagas ORDER BY created_at DESC LIMIT 30",
    )
    .fetch_all(&mut c)
    .await
    .context("listing orders")?;
    rows.iter()
        .map(|r| {
            Ok(Order {
                order_id: r.try_get("order_id")?,
                state: r.try_get("state")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

async fn connect(url: &str) -> Result<sqlx::PgConnection> {
    use sqlx::Connection;
    tokio::time::timeout(
        std::time::Duration::from_secs(3),
        sqlx::PgConnection::connect(url),
    )
    .await
    .context("Postgres did not answer in 3 s")?
    .context("cannot connect to the fleet's Postgres")
}
