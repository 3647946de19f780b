//! What the identity service reads from its environment, on top of the
//! common set.

use std::net::IpAddr;
use std::time::Duration;

use secrecy::SecretString;
use storefront_kit::{CommonConfig, ConfigError, Vars};

use crate::throttle::Limits;

/// Default `ACCESS_TOKEN_TTL_SECS`: five minutes, short enough that the
/// denylist stays small, long enough that clients refresh rarely.
pub const DEFAULT_ACCESS_TTL_SECS: u64 = 300;
/// Default `REFRESH_TOKEN_TTL_SECS`: a day.
pub const DEFAULT_REFRESH_TTL_SECS: u64 = 86_400;
/// Default `PASSWORD_QUEUE_DEADLINE_MS`: a login waits at most 2 s for a
/// hashing permit before it is shed with a 503.
pub const DEFAULT_QUEUE_DEADLINE_MS: u64 = 2_000;
/// Default `LOGIN_FAILURES_PER_ACCOUNT` per window.
pub const DEFAULT_FAILURES_PER_ACCOUNT: u32 = 10;
/// Default `LOGIN_FAILURES_PER_ADDRESS` per window: wider, since many
/// users may share an address (and every client of an untrusted proxy does).
pub const DEFAULT_FAILURES_PER_ADDRESS: u32 = 100;
/// Default `LOGIN_FAILURE_WINDOW_SECS`: five minutes.
pub const DEFAULT_FAILURE_WINDOW_SECS: u64 = 300;

/// Where Postgres credentials come from.
#[derive(Debug, Clone)]
pub enum DbSource {
    /// `VAULT_ADDR` + `VAULT_TOKEN` + `VAULT_DB_ROLE`: dynamic credentials
    /// from the database secrets engine; `DATABASE_URL` (credentials, if
    /// any, ignored) says where the server is.
    Vault {
        /// `VAULT_ADDR`.
        addr: String,
        /// `VAULT_TOKEN`.
        token: SecretString,
        /// `VAULT_DB_MOUNT` (default `database`).
        mount: String,
        /// `VAULT_DB_ROLE`.
        role: String,
        /// `DATABASE_URL`: where the server is.
        server_url: SecretString,
    },
    /// `DATABASE_URL` with a static login (the service's own tests).
    Static {
        /// `DATABASE_URL`.
        url: SecretString,
    },
}

