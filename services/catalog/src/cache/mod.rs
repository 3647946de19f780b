//! The two-level product cache: L1 in this process (moka), L2 shared in
//! Redis, Postgres behind both.
//!
//! Writers commit first, then call [`ProductCache::invalidate`]: it evicts
//! this replica's L1 at once, deletes the L2 entry and publishes the id on
//! `<prefix>:invalidate`, where every replica's subscriber
//! ([`crate::invalidation`]) evicts its own L1.
//!
//! Two races are closed here rather than left to the TTLs:
//!
//! * **Stale L2 fill.** A reader misses L2, reads version 1 from Postgres,
//!   a writer commits version 2 and deletes the key, and only then does the
//!   reader write version 1 back, where it would stay for the whole L2 TTL.
//!   Comparing versions can't fix this: the key is absent (deleted), and
//!   `xmin` isn't ordered anyway (a transaction that took its xid early can
//!   commit a row version after one with a higher xid). So every invalidation
//!   also writes a fresh random *stamp* next to the key, and a reader fills
//!   only if the stamp is still the one it saw when it missed — a
//!   compare-and-set done by a Lua script inside Redis ([`FILL`]). A random
//!   token rather than a counter, so a stamp that expired and was recreated
//!   can never match an old one.
//! * **Stale L1 fill.** The same interleaving within one process (or with a
//!   message from another replica). Every local eviction bumps an epoch; a
//!   reader notes it before going to L2/Postgres and, after inserting,
//!   removes its entry again if the epoch moved. One epoch for all ids keeps
//!   it simple; the cost is an occasional skipped fill under heavy writes.
//!
//! Redis trouble never fails a read: the cache degrades to Postgres and the
//! failure is logged and counted. Nor does it slow one down much (issue 12,
//! defect a): every L2 read and fill runs under [`L2_TIMEOUT`], and after a
//! failure a [`Circuit`] skips Redis for them altogether for
//! [`CIRCUIT_OPEN_FOR`], then lets one probe through. Invalidations are
//! always attempted (other replicas' L1 depend on them), under
//! [`INVALIDATE_TIMEOUT`]; one that fails leaves an L2 entry that lives at
//! most `CACHE_L2_TTL_SECS` (a paused Redis keeps its memory).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::config::CacheConfig;
use crate::store::Product;

mod circuit;

pub use circuit::{CIRCUIT_OPEN_FOR, Circuit};

/// Most products one replica keeps in L1; the seeded catalog is far smaller.
const L1_CAPACITY: u64 = 100_000;
/// Lifetime of an invalidation stamp. Correctness doesn't depend on it (an
/// expired stamp only refuses a fill); it just keeps Redis from collecting
/// one key per product forever.
const STAMP_TTL_SECS: u64 = 3600;
/// The most an L2 read or fill may add to a request. A healthy local Redis
/// answers in well under a millisecond, but a loaded two-core lab machine
/// has been seen to take over 100 ms; a false alarm only sends reads to
/// Postgres for [`CIRCUIT_OPEN_FOR`], and with Redis down only the one
/// probe a second pays it.
pub const L2_TIMEOUT: Duration = Duration::from_millis(250);
/// The most an invalidation may add to a write. Invalidations skip the
/// circuit: they are how the other replicas learn of the write, so one is
/// never dropped on a hunch, only when Redis fails to take it.
pub const INVALIDATE_TIMEOUT: Duration = Duration::from_millis(500);

/// Sets `KEYS[1]` to `ARGV[2]` for `ARGV[3]` seconds only if the stamp at
/// `KEYS[2]` still equals `ARGV[1]` (`''` meaning absent). 1 if it wrote.
static FILL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if (redis.call('GET', KEYS[2]) or '') == ARGV[1] then
            redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
            return 1
        end
        return 0
        ",
    )
});

/// Where an answer came from; the `X-Cache` header and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This process's memory.
    L1,
    /// Redis.
    L2,
    /// Postgres.
    Db,
}

impl Source {
    /// `l1`, `l2` or `db`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
            Self::Db => "db",
        }
    }
}

/// What L2 holds for a product.
#[derive(Debug, Clone, PartialEq)]
pub enum L2Lookup {
    /// A cached product.
    Hit(Product),
    /// Nothing; fill with this stamp (`""` when there is none).
    Miss {
        /// The stamp seen at the miss, the fill's precondition.
        stamp: String,
    },
}

/// Why an L2 call produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    /// Redis answered with an error or the connection failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// No answer within the call's limit.
    #[error("redis gave no answer within {0:?}")]
    Timeout(Duration),
    /// The circuit is open: Redis failed recently and was not asked.
    #[error("redis skipped: it failed within the last {CIRCUIT_OPEN_FOR:?}")]
    Skipped,
}

/// Redis key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `CACHE_KEY_PREFIX`.
    prefix: String,
}

