//! The revoked-`jti` denylist in Redis, shared with every verifier.
//!
//! Contract (the BFF depends on it): a revoked access token's `jti` is the
//! key `identity:revoked:<jti>` (the UUID in its hyphenated lowercase form),
//! holding the token's `sub`, expiring when the token does. A verifier
//! rejects a token whose key `EXISTS`. Entries vanish on their own once the
//! token would be rejected as expired anyway, so the set stays as small as
//! the number of live revoked tokens.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use uuid::Uuid;

/// Prefix of every denylist key.
pub const KEY_PREFIX: &str = "identity:revoked:";

/// The Redis key for `jti`.
pub fn key(jti: Uuid) -> String {
    format!("{KEY_PREFIX}{}", jti.hyphenated())
}

/// Seconds the entry must live: until `exp`, at least 1 (Redis refuses 0).
pub fn ttl_secs(exp: u64, now: u64) -> u64 {
    exp.saturating_sub(now).max(1)
}

/// Denylists `jti` until `exp`.
pub async fn put(
    redis: &mut ConnectionManager,
    jti: Uuid,
    sub: Uuid,
    exp: u64,
    now: u64,
) -> redis::RedisResult<()> {
    redis
        .set_ex::<_, _, ()>(key(jti), sub.to_string(), ttl_secs(exp, now))
        .await
}

/// Whether `jti` is denylisted.
pub async fn contains(redis: &mut ConnectionManager, jti: Uuid) -> redis::RedisResult<bool> {
    redis.exists(key(jti)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_the_documented_format() {
        let jti = Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        assert_eq!(
            key(jti),
            "identity:revoked:67e55044-10b1-426f-9247-bb680e5fe0c8"
        );
    }

    #[test]
    fn entries_live_until_exp_and_never_zero() {
        assert_eq!(ttl_secs(1_000, 900), 100);
        assert_eq!(ttl_secs(1_000, 1_000), 1);
        assert_eq!(ttl_secs(1_000, 2_000), 1);
    }
}
