//! The rate limiter: one token bucket per caller, kept in Redis and updated
//! atomically by `limiter.lua` (the same math as [`crate::bucket`]), so
//! several BFF instances share one limit. The clock is Redis's own `TIME`,
//! so instances with skewed clocks still agree.
//!
//! A script call is the cost of a shared, exact limit, so the calls are
//! made as few as that allows:
//! - a bearer token's denylist entry is checked in the same call as its
//!   bucket ([`Check::denylist`]), not in a round trip of its own;
//! - requests that arrive while a call is already in flight are batched:
//!   they queue for one task that sends them together, as one script call
//!   (each bucket's requests take their tokens in one step, in arrival
//!   order, exactly as one call each would at that instant). An idle
//!   limiter calls Redis at once from the request itself, so a lone request
//!   never waits for a batch;
//! - a request without a bearer token (anonymous, or a cookie session) may
//!   lease tokens ahead for its bucket ([`LimitConfig::lease`]): the
//!   script moves them from the bucket to this instance, only while the
//!   bucket is at least half full, and the bucket's next requests here
//!   take them without a round trip. Leased tokens have left the bucket,
//!   so all instances together still admit no more than it holds; below
//!   half full, every request takes its own token in Redis, so a drained
//!   bucket refuses exactly as without leases. A lease unused for
//!   [`LEASE_IDLE`] is given back (`limiter_return.lua`); one held when
//!   the process stops, or whose answer came after the Redis timeout, is
//!   lost, which errs strict (the bucket refills it). A bearer token's
//!   request always goes to Redis: its denylist entry is read there.
//!
//! When Redis can't answer within `RATE_LIMIT_REDIS_TIMEOUT_MS`, the
//! configured [`FailMode`] decides, and the decision is counted in
//! `bff_ratelimit_decisions_total{decision="fail_open"|"fail_closed"}`. A
//! request whose token's denylist entry could not be read is refused
//! whatever the mode ([`Verdict::Unchecked`]): a revoked token must not
//! pass because Redis is slow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
/// The script that gives a lease's unused tokens back.
pub static RETURN_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("limiter_return.lua")));
/// A lease no request has drawn on for this long goes back to its bucket.
pub const LEASE_IDLE: Duration = Duration::from_millis(250);
/// Counter of tokens leased ahead (`event="leased"`) and given back
/// (`event="returned"`); the difference was drawn or is still held. A draw
/// is not counted on its own: it is the one path that skips Redis, and it
/// is already counted in [`DECISIONS_METRIC`] as `allowed`.
pub const LEASE_METRIC: &str = "bff_ratelimit_lease_tokens_total";

/// One request's question to the limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The bucket's Redis key.
    pub bucket: String,
    /// The denylist key of the request's bearer token, checked first.
    pub denylist: Option<String>,
    /// Tokens to lease ahead on the bucket, if it is at least half full
    /// after this request's token (0: none).
    pub lease: u32,
}

/// What the script answered for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Its token is on the denylist; no token was taken.
    Revoked,
    /// The bucket's decision.
    Decided(Decision),
    /// Allowed, and this many tokens more were leased to the caller (the
    /// first request of its bucket in the batch that asked for a lease).
    Leased(Decision, u32),
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
    for ((b, d), c) in bucket_of.iter().zip(&deny_of).zip(checks) {
        invocation
            .arg(b + 1)
            .arg(d.map_or(0, |d| d + 1))
            .arg(c.lease);
    }
    let reply: Vec<i64> = invocation.invoke_async(redis).await?;
    let wants_lease: Vec<bool> = checks.iter().map(|c| c.lease > 0).collect();
    answers(policy, &bucket_of, &wants_lease, buckets, &reply).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "the limiter script answered a batch of the wrong shape",
        ))
    })
}

/// Each request's answer from the script's reply (see `limiter.lua`): the
/// `j`-th unrevoked request on a bucket gets [`Policy::decision`]`(j)`, and
/// a bucket's lease goes to its first request that asked for one.
fn answers(
    policy: Policy,
    bucket_of: &[usize],
    wants_lease: &[bool],
    buckets: usize,
    reply: &[i64],
) -> Option<Vec<Answer>> {
    if reply.len() != 3 * buckets + bucket_of.len() || wants_lease.len() != bucket_of.len() {
        return None;
    }
    let batches: Vec<Batch> = (0..buckets)
        .map(|b| Batch {
            level: reply[3 * b],
            granted: u32::try_from(reply[3 * b + 1]).unwrap_or(0),
        })
        .collect();
    let mut leased: Vec<u32> = (0..buckets)
        .map(|b| u32::try_from(reply[3 * b + 2]).unwrap_or(0))
        .collect();
    let mut taken = vec![0u32; buckets];
    let revoked = &reply[3 * buckets..];
    Some(
        bucket_of
            .iter()
            .zip(wants_lease)
            .zip(revoked)
            .map(|((&b, &wants), &r)| {
                if r == 1 {
                    return Answer::Revoked;
                }
                let d = policy.decision(&batches[b], taken[b]);
                taken[b] += 1;
                if wants && d.allowed && leased[b] > 0 {
                    Answer::Leased(d, std::mem::take(&mut leased[b]))
                } else {
                    Answer::Decided(d)
                }
            })
            .collect(),
    )
}

