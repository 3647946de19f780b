//! Wiring: listener, pool, routes, readiness, and the background tasks —
//! the outbox relay, the command consumer, the simulated provider's webhook
//! sender and the queue gauges. `build` does everything that can fail
//! before serving; `run` serves, then stops the tasks and closes the pool.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::PgPool;
use storefront_kit::amqp::{self, Connected, ConsumerConfig};
use storefront_kit::db;
use storefront_kit::{checks, http, outbox, shutdown};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::commands;
use crate::config::Config;
use crate::provider::Simulator;
use crate::provider::delivery::Sender;
use crate::routes::{self, AppState};
use crate::store::{self, Store};

/// How often the queue depth gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// Why the service could not start or stopped abnormally: the kit's.
pub use storefront_kit::startup::StartupError as AppError;

/// A built payments service, bound and ready to serve.
pub struct Application {
    /// Bound in `build`, so the port is known before serving starts.
    listener: TcpListener,
    /// The actual port.
    port: u16,
    /// Routes wrapped by the kit's layers and probes.
    router: Router,
    /// Shared by handlers and tasks; closed after all stop.
    pool: PgPool,
    /// The store the consumer applies commands with.
    store: Store,
    /// Followed by `/ready`.
    connected: Connected,
    /// Where the simulated provider sends webhooks.
    webhook_base_url: String,
    /// Everything else the tasks need.
    config: Config,
}

impl Application {
    /// Binds the listener and builds the pool (lazily connected) and routes.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let addr = config.common.bind_addr;
        let (listener, port) = storefront_kit::startup::bind(addr).await?;
        let local = std::net::SocketAddr::new(addr.ip(), port);
        let pool = db::connect_pg(&config.database_url, config.pg_max_connections)?;
        let store = Store::new(
            pool.clone(),
            Arc::new(Simulator::new(&config.provider)),
            config.queues.events.clone(),
        )
        .with_lab(crate::outbox_lab::OutboxLab::new(config.amqp_url.clone()));
        let connected = Connected::default();
        let state = AppState {
            store: store.clone(),
            webhooks: config.webhooks.clone(),
        };
        let router = http::app(
            &config.common,
            routes::router(state, config.common.lab_endpoints),
            [checks::postgres(pool.clone()), connected.check("rabbitmq")],
        );
        let webhook_base_url = config
            .provider
            .webhook_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        tracing::info!(%addr, port = local.port(), provider_seed = config.provider.seed, "payments listening");
        Ok(Self {
            listener,
            port: local.port(),
            router,
            pool,
            store,
            connected,
            webhook_base_url,
            config,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT.
    pub async fn run(self) -> Result<(), AppError> {
        self.run_until(shutdown::shutdown_signal()).await
    }

    /// [`Application::run`] with the shutdown trigger supplied (for tests).
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let stop = CancellationToken::new();
        // If this future is dropped (a test aborting it), the tasks stop too.
        let _stop_on_drop = stop.clone().drop_guard();
        let name = self.config.common.service_name.clone();
        let amqp_url = self.config.amqp_url.clone();
        let relay = outbox::spawn_relay(
            self.pool.clone(),
            store::outbox_table(),
            self.config.relay.clone(),
            amqp_url.clone(),
            format!("{name}-relay"),
            stop.clone(),
        );
        let store = self.store.clone();
        let consumer = tokio::spawn(amqp::consume(
            amqp_url.clone(),
            ConsumerConfig {
                queue: self.config.queues.commands.clone(),
                name: format!("{name}-commands"),
                prefetch: self.config.consumer_prefetch,
            },
            self.connected.clone(),
            stop.clone(),
            move |message| {
                let store = store.clone();
                async move { commands::handle(&store, message).await }
            },
        ));
        let sender = tokio::spawn(
            Sender::new(
                self.pool.clone(),
                self.webhook_base_url.clone(),
                &self.config.webhooks,
            )
            .run(self.config.provider.poll_interval, stop.clone()),
        );
        let gauges = amqp::spawn_queue_gauges(
            amqp_url,
            format!("{name}-gauges"),
            vec![self.config.queues.commands.clone()],
            GAUGE_INTERVAL,
            stop.clone(),
        );
        let served = shutdown::serve_until(
            self.listener,
            self.router,
            self.config.common.shutdown_grace,
            signal,
        )
        .await;
        stop.cancel();
        for (task, what) in [
            (relay, "outbox relay"),
            (consumer, "command consumer"),
            (sender, "webhook sender"),
            (gauges, "queue gauges"),
        ] {
            if let Err(error) = task.await {
                tracing::error!(%error, what, "background task panicked");
            }
        }
        self.pool.close().await;
        tracing::info!("payments stopped");
        served.map_err(AppError::Serve)
    }
}
