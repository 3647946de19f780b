//! The rate limiter: one token bucket per caller, kept in Redis and updated
//! atomically by `limiter.lua` (the same math as [`crate::bucket`]), so
//! several BFF instances share one limit. The clock is Redis's own `TIME`,
//! so instances with skewed clocks still agree.
//!
//! One script call per request is the cost of a shared, exact limit, so
//! the calls are made as few as that allows:
//! - a bearer token's denylist entry is checked in the same call as its
//!   bucket ([`Check::denylist`]), not in a round trip of its own;
//! - requests that arrive while a call is already in flight are batched:
//!   they queue for one task that sends them together, as one script call
//!   (each bucket's requests take their tokens in one step, in arrival
//!   order, exactly as one call each would at that instant). An idle
//!   limiter calls Redis at once from the request itself, so a lone request
//!   never waits for a batch.
//!
//! When Redis can't answer within `RATE_LIMIT_REDIS_TIMEOUT_MS`, the
//! configured [`FailMode`] decides, and the decision is counted in
//! `bff_ratelimit_decisions_total{decision="fail_open"|"fail_closed"}`. A
//! request whose token's denylist entry could not be read is refused
//! whatever the mode ([`Verdict::Unchecked`]): a revoked token must not
//! pass because Redis is slow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::auth::bearer::DENYLIST_TIMEOUT;
use crate::bucket::{Batch, Decision, Policy};
use crate::config::{FailMode, LimitConfig};

/// Counter of limiter decisions, labelled `decision`.
pub const DECISIONS_METRIC: &str = "bff_ratelimit_decisions_total";
/// Requests sent in one script call at most.
const MAX_BATCH: usize = 256;

/// The bucket script, loaded once; `invoke_async` uses `EVALSHA` and falls
/// back to `EVAL` (loading it) when Redis doesn't know it yet.
pub static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("limiter.lua")));

/// One request's question to the limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The bucket's Redis key.
    pub bucket: String,
    /// The denylist key of the request's bearer token, checked first.
    pub denylist: Option<String>,
}

/// What the script answered for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Its token is on the denylist; no token was taken.
    Revoked,
    /// The bucket's decision.
    Decided(Decision),
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A token was taken.
    Allowed(Decision),
    /// The bucket is empty.
    Denied(Decision),
    /// The request's bearer token is revoked.
    Revoked,
    /// Redis didn't answer and the request's token needed its denylist
    /// checked: refused, whatever the fail mode.
    Unchecked,
    /// Redis didn't answer; the fail mode let the request through.
    FailedOpen,
    /// Redis didn't answer; the fail mode refused the request.
    FailedClosed,
}

/// Runs the script once for `checks`, in order, at `now_us` (or Redis's
/// clock if `None`): one answer per check.
pub async fn take_batch(
    redis: &mut ConnectionManager,
    policy: Policy,
    now_us: Option<i64>,
    checks: &[Check],
) -> redis::RedisResult<Vec<Answer>> {
    // Distinct buckets, as KEYS.
    let mut keys: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut bucket_of = Vec::with_capacity(checks.len());
    for c in checks {
        let n = keys.len();
        let i = *index.entry(c.bucket.as_str()).or_insert_with(|| {
            keys.push(c.bucket.as_str());
            n
        });
        bucket_of.push(i);
    }
    let buckets = keys.len();
    // Denylist keys go in ARGV, not KEYS (see limiter.lua: read access only).
    let mut denylist: Vec<&str> = Vec::new();
    let mut deny_index: HashMap<&str, usize> = HashMap::new();
    let mut deny_of = Vec::with_capacity(checks.len());
    for c in checks {
        deny_of.push(c.denylist.as_deref().map(|d| {
            let n = denylist.len();
            *deny_index.entry(d).or_insert_with(|| {
                denylist.push(d);
                n
            })
        }));
    }
    let mut invocation = SCRIPT.prepare_invoke();
    for k in &keys {
        invocation.key(*k);
    }
    invocation
        .arg(policy.capacity)
        .arg(policy.refill_per_sec)
        .arg(now_us.map(|t| t.to_string()).unwrap_or_default())
        .arg(denylist.len());
    for d in &denylist {
        invocation.arg(*d);
    }
    for (b, d) in bucket_of.iter().zip(&deny_of) {
        invocation.arg(b + 1).arg(d.map_or(0, |d| d + 1));
    }
    let reply: Vec<i64> = invocation.invoke_async(redis).await?;
    answers(policy, &bucket_of, buckets, &reply).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "the limiter script answered a batch of the wrong shape",
        ))
    })
}

/// Each request's answer from the script's reply (see `limiter.lua`): the
/// `j`-th unrevoked request on a bucket gets [`Policy::decision`]`(j)`.
fn answers(
    policy: Policy,
    bucket_of: &[usize],
    buckets: usize,
    reply: &[i64],
) -> Option<Vec<Answer>> {
    if reply.len() != 2 * buckets + bucket_of.len() {
        return None;
    }
    let batches: Vec<Batch> = (0..buckets)
        .map(|b| Batch {
            level: reply[2 * b],
            granted: u32::try_from(reply[2 * b + 1]).unwrap_or(0),
        })
        .collect();
    let mut taken = vec![0u32; buckets];
    let revoked = &reply[2 * buckets..];
    Some(
        bucket_of
            .iter()
            .zip(revoked)
            .map(|(&b, &r)| {
                if r == 1 {
                    Answer::Revoked
                } else {
                    let d = policy.decision(&batches[b], taken[b]);
                    taken[b] += 1;
                    Answer::Decided(d)
                }
            })
            .collect(),
    )
}

