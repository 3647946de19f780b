//! What the BFF reads from its environment, on top of the common set.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `CATALOG_URLS`, `CLAIMS_URLS`, `IDENTITY_URLS`, `CHECKOUT_URLS` | unset | upstream replicas (comma-separated base URLs); a service without URLs is not routed |
//! | `UPSTREAM_TIMEOUT_MS` | 2000 | per-attempt timeout; `<SERVICE>_TIMEOUT_MS` overrides it per upstream |
//! | `RATE_LIMIT_CAPACITY` | 200 | tokens per session bucket (the burst) |
//! | `RATE_LIMIT_REFILL_PER_SEC` | 100 | tokens added per second (a whole number) |
//! | `RATE_LIMIT_REDIS_FAILURE` | `open` | Redis unreachable: `open` lets requests through, `closed` answers 503 |
//! | `RATE_LIMIT_REDIS_TIMEOUT_MS` | 500 | how long a bucket update may take before Redis counts as unreachable (too short, and an overloaded BFF fails open on a healthy Redis) |
//! | `RATE_LIMIT_KEY_PREFIX` | `bff:rl` | Redis key prefix of the buckets |
//! | `RATE_LIMIT_LEASE` | capacity / 20, at most 100 | tokens a request without a bearer token leases ahead for its bucket while the bucket is at least half full, so the next ones skip Redis; 0 turns leasing off; at most half the capacity |
//! | `BREAKER_CONSECUTIVE_FAILURES` | 5 | failures in a row that open a breaker |
//! | `BREAKER_WINDOW_MS`, `BREAKER_MIN_CALLS`, `BREAKER_FAILURE_RATIO` | 10000, 20, 0.5 | the failure-ratio rule |
//! | `BREAKER_OPEN_MS` | 5000 | time open before probing |
//! | `BREAKER_HALF_OPEN_PROBES` | 1 | probes at once, and successes that close it |
//! | `RETRY_MAX_ATTEMPTS` | 3 | attempts per idempotent request |
//! | `RETRY_BASE_MS`, `RETRY_CAP_MS` | 10, 200 | full-jitter backoff ceilings |
//! | `RETRY_BUDGET_RATIO`, `RETRY_BUDGET_MIN_PER_SEC` | 0.2, 10 | the retry budget |
//! | `BFF_ADMIN_TOKEN` | unset | bearer token of `/admin/*`; unset: the admin API refuses everyone |
//! | `JWT_ISSUER`, `JWT_AUDIENCE` | `storefront-identity`, `storefront` | what a bearer token's `iss` and `aud` must be (identity's `IDENTITY_ISSUER`/`IDENTITY_AUDIENCE`) |
//! | `JWKS_MIN_REFETCH_MS` | 5000 | a token with an unknown `kid` refetches identity's JWKS at most this often |
//! | `SESSION_REFRESH_MARGIN_SECS` | 60 | a cookie session's access token is refreshed when it has less than this left |
//! | `SESSION_REFRESH_WAIT_MS` | 3000 | how long a request waits for another request's refresh of the same session |
//! | `SESSION_LOCK_MS` | 5000 | how long a session's refresh lock holds if its holder dies |
//! | `SESSION_KEY_PREFIX` | `bff:session` | Redis key prefix of the sessions |
//! | `COOKIE_SECURE` | `false` | add `Secure` to the session cookie (set it behind TLS) |
//! | `HTTP_WORKERS` | the CPUs, at most 8 | threads serving client connections, each with a single-threaded runtime of its own (as nginx's worker processes); 1 serves them all on the main thread |

use std::time::Duration;

use secrecy::SecretString;
use storefront_kit::{CommonConfig, ConfigError, Vars};

use crate::breaker::BreakerConfig;
use crate::bucket::{MAX_RATE, Policy};
use crate::retry::RetryConfig;
use crate::session::SessionConfig;

/// The services the BFF knows how to route, with their variables. A new
/// service joins with one line here (and its `<NAME>_URLS` from the fleet).
pub const KNOWN_UPSTREAMS: &[(&str, &str, &str)] = &[
    ("catalog", "CATALOG_URLS", "CATALOG_TIMEOUT_MS"),
    ("claims", "CLAIMS_URLS", "CLAIMS_TIMEOUT_MS"),
    ("identity", "IDENTITY_URLS", "IDENTITY_TIMEOUT_MS"),
    ("checkout", "CHECKOUT_URLS", "CHECKOUT_TIMEOUT_MS"),
];

