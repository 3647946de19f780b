//! What the claims service reads from its environment, on top of the common set.

use std::time::Duration;

use secrecy::SecretString;
use storefront_kit::{CommonConfig, ConfigError, Vars};

/// Default `CLAIMS_RETENTION_SECS`: a day, long enough to cover any client's
/// retry window.
pub const DEFAULT_RETENTION_SECS: u64 = 86_400;
/// Default `CLAIMS_CLEANUP_INTERVAL_SECS`.
pub const DEFAULT_CLEANUP_INTERVAL_SECS: u64 = 60;

/// The service's configuration; built once in `main`, before anything starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SERVICE_NAME`, `BIND_ADDR`, `LAB_ENDPOINTS`, `SHUTDOWN_GRACE_SECS`, ….
    pub common: CommonConfig,
    /// `DATABASE_URL`: required, since claims and their idempotency records
    /// live in Postgres (role `claims`, `search_path = claims`).
    pub database_url: SecretString,
    /// `PG_MAX_CONNECTIONS` (default 10): the pool size.
    pub pg_max_connections: u32,
    /// `CLAIMS_RETENTION_SECS` (default 86400): how long a claim, and so its
    /// idempotency key, is kept. After that the key may be used again.
    pub retention: Duration,
    /// `CLAIMS_CLEANUP_INTERVAL_SECS` (default 60, at least 1): how often the
    /// retention task deletes expired claims.
    pub cleanup_interval: Duration,
}

impl Config {
    /// Reads the given variables.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        let cleanup_secs = vars.with_default(
            "CLAIMS_CLEANUP_INTERVAL_SECS",
            DEFAULT_CLEANUP_INTERVAL_SECS,
        )?;
        // A zero period would make the retention loop spin (and tokio's
        // interval panics on it), so it is refused here, by name.
        if cleanup_secs == 0 {
            return Err(ConfigError::Invalid {
                name: "CLAIMS_CLEANUP_INTERVAL_SECS",
                value: "0".into(),
                expected: "a positive number of seconds".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            database_url: common.require_database_url()?.clone(),
            pg_max_connections: vars.with_default("PG_MAX_CONNECTIONS", 10)?,
            retention: Duration::from_secs(
                vars.with_default("CLAIMS_RETENTION_SECS", DEFAULT_RETENTION_SECS)?,
            ),
            cleanup_interval: Duration::from_secs(cleanup_secs),
            common,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("SERVICE_NAME", "claims"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", "postgres://claims:pw@127.0.0.1/storefront"),
        ]
    }

    #[test]
    fn retention_and_cleanup_default_to_a_day_and_a_minute() {
        let config = Config::from_vars(&Vars::from_pairs(base())).unwrap();
        assert_eq!(config.retention, Duration::from_secs(86_400));
        assert_eq!(config.cleanup_interval, Duration::from_secs(60));
        assert!(!config.common.lab_endpoints);
    }

    #[test]
    fn missing_database_url_is_named() {
        let vars = Vars::from_pairs([("SERVICE_NAME", "claims"), ("BIND_ADDR", "127.0.0.1:0")]);
        let err = Config::from_vars(&vars).unwrap_err();
        assert!(
            err.to_string().starts_with("DATABASE_URL is not set"),
            "{err}"
        );
    }

    #[test]
    fn zero_cleanup_interval_is_refused_by_name() {
        let mut vars = base();
        vars.push(("CLAIMS_CLEANUP_INTERVAL_SECS", "0"));
        let err = Config::from_vars(&Vars::from_pairs(vars)).unwrap_err();
        assert!(
            err.to_string().starts_with("CLAIMS_CLEANUP_INTERVAL_SECS="),
            "{err}"
        );
    }
}
