//! Wiring: listener, signing key, Redis, Postgres behind Vault credentials
//! (or a static URL in tests), routes, readiness — in the zero-to-production
//! shape: `build` does everything that can fail before serving, `port()`
//! lets tests bind port 0, `run` serves and cleans up.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use storefront_kit::checks::{self, Check};
use storefront_kit::db::{self, DbError};
use storefront_kit::http;
use storefront_kit::shutdown::Signal;
use storefront_kit::startup::{Server, Tasks};

use crate::config::{Config, DbSource};
use crate::db::Db;
use crate::db::rotator::{self, PoolSpec, Rotator, StartError};
use crate::db::vault::VaultClient;
use crate::keys::{KeyError, SigningKeys};
use crate::password::PasswordChecker;
use crate::routes::{self, AppState};
use crate::tokens::Minter;

/// Attempts at the first credentials before giving up on startup.
const START_ATTEMPTS: u32 = 5;
/// Pause between those attempts.
const START_BACKOFF: Duration = Duration::from_secs(1);

/// Why the service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Binding `BIND_ADDR` failed, or the server failed while serving (the
    /// kit's steps).
    #[error(transparent)]
    Startup(#[from] storefront_kit::startup::StartupError),
    /// A URL does not parse.
    #[error("{0}")]
    Pool(#[from] DbError),
    /// `JWT_SIGNING_SEED` is unusable.
    #[error("{0}")]
    Keys(#[from] KeyError),
    /// No working database credentials from Vault.
    #[error("{0}")]
    Credentials(#[from] StartError),
}

/// A built identity service, bound and ready to serve.
pub struct Application {
    /// The bound listener and the routes, handed the client's address (the
    /// guessing throttle keys on it).
    server: Server,
    /// The current pool, closed at the end when nothing rotates it.
    db: Db,
    /// The credential rotation task, started by `run_until` (absent with a
    /// static URL).
    rotator: Option<Rotator>,
}

impl Application {
    /// Binds, makes the key, gets the first credentials, builds the routes.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let (listener, port) = storefront_kit::startup::bind(config.common.bind_addr).await?;
        let keys = SigningKeys::new(config.signing_seed.as_ref())?;
        let kid = keys.kid.clone();
        let minter = Arc::new(Minter::new(keys, &config.issuer, &config.audience));
        let redis = db::connect_redis(&config.redis_url)?;
        let (db, rotator, vault) = database(&config).await?;
        let mut readiness = vec![postgres_check(db.clone()), checks::redis(redis.clone())];
        if let Some(vault) = vault {
            readiness.push(Check::new("vault", move || {
                let vault = vault.clone();
                async move { vault.health().await }
            }));
        }
        let state = AppState {
            db: db.clone(),
            redis,
            minter,
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            lab_endpoints: config.common.lab_endpoints,
            lab_token_digest: config
                .common
                .lab_admin_token
                .as_ref()
                .map(|t| Arc::new(routes::lab_token_digest(t.expose_secret()))),
            passwords: PasswordChecker::new(config.hash_permits, config.queue_deadline),
            login_limits: config.login_limits,
            throttle_prefix: config.throttle_prefix.as_str().into(),
            trusted_proxies: config.trusted_proxies.clone().into(),
        };
        let router = http::app(&config.common, routes::router(state), readiness);
        tracing::info!(addr = %config.common.bind_addr, port, %kid, hash_permits = config.hash_permits, queue_deadline_ms = config.queue_deadline.as_millis() as u64, dynamic_credentials = rotator.is_some(), lab_endpoints = config.common.lab_endpoints, "identity listening");
        let server =
            Server::new(listener, port, router, config.common.shutdown_grace).with_client_addr();
        Ok(Self {
            server,
            db,
            rotator,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `signal` (`main` passes SIGTERM/SIGINT), drains, stops
    /// the rotation (which closes its pools and revokes the lease).
    pub async fn run_until(self, signal: Signal) -> Result<(), AppError> {
        let mut tasks = Tasks::new();
        let rotating = self.rotator.is_some();
        if let Some(rotator) = self.rotator {
            tasks.spawn("credential rotation", rotator.run(tasks.token()));
        }
        let served = self.server.serve(signal, tasks).await;
        if !rotating {
            self.db.current().pool.close().await;
        }
        tracing::info!("identity stopped");
        Ok(served?)
    }
}

type Database = (Db, Option<Rotator>, Option<VaultClient>);

async fn database(config: &Config) -> Result<Database, AppError> {
    match &config.db {
        DbSource::Static { url } => {
            let pool = db::connect_pg(url, config.pg_max_connections)?;
            let user = PgConnectOptions::from_str(url.expose_secret())
                .map(|o| o.get_username().to_owned())
                .unwrap_or_default();
            Ok((Db::fixed(pool, user), None, None))
        }
        DbSource::Vault {
            addr,
            token,
            mount,
            role,
            server_url,
        } => {
            let server = PgConnectOptions::from_str(server_url.expose_secret())
                .map_err(DbError::PostgresUrl)?
                .application_name(&config.common.service_name);
            let vault = VaultClient::new(addr, token.clone(), mount, role);
            let spec = PoolSpec {
                server,
                max_connections: config.pg_max_connections,
            };
            let mut attempt = 1;
            let (db, rotator) = loop {
                match rotator::start(vault.clone(), spec.clone()).await {
                    Ok(started) => break started,
                    Err(error) if attempt < START_ATTEMPTS => {
                        tracing::warn!(%error, attempt, "no database credentials yet; retrying");
                        attempt += 1;
                        tokio::time::sleep(START_BACKOFF).await;
                    }
                    Err(error) => return Err(error.into()),
                }
            };
            Ok((db, Some(rotator), Some(vault)))
        }
    }
}

/// `SELECT 1` run as a request runs its queries ([`Db::run`]): a login that
/// went stale asks for fresh credentials. Probed on the current pool alone,
/// a login whose role Postgres lost (created just before a crash, its
/// commit not yet in the WAL: the dev profile runs `synchronous_commit =
/// off`) failed every probe for good on an idle service, since only
/// requests asked for a rotation.
fn postgres_check(db: Db) -> Check {
    Check::new("postgres", move || {
        let db = db.clone();
        async move {
            db.run(|pool| async move { sqlx::query("SELECT 1").execute(&pool).await.map(drop) })
                .await
        }
    })
}
