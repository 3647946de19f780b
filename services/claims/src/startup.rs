//! Wiring: listener, pool, routes, readiness and the retention task, in the
//! zero-to-production shape — `build` does everything that can fail before
//! serving, `port()` lets tests bind port 0, `run` serves and cleans up.

use std::time::Duration;

use sqlx::PgPool;
use storefront_kit::db;
use storefront_kit::shutdown::Signal;
use storefront_kit::startup::{Server, Tasks};
use storefront_kit::{checks, http};

use crate::config::Config;
use crate::{retention, routes};

/// Why the service could not start or stopped abnormally: the kit's.
pub use storefront_kit::startup::StartupError as AppError;

/// A built claims service, bound and ready to serve.
pub struct Application {
    /// The bound listener and the routes, served by `run_until`.
    server: Server,
    /// Shared by handlers and the retention task; closed after both stop.
    pool: PgPool,
    /// How long claims (and their keys) are kept.
    retention: Duration,
    /// How often expired claims are deleted.
    cleanup_interval: Duration,
}

impl Application {
    /// Binds the listener and builds the pool (lazily connected) and routes.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let (listener, port) = storefront_kit::startup::bind(config.common.bind_addr).await?;
        let pool = db::connect_pg(&config.database_url, config.pg_max_connections)?;
        let router = http::app(
            &config.common,
            routes::router(pool.clone(), config.common.lab_endpoints),
            [checks::postgres(pool.clone())],
        );
        tracing::info!(
            addr = %config.common.bind_addr,
            port,
            lab_endpoints = config.common.lab_endpoints,
            "claims listening"
        );
        Ok(Self {
            server: Server::new(listener, port, router, config.common.shutdown_grace),
            pool,
            retention: config.retention,
            cleanup_interval: config.cleanup_interval,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `signal` (`main` passes SIGTERM/SIGINT), drains, stops
    /// retention, closes the pool.
    pub async fn run_until(self, signal: Signal) -> Result<(), AppError> {
        let mut tasks = Tasks::new();
        let pass = retention::run(
            self.pool.clone(),
            self.retention,
            self.cleanup_interval,
            tasks.token(),
        );
        tasks.spawn("retention", pass);
        let served = self.server.serve(signal, tasks).await;
        self.pool.close().await;
        tracing::info!("claims stopped");
        served
    }
}
