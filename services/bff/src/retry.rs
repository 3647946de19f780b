//! Retries: which requests may be retried, how long to wait (exponential
//! backoff with *full* jitter), and a budget so retries can't multiply a
//! failure into a storm.
//!
//! Written here rather than with `backon`: its jitter adds up to one delay
//! on top of the delay (`[d, 2d)`), not full jitter (`[0, d]`), and the
//! budget and the choice of the next replica are interleaved with each
//! attempt anyway.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method};
use rand::Rng;
use serde::Serialize;

/// How many attempts, how long to wait between them, and the budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetryConfig {
    /// Attempts per request, the first included (1 = no retries).
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per retry.
    #[serde(rename = "base_ms", serialize_with = "as_millis")]
    pub base: Duration,
    /// Largest backoff ceiling.
    #[serde(rename = "cap_ms", serialize_with = "as_millis")]
    pub cap: Duration,
    /// Retries allowed as a share of the requests in the last [`WINDOW_SECS`].
    pub budget_ratio: f64,
    /// Retries allowed per second regardless of traffic, so a quiet gateway
    /// can still retry.
    pub budget_min_per_sec: u32,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Only requests that can be repeated without a second effect: safe methods,
/// or anything carrying an `Idempotency-Key` (the upstream deduplicates).
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || headers.contains_key("idempotency-key")
}

/// Full jitter: a uniform draw from `[0, min(cap, base · 2^retry)]`, so
/// clients that failed together don't retry together.
pub fn full_jitter(retry: u32, base: Duration, cap: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = base
        .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap);
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rng.random_range(0..=micros))
}

/// The budget's memory: this many one-second slots.
pub const WINDOW_SECS: u64 = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which second since `epoch` this slot counts; stale slots read as 0.
    second: u64,
    requests: u64,
    retries: u64,
}

/// Retries allowed = `min_per_sec · WINDOW_SECS + ratio · requests`, over
/// the last [`WINDOW_SECS`] seconds (Finagle's and Linkerd's retry budget).
/// Time is a parameter, as in the breaker.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: u32,
    epoch: Instant,
    slots: [Slot; WINDOW_SECS as usize],
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(ratio: f64, min_per_sec: u32, now: Instant) -> Self {
        Self {
            ratio,
            min_per_sec,
            epoch: now,
            slots: [Slot::default(); WINDOW_SECS as usize],
        }
    }

    fn slot(&mut self, now: Instant) -> &mut Slot {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        let slot = &mut self.slots[(second % WINDOW_SECS) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::default()
            };
        }
        slot
    }

    fn totals(&self, now: Instant) -> (u64, u64) {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        self.slots
            .iter()
            .filter(|s| second.saturating_sub(s.second) < WINDOW_SECS && s.second <= second)
            .fold((0, 0), |(r, t), s| (r + s.requests, t + s.retries))
    }

    /// Counts a request (its first attempt).
    pub fn deposit(&mut self, now: Instant) {
        self.slot(now).requests += 1;
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        let (requests, retries) = self.totals(now);
        let allowed =
            f64::from(self.min_per_sec) * WINDOW_SECS as f64 + self.ratio * requests as f64;
        if (retries as f64) < allowed {
            self.slot(now).retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn safe_methods_and_keyed_requests_are_idempotent() {
        let mut keyed = HeaderMap::new();
        assert!(is_idempotent(&Method::GET, &keyed));
        assert!(!is_idempotent(&Method::POST, &keyed));
        assert!(!is_idempotent(&Method::PATCH, &keyed));
        keyed.insert("idempotency-key", "k1".parse().unwrap());
        assert!(is_idempotent(&Method::POST, &keyed));
    }

    #[test]
    fn full_jitter_stays_within_the_doubling_ceiling_and_the_cap() {
        let mut rng = StdRng::seed_from_u64(7);
        let (base, cap) = (Duration::from_millis(10), Duration::from_millis(100));
        for retry in 0..40 {
            let ceiling = (base * 2u32.saturating_pow(retry.min(20))).min(cap);
            let d = full_jitter(retry, base, cap, &mut rng);
            assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
        }
        // Full jitter reaches down to ~0 (not just [d, 2d)).
        let low = (0..200)
            .map(|_| full_jitter(3, base, cap, &mut rng))
            .filter(|d| *d < Duration::from_millis(10))
            .count();
        assert!(low > 0);
    }

    #[test]
    fn the_budget_allows_the_minimum_plus_a_share_of_requests() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.2, 1, t0);
        for _ in 0..100 {
            b.deposit(t0);
        }
        // 1/s · 10 s + 0.2 · 100 = 30 retries, then no more.
        let granted = (0..50).filter(|_| b.try_withdraw(t0)).count();
        assert_eq!(granted, 30);
    }

    #[test]
    fn the_budget_forgets_after_the_window() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.0, 1, t0);
        assert_eq!((0..20).filter(|_| b.try_withdraw(t0)).count(), 10);
        let later = t0 + Duration::from_secs(WINDOW_SECS);
        assert_eq!((0..20).filter(|_| b.try_withdraw(later)).count(), 10);
    }
}
