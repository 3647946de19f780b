//! The variables every storefront service reads, in one struct, so the
//! supervisor can start any service with the same environment contract.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, Vars};

/// Configuration shared by all services.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `SERVICE_NAME`: the instance name (`catalog-1`), carried in logs and
    /// `/health` so a log line or probe says which replica answered.
    pub service_name: String,
    /// `BIND_ADDR`: where the HTTP listener binds; port 0 lets tests pick.
    pub bind_addr: SocketAddr,
    /// `DATABASE_URL`: contains a password, hence secret; optional because
    /// not every service owns a schema.
    pub database_url: Option<SecretString>,
    /// `REDIS_URL`: optional; only caching / rate-limiting services use it.
    pub redis_url: Option<String>,
    /// `AMQP_URL`: contains a password; only messaging services use it.
    pub amqp_url: Option<SecretString>,
    /// `LAB_ENDPOINTS` (default false): enables fault-injection endpoints
    /// that must never be on outside the lab.
    pub lab_endpoints: bool,
    /// `LAB_ADMIN_TOKEN`: the bearer token every `/lab/…` request must
    /// carry. Unset means lab routes answer 401 to everyone: turning
    /// `LAB_ENDPOINTS` on never opens them to anonymous callers.
    pub lab_admin_token: Option<SecretString>,
    /// `SHUTDOWN_GRACE_SECS` (default 10): how long in-flight requests get
    /// after SIGTERM before the process stops waiting.
    pub shutdown_grace: Duration,
}

impl CommonConfig {
    /// Reads the given variables; tests use [`Vars::from_pairs`].
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            service_name: vars.required("SERVICE_NAME")?,
            bind_addr: vars.required("BIND_ADDR")?,
            database_url: vars.optional_secret("DATABASE_URL")?,
            redis_url: vars.optional("REDIS_URL")?,
            amqp_url: vars.optional_secret("AMQP_URL")?,
            lab_endpoints: vars.flag("LAB_ENDPOINTS", false)?,
            lab_admin_token: vars.optional_secret("LAB_ADMIN_TOKEN")?,
            shutdown_grace: Duration::from_secs(vars.with_default("SHUTDOWN_GRACE_SECS", 10)?),
        })
    }

    /// `DATABASE_URL`, for services that cannot run without Postgres.
    pub fn require_database_url(&self) -> Result<&SecretString, ConfigError> {
        self.database_url
            .as_ref()
            .ok_or_else(|| ConfigError::missing("DATABASE_URL", "a postgres:// URL"))
    }

    /// `REDIS_URL`, for services that cannot run without Redis.
    pub fn require_redis_url(&self) -> Result<&str, ConfigError> {
        self.redis_url
            .as_deref()
            .ok_or_else(|| ConfigError::missing("REDIS_URL", "a redis:// URL"))
    }

    /// `AMQP_URL`, for services that cannot run without RabbitMQ.
    pub fn require_amqp_url(&self) -> Result<&SecretString, ConfigError> {
        self.amqp_url
            .as_ref()
            .ok_or_else(|| ConfigError::missing("AMQP_URL", "an amqp:// URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![("SERVICE_NAME", "catalog-1"), ("BIND_ADDR", "127.0.0.1:0")]
    }

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let config = CommonConfig::from_vars(&Vars::from_pairs(base())).unwrap();
        assert_eq!(config.service_name, "catalog-1");
        assert!(!config.lab_endpoints);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert!(config.database_url.is_none());
        assert!(config.lab_admin_token.is_none());
    }

    #[test]
    fn lab_admin_token_is_read_as_a_secret() {
        let mut vars = base();
        vars.push(("LAB_ADMIN_TOKEN", "s3cret-lab"));
        let config = CommonConfig::from_vars(&Vars::from_pairs(vars)).unwrap();
        let token = config.lab_admin_token.as_ref().unwrap();
        assert_eq!(token.expose_secret(), "s3cret-lab");
        assert!(!format!("{config:?}").contains("s3cret-lab"));
    }

    #[test]
    fn secrets_are_kept_but_not_printed_by_debug() {
        let mut vars = base();
        vars.push(("DATABASE_URL", "postgres://u:hunter2@h/db"));
        let config = CommonConfig::from_vars(&Vars::from_pairs(vars)).unwrap();
        let url = config.require_database_url().unwrap();
        assert_eq!(url.expose_secret(), "postgres://u:hunter2@h/db");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn missing_service_name_is_named() {
        let vars = Vars::from_pairs([("BIND_ADDR", "127.0.0.1:0")]);
        let err = CommonConfig::from_vars(&vars).unwrap_err();
        assert!(
            err.to_string().starts_with("SERVICE_NAME is not set"),
            "{err}"
        );
    }

    #[test]
    fn bad_bind_addr_is_named() {
        let vars = Vars::from_pairs([("SERVICE_NAME", "x"), ("BIND_ADDR", "localhost")]);
        let err = CommonConfig::from_vars(&vars).unwrap_err();
        assert!(
            err.to_string().starts_with("BIND_ADDR=\"localhost\""),
            "{err}"
        );
    }

    #[test]
    fn require_redis_url_names_the_variable() {
        let config = CommonConfig::from_vars(&Vars::from_pairs(base())).unwrap();
        let err = config.require_redis_url().unwrap_err();
        assert_eq!(
            err.to_string(),
            "REDIS_URL is not set (expected a redis:// URL)"
        );
    }
}
