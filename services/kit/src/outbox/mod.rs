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
use std::time::Duration;

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::config::{ConfigError, Vars};

mod relay;
mod rows;

pub use relay::{
    CONFIRM_TIMEOUT, Pass, RelayError, STATS_EVERY, Sink, relay_once, report_stats, spawn_relay,
};
pub use rows::{Claimed, Stats, claim, cleanup, mark_published, mark_refused, stats};

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
