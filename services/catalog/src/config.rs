//! What the catalog reads from its environment, on top of the common set.

use secrecy::SecretString;
use storefront_kit::{CommonConfig, ConfigError, Vars};

/// The catalog's configuration; built once in `main`, before anything starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SERVICE_NAME`, `BIND_ADDR`, `SHUTDOWN_GRACE_SECS`, ….
    pub common: CommonConfig,
    /// `DATABASE_URL`: required here, since products live in Postgres.
    pub database_url: SecretString,
    /// `REDIS_URL`: required; checked by `/ready` (the cache comes later).
    pub redis_url: String,
    /// `PG_MAX_CONNECTIONS` (default 10): the pool size, a knob the
    /// pool-exhaustion experiments turn.
    pub pg_max_connections: u32,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::process())
    }

    /// Reads the given variables.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        Ok(Self {
            database_url: common.require_database_url()?.clone(),
            redis_url: common.require_redis_url()?.to_owned(),
            pg_max_connections: vars.with_default("PG_MAX_CONNECTIONS", 10)?,
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
}