/// What to do when Redis can't answer a bucket update in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Let the request through unlimited (availability over protection).
    Open,
    /// Refuse it with 503 (protection over availability).
    Closed,
}

impl std::str::FromStr for FailMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err("expected `open` or `closed`".into()),
        }
    }
}

/// The rate limiter's settings.
#[derive(Debug, Clone)]
pub struct LimitConfig {
    /// The token-bucket policy.
    pub policy: Policy,
    /// What to do when Redis cannot be asked.
    pub on_redis_failure: FailMode,
    /// How long a Redis call may take.
    pub redis_timeout: Duration,
    /// Prefix of the bucket keys.
    pub key_prefix: String,
    /// Tokens leased ahead per trip to Redis (see [`crate::limiter`]).
    pub lease: u32,
}

/// One routed service.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `catalog`: the path segment after `/api/`.
    pub service: String,
    /// Base URLs of its replicas, in the fleet's order.
    pub urls: Vec<String>,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

/// The BFF's configuration; built once in `main`, before anything starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// The settings every service shares.
    pub common: CommonConfig,
    /// `REDIS_URL`: required; the buckets live there.
    pub redis_url: String,
    /// The rate limiter.
    pub limit: LimitConfig,
    /// The upstreams' circuit breakers.
    pub breaker: BreakerConfig,
    /// Retries of idempotent upstream calls.
    pub retry: RetryConfig,
    /// The routed services.
    pub upstreams: Vec<UpstreamConfig>,
    /// `BFF_ADMIN_TOKEN`.
    pub admin_token: Option<SecretString>,
    /// How bearer tokens are checked.
    pub jwt: JwtConfig,
    /// Cookie sessions (active when identity is routed).
    pub session: SessionConfig,
    /// `SESSION_KEY_PREFIX`.
    pub session_prefix: String,
    /// `HTTP_WORKERS`: threads serving client connections.
    pub http_workers: usize,
}

/// Most `HTTP_WORKERS` accepted.
pub const MAX_HTTP_WORKERS: usize = 64;

/// `HTTP_WORKERS`, by default one per CPU (at most 8).
fn http_workers(vars: &Vars) -> Result<usize, ConfigError> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let workers: usize = vars.with_default("HTTP_WORKERS", cpus.min(8))?;
    if !(1..=MAX_HTTP_WORKERS).contains(&workers) {
        return Err(invalid(
            "HTTP_WORKERS",
            workers,
            format!("between 1 and {MAX_HTTP_WORKERS}"),
        ));
    }
    Ok(workers)
}

/// Bearer-token verification: against identity's JWKS (its first
/// `IDENTITY_URLS` instance), with these claims.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The `iss` a token must name.
    pub issuer: String,
    /// The `aud` a token must name.
    pub audience: String,
    /// The least time between two JWKS fetches.
    pub min_refetch: Duration,
}

fn millis(vars: &Vars, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(vars.with_default(name, default)?))
}

fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        expected: "a value in range".into(),
        reason: reason.into(),
    }
}

/// Largest default lease: beyond it, a lease saves nothing measurable.
const MAX_DEFAULT_LEASE: u32 = 100;

/// `RATE_LIMIT_LEASE`: default a twentieth of the capacity (so none below
/// 20), at most [`MAX_DEFAULT_LEASE`]; never over half the capacity, as
/// leases come out of the bucket's top half only.
fn lease(vars: &Vars, policy: Policy) -> Result<u32, ConfigError> {
    let default = (policy.capacity / 20).min(MAX_DEFAULT_LEASE);
    let lease: u32 = vars.with_default("RATE_LIMIT_LEASE", default)?;
    let most = policy.capacity / 2;
    if lease > most {
        return Err(invalid(
            "RATE_LIMIT_LEASE",
            lease,
            format!(
                "at most half of RATE_LIMIT_CAPACITY ({most}): leases come out of the bucket's top half only; 0 turns leasing off"
            ),
        ));
    }
    Ok(lease)
}

/// Splits `a,b` into trimmed non-empty URLs.
fn urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

