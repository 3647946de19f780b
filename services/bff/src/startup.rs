//! Wiring, in the zero-to-production shape: `build` binds the listener and
//! builds everything that can fail, `port()` lets tests bind port 0, `run`
//! serves until shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use storefront_kit::db::{self, DbError};
use storefront_kit::shutdown::Signal;
use storefront_kit::startup::{Server, Tasks};
use storefront_kit::{checks, http};

use crate::auth::Verifier;
use crate::auth::jwks::Jwks;
use crate::chaos::Chaos;
use crate::config::Config;
use crate::limiter::Limiter;
use crate::retry::RetryBudget;
use crate::routes::{self, Gateway};
use crate::session::Sessions;
use crate::session::identity::IdentityClient;
use crate::session::store::SessionStore;
use crate::upstream::Upstreams;

/// Identity's first instance: where the JWKS, sign-in and refresh go.
fn identity_url(config: &Config) -> Option<&str> {
    config
        .upstreams
        .iter()
        .find(|u| u.service == "identity")
        .and_then(|u| u.urls.first())
        .map(String::as_str)
}

/// Idle upstream connections kept per replica: the BFF's hot path reuses
/// them instead of paying a TCP handshake per request.
const POOL_IDLE_PER_HOST: usize = 256;
/// Connecting to a replica on the same network takes microseconds; a dead
/// one refuses at once. Longer than this means it is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why the BFF could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Binding `BIND_ADDR` failed, or the server failed while serving (the
    /// kit's steps).
    #[error(transparent)]
    Startup(#[from] storefront_kit::startup::StartupError),
    /// The Redis URL does not parse.
    #[error("{0}")]
    Pool(#[from] DbError),
    /// The upstream HTTP client could not be built.
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A built BFF, bound and ready to serve.
pub struct Application {
    /// The bound listener and the routes, in the kit's variant that hands
    /// each request its connection's peer address (`ConnectInfo`): the rate
    /// limiter gives anonymous clients a bucket per address.
    server: Server,
}

impl Application {
    /// Binds the listener and builds the Redis connection (lazy), the
    /// upstream client and the routes.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let (listener, port) = storefront_kit::startup::bind(config.common.bind_addr).await?;
        let redis = db::connect_redis(&config.redis_url)?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(AppError::Client)?;
        let verifier = identity_url(&config).map(|identity| {
            let jwks = Jwks::new(identity, client.clone(), config.jwt.min_refetch);
            Verifier::new(
                jwks,
                &config.jwt.issuer,
                &config.jwt.audience,
                Some(redis.clone()),
            )
        });
        let sessions = identity_url(&config)
            .zip(verifier.clone())
            .map(|(url, verifier)| Sessions {
                store: SessionStore::new(redis.clone(), config.session_prefix.clone()),
                identity: IdentityClient::new(url, client.clone()),
                verifier,
                config: config.session,
            });
        let now = Instant::now();
        let gateway = Gateway {
            verifier,
            upstreams: Upstreams::new(&config.upstreams, config.breaker, now),
            client,
            proxy: crate::upstream::Client::new(POOL_IDLE_PER_HOST, CONNECT_TIMEOUT),
            limiter: Limiter::new(redis.clone(), config.limit.clone()),
            chaos: Mutex::new(Chaos::default()),
            budget: Mutex::new(RetryBudget::new(
                config.retry.budget_ratio,
                config.retry.budget_min_per_sec,
                now,
            )),
            rng: Mutex::new(StdRng::from_os_rng()),
            retry: config.retry,
            breaker: config.breaker,
            admin_token: config.admin_token.clone(),
            lab_endpoints: config.common.lab_endpoints,
            redis_failure: config.limit.on_redis_failure,
            sessions,
        };
        for u in &config.upstreams {
            tracing::info!(service = %u.service, urls = ?u.urls, "routing /api/{}/", u.service);
        }
        let router = http::app(
            &config.common,
            routes::router(Arc::new(gateway)),
            [checks::redis(redis)],
        );
        tracing::info!(
            addr = %config.common.bind_addr,
            port,
            http_workers = config.http_workers,
            "bff listening"
        );
        let server = Server::new(listener, port, router, config.common.shutdown_grace)
            .with_client_addr()
            .with_workers(config.http_workers);
        Ok(Self { server })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `signal` (`main` passes SIGTERM/SIGINT), then drains.
    /// The BFF has no background tasks of its own to stop.
    pub async fn run_until(self, signal: Signal) -> Result<(), AppError> {
        let served = self.server.serve(signal, Tasks::new()).await;
        tracing::info!("bff stopped");
        Ok(served?)
    }
}
