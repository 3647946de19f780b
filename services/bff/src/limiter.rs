//! The rate limiter: one token bucket per session, kept in Redis and updated
//! atomically by `limiter.lua` (the same math as [`crate::bucket`]), so
//! several BFF instances share one limit. The clock is Redis's own `TIME`,
//! so instances with skewed clocks still agree.
//!
//! When Redis can't answer within `RATE_LIMIT_REDIS_TIMEOUT_MS`, the
//! configured [`FailMode`] decides, and the decision is counted in
//! `bff_ratelimit_decisions_total{decision="fail_open"|"fail_closed"}`.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;

use crate::bucket::{Decision, Policy};
use crate::config::{FailMode, LimitConfig};

/// Counter of limiter decisions, labelled `decision`.
pub const DECISIONS_METRIC: &str = "bff_ratelimit_decisions_total";

/// The bucket script, loaded once; `invoke_async` uses `EVALSHA` and falls
/// back to `EVAL` (loading it) when Redis doesn't know it yet.
pub static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("limiter.lua")));

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A token was taken.
    Allowed(Decision),
    /// The bucket is empty.
    Denied(Decision),
    /// Redis didn't answer; the fail mode let the request through.
    FailedOpen,
    /// Redis didn't answer; the fail mode refused the request.
    FailedClosed,
}

/// The limiter shared by all requests.
#[derive(Clone)]
pub struct Limiter {
    redis: ConnectionManager,
    config: LimitConfig,
}

/// Runs the bucket script on `key` at `now_us` (or Redis's clock if `None`).
pub async fn take(
    redis: &mut ConnectionManager,
    key: &str,
    policy: Policy,
    now_us: Option<i64>,
) -> redis::RedisResult<Decision> {
    let (allowed, level, retry_after_us, full_after_us): (i64, i64, i64, i64) = SCRIPT
        .key(key)
        .arg(policy.capacity)
        .arg(policy.refill_per_sec)
        .arg(now_us.map(|t| t.to_string()).unwrap_or_default())
        .invoke_async(redis)
        .await?;
    Ok(Decision {
        allowed: allowed == 1,
        level,
        retry_after_us,
        full_after_us,
    })
}

impl Limiter {
    pub fn new(redis: ConnectionManager, config: LimitConfig) -> Self {
        Self { redis, config }
    }

    /// The policy every session gets.
    pub fn policy(&self) -> Policy {
        self.config.policy
    }

    /// Takes a token from `session`'s bucket.
    #[tracing::instrument(skip_all)]
    pub async fn check(&self, session: &str) -> Verdict {
        let key = format!("{}:{session}", self.config.key_prefix);
        let mut redis = self.redis.clone();
        let result = tokio::time::timeout(
            self.config.redis_timeout,
            take(&mut redis, &key, self.config.policy, None),
        )
        .await;
        let verdict = match result {
            Ok(Ok(d)) if d.allowed => Verdict::Allowed(d),
            Ok(Ok(d)) => Verdict::Denied(d),
            Ok(Err(error)) => self.failed(&error.to_string()),
            Err(_) => self.failed("timed out"),
        };
        let label = match verdict {
            Verdict::Allowed(_) => "allowed",
            Verdict::Denied(_) => "denied",
            Verdict::FailedOpen => "fail_open",
            Verdict::FailedClosed => "fail_closed",
        };
        metrics::counter!(DECISIONS_METRIC, "decision" => label).increment(1);
        verdict
    }

    fn failed(&self, why: &str) -> Verdict {
        tracing::warn!(
            error = %storefront_kit::checks::redact(why),
            mode = ?self.config.on_redis_failure,
            "rate limiter cannot reach Redis"
        );
        match self.config.on_redis_failure {
            FailMode::Open => Verdict::FailedOpen,
            FailMode::Closed => Verdict::FailedClosed,
        }
    }
}
