//! Wiring: listener, pool, routes, readiness, and the background tasks —
//! the outbox relay, the command consumer, the simulated provider's webhook
//! sender and the queue gauges. `build` does everything that can fail
//! before serving; `run` serves, then stops the tasks and closes the pool.

use std::sync::Arc;

use sqlx::PgPool;
use storefront_kit::amqp::Connected;
use storefront_kit::db;
use storefront_kit::messaging::Messaging;
use storefront_kit::shutdown::Signal;
use storefront_kit::startup::{Server, Tasks};
use storefront_kit::{checks, http};

use crate::commands;
use crate::config::Config;
use crate::provider::Simulator;
use crate::provider::delivery::Sender;
use crate::provider::due::DueTimes;
use crate::routes::{self, AppState};
use crate::store::{self, Store};

/// Why the service could not start or stopped abnormally: the kit's.
pub use storefront_kit::startup::StartupError as AppError;

/// A built payments service, bound and ready to serve.
pub struct Application {
    /// The bound listener and the routes, served by `run_until`.
    server: Server,
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
        .with_lab(crate::outbox_lab::OutboxLab::new(
            config.messaging.amqp_url.clone(),
        ));
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
            server: Server::new(listener, port, router, config.common.shutdown_grace),
            pool,
            store,
            connected,
            webhook_base_url,
            config,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `signal` (`main` passes SIGTERM/SIGINT) with the relay,
    /// the command consumer, the webhook sender and the gauges running;
    /// drains, stops them, closes the pool.
    pub async fn run_until(self, signal: Signal) -> Result<(), AppError> {
        let mut tasks = Tasks::new();
        let stop = tasks.token();
        let commands = commands::Commands::new(self.store.clone());
        let messaging = Messaging {
            config: self.config.messaging.clone(),
            name: self.config.common.service_name.clone(),
            outbox: store::outbox_table(),
            connected: self.connected.clone(),
        };
        let queue = (self.config.queues.commands.clone(), "commands");
        messaging.spawn(&mut tasks, self.pool.clone(), queue, move |message| {
            let commands = commands.clone();
            async move { commands::handle(&commands, message).await }
        });
        let sender = Sender::new(
            self.pool.clone(),
            self.webhook_base_url.clone(),
            &self.config.webhooks,
        );
        tasks.spawn(
            "webhook sender",
            sender.run(
                self.config.provider.poll_interval,
                self.config
                    .provider
                    .wake_at_due
                    .then(|| Arc::new(DueTimes::default())),
                stop.clone(),
            ),
        );
        let served = self.server.serve(signal, tasks).await;
        self.pool.close().await;
        tracing::info!("payments stopped");
        served
    }
}