/// Gives `tokens` back to `key`'s bucket; its level after, in micro-tokens.
pub async fn give_back(
    redis: &mut ConnectionManager,
    key: &str,
    policy: Policy,
    tokens: u32,
) -> redis::RedisResult<i64> {
    RETURN_SCRIPT
        .key(key)
        .arg(policy.capacity)
        .arg(policy.refill_per_sec)
        .arg(tokens)
        .invoke_async(redis)
        .await
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
        lease: 0,
    };
    match take_batch(redis, policy, now_us, &[check]).await?.first() {
        Some(Answer::Decided(d)) => Ok(*d),
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "no decision for a request without a denylist key",
        ))),
    }
}

/// Tokens leased ahead by this instance, per bucket key.
#[derive(Default)]
struct Leases(Mutex<HashMap<String, Held>>);

/// One bucket's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    /// Tokens left to draw.
    tokens: u32,
    /// The bucket's level as this instance last saw it (the lease's
    /// tokens included), in micro-tokens: for the `RateLimit` header.
    level: i64,
    /// When a request last drew on it, or it was taken.
    used: Instant,
}

impl Leases {
    /// A token from `key`'s lease, as a decision; `None` if none is held.
    fn draw(&self, key: &str, policy: Policy, now: Instant) -> Option<Decision> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let lease = held.get_mut(key).filter(|l| l.tokens > 0)?;
        let d = policy.decision(
            &Batch {
                level: lease.level,
                granted: 1,
            },
            0,
        );
        lease.tokens -= 1;
        lease.level = d.level;
        lease.used = now;
        Some(d)
    }

    /// Adds `tokens` leased on `key`, after a request that left the bucket
    /// at `level` (those tokens included).
    fn add(&self, key: String, tokens: u32, level: i64, now: Instant) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let lease = held.entry(key).or_insert(Held {
            tokens: 0,
            level,
            used: now,
        });
        lease.tokens += tokens;
        lease.level = level;
        lease.used = now;
    }

    /// Removes the leases idle for `idle` or more: their unused tokens.
    fn take_idle(&self, now: Instant, idle: Duration) -> Vec<(String, u32)> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        held.retain(|key, lease| {
            if now.saturating_duration_since(lease.used) < idle {
                return true;
            }
            if lease.tokens > 0 {
                out.push((key.clone(), lease.tokens));
            }
            false
        });
        out
    }
}

