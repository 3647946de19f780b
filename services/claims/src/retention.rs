//! Retention: claims (and with them their idempotency keys) are kept for
//! `CLAIMS_RETENTION_SECS`; a background task deletes older ones every
//! `CLAIMS_CLEANUP_INTERVAL_SECS`. Once deleted, a key may be used again —
//! the contract promises replays only within the retention window.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;

/// Counter of claims deleted by retention.
pub const DELETED_METRIC: &str = "claims_retention_deleted_total";

/// One pass: deletes claims older than `retention` (measured from now) and
/// returns how many went. Public so tests can run a pass without waiting.
pub async fn run_once(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(retention)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let deleted = store::delete_older_than(pool, cutoff).await?;
    metrics::counter!(DELETED_METRIC).increment(deleted);
    if deleted > 0 {
        tracing::info!(deleted, %cutoff, "expired claims deleted");
    } else {
        tracing::debug!(%cutoff, "no expired claims");
    }
    Ok(deleted)
}

/// The retention loop: a pass every `interval`, the first one interval from
/// now (expired keys outlive a restart by at most one interval, and a
/// test's own `run_once` never races a pass at start-up), until `stop` is
/// cancelled (after the current pass).
pub async fn run(pool: PgPool, retention: Duration, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // After a slow pass (or a stalled database) wait a whole interval
    // rather than firing the missed passes back to back.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        retention_secs = retention.as_secs(),
        interval_secs = interval.as_secs(),
        "retention task started"
    );
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {
                if let Err(error) = run_once(&pool, retention).await {
                    tracing::warn!(%error, "retention pass failed; retrying next interval");
                }
            }
        }
    }
    tracing::info!("retention task stopped");
}
