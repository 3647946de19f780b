//! Sessions in Redis: `<prefix>:<sha256 hex of the id>` holds the
//! [`Session`] as JSON, expiring with the refresh token;
//! `<…>:lock` is the per-session refresh lock (`SET NX PX`, released only
//! by its owner).

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::Session;

/// How long one store operation may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Deletes the lock only if `owner` still holds it: a refresh that outlived
/// its lock must not release someone else's.
static UNLOCK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

/// The store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store: {0}")]
    /// Redis failed.
    Redis(#[from] redis::RedisError),
    #[error("session store: no answer within {TIMEOUT:?}")]
    /// Redis did not answer in time.
    Timeout,
    #[error("session store: an entry that does not parse: {0}")]
    /// A stored session does not parse.
    Corrupt(#[from] serde_json::Error),
}

/// The sessions.
#[derive(Clone)]
pub struct SessionStore {
    redis: ConnectionManager,
    prefix: String,
}

async fn bounded<T>(
    f: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StoreError::Timeout),
    }
}

impl SessionStore {
    /// A store on `redis`, keeping sessions under keys starting with `prefix`.
    pub fn new(redis: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
        }
    }

    /// The key of the session whose id hashes to `hash`.
    pub fn key(&self, hash: &str) -> String {
        format!("{}:{hash}", self.prefix)
    }

    fn lock_key(&self, hash: &str) -> String {
        format!("{}:{hash}:lock", self.prefix)
    }

    /// Writes the session, to expire in `ttl_secs` (at least 1).
    pub async fn save(&self, hash: &str, s: &Session, ttl_secs: u64) -> Result<(), StoreError> {
        let json = serde_json::to_string(s)?;
        let mut conn = self.redis.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(hash))
            .arg(json)
            .arg("EX")
            .arg(ttl_secs.max(1));
        bounded(cmd.query_async::<()>(&mut conn)).await
    }

    /// The session, if it exists.
    pub async fn load(&self, hash: &str) -> Result<Option<Session>, StoreError> {
        let mut conn = self.redis.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(hash));
        let raw: Option<String> = bounded(cmd.query_async(&mut conn)).await?;
        Ok(raw.map(|r| serde_json::from_str(&r)).transpose()?)
    }

    /// Removes the session and its lock.
    pub async fn delete(&self, hash: &str) -> Result<(), StoreError> {
        let mut conn = self.redis.clone();
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(hash)).arg(self.lock_key(hash));
        bounded(cmd.query_async::<()>(&mut conn)).await
    }

    /// Takes the refresh lock for `ttl`, as `owner`; `false` if held.
    pub async fn try_lock(
        &self,
        hash: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.redis.clone();
        let mut cmd = redis::cmd("SET");
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        cmd.arg(self.lock_key(hash))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ms);
        let set: Option<String> = bounded(cmd.query_async(&mut conn)).await?;
        Ok(set.is_some())
    }

    /// Releases the lock if `owner` still holds it.
    pub async fn unlock(&self, hash: &str, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.redis.clone();
        let mut invocation = UNLOCK.key(self.lock_key(hash));
        invocation.arg(owner);
        bounded(invocation.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }
}