impl Keys {
    /// Names under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `<prefix>:product:{id}`: the product's JSON.
    pub fn product(&self, id: i64) -> String {
        format!("{}:product:{id}", self.prefix)
    }

    /// `<prefix>:product:{id}:stamp`: changed by every invalidation.
    pub fn stamp(&self, id: i64) -> String {
        format!("{}:product:{id}:stamp", self.prefix)
    }

    /// `<prefix>:invalidate`: where product ids are published after writes.
    pub fn channel(&self) -> String {
        format!("{}:invalidate", self.prefix)
    }
}

/// The cache; clones share it.
#[derive(Clone)]
pub struct ProductCache {
    /// Shared by every handler and the invalidation subscriber.
    inner: Arc<Inner>,
}

/// The state behind [`ProductCache`].
struct Inner {
    /// L1: this replica's copies, expiring after `CACHE_L1_TTL_MS`.
    l1: Cache<i64, Arc<Product>>,
    /// Bumped by every local eviction; see the module docs.
    epoch: AtomicU64,
    /// L2 and publishing; reconnects on its own.
    redis: ConnectionManager,
    /// Key and channel names.
    keys: Keys,
    /// `CACHE_L2_TTL_SECS`, at least 1 (Redis refuses `EX 0`).
    l2_ttl_secs: u64,
    /// Whether to ask Redis at all; see [`Circuit`].
    circuit: Mutex<Circuit>,
}

impl ProductCache {
    /// An empty cache using `redis` for L2.
    pub fn new(config: &CacheConfig, redis: ConnectionManager) -> Self {
        Self {
            inner: Arc::new(Inner {
                l1: Cache::builder()
                    .max_capacity(L1_CAPACITY)
                    .time_to_live(config.l1_ttl)
                    .build(),
                epoch: AtomicU64::new(0),
                redis,
                keys: Keys::new(config.key_prefix.clone()),
                l2_ttl_secs: config.l2_ttl_secs.max(1),
                circuit: Mutex::new(Circuit::Closed),
            }),
        }
    }

    /// The key and channel names in use.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The product from L1, else L2, else `load` (Postgres), filling the
    /// levels it missed on the way back. `None` (not cached) if `load`
    /// finds nothing.
    #[tracing::instrument(skip_all, fields(id = id))]
    pub async fn get_or_load<F, Fut>(
        &self,
        id: i64,
        load: F,
    ) -> Result<Option<(Arc<Product>, Source)>, sqlx::Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Product>, sqlx::Error>>,
    {
        if let Some(product) = self.inner.l1.get(&id).await {
            metrics::counter!("catalog_cache_hits_total", "level" => "l1").increment(1);
            return Ok(Some((product, Source::L1)));
        }
        let epoch = self.inner.epoch.load(Ordering::SeqCst);
        let stamp = match self.l2_lookup(id).await {
            Ok(L2Lookup::Hit(product)) => {
                metrics::counter!("catalog_cache_hits_total", "level" => "l2").increment(1);
                let product = Arc::new(product);
                self.fill_l1(id, product.clone(), epoch).await;
                return Ok(Some((product, Source::L2)));
            }
            Ok(L2Lookup::Miss { stamp }) => Some(stamp),
            Err(error) => {
                redis_failed("read", &error);
                None
            }
        };
        metrics::counter!("catalog_cache_misses_total").increment(1);
        let Some(product) = load().await? else {
            return Ok(None);
        };
        if let Some(stamp) = stamp {
            match self.l2_fill(&product, &stamp).await {
                Ok(true) => {}
                Ok(false) => skipped("l2"),
                Err(error) => redis_failed("fill", &error),
            }
        }
        let product = Arc::new(product);
        self.fill_l1(id, product.clone(), epoch).await;
        Ok(Some((product, Source::Db)))
    }

    /// Runs one L2 read or fill through the circuit and under [`L2_TIMEOUT`].
    async fn guarded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, L2Error> {
        if !self.circuit_step(|c| c.admit(Instant::now())) {
            return Err(L2Error::Skipped);
        }
        self.timed(L2_TIMEOUT, call).await
    }

