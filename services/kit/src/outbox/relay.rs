//! The relay: one pass claims a batch, publishes it with confirms and
//! records the outcome in the claiming transaction; the loop around it is
//! woken by `NOTIFY`, polls as the fallback, reconnects, reports its gauges
//! and cleans up published rows.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::rows::{Stats, claim, cleanup, mark_published, mark_refused, stats};
use super::{
    DEAD_LETTERED_METRIC, DEAD_METRIC, DEPTH_METRIC, OLDEST_AGE_METRIC, OutboxTable,
    PUBLISHED_METRIC, REFUSED_METRIC, RelayConfig,
};
use crate::amqp::{self, Outgoing, Publisher, Refused};

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
        let mut publisher =
            match amqp::bounded("opening a confirm channel", Publisher::open(&connection)).await {
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
                    amqp::bounded("closing", connection.close(200, "OK".into()))
                        .await
                        .ok();
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
