//! Wiring: listener, pools, routes and readiness checks, in the
//! zero-to-production shape — `build` does everything that can fail before
//! serving, `port()` lets tests bind port 0, `run` serves and cleans up.

use std::time::Duration;

use sqlx::PgPool;
use storefront_kit::db::{self, DbError};
use storefront_kit::shutdown::Signal;
use storefront_kit::startup::{Server, Tasks};
use storefront_kit::{checks, http};

use crate::cache::ProductCache;
use crate::config::Config;
use crate::invalidation;
use crate::routes::{self, AppState};

/// How long `run` waits for the invalidation subscription before serving
/// anyway: with Redis down the catalog still serves (from Postgres), and
/// `/ready` says what is wrong.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// Why the service could not start or stopped abnormally: the kit's.
pub use storefront_kit::startup::StartupError as AppError;

/// A built catalog, bound and ready to serve.
pub struct Application {
    /// The bound listener and the routes, served by `run_until`.
    server: Server,
    /// Kept to close it after draining, so Postgres sees clean disconnects.
    pool: PgPool,
    /// The cache the invalidation subscriber evicts from.
    cache: ProductCache,
    /// Opens the subscriber's dedicated pub/sub connections.
    redis_client: redis::Client,
}

impl Application {
    /// Binds the listener and builds the pools (lazily connected) and routes.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let (listener, port) = storefront_kit::startup::bind(config.common.bind_addr).await?;
        let pool = db::connect_pg(&config.database_url, config.pg_max_connections)?;
        let redis = db::connect_redis(&config.redis_url)?;
        let redis_client = redis::Client::open(config.redis_url.as_str())
            .map_err(|error| AppError::Pool(DbError::RedisUrl(error)))?;
        let cache = ProductCache::new(&config.cache, redis.clone());
        let state = AppState {
            pool: pool.clone(),
            cache: cache.clone(),
        };
        let router = http::app(
            &config.common,
            routes::router(state, config.common.lab_endpoints),
            [checks::postgres(pool.clone()), checks::redis(redis)],
        );
        tracing::info!(addr = %config.common.bind_addr, port, "catalog listening");
        Ok(Self {
            server: Server::new(listener, port, router, config.common.shutdown_grace),
            pool,
            cache,
            redis_client,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `signal` (`main` passes SIGTERM/SIGINT), drains, stops
    /// the invalidation subscriber, then closes the pool.
    pub async fn run_until(self, signal: Signal) -> Result<(), AppError> {
        let mut tasks = Tasks::new();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let subscriber =
            invalidation::spawn(self.redis_client, self.cache, tasks.token(), subscribed_tx);
        tasks.adopt("invalidation subscriber", subscriber);
        // Serving before the first subscription would let L1 fill with
        // entries whose invalidations nobody hears (the subscriber clears
        // L1 when it subscribes, so they'd only be wasted, not stale).
        if tokio::time::timeout(SUBSCRIBE_WAIT, subscribed)
            .await
            .is_err()
        {
            tracing::warn!("serving before the invalidation subscription is up");
        }
        let served = self.server.serve(signal, tasks).await;
        self.pool.close().await;
        tracing::info!("catalog stopped");
        served
    }
}
