//! What checkout reads from its environment, on top of the common set.

use std::time::Duration;

use secrecy::SecretString;
use storefront_kit::messaging::MessagingConfig;
use storefront_kit::{CommonConfig, ConfigError, Vars};
use storefront_payments::contract::Queues;

use crate::saga::Timeouts;

/// Checkout's configuration; built once in `main`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SERVICE_NAME`, `BIND_ADDR`, `SHUTDOWN_GRACE_SECS`, ….
    pub common: CommonConfig,
    /// `DATABASE_URL`: required; sagas live in Postgres.
    pub database_url: SecretString,
    /// `AMQP_URL`, `CONSUMER_PREFETCH`, `OUTBOX_*`: the broker, the consumer
    /// and the outbox relay.
    pub messaging: MessagingConfig,
    /// `CATALOG_URLS`: required; the catalog replicas' base URLs, tried in turn.
    pub catalog_urls: Vec<String>,
    /// `CATALOG_TIMEOUT_MS` (default 2000): one catalog request's limit.
    pub catalog_timeout: Duration,
    /// `PG_MAX_CONNECTIONS` (default 20).
    pub pg_max_connections: u32,
    /// The saga's clocks.
    pub saga: SagaConfig,
    /// The queue names, prefixed by `AMQP_QUEUE_PREFIX` (read in `messaging`).
    pub queues: Queues,
}

/// The saga's deadlines and the sweeper's pace.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaConfig {
    /// `SAGA_AUTHORIZATION_TIMEOUT_MS` (default 6000) and
    /// `SAGA_RESEND_AFTER_MS` (default 5000).
    pub timeouts: Timeouts,
    /// `SAGA_RESERVE_TIMEOUT_MS` (default 10000): how long the reservation
    /// step retries an unreachable catalog before compensating.
    pub reserve_timeout: Duration,
    /// `SAGA_SWEEP_INTERVAL_MS` (default 200): how often due sagas are looked at.
    pub sweep_interval: Duration,
    /// `SAGA_LEASE_MS` (default 5000): how long a saga picked for an HTTP
    /// step is left to its picker before the sweeper may take it again.
    pub lease: Duration,
}

impl Config {
    /// Reads the given variables.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        let messaging = MessagingConfig::from_vars(vars, &common)?;
        let urls: String = vars.required("CATALOG_URLS")?;
        let catalog_urls: Vec<String> = urls
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if let Some(bad) = catalog_urls.iter().find(|u| !u.starts_with("http")) {
            return Err(ConfigError::Invalid {
                name: "CATALOG_URLS",
                value: bad.clone(),
                expected: "comma-separated http:// base URLs".into(),
                reason: "not an http URL".into(),
            });
        }
        let ms = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(vars.with_default(name, default)?))
        };
        Ok(Self {
            database_url: common.require_database_url()?.clone(),
            catalog_urls,
            catalog_timeout: ms("CATALOG_TIMEOUT_MS", 2000)?,
            pg_max_connections: vars.with_default("PG_MAX_CONNECTIONS", 20)?,
            saga: SagaConfig {
                timeouts: Timeouts {
                    authorization: ms("SAGA_AUTHORIZATION_TIMEOUT_MS", 6000)?,
                    resend_after: ms("SAGA_RESEND_AFTER_MS", 5000)?,
                },
                reserve_timeout: ms("SAGA_RESERVE_TIMEOUT_MS", 10_000)?,
                sweep_interval: ms("SAGA_SWEEP_INTERVAL_MS", 200)?.max(Duration::from_millis(10)),
                lease: ms("SAGA_LEASE_MS", 5000)?,
            },
            queues: Queues::with_prefix(&messaging.queue_prefix),
            messaging,
            common,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("SERVICE_NAME", "checkout"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("AMQP_URL", "amqp://g:g@h/%2f"),
            ("CATALOG_URLS", "http://127.0.0.1:1/, http://127.0.0.1:2"),
        ]
    }

    #[test]
    fn catalog_urls_are_split_and_trimmed() {
        let config = Config::from_vars(&Vars::from_pairs(base())).unwrap();
        assert_eq!(
            config.catalog_urls,
            ["http://127.0.0.1:1", "http://127.0.0.1:2"]
        );
        assert_eq!(config.saga.timeouts.authorization, Duration::from_secs(6));
    }

    #[test]
    fn missing_or_bad_catalog_urls_are_named() {
        let without: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| *k != "CATALOG_URLS")
            .collect();
        let err = Config::from_vars(&Vars::from_pairs(without)).unwrap_err();
        assert!(err.to_string().starts_with("CATALOG_URLS"), "{err}");
        let mut bad = base();
        bad.retain(|(k, _)| *k != "CATALOG_URLS");
        bad.push(("CATALOG_URLS", "catalog:8080"));
        let err = Config::from_vars(&Vars::from_pairs(bad)).unwrap_err();
        assert!(err.to_string().starts_with("CATALOG_URLS"), "{err}");
    }
}
