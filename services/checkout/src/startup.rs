//! Wiring: listener, pool, routes, readiness, and the background tasks —
//! the outbox relay, the event consumer, the saga sweeper and the queue
//! gauges. Readiness depends on Postgres and RabbitMQ, not on catalog: the
//! fleet starts services concurrently, and catalog is called lazily with
//! retries. `build` does everything that can fail before serving.

use std::time::Duration;

use storefront_kit::amqp::Connected;
use storefront_kit::db;
use storefront_kit::messaging::Messaging;
use storefront_kit::shutdown::Signal;
use storefront_kit::startup::{Server, Tasks};
use storefront_kit::{checks, http};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::events;
use crate::orchestrator::{Listening, Orchestrator};
use crate::routes::{self, AppState};
use crate::store::{self, Store};

/// Why the service could not start or stopped abnormally: the kit's.
pub use storefront_kit::startup::StartupError as AppError;

/// A built checkout service, bound and ready to serve.
pub struct Application {
    /// The bound listener and the routes, served by `run_until`.
    server: Server,
    /// Drives sagas; shared with the handlers.
    orchestrator: Orchestrator,
    /// Followed by `/ready`.
    connected: Connected,
    /// Everything else the tasks need.
    config: Config,
}

impl Application {
    /// Binds the listener and builds the pool (lazily connected) and routes.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let (listener, port) = storefront_kit::startup::bind(config.common.bind_addr).await?;
        let pool = db::connect_pg(&config.database_url, config.pg_max_connections)?;
        let store = Store::new(
            pool.clone(),
            config.saga.timeouts,
            config.saga.lease,
            config.queues.commands.clone(),
        );
        let catalog = Catalog::new(config.catalog_urls.clone(), config.catalog_timeout);
        let orchestrator = Orchestrator::new(store, catalog, config.saga.clone());
        let connected = Connected::default();
        let state = AppState {
            orchestrator: orchestrator.clone(),
            saga: config.saga.clone(),
        };
        let router = http::app(
            &config.common,
            routes::router(state),
            [checks::postgres(pool), connected.check("rabbitmq")],
        );
        tracing::info!(addr = %config.common.bind_addr, port, catalog = ?config.catalog_urls, "checkout listening");
        Ok(Self {
            server: Server::new(listener, port, router, config.common.shutdown_grace),
            orchestrator,
            connected,
            config,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `signal` (`main` passes SIGTERM/SIGINT) while the
    /// messaging tasks, the consumer watch and the saga sweeper run; then
    /// drains, stops them and closes the pool.
    pub async fn run_until(self, signal: Signal) -> Result<(), AppError> {
        let mut tasks = Tasks::new();
        let stop = tasks.token();
        let pool = self.orchestrator.store.pool.clone();
        let events = events::Events::new(self.orchestrator.clone());
        let messaging = Messaging {
            config: self.config.messaging.clone(),
            name: self.config.common.service_name.clone(),
            outbox: store::outbox_table(),
            connected: self.connected.clone(),
        };
        let queue = (self.config.queues.events.clone(), "events");
        messaging.spawn(&mut tasks, pool.clone(), queue, move |message| {
            let events = events.clone();
            async move { events::handle(&events, message).await }
        });
        tasks.spawn(
            "consumer watch",
            watch_consumer(
                self.connected.clone(),
                self.orchestrator.listening.clone(),
                stop.clone(),
            ),
        );
        tasks.spawn(
            "saga sweeper",
            self.orchestrator.clone().sweep(stop.clone()),
        );
        let served = self.server.serve(signal, tasks).await;
        pool.close().await;
        tracing::info!("checkout stopped");
        served
    }
}

/// How often the consumer's state is copied into [`Listening`].
const LISTENING_EVERY: Duration = Duration::from_millis(50);

/// Keeps `listening` in step with the event consumer (the authorization
/// clock runs only while payments' answers can reach us) until `stop`.
async fn watch_consumer(connected: Connected, listening: Listening, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(LISTENING_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => listening.set(connected.get()),
        }
    }
}
