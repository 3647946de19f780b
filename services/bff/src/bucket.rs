//! The token bucket as a pure function of `(state, now)`, governor-style:
//! time is a parameter, so tests step it instead of sleeping, and a refusal
//! says when to retry.
//!
//! The arithmetic is integer on purpose: `limiter.lua` runs the same steps
//! inside Redis (where numbers are doubles, exact below 2^53), and the two
//! are tested against the same cases. Tokens are counted in micro-tokens and
//! time in microseconds, so a refill of `R` tokens per second adds exactly
//! `R` micro-tokens per microsecond: no remainder is ever dropped.

/// Micro-tokens in one token (and microseconds in one second).
pub const MICRO: i64 = 1_000_000;
/// Largest capacity and refill rate accepted, so every intermediate value
/// stays below 2^53 and the Lua copy computes exactly what this one does.
pub const MAX_RATE: u32 = 1_000_000;

/// How big a bucket is and how fast it refills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Tokens a full bucket holds: the burst a fresh session may send.
    pub capacity: u32,
    /// Tokens added per second, up to `capacity`.
    pub refill_per_sec: u32,
}

/// A session's bucket as stored (in Redis: a hash with these two fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Micro-tokens in the bucket after the last request.
    pub level: i64,
    /// When `level` was computed, in µs on the limiter's clock.
    pub at_us: i64,
}

/// What one request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether a token was taken.
    pub allowed: bool,
    /// Micro-tokens left after this request.
    pub level: i64,
    /// Refused: µs until a whole token exists. Allowed: 0.
    pub retry_after_us: i64,
    /// µs until the bucket is full again (also how long its key must live).
    pub full_after_us: i64,
}

impl Decision {
    /// Whole tokens left, for `RateLimit: r=`.
    pub fn remaining(&self) -> u64 {
        u64::try_from(self.level / MICRO).unwrap_or(0)
    }
}

/// `ceil(a / b)` for `a >= 0`, `b > 0`; negative `a` counts as 0.
fn ceil_div(a: i64, b: i64) -> i64 {
    if a <= 0 { 0 } else { (a + b - 1) / b }
}

/// `µs` rounded up to whole seconds, at least 1: `Retry-After` is in
/// seconds and a client told 0 would retry at once and be refused again.
pub fn whole_seconds_up(us: i64) -> u64 {
    u64::try_from(ceil_div(us, MICRO)).unwrap_or(0).max(1)
}

impl Policy {
    /// A policy, refused when a number is 0 or above [`MAX_RATE`].
    pub fn new(capacity: u32, refill_per_sec: u32) -> Result<Self, String> {
        for (name, v) in [("capacity", capacity), ("refill", refill_per_sec)] {
            if v == 0 || v > MAX_RATE {
                return Err(format!("{name} must be in 1..={MAX_RATE}, got {v}"));
            }
        }
        Ok(Self {
            capacity,
            refill_per_sec,
        })
    }

    /// A full bucket, in micro-tokens.
    fn full(&self) -> i64 {
        i64::from(self.capacity) * MICRO
    }

    /// Step 1 of a take: `state` (absent: a full bucket) refilled for the
    /// time since `at` (a clock running backwards refills nothing), capped
    /// at capacity, and stamped `max(at, now)`.
    fn refill(&self, state: Option<Bucket>, now_us: i64) -> Bucket {
        let rate = i64::from(self.refill_per_sec);
        let full = self.full();
        let Bucket { level, at_us } = state.unwrap_or(Bucket {
            level: full,
            at_us: now_us,
        });
        let elapsed = (now_us - at_us).max(0);
        let to_fill = ceil_div(full - level, rate);
        let level = if elapsed >= to_fill {
            full
        } else {
            (level + elapsed * rate).min(full)
        };
        Bucket {
            level,
            at_us: at_us.max(now_us),
        }
    }

    /// Takes one token from `state` (absent: a full bucket) at `now_us`.
    ///
    /// Steps, mirrored line by line in `limiter.lua`:
    /// 1. refill for the time since `at`, capped at capacity ([`Self::refill`]);
    /// 2. take a token if a whole one is there;
    /// 3. otherwise say how long until one is.
    pub fn take(&self, state: Option<Bucket>, now_us: i64) -> (Bucket, Decision) {
        let (bucket, batch) = self.take_n(state, now_us, 1);
        (bucket, self.decision(&batch, 0))
    }

