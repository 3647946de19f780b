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

/// The trace of the request that started the order: the W3C traceparent
/// checkout stored with the saga's first outbox row (written in the POST
/// /checkout request). None when there is none (an older schema, a row
/// enqueued outside any trace): the story is told without it.
pub async fn trace(admin_url: &str, order: uuid::Uuid) -> Option<String> {
    let mut c = connect(admin_url).await.ok()?;
    let parent: Option<String> = sqlx::query_scalar(
        "SELECT traceparent FROM checkout.outbox
          WHERE payload->>'order_id' = $1::text AND traceparent IS NOT NULL
          ORDER BY created_at LIMIT 1",
    )
    .bind(order)
    .fetch_optional(&mut c)
    .await
    .ok()??;
    trace_id(&parent?).map(str::to_owned)
}

/// The trace id of a `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); None
/// for anything else or the all-zero (invalid) id.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0'))
        .then_some(id)
}

/// How much of the end of a log is searched (a long load writes a lot).
const LOG_TAIL: u64 = 64 << 20;

/// The POST /checkout request of `trace_id` in checkout's JSON logs: its
/// request id, status, latency and time, as its response line says.
pub fn checkout_request(logs: &[std::path::PathBuf], trace_id: &str) -> Option<serde_json::Value> {
    use std::io::Seek;
    logs.iter().find_map(|path| {
        let mut f = std::fs::File::open(path).ok()?;
        let len = f.metadata().ok()?.len();
        f.seek(std::io::SeekFrom::Start(len.saturating_sub(LOG_TAIL)))
            .ok()?;
        find_request(std::io::BufReader::new(f), trace_id)
    })
}

/// The response line of trace `trace_id`'s POST /checkout among `lines`.
pub fn find_request(lines: impl std::io::BufRead, trace_id: &str) -> Option<serde_json::Value> {
    lines
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|l| l.windows(trace_id.len()).any(|w| w == trace_id.as_bytes()))
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(&l).ok())
        .find(|v| {
            v["trace_id"] == trace_id
                && v["span"]["method"] == "POST"
                && v["span"]["route"] == "/checkout"
                && v["fields"]["status"].is_u64()
        })
        .map(|v| {
            serde_json::json!({
                "request_id": v["span"]["request_id"],
                "status": v["fields"]["status"],
                "latency": v["fields"]["latency"],
                "at": v["timestamp"],
            })
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_gives_its_trace_id_and_anything_else_none() {
        assert_eq!(
            trace_id("00-db97bd33ba36e6fb1795cd762c41e5d1-dcf3b8784f4b8d04-01"),
            Some("db97bd33ba36e6fb1795cd762c41e5d1")
        );
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-dcf3b8784f4b8d04-01"),
            None
        );
        assert_eq!(trace_id("00-db97bd33-dcf3b8784f4b8d04-01"), None);
        assert_eq!(
            trace_id("00-zz97bd33ba36e6fb1795cd762c41e5d1-dcf3b8784f4b8d04-01"),
            None
        );
        assert_eq!(trace_id(""), None);
    }

    #[test]
    fn the_checkout_request_is_the_post_response_line_of_that_trace() {
        let log = concat!(
            r#"{"trace_id":"aaaa0000000000000000000000000001","level":"INFO","fields":{"message":"finished processing request","latency":"5 μs","status":202},"span":{"method":"POST","request_id":"r-other","route":"/checkout"}}"#,
            "\n",
            "not json aaaa0000000000000000000000000002\n",
            r#"{"trace_id":"aaaa0000000000000000000000000002","level":"INFO","fields":{"message":"started"},"span":{"method":"POST","request_id":"r-1","route":"/checkout"}}"#,
            "\n",
            r#"{"trace_id":"aaaa0000000000000000000000000002","level":"INFO","fields":{"message":"finished processing request","latency":"10 ms","status":200},"span":{"method":"GET","request_id":"r-0","route":"/orders/{id}"}}"#,
            "\n",
            r#"{"trace_id":"aaaa0000000000000000000000000002","timestamp":"2026-11-30T12:13:30Z","level":"INFO","fields":{"message":"finished processing request","latency":"6652 μs","status":202},"span":{"method":"POST","request_id":"r-1","route":"/checkout"}}"#,
            "\n",
        );
        let found = find_request(log.as_bytes(), "aaaa0000000000000000000000000002").unwrap();
        assert_eq!(found["request_id"], "r-1");
        assert_eq!(found["status"], 202);
        assert_eq!(found["latency"], "6652 μs");
        assert_eq!(found["at"], "2026-11-30T12:13:30Z");
        assert!(find_request(log.as_bytes(), "aaaa0000000000000000000000000003").is_none());
    }
}
