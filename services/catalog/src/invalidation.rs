//! The subscriber that keeps this replica's L1 honest: every replica
//! publishes the ids it wrote on `<prefix>:invalidate`, and this task evicts
//! them here.
//!
//! It holds a dedicated pub/sub connection (a subscribed connection can't
//! run other commands). When the subscription drops it reconnects with
//! capped, jittered backoff, and on every (re)subscription it clears the
//! whole L1: messages published while it was away are lost for good, and
//! anything cached in that window may be stale. The L1 TTL bounds staleness
//! regardless, e.g. on a half-open connection that never reports an error.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use storefront_kit::db::REDIS_TIMEOUT;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cache::ProductCache;

/// First retry delay after the subscription drops.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts while Redis stays down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the subscriber. `subscribed` fires after the first subscription
/// (so the caller can wait for it before serving); the task stops when
/// `stop` is cancelled.
pub fn spawn(
    client: redis::Client,
    cache: ProductCache,
    stop: CancellationToken,
    subscribed: oneshot::Sender<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = run(&client, &cache, subscribed) => {}
        }
        tracing::info!("invalidation subscriber stopped");
    })
}

/// Subscribes, listens until the connection drops, and starts over; never
/// returns (the caller's `select!` ends it).
async fn run(client: &redis::Client, cache: &ProductCache, subscribed: oneshot::Sender<()>) {
    let channel = cache.keys().channel();
    let mut subscribed = Some(subscribed);
    loop {
        // Bounded, so a Redis that drops packets can't stall us forever.
        let connect = || async {
            tokio::time::timeout(REDIS_TIMEOUT, async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await
            .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
        };
        let pubsub = connect
            .retry(backoff())
            .sleep(tokio::time::sleep)
            .notify(|error, delay| {
                tracing::warn!(%error, retry_in_ms = delay.as_millis(), channel, "cannot subscribe to invalidations");
            })
            .await;
        let pubsub = match pubsub {
            Ok(pubsub) => pubsub,
            // Unreachable with unlimited retries; kept total for safety.
            Err(error) => {
                tracing::error!(%error, "gave up subscribing; starting over");
                continue;
            }
        };
        cache.clear_local();
        match subscribed.take() {
            Some(first) => {
                tracing::info!(channel, "subscribed to invalidations");
                let _ = first.send(());
            }
            None => {
                metrics::counter!("catalog_invalidation_reconnects_total").increment(1);
                tracing::warn!(channel, "resubscribed to invalidations; L1 cleared");
            }
        }
        listen(pubsub, cache).await;
        tracing::warn!(channel, "invalidation subscription dropped; reconnecting");
    }
}

/// Evicts each published id until the connection ends.
async fn listen(pubsub: redis::aio::PubSub, cache: &ProductCache) {
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        metrics::counter!("catalog_invalidations_received_total").increment(1);
        match message.get_payload::<i64>() {
            Ok(id) => cache.evict_local(id).await,
            Err(error) => {
                // Not from a catalog writer; to be safe, trust nothing.
                tracing::warn!(%error, "unreadable invalidation message; clearing L1");
                cache.clear_local();
            }
        }
    }
}

/// 100 ms doubling to 5 s, jittered so replicas don't reconnect in step,
/// retrying for as long as it takes.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(MIN_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_jitter()
        .without_max_times()
}