impl Config {
    /// Reads the given variables.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        let capacity: u32 = vars.with_default("RATE_LIMIT_CAPACITY", 200)?;
        let refill: u32 = vars.with_default("RATE_LIMIT_REFILL_PER_SEC", 100)?;
        let policy = Policy::new(capacity, refill).map_err(|e| {
            if (1..=MAX_RATE).contains(&capacity) {
                invalid("RATE_LIMIT_REFILL_PER_SEC", refill, e)
            } else {
                invalid("RATE_LIMIT_CAPACITY", capacity, e)
            }
        })?;
        let default_timeout = millis(vars, "UPSTREAM_TIMEOUT_MS", 2000)?;
        let mut upstreams = Vec::new();
        for (service, urls_var, timeout_var) in KNOWN_UPSTREAMS {
            let Some(list) = vars.optional::<String>(urls_var)? else {
                continue;
            };
            upstreams.push(UpstreamConfig {
                service: (*service).into(),
                urls: urls(&list),
                timeout: match vars.optional::<u64>(timeout_var)? {
                    Some(ms) => Duration::from_millis(ms),
                    None => default_timeout,
                },
            });
        }
        let breaker = BreakerConfig {
            consecutive_failures: vars.with_default("BREAKER_CONSECUTIVE_FAILURES", 5)?,
            window: millis(vars, "BREAKER_WINDOW_MS", 10_000)?,
            min_calls: vars.with_default("BREAKER_MIN_CALLS", 20)?,
            failure_ratio: vars.with_default("BREAKER_FAILURE_RATIO", 0.5)?,
            open_for: millis(vars, "BREAKER_OPEN_MS", 5000)?,
            half_open_probes: vars.with_default("BREAKER_HALF_OPEN_PROBES", 1)?,
        };
        check_breaker(&breaker)?;
        let retry = RetryConfig {
            max_attempts: vars.with_default("RETRY_MAX_ATTEMPTS", 3)?,
            base: millis(vars, "RETRY_BASE_MS", 10)?,
            cap: millis(vars, "RETRY_CAP_MS", 200)?,
            budget_ratio: vars.with_default("RETRY_BUDGET_RATIO", 0.2)?,
            budget_min_per_sec: vars.with_default("RETRY_BUDGET_MIN_PER_SEC", 10)?,
        };
        if retry.max_attempts == 0 {
            return Err(invalid(
                "RETRY_MAX_ATTEMPTS",
                0,
                "at least 1 (the first attempt)",
            ));
        }
        Ok(Self {
            redis_url: common.require_redis_url()?.to_owned(),
            limit: LimitConfig {
                policy,
                on_redis_failure: vars.with_default("RATE_LIMIT_REDIS_FAILURE", FailMode::Open)?,
                redis_timeout: millis(vars, "RATE_LIMIT_REDIS_TIMEOUT_MS", 500)?,
                key_prefix: vars.with_default("RATE_LIMIT_KEY_PREFIX", "bff:rl".to_owned())?,
                lease: lease(vars, policy)?,
            },
            breaker,
            retry,
            upstreams,
            admin_token: vars.optional_secret("BFF_ADMIN_TOKEN")?,
            jwt: JwtConfig {
                issuer: vars.with_default("JWT_ISSUER", "storefront-identity".to_owned())?,
                audience: vars.with_default("JWT_AUDIENCE", "storefront".to_owned())?,
                min_refetch: millis(vars, "JWKS_MIN_REFETCH_MS", 5000)?,
            },
            session: SessionConfig {
                refresh_margin: Duration::from_secs(
                    vars.with_default("SESSION_REFRESH_MARGIN_SECS", 60)?,
                ),
                refresh_wait: millis(vars, "SESSION_REFRESH_WAIT_MS", 3000)?,
                lock_ttl: millis(vars, "SESSION_LOCK_MS", 5000)?,
                cookie_secure: vars.with_default("COOKIE_SECURE", false)?,
            },
            session_prefix: vars.with_default("SESSION_KEY_PREFIX", "bff:session".to_owned())?,
            http_workers: http_workers(vars)?,
            common,
        })
    }
}

