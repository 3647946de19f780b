//! The admin API's documents, mirrored field for field from the BFF's own
//! types (see [`super`] for why they are mirrors): requests serialize as the
//! BFF deserializes them, answers deserialize as the BFF serializes them.

use serde::{Deserialize, Serialize};

/// One fault, as sent in `PUT /admin/chaos` (the BFF's `chaos::FaultSpec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// A service (`catalog`: all its instances) or an instance (`catalog-2`).
    pub target: String,
    /// Added before the call, always (ms).
    #[serde(default)]
    pub latency_ms: u64,
    /// Plus a uniform draw from `[0, jitter_ms]`.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Share of calls answered with `error_status` instead of being sent.
    #[serde(default)]
    pub error_rate: f64,
    /// Status of injected errors.
    #[serde(default = "default_status")]
    pub error_status: u16,
    /// Share of calls failed as a reset connection instead of being sent.
    #[serde(default)]
    pub abort_rate: f64,
    /// Seconds until the fault lifts by itself (1..=3600).
    pub ttl_secs: u64,
}

fn default_status() -> u16 {
    503
}

impl FaultSpec {
    /// A fault on `target` that does nothing until fields are set.
    pub fn on(target: &str, ttl_secs: u64) -> Self {
        Self {
            target: target.into(),
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            error_status: default_status(),
            abort_rate: 0.0,
            ttl_secs,
        }
    }
}

/// The body of `PUT /admin/chaos`: replaces every active fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosRequest {
    /// Seed of the draws; the BFF picks one (and reports it) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub faults: Vec<FaultSpec>,
}

/// A fault as `GET /admin/chaos` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFault {
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Seconds left before it lifts.
    pub expires_in_secs: f64,
}

/// The whole chaos state, as every `/admin/chaos` call answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosView {
    pub seed: u64,
    pub faults: Vec<ActiveFault>,
}

/// A breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// An instance's counters since the BFF started (the same numbers as its
/// `bff_upstream_*` metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests sent while its breaker was closed.
    pub sent_calls: u64,
    /// Requests sent as half-open probes.
    pub sent_probes: u64,
    /// Attempts that succeeded (any status below 500).
    #[serde(default)]
    pub successes: u64,
    /// Attempts that failed (5xx, connect error, timeout, injected fault).
    pub failures: u64,
    /// Attempts refused by the open breaker, never sent.
    pub rejected: u64,
    /// Attempts answered by an injected error or abort, never sent.
    pub injected: u64,
    /// Times the breaker opened.
    pub opened: u64,
}

impl Counters {
    /// What was counted between `before` and `self` (a counter that went
    /// back, as after a BFF restart, reads as 0).
    pub fn since(self, before: Self) -> Self {
        Self {
            sent_calls: self.sent_calls.saturating_sub(before.sent_calls),
            sent_probes: self.sent_probes.saturating_sub(before.sent_probes),
            successes: self.successes.saturating_sub(before.successes),
            failures: self.failures.saturating_sub(before.failures),
            rejected: self.rejected.saturating_sub(before.rejected),
            injected: self.injected.saturating_sub(before.injected),
            opened: self.opened.saturating_sub(before.opened),
        }
    }
}

/// One upstream instance's breaker and counters (`GET /admin/breakers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamView {
    pub service: String,
    pub instance: String,
    pub url: String,
    pub state: BreakerState,
    /// Failures in a row so far (closed only).
    #[serde(default)]
    pub consecutive_failures: u64,
    #[serde(default)]
    pub window_calls: u64,
    #[serde(default)]
    pub window_failures: u64,
    /// Open: ms until probes are let through.
    #[serde(default)]
    pub retry_after_ms: u64,
    pub counters: Counters,
}

#[derive(Debug, Deserialize)]
pub(super) struct Upstreams {
    pub upstreams: Vec<UpstreamView>,
}

/// The rate limit every client gets (`/admin/config`'s `rate_limit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Bucket size (tokens).
    pub capacity: u64,
    pub refill_per_sec: u64,
    /// `open` (let through) or `closed` (503) when Redis can't answer.
    pub redis_failure: String,
    /// Whose clock refills the bucket (`redis`).
    pub clock: String,
}

/// When the breaker trips and how it recovers (`/admin/config`'s `breaker`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Failures in a row that open it.
    pub consecutive_failures: u64,
    pub window_ms: u64,
    pub min_calls: u64,
    pub failure_ratio: f64,
    /// How long it stays open before letting probes through.
    pub open_ms: u64,
    /// Probes let through at once when half-open, and successes that close it.
    pub half_open_probes: u64,
}

/// Retries and their budget (`/admin/config`'s `retry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryConfig {
    pub max_attempts: u64,
    pub base_ms: u64,
    pub cap_ms: u64,
    pub budget_ratio: f64,
    pub budget_min_per_sec: u64,
}

