//! The transactional outbox: a message to another service is a row written
//! in the same transaction as the business change that causes it
//! ([`enqueue`]), so both happen or neither does. A relay ([`spawn_relay`])
//! then moves committed rows to RabbitMQ:
//!
//! - it claims a batch with `FOR UPDATE SKIP LOCKED` (relays in several
//!   replicas never take the same row) and holds the locks while it
//!   publishes, so a relay that dies releases its rows for another;
//! - it publishes the batch with publisher confirms and marks the confirmed
//!   rows published, in the claiming transaction;
//! - a row the broker refused is retried after a backoff computed in SQL
//!   (`base · 2^attempts`, capped), and dead-lettered (kept, with `dead_at`,
//!   and counted) after `max_attempts`; a broker that is down altogether
//!   costs no attempts: the batch is rolled back and retried after reconnecting;
//! - it is woken by `NOTIFY` (sent by [`enqueue`], delivered on commit) and
//!   polls as the fallback, since a notification can be lost while the
//!   listener reconnects;
//! - published rows are deleted after a retention period.
//!
//! Delivery is at least once: a relay that dies between the broker's confirm
//! and its commit publishes those rows again. Consumers dedupe with the
//! inbox ([`crate::inbox`]).
//!
//! Each service creates the table in its own schema:
//!
//! ```sql
//! CREATE TABLE outbox (
//!     id              uuid        PRIMARY KEY,
//!     destination     text        NOT NULL,
//!     kind            text        NOT NULL,
//!     payload         jsonb       NOT NULL,
//!     created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
//!     attempts        integer     NOT NULL DEFAULT 0,
//!     next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
//!     last_error      text,
//!     published_at    timestamptz,
//!     dead_at         timestamptz,
//!     traceparent     text  -- W3C trace context of the enqueuing request
//! );
//! CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at)
//!     WHERE published_at IS NULL AND dead_at IS NULL;
//! CREATE INDEX outbox_published_idx ON outbox (published_at)
//!     WHERE published_at IS NOT NULL;
//! ```
//!
//! Helpers take `impl PgExecutor<'_>` (a pool, a connection or, for
//! [`enqueue`], the business transaction).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sqlx::postgres::PgListener;
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::amqp::{self, Outgoing, Publisher, Refused};
use crate::config::{ConfigError, Vars};

/// Gauge: rows waiting to be published.
pub const DEPTH_METRIC: &str = "outbox_depth";
/// Gauge: age in seconds of the oldest row waiting (0 when none).
pub const OLDEST_AGE_METRIC: &str = "outbox_oldest_pending_age_seconds";
/// Gauge: rows dead-lettered and kept for inspection.
pub const DEAD_METRIC: &str = "outbox_dead_letters";
/// Counter: rows published (its rate is the publish rate).
pub const PUBLISHED_METRIC: &str = "outbox_published_total";
/// Counter: rows dead-lettered.
pub const DEAD_LETTERED_METRIC: &str = "outbox_dead_lettered_total";
/// Counter: publish attempts the broker refused.
pub const REFUSED_METRIC: &str = "outbox_publish_refused_total";

/// A service's outbox table and the channel its rows are announced on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxTable {
    /// Table name, possibly schema-qualified; checked to be a plain identifier.
    table: String,
    /// `LISTEN`/`NOTIFY` channel.
    channel: String,
}

impl OutboxTable {
    /// `table` (e.g. `outbox` under the service's search_path) announced on
    /// `channel` (e.g. `payments_outbox`). Panics on a name that isn't
    /// lowercase letters, digits, `_` and `.`: names are constants in code.
    pub fn new(table: &str, channel: &str) -> Self {
        assert!(plain_identifier(table), "bad outbox table name {table:?}");
        assert!(plain_identifier(channel), "bad channel name {channel:?}");
        Self {
            table: table.to_owned(),
            channel: channel.to_owned(),
        }
    }

    /// The table name, for labels and logs.
    pub fn name(&self) -> &str {
        &self.table
    }
}

/// Lowercase letters, digits, `_` and `.`, not starting with a digit: safe
/// to splice into SQL.
pub(crate) fn plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

