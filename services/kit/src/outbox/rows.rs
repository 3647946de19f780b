//! The SQL on the outbox table: claim a due batch under `FOR UPDATE SKIP
//! LOCKED`, mark rows published or refused (backoff and dead-lettering in
//! SQL), the gauges' numbers, and the retention clean-up.

use std::time::Duration;

use sqlx::{PgExecutor, Postgres, Transaction};
use uuid::Uuid;

use super::{OutboxTable, RelayConfig};

/// A row claimed for publishing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// The message id.
    pub id: Uuid,
    /// The destination queue.
    pub destination: String,
    /// The message type.
    pub kind: String,
    /// The body as JSON text.
    pub payload: String,
    /// Refusals so far.
    pub attempts: i32,
    /// The W3C trace context of the request that enqueued it.
    pub traceparent: Option<String>,
}

/// Claims up to `limit` due rows, locking them for the life of `tx`.
pub async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    table: &OutboxTable,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT id, destination, kind, payload::text AS payload, attempts, traceparent FROM {} \
         WHERE published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= now() \
         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        table.table
    ))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}

/// Marks rows published.
pub async fn mark_published(
    db: impl PgExecutor<'_>,
    table: &OutboxTable,
    ids: &[Uuid],
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(&format!(
        "UPDATE {} SET published_at = now() WHERE id = ANY($1)",
        table.table
    ))
    .bind(ids)
    .execute(db)
    .await?
    .rows_affected())
}

/// Records a refusal: the next attempt is `base · 2^attempts` (capped) from
/// now, computed here in SQL; at `max_attempts` the row is dead-lettered.
/// Returns whether it was.
pub async fn mark_refused(
    db: impl PgExecutor<'_>,
    table: &OutboxTable,
    id: Uuid,
    error: &str,
    config: &RelayConfig,
) -> Result<bool, sqlx::Error> {
    // In SET, `attempts` is the value before this update.
    sqlx::query_scalar(&format!(
        "UPDATE {} SET attempts = attempts + 1, last_error = $2, \
             next_attempt_at = now() + make_interval(secs => least($4::float8, \
                 $3::float8 * power(2::float8, least(attempts, 62)::float8))), \
             dead_at = CASE WHEN attempts + 1 >= $5 THEN now() END \
         WHERE id = $1 RETURNING dead_at IS NOT NULL",
        table.table
    ))
    .bind(id)
    .bind(error)
    .bind(config.backoff.base.as_secs_f64())
    .bind(config.backoff.max.as_secs_f64())
    .bind(config.max_attempts)
    .fetch_one(db)
    .await
}

/// What the outbox holds, for `/metrics` and experiments.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct Stats {
    /// Rows waiting to be published.
    pub pending: i64,
    /// Seconds since the oldest waiting row was written (0 when none).
    pub oldest_pending_age_secs: f64,
    /// Dead-lettered rows.
    pub dead: i64,
}

/// Reads [`Stats`].
pub async fn stats(db: impl PgExecutor<'_>, table: &OutboxTable) -> Result<Stats, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE published_at IS NULL AND dead_at IS NULL) AS pending, \
                coalesce(extract(epoch FROM now() - min(created_at) \
                    FILTER (WHERE published_at IS NULL AND dead_at IS NULL)), 0)::float8 \
                    AS oldest_pending_age_secs, \
                count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead \
         FROM {}",
        table.table
    ))
    .fetch_one(db)
    .await
}

/// Deletes rows published more than `retention` ago; returns how many.
pub async fn cleanup(
    db: impl PgExecutor<'_>,
    table: &OutboxTable,
    retention: Duration,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(&format!(
        "DELETE FROM {} WHERE published_at < now() - make_interval(secs => $1)",
        table.table
    ))
    .bind(retention.as_secs_f64())
    .execute(db)
    .await?
    .rows_affected())
}
