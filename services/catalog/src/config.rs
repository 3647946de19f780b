//! What the catalog reads from its environment, on top of the common set.

use std::time::Duration;

use secrecy::SecretString;
use storefront_kit::{CommonConfig, ConfigError, Vars};

/// The catalog's configuration; built once in `main`, before anything starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SERVICE_NAME`, `BIND_ADDR`, `SHUTDOWN_GRACE_SECS`, ….
    pub common: CommonConfig,
    /// `DATABASE_URL`: required here, since products live in Postgres.
    pub database_url: SecretString,
    /// `REDIS_URL`: required; the L2 cache and the invalidation channel.
    pub redis_url: String,
    /// `PG_MAX_CONNECTIONS` (default 10): the pool size, a knob the
    /// pool-exhaustion experiments turn.
    pub pg_max_connections: u32,
    /// The two cache levels' settings.
    pub cache: CacheConfig,
}

/// How the two-level product cache behaves; knobs the staleness
/// experiments turn.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// `CACHE_L1_TTL_MS` (default 2000): how long a replica trusts its own
    /// copy. It bounds staleness when an invalidation message is lost.
    pub l1_ttl: Duration,
    /// `CACHE_L2_TTL_SECS` (default 60): lifetime of the shared Redis copy.
    pub l2_ttl_secs: u64,
    /// `CACHE_KEY_PREFIX` (default `catalog`): prefixes the Redis keys and
    /// names the channel `<prefix>:invalidate`, so fleets (or tests) that
    /// share one Redis don't see each other's entries.
    pub key_prefix: String,
}

impl Config {
    /// Reads the given variables.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        Ok(Self {
            database_url: common.require_database_url()?.clone(),
            redis_url: common.require_redis_url()?.to_owned(),
            pg_max_connections: vars.with_default("PG_MAX_CONNECTIONS", 10)?,
            cache: CacheConfig {
                l1_ttl: Duration::from_millis(vars.with_default("CACHE_L1_TTL_MS", 2000)?),
                l2_ttl_secs: vars.with_default("CACHE_L2_TTL_SECS", 60)?,
                key_prefix: vars.with_default("CACHE_KEY_PREFIX", "catalog".to_owned())?,
            },
            common,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_database_url_is_named() {
        let vars = Vars::from_pairs([
            ("SERVICE_NAME", "catalog-1"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("REDIS_URL", "redis://127.0.0.1/"),
        ]);
        let err = Config::from_vars(&vars).unwrap_err();
        assert!(
            err.to_string().starts_with("DATABASE_URL is not set"),
            "{err}"
        );
    }

    #[test]
    fn cache_settings_have_defaults() {
        let vars = Vars::from_pairs([
            ("SERVICE_NAME", "catalog-1"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", "postgres://u:p@h/db"),
            ("REDIS_URL", "redis://127.0.0.1/"),
        ]);
        let config = Config::from_vars(&vars).unwrap();
        assert_eq!(
            config.cache,
            CacheConfig {
                l1_ttl: Duration::from_secs(2),
                l2_ttl_secs: 60,
                key_prefix: "catalog".into(),
            }
        );
    }
}