/// A message to write with the business change.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// The message id, which the consumer dedupes on.
    pub id: Uuid,
    /// The destination queue.
    pub destination: &'a str,
    /// The message type.
    pub kind: &'a str,
    /// The body.
    pub payload: &'a serde_json::Value,
}

/// Writes `message` and announces it; call it on the transaction that makes
/// the business change. The notification is delivered only if that
/// transaction commits.
pub async fn enqueue(
    db: impl PgExecutor<'_>,
    table: &OutboxTable,
    message: &NewMessage<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "WITH inserted AS ( \
             INSERT INTO {} (id, destination, kind, payload, traceparent) \
             VALUES ($1, $2, $3, $4, $6) RETURNING id \
         ) SELECT pg_notify($5, '') FROM inserted",
        table.table
    ))
    .bind(message.id)
    .bind(message.destination)
    .bind(message.kind)
    .bind(message.payload)
    .bind(&table.channel)
    // The enqueuing request's trace, for the relay to send on (amqp.rs).
    .bind(crate::telemetry::current_traceparent())
    .execute(db)
    .await?;
    Ok(())
}

/// Retry delays: `base · 2^failures`, at most `max`. The relay computes the
/// same thing in SQL; this is the schedule written out, for tests and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first refusal.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after a row's `failures_before + 1`-th refusal.
    pub fn delay(&self, failures_before: u32) -> Duration {
        let factor = 2f64.powi(failures_before.min(62) as i32);
        Duration::from_secs_f64((self.base.as_secs_f64() * factor).min(self.max.as_secs_f64()))
    }
}

/// How the relay runs; every knob from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// `OUTBOX_BATCH_SIZE` (default 100): rows per claim, one confirm wait each.
    pub batch_size: i64,
    /// `OUTBOX_POLL_MS` (default 500): the fallback when no NOTIFY comes.
    pub poll_interval: Duration,
    /// `OUTBOX_MAX_ATTEMPTS` (default 8): refusals before a row is dead-lettered.
    pub max_attempts: i32,
    /// `OUTBOX_BACKOFF_BASE_MS` (default 200) and `OUTBOX_BACKOFF_MAX_MS` (default 30000).
    pub backoff: Backoff,
    /// `OUTBOX_RETENTION_SECS` (default 3600): how long published rows stay.
    pub retention: Duration,
    /// `OUTBOX_CLEANUP_INTERVAL_SECS` (default 60): how often they're deleted.
    pub cleanup_interval: Duration,
}

impl RelayConfig {
    /// Reads the knobs.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            batch_size: vars
                .with_default("OUTBOX_BATCH_SIZE", 100u32)?
                .max(1)
                .into(),
            poll_interval: Duration::from_millis(vars.with_default("OUTBOX_POLL_MS", 500)?),
            max_attempts: vars
                .with_default("OUTBOX_MAX_ATTEMPTS", 8u16)?
                .max(1)
                .into(),
            backoff: Backoff {
                base: Duration::from_millis(vars.with_default("OUTBOX_BACKOFF_BASE_MS", 200)?),
                max: Duration::from_millis(vars.with_default("OUTBOX_BACKOFF_MAX_MS", 30_000)?),
            },
            retention: Duration::from_secs(vars.with_default("OUTBOX_RETENTION_SECS", 3600)?),
            cleanup_interval: Duration::from_secs(
                vars.with_default("OUTBOX_CLEANUP_INTERVAL_SECS", 60)?,
            ),
        })
    }
}

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

/// Where a relay publishes: RabbitMQ in services, a fake in tests.
pub trait Sink: Send {
    /// Publishes a batch; one result per message, in order. `Err` means the
    /// sink itself is broken (nothing is counted against the rows).
    fn publish(
        &mut self,
        batch: &[Outgoing],
    ) -> impl Future<Output = Result<Vec<Result<(), Refused>>, lapin::Error>> + Send;
}

impl Sink for Publisher {
    fn publish(
        &mut self,
        batch: &[Outgoing],
    ) -> impl Future<Output = Result<Vec<Result<(), Refused>>, lapin::Error>> + Send {
        self.publish_batch(batch)
    }
}

