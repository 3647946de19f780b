//! Wiring: listener, pool, routes, readiness and the retention task, in the
//! zero-to-production shape — `build` does everything that can fail before
//! serving, `port()` lets tests bind port 0, `run` serves and cleans up.

use std::time::Duration;

use axum::Router;
use sqlx::PgPool;
use storefront_kit::db;
use storefront_kit::{checks, http, shutdown};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::retention::Retention;
use crate::routes;

/// Why the service could not start or stopped abnormally: the kit's.
pub use storefront_kit::startup::StartupError as AppError;

/// A built claims service, bound and ready to serve.
pub struct Application {
    /// Bound in `build`, so the port is known before serving starts.
    listener: TcpListener,
    /// The actual port (differs from `BIND_ADDR` when that says port 0).
    port: u16,
    /// Routes wrapped by the kit's layers and probes.
    router: Router,
    /// Shared by handlers and the retention task; closed after both stop.
    pool: PgPool,
    /// How long in-flight requests get after SIGTERM.
    grace: Duration,
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
            listener,
            port,
            router,
            pool,
            grace: config.common.shutdown_grace,
            retention: config.retention,
            cleanup_interval: config.cleanup_interval,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT, drains, stops retention, closes the pool.
    pub async fn run(self) -> Result<(), AppError> {
        self.run_until(shutdown::shutdown_signal()).await
    }

    /// [`Application::run`] with the shutdown trigger supplied (for tests).
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let retention = Retention::spawn(self.pool.clone(), self.retention, self.cleanup_interval);
        let served = shutdown::serve_until(self.listener, self.router, self.grace, signal).await;
        retention.stop().await;
        self.pool.close().await;
        tracing::info!("claims stopped");
        served.map_err(AppError::Serve)
    }
}