/// Gives idle leases back, every [`LEASE_IDLE`], until the limiter is
/// dropped.
async fn return_idle(
    mut redis: ConnectionManager,
    policy: Policy,
    timeout: Duration,
    leases: std::sync::Weak<Leases>,
) {
    let mut tick = tokio::time::interval(LEASE_IDLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(leases) = leases.upgrade() else {
            return;
        };
        let idle = leases.take_idle(Instant::now(), LEASE_IDLE);
        drop(leases);
        for (key, tokens) in idle {
            match tokio::time::timeout(timeout, give_back(&mut redis, &key, policy, tokens)).await {
                Ok(Ok(_)) => {
                    metrics::counter!(LEASE_METRIC, "event" => "returned")
                        .increment(u64::from(tokens));
                }
                // Lost: the bucket is short of them until it refills, so
                // the limit errs on the strict side, never the lax one.
                Ok(Err(e)) => tracing::warn!(
                    error = %storefront_kit::checks::redact(&e.to_string()),
                    tokens,
                    "could not give a lease's unused tokens back"
                ),
                Err(_) => tracing::warn!(
                    tokens,
                    "could not give a lease's unused tokens back: timed out"
                ),
            }
        }
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
    /// Tokens leased ahead, per bucket.
    leases: Arc<Leases>,
    /// `decision="allowed"`'s series, looked up on the first request (the
    /// recorder is installed by then) instead of on every one.
    allowed: OnceLock<metrics::Counter>,
    /// `RateLimit-Policy`'s value, the same on every response.
    policy_header: axum::http::HeaderValue,
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

/// `RateLimit-Policy` for `policy`: the same for every request, so the
/// [`Limiter`] makes it once.
pub(crate) fn policy_value(policy: Policy) -> axum::http::HeaderValue {
    let window = crate::bucket::whole_seconds_up(
        i64::from(policy.capacity) * crate::bucket::MICRO / i64::from(policy.refill_per_sec),
    );
    axum::http::HeaderValue::try_from(format!("\"session\";q={};w={window}", policy.capacity))
        .expect("ascii")
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
        let leases = Arc::new(Leases::default());
        if config.lease > 0 {
            tokio::spawn(return_idle(
                redis.clone(),
                config.policy,
                config.redis_timeout,
                Arc::downgrade(&leases),
            ));
        }
        let policy_header = policy_value(config.policy);
        Self {
            redis,
            config,
            in_flight,
            queue,
            leases,
            allowed: OnceLock::new(),
            policy_header,
        }
    }

    /// The policy every session gets.
    pub fn policy(&self) -> Policy {
        self.config.policy
    }

    /// The policy as the `RateLimit-Policy` header states it.
    pub fn policy_header(&self) -> &axum::http::HeaderValue {
        &self.policy_header
    }

    /// Takes a token from `session`'s bucket, unless `denylist` (the
    /// request's bearer token's entry) says the token is revoked. Without
    /// a denylist entry to read, a token this instance leased ahead will
    /// do, and a trip to Redis leases more while the bucket is half full.
    pub async fn check(&self, session: &str, denylist: Option<String>) -> Verdict {
        let prefix = &self.config.key_prefix;
        let mut bucket = String::with_capacity(prefix.len() + 1 + session.len());
        bucket.push_str(prefix);
        bucket.push(':');
        bucket.push_str(session);
        let lease = if denylist.is_none() {
            self.config.lease
        } else {
            0
        };
        let drawn = (lease > 0)
            .then(|| {
                self.leases
                    .draw(&bucket, self.config.policy, Instant::now())
            })
            .flatten();
        if let Some(d) = drawn {
            self.allowed
                .get_or_init(|| metrics::counter!(DECISIONS_METRIC, "decision" => "allowed"))
                .increment(1);
            return Verdict::Allowed(d);
        }
        let leased_key = (lease > 0).then(|| bucket.clone());
        let check = Check {
            bucket,
            denylist,
            lease,
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
            Ok(Ok(Answer::Leased(d, tokens))) => {
                if let Some(key) = leased_key {
                    self.leases.add(key, tokens, d.level, Instant::now());
                }
                metrics::counter!(LEASE_METRIC, "event" => "leased").increment(u64::from(tokens));
                Verdict::Allowed(d)
            }
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
        let reply = [2 * micro + 5, 2, 0, 5 * micro, 1, 0, 0, 1, 0, 0, 0];
        let got = answers(policy, &bucket_of, &[false; 5], 2, &reply).unwrap();
        let decided = |a: &Answer| match a {
            Answer::Decided(d) => Some((d.allowed, d.level)),
            Answer::Leased(..) | Answer::Revoked => None,
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
        assert!(answers(policy, &[0, 0], &[false; 2], 1, &[5, 1, 0, 0]).is_none());
        assert!(answers(policy, &[0], &[false; 2], 1, &[5, 1, 0, 0]).is_none());
    }

    #[test]
    fn a_bucket_lease_goes_to_its_first_request_that_asked_for_one() {
        let policy = Policy::new(100, 1).unwrap();
        let micro = crate::bucket::MICRO;
        // One bucket, 80 tokens, three requests (the first wants no lease),
        // all granted, 10 leased.
        let reply = [80 * micro, 3, 10, 0, 0, 0];
        let got = answers(policy, &[0, 0, 0], &[false, true, true], 1, &reply).unwrap();
        assert!(matches!(got[0], Answer::Decided(d) if d.allowed));
        assert!(
            matches!(got[1], Answer::Leased(d, 10) if d.allowed && d.level == 78 * micro),
            "{got:?}"
        );
        assert!(matches!(got[2], Answer::Decided(d) if d.allowed));
    }

    #[test]
    fn a_lease_is_drawn_token_by_token_then_runs_dry() {
        let policy = Policy::new(100, 10).unwrap();
        let micro = crate::bucket::MICRO;
        let leases = Leases::default();
        let t0 = Instant::now();
        assert_eq!(leases.draw("k", policy, t0), None, "nothing leased yet");
        leases.add("k".into(), 2, 60 * micro, t0);
        let first = leases.draw("k", policy, t0).unwrap();
        assert!(first.allowed);
        assert_eq!(first.remaining(), 59);
        assert_eq!(leases.draw("k", policy, t0).unwrap().remaining(), 58);
        assert_eq!(leases.draw("k", policy, t0), None, "two tokens, two draws");
        assert_eq!(leases.draw("other", policy, t0), None);
    }

    #[test]
    fn only_idle_leases_go_back_with_their_unused_tokens() {
        let micro = crate::bucket::MICRO;
        let leases = Leases::default();
        let t0 = Instant::now();
        let policy = Policy::new(100, 10).unwrap();
        leases.add("idle".into(), 5, 60 * micro, t0);
        leases.add("busy".into(), 5, 60 * micro, t0);
        leases.add("spent".into(), 1, 60 * micro, t0);
        let later = t0 + LEASE_IDLE;
        leases.draw("busy", policy, later).unwrap();
        leases.draw("spent", policy, t0).unwrap();
        let mut back = leases.take_idle(later, LEASE_IDLE);
        back.sort();
        assert_eq!(back, vec![("idle".to_owned(), 5)], "spent: nothing to give");
        assert_eq!(leases.take_idle(later, LEASE_IDLE), vec![]);
        assert_eq!(
            leases.take_idle(later + LEASE_IDLE, LEASE_IDLE),
            vec![("busy".to_owned(), 4)]
        );
    }
}