/// The service's configuration; built once in `main`, before anything starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SERVICE_NAME`, `BIND_ADDR`, `REDIS_URL`, `LAB_ENDPOINTS`, ….
    pub common: CommonConfig,
    /// Where the database credentials come from.
    pub db: DbSource,
    /// `REDIS_URL`: required, the denylist lives there.
    pub redis_url: String,
    /// `PG_MAX_CONNECTIONS` (default 10): size of each generation's pool.
    pub pg_max_connections: u32,
    /// `IDENTITY_ISSUER` (default `storefront-identity`): the `iss` claim.
    pub issuer: String,
    /// `IDENTITY_AUDIENCE` (default `storefront`): the `aud` claim.
    pub audience: String,
    /// `ACCESS_TOKEN_TTL_SECS` (default 300).
    pub access_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECS` (default 86400): each refresh token's
    /// lifetime; a refresh issues a successor with a fresh lifetime.
    pub refresh_ttl: Duration,
    /// `JWT_SIGNING_SEED`: 32 bytes base64url; unset means a key generated
    /// at startup (tokens then die with the process).
    pub signing_seed: Option<SecretString>,
    /// `PASSWORD_HASH_PERMITS` (default: the number of cores): password
    /// checks that may run at once.
    pub hash_permits: usize,
    /// `PASSWORD_QUEUE_DEADLINE_MS` (default 2000): longest wait for a
    /// permit before the login is shed (503 + `Retry-After`).
    pub queue_deadline: Duration,
    /// `LOGIN_FAILURES_PER_ACCOUNT`, `LOGIN_FAILURES_PER_ADDRESS`,
    /// `LOGIN_FAILURE_WINDOW_SECS`: the guessing throttle.
    pub login_limits: Limits,
    /// `LOGIN_THROTTLE_KEY_PREFIX` (default `identity:login-attempts:`):
    /// where the throttle's counters live in Redis; must start `identity:`.
    pub throttle_prefix: String,
    /// `TRUSTED_PROXIES` (comma-separated IPs, default none): peers whose
    /// `X-Forwarded-For` names the client (see [`crate::throttle`]).
    pub trusted_proxies: Vec<IpAddr>,
}

impl Config {
    /// Reads the given variables.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        let url = common.database_url.clone().ok_or_else(|| {
            ConfigError::missing(
                "DATABASE_URL",
                "a postgres:// URL (without credentials when VAULT_ADDR is set)",
            )
        })?;
        let db = match vars.optional::<String>("VAULT_ADDR")? {
            Some(addr) => DbSource::Vault {
                addr,
                token: vars.secret("VAULT_TOKEN")?,
                mount: vars.with_default("VAULT_DB_MOUNT", "database".to_owned())?,
                role: vars.required("VAULT_DB_ROLE")?,
                server_url: url,
            },
            None => DbSource::Static { url },
        };
        Ok(Self {
            redis_url: common.require_redis_url()?.to_owned(),
            db,
            pg_max_connections: vars.with_default("PG_MAX_CONNECTIONS", 10)?,
            issuer: vars.with_default("IDENTITY_ISSUER", "storefront-identity".to_owned())?,
            audience: vars.with_default("IDENTITY_AUDIENCE", "storefront".to_owned())?,
            access_ttl: positive_secs(vars, "ACCESS_TOKEN_TTL_SECS", DEFAULT_ACCESS_TTL_SECS)?,
            refresh_ttl: positive_secs(vars, "REFRESH_TOKEN_TTL_SECS", DEFAULT_REFRESH_TTL_SECS)?,
            signing_seed: vars.optional_secret("JWT_SIGNING_SEED")?,
            hash_permits: positive(vars, "PASSWORD_HASH_PERMITS", cores())?,
            queue_deadline: Duration::from_millis(
                vars.with_default("PASSWORD_QUEUE_DEADLINE_MS", DEFAULT_QUEUE_DEADLINE_MS)?,
            ),
            login_limits: Limits {
                per_account: positive(
                    vars,
                    "LOGIN_FAILURES_PER_ACCOUNT",
                    DEFAULT_FAILURES_PER_ACCOUNT,
                )?,
                per_address: positive(
                    vars,
                    "LOGIN_FAILURES_PER_ADDRESS",
                    DEFAULT_FAILURES_PER_ADDRESS,
                )?,
                window: positive_secs(
                    vars,
                    "LOGIN_FAILURE_WINDOW_SECS",
                    DEFAULT_FAILURE_WINDOW_SECS,
                )?,
            },
            throttle_prefix: throttle_prefix(vars)?,
            trusted_proxies: ip_list(vars, "TRUSTED_PROXIES")?,
            common,
        })
    }
}

fn positive_secs(vars: &Vars, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    match vars.with_default(name, default)? {
        0 => Err(ConfigError::Invalid {
            name,
            value: "0".into(),
            expected: "a positive number of seconds".into(),
            reason: "must be at least 1".into(),
        }),
        secs => Ok(Duration::from_secs(secs)),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn positive<T>(vars: &Vars, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialEq + Default + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let value: T = vars.with_default(name, default)?;
    if value == T::default() {
        return Err(ConfigError::Invalid {
            name,
            value: value.to_string(),
            expected: "a positive whole number".into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(value)
}

fn throttle_prefix(vars: &Vars) -> Result<String, ConfigError> {
    let name = "LOGIN_THROTTLE_KEY_PREFIX";
    let prefix: String = vars.with_default(name, crate::throttle::KEY_PREFIX.to_owned())?;
    if !prefix.starts_with("identity:") {
        return Err(ConfigError::Invalid {
            name,
            value: prefix,
            expected: "a Redis key prefix starting `identity:`".into(),
            reason: "identity's Redis user may only touch identity:* keys".into(),
        });
    }
    Ok(prefix)
}

fn ip_list(vars: &Vars, name: &'static str) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(list) = vars.optional::<String>(name)? else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                    name,
                    value: list.clone(),
                    expected: "comma-separated IP addresses".into(),
                    reason: format!("`{s}`: {e}"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("SERVICE_NAME", "identity"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("REDIS_URL", "redis://127.0.0.1:6379/"),
            ("DATABASE_URL", "postgres://127.0.0.1:5432/storefront"),
        ]
    }

    #[test]
    fn vault_variables_select_dynamic_credentials() {
        let mut vars = base();
        vars.extend([
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_TOKEN", "t"),
            ("VAULT_DB_ROLE", "identity"),
        ]);
        let config = Config::from_vars(&Vars::from_pairs(vars)).unwrap();
        let DbSource::Vault { mount, role, .. } = config.db else {
            panic!("expected Vault credentials");
        };
        assert_eq!((mount.as_str(), role.as_str()), ("database", "identity"));
        assert_eq!(config.access_ttl, Duration::from_secs(300));
    }

    #[test]
    fn without_vault_the_database_url_is_the_login() {
        let config = Config::from_vars(&Vars::from_pairs(base())).unwrap();
        assert!(matches!(config.db, DbSource::Static { .. }));
    }

    #[test]
    fn vault_without_a_role_is_named() {
        let mut vars = base();
        vars.extend([("VAULT_ADDR", "http://v"), ("VAULT_TOKEN", "t")]);
        let err = Config::from_vars(&Vars::from_pairs(vars)).unwrap_err();
        assert!(
            err.to_string().starts_with("VAULT_DB_ROLE is not set"),
            "{err}"
        );
    }

    #[test]
    fn hashing_and_throttle_settings_have_defaults_and_are_checked() {
        let config = Config::from_vars(&Vars::from_pairs(base())).unwrap();
        assert!(config.hash_permits >= 1);
        assert_eq!(config.queue_deadline, Duration::from_secs(2));
        assert_eq!(config.login_limits.per_account, 10);
        assert_eq!(config.login_limits.per_address, 100);
        assert_eq!(config.login_limits.window, Duration::from_secs(300));
        assert_eq!(config.throttle_prefix, "identity:login-attempts:");
        assert!(config.trusted_proxies.is_empty());
        for (name, value) in [
            ("PASSWORD_HASH_PERMITS", "0"),
            ("LOGIN_FAILURES_PER_ACCOUNT", "0"),
            ("TRUSTED_PROXIES", "127.0.0.1,not-an-ip"),
            ("LOGIN_THROTTLE_KEY_PREFIX", "bff:x:"),
        ] {
            let mut vars = base();
            vars.push((name, value));
            let err = Config::from_vars(&Vars::from_pairs(vars)).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{name}=")), "{err}");
        }
        let mut vars = base();
        vars.push(("TRUSTED_PROXIES", " 127.0.0.1 , ::1 "));
        let config = Config::from_vars(&Vars::from_pairs(vars)).unwrap();
        assert_eq!(config.trusted_proxies.len(), 2);
    }

    #[test]
    fn missing_redis_and_zero_ttls_are_named() {
        let vars: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| *k != "REDIS_URL")
            .collect();
        let err = Config::from_vars(&Vars::from_pairs(vars)).unwrap_err();
        assert!(err.to_string().starts_with("REDIS_URL is not set"), "{err}");
        let mut vars = base();
        vars.push(("ACCESS_TOKEN_TTL_SECS", "0"));
        let err = Config::from_vars(&Vars::from_pairs(vars)).unwrap_err();
        assert!(
            err.to_string().starts_with("ACCESS_TOKEN_TTL_SECS="),
            "{err}"
        );
    }
}