/// Runs the script on `key` alone at `now_us` (or Redis's clock if `None`).
pub async fn take(
    redis: &mut ConnectionManager,
    key: &str,
    policy: Policy,
    now_us: Option<i64>,
) -> redis::RedisResult<Decision> {
    let check = Check {
        bucket: key.to_owned(),
        denylist: None,
    };
    match take_batch(redis, policy, now_us, &[check]).await?.first() {
        Some(Answer::Decided(d)) => Ok(*d),
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "no decision for a request without a denylist key",
        ))),
    }
}

/// A request waiting for the batcher.
type Job = (Check, oneshot::Sender<redis::RedisResult<Answer>>);

/// The limiter shared by all requests.
#[derive(Clone)]
pub struct Limiter {
    redis: ConnectionManager,
    config: LimitConfig,
    /// Script calls in flight: when none is, a request calls at once.
    in_flight: Arc<AtomicUsize>,
    /// Requests for the next batch.
    queue: mpsc::UnboundedSender<Job>,
}

/// Counts a call in flight for as long as it lives (a request dropped
/// mid-call, by its client or a timeout, still uncounts it).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The batcher: takes every queued request (up to [`MAX_BATCH`]), sends
/// them as one call, answers each; one batch at a time, so requests that
/// arrive meanwhile make up the next. Ends when the limiter is dropped.
async fn batcher(
    mut redis: ConnectionManager,
    policy: Policy,
    in_flight: Arc<AtomicUsize>,
    mut queue: mpsc::UnboundedReceiver<Job>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let _counted = InFlight::new(&in_flight);
        let (checks, replies): (Vec<Check>, Vec<_>) = jobs.drain(..).unzip();
        match take_batch(&mut redis, policy, None, &checks).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl Limiter {
    /// The limiter and its batching task (on the current runtime).
    pub fn new(redis: ConnectionManager, config: LimitConfig) -> Self {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(batcher(
            redis.clone(),
            config.policy,
            in_flight.clone(),
            jobs,
        ));
        Self {
            redis,
            config,
            in_flight,
            queue,
        }
    }

    /// The policy every session gets.
    pub fn policy(&self) -> Policy {
        self.config.policy
    }

    /// Takes a token from `session`'s bucket, unless `denylist` (the
    /// request's bearer token's entry) says the token is revoked.
    pub async fn check(&self, session: &str, denylist: Option<String>) -> Verdict {
        let check = Check {
            bucket: format!("{}:{session}", self.config.key_prefix),
            denylist,
        };
        let denylist = check.denylist.is_some();
        let timeout = if denylist {
            self.config.redis_timeout.max(DENYLIST_TIMEOUT)
        } else {
            self.config.redis_timeout
        };
        let result = tokio::time::timeout(timeout, self.ask(check)).await;
        let verdict = match result {
            Ok(Ok(Answer::Revoked)) => return Verdict::Revoked,
            Ok(Ok(Answer::Decided(d))) if d.allowed => Verdict::Allowed(d),
            Ok(Ok(Answer::Decided(d))) => Verdict::Denied(d),
            Ok(Err(error)) => self.failed(&error.to_string(), denylist),
            Err(_) => self.failed("timed out", denylist),
        };
        let label = match verdict {
            Verdict::Allowed(_) => "allowed",
            Verdict::Denied(_) => "denied",
            Verdict::FailedOpen => "fail_open",
            Verdict::FailedClosed => "fail_closed",
            Verdict::Revoked | Verdict::Unchecked => return verdict,
        };
        metrics::counter!(DECISIONS_METRIC, "decision" => label).increment(1);
        verdict
    }

    /// The script's answer: at once when no call is in flight, else in the
    /// next batch.
    async fn ask(&self, check: Check) -> redis::RedisResult<Answer> {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _counted = InFlight::new(&self.in_flight);
            let mut redis = self.redis.clone();
            let answers = take_batch(&mut redis, self.config.policy, None, &[check]).await?;
            return answers.into_iter().next().ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "no answer"))
            });
        }
        let (reply, answer) = oneshot::channel();
        self.queue.send((check, reply)).map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Client, "the limiter's batcher stopped"))
        })?;
        answer.await.map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Client, "the limiter's batcher stopped"))
        })?
    }

    fn failed(&self, why: &str, denylist: bool) -> Verdict {
        if denylist {
            tracing::warn!(
                error = %storefront_kit::checks::redact(why),
                "denylist lookup failed: refusing the token"
            );
            return Verdict::Unchecked;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bucket_hands_its_granted_tokens_to_its_first_unrevoked_requests() {
        let policy = Policy::new(10, 1).unwrap();
        let micro = crate::bucket::MICRO;
        // Bucket 0 had 2 whole tokens (3 requests: 2 get one), bucket 1
        // had 5 (its one request is revoked, the other gets one).
        let bucket_of = [0, 1, 0, 1, 0];
        let reply = [2 * micro + 5, 2, 5 * micro, 1, 0, 1, 0, 0, 0];
        let got = answers(policy, &bucket_of, 2, &reply).unwrap();
        let decided = |a: &Answer| match a {
            Answer::Decided(d) => Some((d.allowed, d.level)),
            Answer::Revoked => None,
        };
        assert_eq!(
            got.iter().map(decided).collect::<Vec<_>>(),
            vec![
                Some((true, micro + 5)),
                None,
                Some((true, 5)),
                Some((true, 4 * micro)),
                Some((false, 5)),
            ]
        );
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_an_error_not_a_guess() {
        let policy = Policy::new(10, 1).unwrap();
        assert!(answers(policy, &[0, 0], 1, &[5, 1, 0]).is_none());
    }
}