/// Why one relay pass did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Postgres failed; the transaction rolled back.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The broker failed; the transaction rolled back, no attempt counted.
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker did not confirm in time; rolled back like a failure.
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
}

/// Longest a batch may wait for the broker's confirms while its rows stay
/// locked.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the relay refreshes its gauges ([`report_stats`]).
pub const STATS_EVERY: Duration = Duration::from_secs(1);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Rows claimed.
    pub claimed: usize,
    /// Rows published and marked.
    pub published: usize,
    /// Rows refused (retried later or dead-lettered).
    pub refused: usize,
    /// Of the refused, rows dead-lettered now.
    pub dead_lettered: usize,
}

/// One pass: claim a batch, publish it, record the outcome, commit.
pub async fn relay_once(
    pool: &PgPool,
    table: &OutboxTable,
    sink: &mut impl Sink,
    config: &RelayConfig,
) -> Result<Pass, RelayError> {
    let mut tx = pool.begin().await?;
    let rows = claim(&mut tx, table, config.batch_size).await?;
    if rows.is_empty() {
        return Ok(Pass::default());
    }
    let batch: Vec<Outgoing> = rows
        .iter()
        .map(|row| Outgoing {
            id: row.id,
            queue: row.destination.clone(),
            kind: row.kind.clone(),
            payload: row.payload.clone().into_bytes(),
            traceparent: row.traceparent.clone(),
        })
        .collect();
    let results = tokio::time::timeout(CONFIRM_TIMEOUT, sink.publish(&batch))
        .await
        .map_err(|_| RelayError::Timeout(CONFIRM_TIMEOUT))??;
    let mut pass = Pass {
        claimed: rows.len(),
        ..Pass::default()
    };
    let mut published = Vec::with_capacity(rows.len());
    for (row, result) in rows.iter().zip(results) {
        match result {
            Ok(()) => published.push(row.id),
            Err(refused) => {
                pass.refused += 1;
                let dead =
                    mark_refused(&mut *tx, table, row.id, &refused.to_string(), config).await?;
                if dead {
                    pass.dead_lettered += 1;
                    tracing::error!(id = %row.id, kind = %row.kind, attempts = row.attempts + 1, error = %refused, "outbox row dead-lettered");
                } else {
                    tracing::warn!(id = %row.id, kind = %row.kind, error = %refused, "publish refused; will retry");
                }
            }
        }
    }
    pass.published = mark_published(&mut *tx, table, &published).await? as usize;
    tx.commit().await?;
    let label = [("outbox", table.channel.clone())];
    metrics::counter!(PUBLISHED_METRIC, &label).increment(pass.published as u64);
    metrics::counter!(REFUSED_METRIC, &label).increment(pass.refused as u64);
    metrics::counter!(DEAD_LETTERED_METRIC, &label).increment(pass.dead_lettered as u64);
    Ok(pass)
}

/// Publishes the outbox's [`Stats`] as gauges.
pub async fn report_stats(pool: &PgPool, table: &OutboxTable) -> Result<Stats, sqlx::Error> {
    let s = stats(pool, table).await?;
    let label = [("outbox", table.channel.clone())];
    metrics::gauge!(DEPTH_METRIC, &label).set(s.pending as f64);
    metrics::gauge!(OLDEST_AGE_METRIC, &label).set(s.oldest_pending_age_secs);
    metrics::gauge!(DEAD_METRIC, &label).set(s.dead as f64);
    Ok(s)
}

/// Starts the relay for `table`, publishing to RabbitMQ at `amqp_url`,
/// until `stop` fires.
pub fn spawn_relay(
    pool: PgPool,
    table: OutboxTable,
    config: RelayConfig,
    amqp_url: SecretString,
    name: String,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            pool.clone(),
            table.channel.clone(),
            wake.clone(),
            stop.clone(),
        ));
        let cleaner = tokio::spawn(clean_loop(
            pool.clone(),
            table.clone(),
            config.clone(),
            stop.clone(),
        ));
        relay_loop(&pool, &table, &config, &amqp_url, &name, &wake, &stop).await;
        listener.await.ok();
        cleaner.await.ok();
        tracing::info!(outbox = %table.table, "outbox relay stopped");
    })
}