    /// Runs one Redis call under `limit`, recording the outcome in the
    /// circuit (a success closes it, a failure opens it).
    async fn timed<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, L2Error> {
        let result = match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(L2Error::Redis(error)),
            Err(_) => Err(L2Error::Timeout(limit)),
        };
        let ok = result.is_ok();
        self.circuit_step(|c| (c.record(ok, Instant::now()), ()));
        result
    }

    /// Applies one transition to the circuit under its lock.
    fn circuit_step<R>(&self, step: impl FnOnce(Circuit) -> (Circuit, R)) -> R {
        let mut circuit = self
            .inner
            .circuit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, out) = step(*circuit);
        *circuit = next;
        out
    }

    /// Reads L2: the product and the stamp in one round trip.
    pub async fn l2_lookup(&self, id: i64) -> Result<L2Lookup, L2Error> {
        let keys = &self.inner.keys;
        let mut redis = self.inner.redis.clone();
        let (json, stamp): (Option<String>, Option<String>) = self
            .guarded(
                redis::cmd("MGET")
                    .arg(keys.product(id))
                    .arg(keys.stamp(id))
                    .query_async(&mut redis),
            )
            .await?;
        let stamp = stamp.unwrap_or_default();
        let Some(json) = json else {
            return Ok(L2Lookup::Miss { stamp });
        };
        match serde_json::from_str(&json) {
            Ok(product) => Ok(L2Lookup::Hit(product)),
            Err(error) => {
                // Another version's shape, say; Postgres has the truth.
                tracing::warn!(%error, id, "undecodable L2 entry ignored");
                Ok(L2Lookup::Miss { stamp })
            }
        }
    }

    /// Writes `product` to L2 unless an invalidation changed the stamp since
    /// `stamp` was read. Returns whether it wrote.
    pub async fn l2_fill(&self, product: &Product, stamp: &str) -> Result<bool, L2Error> {
        let keys = &self.inner.keys;
        let json = serde_json::to_string(product).map_err(|error| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "product not serialisable",
                error.to_string(),
            ))
        })?;
        let mut redis = self.inner.redis.clone();
        let mut fill = FILL.prepare_invoke();
        fill.key(keys.product(product.id))
            .key(keys.stamp(product.id))
            .arg(stamp)
            .arg(json)
            .arg(self.inner.l2_ttl_secs);
        let wrote: i64 = self.guarded(fill.invoke_async(&mut redis)).await?;
        Ok(wrote == 1)
    }

    /// After a commit that changed `ids`: evicts them here, then deletes
    /// them from L2, re-stamps them and publishes them, in one `MULTI`.
    /// A Redis failure is logged, not returned: the write has committed, and
    /// the TTLs bound how long the stale copies live.
    #[tracing::instrument(skip_all, fields(ids = ?ids))]
    pub async fn invalidate(&self, ids: &[i64]) {
        for &id in ids {
            self.evict_local(id).await;
        }
        if let Err(error) = self.invalidate_shared(ids).await {
            redis_failed("invalidate", &error);
        }
    }

    /// The Redis half of [`ProductCache::invalidate`].
    async fn invalidate_shared(&self, ids: &[i64]) -> Result<(), L2Error> {
        let keys = &self.inner.keys;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for &id in ids {
            pipe.del(keys.product(id)).ignore();
            pipe.set_ex(keys.stamp(id), Uuid::new_v4().to_string(), STAMP_TTL_SECS)
                .ignore();
        }
        let channel = keys.channel();
        for &id in ids {
            pipe.publish(&channel, id).ignore();
        }
        let mut redis = self.inner.redis.clone();
        self.timed(INVALIDATE_TIMEOUT, pipe.query_async::<()>(&mut redis))
            .await
    }

    /// Drops this replica's copy of `id`.
    pub async fn evict_local(&self, id: i64) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.l1.invalidate(&id).await;
    }

    /// Drops every L1 entry: after the subscriber reconnects, messages may
    /// have been missed, so nothing held can be trusted.
    pub fn clear_local(&self) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.l1.invalidate_all();
    }

    /// Inserts into L1, then takes it back out if an eviction happened since
    /// `epoch` was read (the value may predate that eviction's write).
    async fn fill_l1(&self, id: i64, product: Arc<Product>, epoch: u64) {
        self.inner.l1.insert(id, product).await;
        if self.inner.epoch.load(Ordering::SeqCst) != epoch {
            self.inner.l1.invalidate(&id).await;
            skipped("l1");
        }
    }
}

/// Counts a fill refused because an invalidation got there first.
fn skipped(level: &'static str) {
    metrics::counter!("catalog_cache_fills_skipped_total", "level" => level).increment(1);
}

/// Logs and counts a Redis failure the cache absorbed.
/// A skipped call (open circuit) is only counted: one warning per failure,
/// not one per request while Redis is down.
fn redis_failed(op: &'static str, error: &L2Error) {
    if matches!(error, L2Error::Skipped) {
        metrics::counter!("catalog_cache_redis_skipped_total", "op" => op).increment(1);
        return;
    }
    tracing::warn!(%error, op, "redis cache operation failed; continuing without it");
    metrics::counter!("catalog_cache_redis_errors_total", "op" => op).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_channel_share_the_prefix() {
        let keys = Keys::new("t1");
        assert_eq!(keys.product(7), "t1:product:7");
        assert_eq!(keys.stamp(7), "t1:product:7:stamp");
        assert_eq!(keys.channel(), "t1:invalidate");
    }

    #[test]
    fn sources_name_the_x_cache_values() {
        let names: Vec<_> = [Source::L1, Source::L2, Source::Db]
            .into_iter()
            .map(Source::as_str)
            .collect();
        assert_eq!(names, ["l1", "l2", "db"]);
    }
}