/// Rejects breaker settings that would never trip or never recover.
fn check_breaker(b: &BreakerConfig) -> Result<(), ConfigError> {
    if b.consecutive_failures == 0 {
        return Err(invalid("BREAKER_CONSECUTIVE_FAILURES", 0, "at least 1"));
    }
    if !(b.failure_ratio > 0.0 && b.failure_ratio <= 1.0) {
        return Err(invalid(
            "BREAKER_FAILURE_RATIO",
            b.failure_ratio,
            "in (0, 1]",
        ));
    }
    if b.open_for.is_zero() {
        return Err(invalid("BREAKER_OPEN_MS", 0, "at least 1 ms"));
    }
    if b.window.is_zero() {
        return Err(invalid("BREAKER_WINDOW_MS", 0, "at least 1 ms"));
    }
    if b.half_open_probes == 0 {
        return Err(invalid("BREAKER_HALF_OPEN_PROBES", 0, "at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("SERVICE_NAME", "bff"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("REDIS_URL", "redis://127.0.0.1/"),
        ]
    }

    #[test]
    fn defaults_apply_and_only_configured_upstreams_are_routed() {
        let mut vars = base();
        vars.push(("CATALOG_URLS", "http://a:1/, http://b:2"));
        vars.push(("CATALOG_TIMEOUT_MS", "750"));
        let c = Config::from_vars(&Vars::from_pairs(vars)).unwrap();
        assert_eq!(c.limit.policy, Policy::new(200, 100).unwrap());
        assert_eq!(c.limit.on_redis_failure, FailMode::Open);
        assert_eq!(c.upstreams.len(), 1);
        assert_eq!(c.upstreams[0].urls, ["http://a:1", "http://b:2"]);
        assert_eq!(c.upstreams[0].timeout, Duration::from_millis(750));
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("RATE_LIMIT_REDIS_FAILURE", "sometimes"),
            ("RATE_LIMIT_REFILL_PER_SEC", "0.5"),
            ("RATE_LIMIT_REFILL_PER_SEC", "0"),
            ("RATE_LIMIT_CAPACITY", "0"),
            ("BREAKER_CONSECUTIVE_FAILURES", "0"),
            ("BREAKER_FAILURE_RATIO", "2"),
            ("RETRY_MAX_ATTEMPTS", "0"),
            ("RATE_LIMIT_LEASE", "101"),
            ("RATE_LIMIT_LEASE", "-1"),
            ("HTTP_WORKERS", "0"),
            ("HTTP_WORKERS", "65"),
            ("HTTP_WORKERS", "two"),
        ] {
            let mut vars = base();
            vars.push((name, value));
            let err = Config::from_vars(&Vars::from_pairs(vars)).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn the_lease_defaults_to_a_twentieth_of_the_capacity_at_most_100() {
        let lease = |capacity: &'static str, lease: Option<&'static str>| {
            let mut vars = base();
            vars.push(("RATE_LIMIT_CAPACITY", capacity));
            if let Some(l) = lease {
                vars.push(("RATE_LIMIT_LEASE", l));
            }
            Config::from_vars(&Vars::from_pairs(vars)).map(|c| c.limit.lease)
        };
        assert_eq!(lease("200", None).unwrap(), 10);
        assert_eq!(lease("19", None).unwrap(), 0, "small buckets lease nothing");
        assert_eq!(lease("1000000", None).unwrap(), 100);
        assert_eq!(lease("200", Some("0")).unwrap(), 0, "0 turns it off");
        assert_eq!(lease("200", Some("100")).unwrap(), 100, "half is the most");
        let err = lease("200", Some("101")).unwrap_err().to_string();
        assert!(err.contains("half of RATE_LIMIT_CAPACITY (100)"), "{err}");
    }

    #[test]
    fn http_workers_default_to_the_cpus_at_most_eight() {
        let workers = |value: Option<&'static str>| {
            let mut vars = base();
            if let Some(v) = value {
                vars.push(("HTTP_WORKERS", v));
            }
            Config::from_vars(&Vars::from_pairs(vars)).map(|c| c.http_workers)
        };
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(workers(None).unwrap(), cpus.min(8));
        assert_eq!(workers(Some("1")).unwrap(), 1);
        assert_eq!(workers(Some("64")).unwrap(), 64);
        let err = workers(Some("0")).unwrap_err().to_string();
        assert!(err.contains("between 1 and 64"), "{err}");
    }

    #[test]
    fn redis_is_required() {
        let vars = Vars::from_pairs([("SERVICE_NAME", "bff"), ("BIND_ADDR", "127.0.0.1:0")]);
        let err = Config::from_vars(&vars).unwrap_err();
        assert!(err.to_string().starts_with("REDIS_URL"), "{err}");
    }
}
