//! The background work every service that messages runs, once: the
//! transactional outbox's relay, a consumer of the one queue the service
//! listens on, and the gauges of that queue's depth — all stopped through
//! the service's [`Tasks`] token.

use std::future::Future;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;

use crate::amqp::{self, Connected, ConsumerConfig, Handled, Incoming};
use crate::outbox::{self, OutboxTable, RelayConfig};
use crate::startup::Tasks;
use crate::{CommonConfig, ConfigError, Vars};

/// How often the queue depth gauges are refreshed.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// The settings every messaging service reads the same way.
#[derive(Debug, Clone)]
pub struct MessagingConfig {
    /// `AMQP_URL`: required; contains a password.
    pub amqp_url: SecretString,
    /// `CONSUMER_PREFETCH` (default 16, at least 1): messages handled at once.
    pub prefetch: u16,
    /// The outbox relay's knobs (`OUTBOX_*`).
    pub relay: RelayConfig,
    /// `AMQP_QUEUE_PREFIX` (default none): prefixes the queue names, so
    /// fleets or tests sharing one broker stay apart.
    pub queue_prefix: String,
}

impl MessagingConfig {
    /// Reads them from `vars` (`AMQP_URL` through `common`).
    pub fn from_vars(vars: &Vars, common: &CommonConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            amqp_url: common.require_amqp_url()?.clone(),
            prefetch: vars.with_default("CONSUMER_PREFETCH", 16u16)?.max(1),
            relay: RelayConfig::from_vars(vars)?,
            queue_prefix: vars.with_default("AMQP_QUEUE_PREFIX", String::new())?,
        })
    }
}

/// The three tasks of one service, before they are spawned.
pub struct Messaging {
    /// The broker and the relay's settings.
    pub config: MessagingConfig,
    /// The instance name; the broker sees connections named
    /// `<name>-relay`, `<name>-<kind>` (the consumer) and `<name>-gauges`.
    pub name: String,
    /// The outbox the relay publishes from.
    pub outbox: OutboxTable,
    /// Whether the consumer is connected, for `/ready`.
    pub connected: Connected,
}

impl Messaging {
    /// Spawns into `tasks` the relay (on `pool`), a consumer of `queue`
    /// (carrying `kind`: `commands`, `events`) handing each message to
    /// `handler`, and the gauges of the queue's depth.
    pub fn spawn<H, Fut>(
        self,
        tasks: &mut Tasks,
        pool: PgPool,
        (queue, kind): (String, &str),
        handler: H,
    ) where
        H: Fn(Incoming) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Handled> + Send + 'static,
    {
        let Self {
            config,
            name,
            outbox,
            connected,
        } = self;
        let relay = outbox::spawn_relay(
            pool,
            outbox,
            config.relay,
            config.amqp_url.clone(),
            format!("{name}-relay"),
            tasks.token(),
        );
        tasks.adopt("outbox relay", relay);
        let consumer = amqp::consume(
            config.amqp_url.clone(),
            ConsumerConfig {
                queue: queue.clone(),
                name: format!("{name}-{kind}"),
                prefetch: config.prefetch,
            },
            connected,
            tasks.token(),
            handler,
        );
        tasks.spawn("consumer", consumer);
        let gauges = amqp::spawn_queue_gauges(
            config.amqp_url,
            format!("{name}-gauges"),
            vec![queue],
            GAUGE_INTERVAL,
            tasks.token(),
        );
        tasks.adopt("queue gauges", gauges);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<MessagingConfig, ConfigError> {
        let mut all = vec![("SERVICE_NAME", "payments"), ("BIND_ADDR", "127.0.0.1:0")];
        all.extend_from_slice(pairs);
        let vars = Vars::from_pairs(all.iter().copied());
        MessagingConfig::from_vars(&vars, &CommonConfig::from_vars(&vars)?)
    }

    #[test]
    fn a_missing_amqp_url_is_named_and_prefetch_is_at_least_one() {
        let err = read(&[]).unwrap_err();
        assert!(err.to_string().starts_with("AMQP_URL"), "{err}");
        let config = read(&[("AMQP_URL", "amqp://g:g@h/%2f")]).unwrap();
        assert_eq!(config.prefetch, 16);
        assert_eq!(config.queue_prefix, "");
        let config = read(&[("AMQP_URL", "amqp://g:g@h/%2f"), ("CONSUMER_PREFETCH", "0")]).unwrap();
        assert_eq!(config.prefetch, 1);
    }
}