/// Publishes until stopped, reconnecting to the broker as needed.
async fn relay_loop(
    pool: &PgPool,
    table: &OutboxTable,
    config: &RelayConfig,
    amqp_url: &SecretString,
    name: &str,
    wake: &Notify,
    stop: &CancellationToken,
) {
    'connect: while let Some(connection) = amqp::connect_with_retry(amqp_url, name, stop).await {
        let mut publisher = match Publisher::open(&connection).await {
            Ok(p) => p,
            Err(error) => {
                tracing::warn!(%error, "cannot open a confirm channel");
                pause(stop, config.poll_interval).await;
                continue;
            }
        };
        tracing::info!(outbox = %table.table, "outbox relay connected");
        let mut last_stats: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                break 'connect;
            }
            let idle = match relay_once(pool, table, &mut publisher, config).await {
                Ok(pass) => (pass.claimed as i64) < config.batch_size,
                Err(error @ (RelayError::Broker(_) | RelayError::Timeout(_))) => {
                    tracing::warn!(%error, "broker failed mid-batch; reconnecting");
                    connection.close(200, "OK".into()).await.ok();
                    pause(stop, config.poll_interval).await;
                    continue 'connect;
                }
                Err(RelayError::Database(error)) => {
                    tracing::warn!(%error, "outbox pass failed");
                    true
                }
            };
            // The gauges cost a query (a commit) of their own: refreshed at
            // most once per STATS_EVERY, not after every pass, which under
            // load doubled the relay's commits (issue 15).
            if last_stats.is_none_or(|at| at.elapsed() >= STATS_EVERY) {
                last_stats = Some(Instant::now());
                if let Err(error) = report_stats(pool, table).await {
                    tracing::debug!(%error, "outbox stats unavailable");
                }
            }
            if idle {
                tokio::select! {
                    () = stop.cancelled() => break 'connect,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(config.poll_interval) => {}
                }
            }
        }
    }
}

/// Sleeps `d` unless stopped first.
async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

/// Turns NOTIFYs on `channel` into wake-ups; on a lost connection it waits
/// and listens again (the relay polls meanwhile).
async fn listen(pool: PgPool, channel: String, wake: Arc<Notify>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            loop {
                listener.recv().await?;
                wake.notify_one();
            }
        };
        let result: Result<(), sqlx::Error> = tokio::select! {
            () = stop.cancelled() => return,
            r = listening => r,
        };
        if let Err(error) = result {
            tracing::debug!(%error, %channel, "outbox listener lost; polling until it is back");
        }
        pause(&stop, Duration::from_secs(1)).await;
    }
}

/// Deletes old published rows every `cleanup_interval`.
async fn clean_loop(
    pool: PgPool,
    table: OutboxTable,
    config: RelayConfig,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.cleanup_interval.max(Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => match cleanup(&pool, &table, config.retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, outbox = %table.table, "published outbox rows deleted"),
                Err(error) => tracing::warn!(%error, "outbox cleanup failed"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_base_and_stops_at_max() {
        let b = Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
        };
        let delays: Vec<u128> = (0..8).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn relay_config_has_defaults_and_names_bad_values() {
        let config = RelayConfig::from_vars(&Vars::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(config.batch_size, 100);
        assert_eq!(config.max_attempts, 8);
        assert_eq!(config.backoff.base, Duration::from_millis(200));
        let err =
            RelayConfig::from_vars(&Vars::from_pairs([("OUTBOX_MAX_ATTEMPTS", "-1")])).unwrap_err();
        assert!(err.to_string().starts_with("OUTBOX_MAX_ATTEMPTS"), "{err}");
    }

    #[test]
    fn identifiers_that_could_inject_sql_are_refused() {
        assert!(plain_identifier("outbox"));
        assert!(plain_identifier("payments.outbox"));
        assert!(!plain_identifier("outbox; drop table x"));
        assert!(!plain_identifier("Outbox"));
        assert!(!plain_identifier("1outbox"));
        assert!(!plain_identifier(""));
    }
}
