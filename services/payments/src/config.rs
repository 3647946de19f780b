//! What payments reads from its environment, on top of the common set.

use std::time::Duration;

use secrecy::SecretString;
use storefront_kit::messaging::MessagingConfig;
use storefront_kit::{CommonConfig, ConfigError, Vars};

use crate::contract::Queues;

/// The payments service's configuration; built once in `main`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SERVICE_NAME`, `BIND_ADDR`, `SHUTDOWN_GRACE_SECS`, ….
    pub common: CommonConfig,
    /// `DATABASE_URL`: required; payments live in Postgres.
    pub database_url: SecretString,
    /// `AMQP_URL`, `CONSUMER_PREFETCH`, `OUTBOX_*`: the broker, the consumer
    /// and the outbox relay.
    pub messaging: MessagingConfig,
    /// `PG_MAX_CONNECTIONS` (default 10).
    pub pg_max_connections: u32,
    /// Webhook verification.
    pub webhooks: WebhookConfig,
    /// The simulated provider.
    pub provider: ProviderConfig,
    /// The queue names, prefixed by `AMQP_QUEUE_PREFIX` (read in `messaging`).
    pub queues: Queues,
}

/// Secrets and tolerance for webhook signatures.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `STRIPE_WEBHOOK_SECRET`: required.
    pub stripe_secret: SecretString,
    /// `PAYPAL_WEBHOOK_SECRET`: required.
    pub paypal_secret: SecretString,
    /// `WEBHOOK_TOLERANCE_SECS` (default 300): how old a signed timestamp may be.
    pub tolerance_secs: i64,
}

/// How the simulated provider behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// `PROVIDER_SEED` (default random): seeds its choices (duplicates, delays).
    pub seed: u64,
    /// `PROVIDER_DUPLICATE_PERCENT` (default 30): events delivered twice.
    pub duplicate_percent: u8,
    /// `PROVIDER_MAX_DELAY_MS` (default 150): deliveries wait up to this,
    /// so events (and their duplicates) arrive out of order.
    pub max_delay: Duration,
    /// `PROVIDER_POLL_MS` (default 1000): how often due deliveries are
    /// looked for at the latest. Deliveries announced on commit wake the
    /// sender when due, so the poll only finds the others (scheduled
    /// before a restart or while the listener reconnected, retries, lapsed
    /// leases); each poll is a commit.
    pub poll_interval: Duration,
    /// `PROVIDER_WAKE_AT_DUE` (default true): the sender also wakes when a
    /// delivery announced to it falls due, instead of waiting for its next
    /// poll; `false` leaves it to the poll alone (tests that hold webhooks).
    pub wake_at_due: bool,
    /// `PROVIDER_WEBHOOK_BASE_URL` (default: this service's own listener):
    /// where webhooks are sent.
    pub webhook_base_url: Option<String>,
}

impl Config {
    /// Reads the given variables.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        let messaging = MessagingConfig::from_vars(vars, &common)?;
        Ok(Self {
            database_url: common.require_database_url()?.clone(),
            pg_max_connections: vars.with_default("PG_MAX_CONNECTIONS", 10)?,
            webhooks: WebhookConfig {
                stripe_secret: vars.secret("STRIPE_WEBHOOK_SECRET")?,
                paypal_secret: vars.secret("PAYPAL_WEBHOOK_SECRET")?,
                tolerance_secs: vars.with_default("WEBHOOK_TOLERANCE_SECS", 300)?,
            },
            provider: ProviderConfig {
                seed: vars.optional("PROVIDER_SEED")?.unwrap_or_else(rand::random),
                duplicate_percent: vars
                    .with_default("PROVIDER_DUPLICATE_PERCENT", 30u8)?
                    .min(100),
                max_delay: Duration::from_millis(vars.with_default("PROVIDER_MAX_DELAY_MS", 150)?),
                poll_interval: Duration::from_millis(
                    vars.with_default("PROVIDER_POLL_MS", 1000)?.max(1),
                ),
                wake_at_due: vars.with_default("PROVIDER_WAKE_AT_DUE", true)?,
                webhook_base_url: vars.optional("PROVIDER_WEBHOOK_BASE_URL")?,
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
            ("SERVICE_NAME", "payments"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("AMQP_URL", "amqp://g:g@h/%2f"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_a"),
            ("PAYPAL_WEBHOOK_SECRET", "pp_b"),
        ]
    }

    #[test]
    fn defaults_apply() {
        let config = Config::from_vars(&Vars::from_pairs(base())).unwrap();
        assert_eq!(config.webhooks.tolerance_secs, 300);
        assert_eq!(config.provider.duplicate_percent, 30);
        assert_eq!(config.provider.webhook_base_url, None);
    }

    #[test]
    fn a_missing_webhook_secret_is_named() {
        let vars: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| *k != "PAYPAL_WEBHOOK_SECRET")
            .collect();
        let err = Config::from_vars(&Vars::from_pairs(vars)).unwrap_err();
        assert!(
            err.to_string().starts_with("PAYPAL_WEBHOOK_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_amqp_url_is_named() {
        let vars: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| *k != "AMQP_URL")
            .collect();
        let err = Config::from_vars(&Vars::from_pairs(vars)).unwrap_err();
        assert!(err.to_string().starts_with("AMQP_URL"), "{err}");
    }
}
