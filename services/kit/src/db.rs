//! Pool construction with the lab's timeouts, so services don't each pick
//! their own and experiments see the same behaviour everywhere.
//!
//! Both pools connect lazily: a service starts even while its database is
//! down and reports that through `/ready` (503) instead of crash-looping, which
//! is what the fault-injection experiments want to observe.

use std::str::FromStr;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// How long a request waits for a pooled Postgres connection before failing.
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle Postgres connections are closed after this, so a quiet service
/// doesn't pin server slots.
pub const PG_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Connect and per-command timeout for Redis, so a hung Redis fails fast.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a pool could not be built (only ever a malformed URL: connecting is lazy).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The Postgres URL does not parse. The URL itself is not echoed.
    #[error("invalid Postgres URL")]
    PostgresUrl(#[source] sqlx::Error),
    /// The Redis URL does not parse.
    #[error("invalid Redis URL")]
    RedisUrl(#[source] redis::RedisError),
}

/// A Postgres pool of at most `max_connections`, connecting on first use.
pub fn connect_pg(url: &SecretString, max_connections: u32) -> Result<PgPool, DbError> {
    let options = PgConnectOptions::from_str(url.expose_secret()).map_err(DbError::PostgresUrl)?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(PG_ACQUIRE_TIMEOUT)
        .idle_timeout(PG_IDLE_TIMEOUT)
        .connect_lazy_with(options))
}

/// A Redis connection manager that connects on first use and reconnects
/// after I/O errors. Must be called inside a Tokio runtime.
pub fn connect_redis(url: &str) -> Result<ConnectionManager, DbError> {
    let client = redis::Client::open(url).map_err(DbError::RedisUrl)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT));
    ConnectionManager::new_lazy_with_config(client, config).map_err(DbError::RedisUrl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_postgres_url_is_rejected_without_echoing_it() {
        let url = SecretString::from("postgres://user:hunter2@host:notaport/db");
        let err = connect_pg(&url, 1).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn pools_are_lazy_so_building_needs_no_server() {
        let url = SecretString::from("postgres://u:p@127.0.0.1:1/db");
        assert!(connect_pg(&url, 1).is_ok());
        assert!(connect_redis("redis://127.0.0.1:1/").is_ok());
    }
}