    /// `n` requests on one bucket at the same instant, in one step: what
    /// `n` calls of [`Policy::take`] at `now_us` do (after the first, no
    /// time has passed, so each just takes a token while a whole one is
    /// left). The batched Redis script takes a key's requests this way.
    pub fn take_n(&self, state: Option<Bucket>, now_us: i64, n: u32) -> (Bucket, Batch) {
        let Bucket { level, at_us } = self.refill(state, now_us);
        let granted = u32::try_from((level / MICRO).clamp(0, i64::from(n))).unwrap_or(0);
        let batch = Batch { level, granted };
        let after = Bucket {
            level: level - i64::from(granted) * MICRO,
            at_us,
        };
        (after, batch)
    }

    /// The decision of the `i`-th (from 0) request of `batch`: the first
    /// `granted` got a token each, the rest found the bucket short of one.
    pub fn decision(&self, batch: &Batch, i: u32) -> Decision {
        let rate = i64::from(self.refill_per_sec);
        let allowed = i < batch.granted;
        let taken = if allowed { i + 1 } else { batch.granted };
        let level = batch.level - i64::from(taken) * MICRO;
        Decision {
            allowed,
            level,
            retry_after_us: if allowed {
                0
            } else {
                ceil_div(MICRO - level, rate)
            },
            full_after_us: ceil_div(self.full() - level, rate),
        }
    }
}

/// What [`Policy::take_n`] did to one bucket: enough to give each of its
/// requests its [`Decision`] ([`Policy::decision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Micro-tokens after the refill, before any token was taken.
    pub level: i64,
    /// Requests that got a token (the first `granted`, in order).
    pub granted: u32,
}

/// The test vectors shared with the Lua script's tests.
#[cfg(test)]
#[path = "bucket_cases.rs"]
mod cases;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_zero_and_huge_numbers() {
        assert!(Policy::new(0, 1).is_err());
        assert!(Policy::new(1, 0).is_err());
        assert!(Policy::new(MAX_RATE + 1, 1).is_err());
        assert!(Policy::new(200, 100).is_ok());
    }

    #[test]
    fn the_shared_cases_hold_for_the_rust_bucket() {
        for case in cases::all() {
            let mut state = None;
            for (i, (now, allowed, retry)) in case.steps.iter().enumerate() {
                let (next, d) = case.policy.take(state, *now);
                assert_eq!(
                    (d.allowed, d.retry_after_us),
                    (*allowed, *retry),
                    "{}: step {i}",
                    case.name
                );
                state = Some(next);
            }
        }
    }

    #[test]
    fn accepted_over_a_span_is_capacity_plus_refill_times_span() {
        // 1000 requests/s for 5 s against capacity 200, refill 100/s:
        // 200 at once, then one per 10 ms.
        let policy = Policy::new(200, 100).unwrap();
        let mut state = None;
        let mut accepted = 0;
        for i in 0..5000 {
            let (next, d) = policy.take(state, i * 1000);
            state = Some(next);
            accepted += u32::from(d.allowed);
        }
        // Requests at 0..4.999 s: 200 + floor(4.999 * 100) = 699.
        assert_eq!(accepted, 699);
    }

    #[test]
    fn remaining_and_full_after_describe_the_bucket() {
        let policy = Policy::new(10, 2).unwrap();
        let (_, d) = policy.take(None, 0);
        assert_eq!(d.remaining(), 9);
        assert_eq!(d.full_after_us, 500_000);
    }

    #[test]
    fn n_requests_at_one_instant_decide_as_n_single_takes() {
        // Every policy of the shared cases, from a fresh, a drained and a
        // half-refilled bucket, batches of 0..=12 requests, including a
        // clock running backwards.
        for case in cases::all() {
            let p = case.policy;
            let full = i64::from(p.capacity) * MICRO;
            let states = [
                None,
                Some(Bucket {
                    level: 0,
                    at_us: cases::T0,
                }),
                Some(Bucket {
                    level: full / 2 + 7,
                    at_us: cases::T0 - 333_333,
                }),
                Some(Bucket {
                    level: MICRO - 1,
                    at_us: cases::T0 + 1_000,
                }),
            ];
            for state in states {
                for n in 0..=12u32 {
                    let (batched, batch) = p.take_n(state, cases::T0, n);
                    let mut single = state;
                    for i in 0..n {
                        let (next, d) = p.take(single, cases::T0);
                        assert_eq!(
                            p.decision(&batch, i),
                            d,
                            "{}: {state:?}, {i} of {n}",
                            case.name
                        );
                        single = Some(next);
                    }
                    if n > 0 {
                        assert_eq!(Some(batched), single, "{}: {state:?}, n {n}", case.name);
                    }
                }
            }
        }
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(whole_seconds_up(1), 1);
        assert_eq!(whole_seconds_up(0), 1);
        assert_eq!(whole_seconds_up(1_000_000), 1);
        assert_eq!(whole_seconds_up(1_000_001), 2);
    }
}