/// An upstream service as the BFF routes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamConfig {
    pub service: String,
    pub instances: Vec<InstanceConfig>,
    pub timeout_ms: u64,
}

/// One replica of an upstream service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceConfig {
    pub name: String,
    pub url: String,
}

/// What the BFF enforces (`GET /admin/config`), so experiments compute
/// their expectations from the running configuration, not a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminConfig {
    pub rate_limit: RateLimit,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub lab_endpoints: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    // The documents below are shaped as the BFF's serializers write them
    // (routes/admin.rs, upstream.rs, breaker.rs, chaos.rs), so a renamed
    // field fails here by name.
    #[test]
    fn the_breakers_document_reads_as_typed_upstreams() {
        let doc = r#"{"upstreams":[{"service":"catalog","instance":"catalog-2",
            "url":"http://127.0.0.1:27611","state":"half_open","consecutive_failures":0,
            "window_calls":0,"window_failures":0,"retry_after_ms":0,
            "counters":{"sent_calls":10,"sent_probes":1,"successes":9,"failures":2,
            "rejected":40,"injected":5,"opened":1}}]}"#;
        let u: Upstreams = serde_json::from_str(doc).unwrap();
        assert_eq!(u.upstreams[0].state, BreakerState::HalfOpen);
        assert_eq!(u.upstreams[0].counters.rejected, 40);
        assert_eq!(u.upstreams[0].instance, "catalog-2");
    }

    #[test]
    fn the_config_document_reads_as_typed_settings() {
        let doc = r#"{"rate_limit":{"capacity":60,"refill_per_sec":20,"redis_failure":"open",
            "clock":"redis"},"breaker":{"consecutive_failures":5,"window_ms":10000,
            "min_calls":20,"failure_ratio":0.5,"open_ms":2000,"half_open_probes":1},
            "retry":{"max_attempts":2,"base_ms":20,"cap_ms":200,"budget_ratio":0.1,
            "budget_min_per_sec":5},"upstreams":[{"service":"catalog","instances":
            [{"name":"catalog-1","url":"http://127.0.0.1:1"}],"timeout_ms":2000}],
            "lab_endpoints":true}"#;
        let c: AdminConfig = serde_json::from_str(doc).unwrap();
        assert_eq!(c.breaker.open_ms, 2000);
        assert_eq!(c.rate_limit.capacity, 60);
        assert_eq!(c.upstreams[0].instances[0].name, "catalog-1");
    }

    #[test]
    fn a_config_without_the_breaker_is_refused_by_name() {
        let doc = r#"{"rate_limit":{"capacity":60,"refill_per_sec":20,"redis_failure":"open",
            "clock":"redis"},"retry":{"max_attempts":2,"base_ms":20,"cap_ms":200,
            "budget_ratio":0.1,"budget_min_per_sec":5},"upstreams":[]}"#;
        let e = serde_json::from_str::<AdminConfig>(doc).unwrap_err();
        assert!(e.to_string().contains("breaker"), "{e}");
    }

    #[test]
    fn a_chaos_request_is_sent_as_the_bff_reads_it() {
        let mut fault = FaultSpec::on("catalog-2", 300);
        fault.error_rate = 1.0;
        let r = ChaosRequest {
            seed: None,
            faults: vec![fault],
        };
        let v = serde_json::to_value(&r).unwrap();
        // No seed key at all: the BFF then draws one.
        assert!(v.get("seed").is_none());
        assert_eq!(v["faults"][0]["error_status"], 503);
        assert_eq!(v["faults"][0]["ttl_secs"], 300);
        let seeded = ChaosRequest { seed: Some(7), ..r };
        assert_eq!(serde_json::to_value(&seeded).unwrap()["seed"], 7);
    }

    #[test]
    fn the_chaos_view_reads_its_flattened_faults() {
        let doc = r#"{"seed":42,"faults":[{"target":"catalog","latency_ms":10,"jitter_ms":0,
            "error_rate":0.0,"error_status":503,"abort_rate":0.0,"ttl_secs":5,
            "expires_in_secs":4.9}]}"#;
        let v: ChaosView = serde_json::from_str(doc).unwrap();
        assert_eq!(v.seed, 42);
        assert_eq!(v.faults[0].spec.latency_ms, 10);
        assert!(v.faults[0].expires_in_secs > 4.0);
    }

    #[test]
    fn counters_since_subtract_and_never_underflow() {
        let before = Counters {
            sent_calls: 5,
            failures: 3,
            ..Counters::default()
        };
        let after = Counters {
            sent_calls: 9,
            failures: 1,
            ..Counters::default()
        };
        let d = after.since(before);
        assert_eq!((d.sent_calls, d.failures), (4, 0));
    }
}
