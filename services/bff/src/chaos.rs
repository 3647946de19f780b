//! Fault injection on the way to an upstream: added latency (fixed plus
//! jitter), an error rate answered with a chosen status, and connection
//! aborts. Every fault has a TTL so none can be left on by accident, and
//! every random draw comes from one seeded generator so a run can be
//! replayed (same seed, same order of requests, same faults).
//!
//! Faults act where the upstream would: an injected error or abort is not
//! sent, counts as the upstream's failure for its breaker and may be
//! retried elsewhere, exactly like a real one.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Longest TTL a fault may ask for.
pub const MAX_TTL_SECS: u64 = 3600;
/// Largest added latency (fixed + jitter), below the upstream timeouts'
/// order of magnitude would be pointless, above a minute is a mistake.
pub const MAX_LATENCY_MS: u64 = 60_000;

/// One fault, as sent in `PUT /admin/chaos`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// A service (`catalog`: all its instances) or an instance (`catalog-2`).
    pub target: String,
    /// Added before the call, always.
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
    /// Seconds until the fault lifts by itself (required, 1..=3600).
    pub ttl_secs: u64,
}

fn default_status() -> u16 {
    503
}

/// The body of `PUT /admin/chaos`: replaces every active fault.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosRequest {
    /// Seed of the draws; random (and reported back) when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The faults to inject.
    pub faults: Vec<FaultSpec>,
}

/// What to do to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Call the upstream as usual.
    Pass,
    /// Answer with this status without calling.
    Error(StatusCode),
    /// Fail as a reset connection without calling.
    Abort,
}

/// The faults drawn for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Wait this long before acting.
    pub delay: Duration,
    /// What to do after the delay.
    pub action: Action,
}

impl Plan {
    /// No fault.
    pub const NONE: Plan = Plan {
        delay: Duration::ZERO,
        action: Action::Pass,
    };
}

#[derive(Debug, Clone)]
struct Active {
    spec: FaultSpec,
    expires: Instant,
}

/// The active faults and their generator.
#[derive(Debug)]
pub struct Chaos {
    seed: u64,
    faults: Vec<Active>,
    rng: StdRng,
}

/// A fault as `GET /admin/chaos` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveView {
    #[serde(flatten)]
    /// The fault as it was asked for.
    pub spec: FaultSpec,
    /// Seconds left before it lifts.
    pub expires_in_secs: f64,
}

/// The whole chaos state, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosView {
    /// The seed of the draws.
    pub seed: u64,
    /// The faults in force.
    pub faults: Vec<ActiveView>,
}

impl Default for Chaos {
    fn default() -> Self {
        Self {
            seed: 0,
            faults: Vec::new(),
            rng: StdRng::seed_from_u64(0),
        }
    }
}

impl Chaos {
    /// Checks a request against the known targets; the message is the 422's.
    pub fn validate(request: &ChaosRequest, targets: &[String]) -> Result<(), String> {
        for (i, f) in request.faults.iter().enumerate() {
            let at = format!("faults[{i}]");
            if !targets.contains(&f.target) {
                return Err(format!(
                    "{at}.target {:?} is not an upstream; known: {}",
                    f.target,
                    targets.join(", ")
                ));
            }
            if !(1..=MAX_TTL_SECS).contains(&f.ttl_secs) {
                return Err(format!("{at}.ttl_secs must be in 1..={MAX_TTL_SECS}"));
            }
            for (name, rate) in [("error_rate", f.error_rate), ("abort_rate", f.abort_rate)] {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!("{at}.{name} must be in 0..=1, got {rate}"));
                }
            }
            if f.error_rate + f.abort_rate > 1.0 {
                return Err(format!("{at}: error_rate + abort_rate must not exceed 1"));
            }
            if !(400..=599).contains(&f.error_status) {
                return Err(format!("{at}.error_status must be a 4xx or 5xx status"));
            }
            if f.latency_ms.saturating_add(f.jitter_ms) > MAX_LATENCY_MS {
                return Err(format!(
                    "{at}: latency_ms + jitter_ms must not exceed {MAX_LATENCY_MS}"
                ));
            }
        }
        Ok(())
    }

    /// Replaces the active faults (the request must have been validated).
    pub fn set(&mut self, request: ChaosRequest, now: Instant) {
        self.seed = request.seed.unwrap_or_else(rand::random);
        self.rng = StdRng::seed_from_u64(self.seed);
        self.faults = request
            .faults
            .into_iter()
            .map(|spec| Active {
                expires: now + Duration::from_secs(spec.ttl_secs),
                spec,
            })
            .collect();
    }

    /// Lifts every fault.
    pub fn clear(&mut self) {
        self.faults.clear();
    }

    /// The faults still active at `now`.
    pub fn view(&mut self, now: Instant) -> ChaosView {
        self.expire(now);
        ChaosView {
            seed: self.seed,
            faults: self
                .faults
                .iter()
                .map(|a| ActiveView {
                    spec: a.spec.clone(),
                    expires_in_secs: a.expires.saturating_duration_since(now).as_secs_f64(),
                })
                .collect(),
        }
    }

    fn expire(&mut self, now: Instant) {
        self.faults.retain(|a| a.expires > now);
    }

    /// Draws the faults for a call to `instance` of `service` at `now`.
    /// Each matching fault draws the same three numbers whatever its rates,
    /// so a replay with the same seed sees the same sequence.
    pub fn plan(&mut self, service: &str, instance: &str, now: Instant) -> Plan {
        if self.faults.is_empty() {
            return Plan::NONE;
        }
        self.expire(now);
        let mut plan = Plan::NONE;
        for a in &self.faults {
            let f = &a.spec;
            if f.target != service && f.target != instance {
                continue;
            }
            let jitter = self.rng.random_range(0..=f.jitter_ms);
            let roll: f64 = self.rng.random();
            plan.delay += Duration::from_millis(f.latency_ms + jitter);
            if plan.action == Action::Pass {
                plan.action = if roll < f.error_rate {
                    StatusCode::from_u16(f.error_status)
                        .map(Action::Error)
                        .unwrap_or(Action::Abort)
                } else if roll < f.error_rate + f.abort_rate {
                    Action::Abort
                } else {
                    Action::Pass
                };
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(target: &str) -> FaultSpec {
        FaultSpec {
            target: target.into(),
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            error_status: 503,
            abort_rate: 0.0,
            ttl_secs: 10,
        }
    }

    fn targets() -> Vec<String> {
        ["catalog", "catalog-1", "catalog-2"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn validation_names_the_bad_field() {
        let bad = |f: FaultSpec| {
            Chaos::validate(
                &ChaosRequest {
                    seed: None,
                    faults: vec![f],
                },
                &targets(),
            )
            .unwrap_err()
        };
        assert!(bad(fault("nope")).contains("target"));
        assert!(
            bad(FaultSpec {
                ttl_secs: 0,
                ..fault("catalog")
            })
            .contains("ttl_secs")
        );
        assert!(
            bad(FaultSpec {
                error_rate: 1.5,
                ..fault("catalog")
            })
            .contains("error_rate")
        );
        assert!(
            bad(FaultSpec {
                error_status: 200,
                ..fault("catalog")
            })
            .contains("error_status")
        );
        assert!(
            bad(FaultSpec {
                error_rate: 0.6,
                abort_rate: 0.6,
                ..fault("catalog")
            })
            .contains("exceed 1")
        );
    }

    #[test]
    fn a_fault_hits_its_instance_only_and_lifts_after_its_ttl() {
        let t0 = Instant::now();
        let mut chaos = Chaos::default();
        chaos.set(
            ChaosRequest {
                seed: Some(1),
                faults: vec![FaultSpec {
                    error_rate: 1.0,
                    latency_ms: 5,
                    ..fault("catalog-2")
                }],
            },
            t0,
        );
        let hit = chaos.plan("catalog", "catalog-2", t0);
        assert_eq!(hit.action, Action::Error(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(hit.delay, Duration::from_millis(5));
        assert_eq!(chaos.plan("catalog", "catalog-1", t0), Plan::NONE);
        let after = t0 + Duration::from_secs(10);
        assert_eq!(chaos.plan("catalog", "catalog-2", after), Plan::NONE);
        assert!(chaos.view(after).faults.is_empty());
    }

    #[test]
    fn the_same_seed_replays_the_same_faults() {
        let t0 = Instant::now();
        let run = |seed| {
            let mut chaos = Chaos::default();
            chaos.set(
                ChaosRequest {
                    seed: Some(seed),
                    faults: vec![FaultSpec {
                        error_rate: 0.3,
                        abort_rate: 0.2,
                        jitter_ms: 50,
                        ..fault("catalog")
                    }],
                },
                t0,
            );
            (0..200)
                .map(|_| chaos.plan("catalog", "catalog-1", t0))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        let plans = run(42);
        let errors = plans
            .iter()
            .filter(|p| matches!(p.action, Action::Error(_)))
            .count();
        let aborts = plans.iter().filter(|p| p.action == Action::Abort).count();
        assert!((30..=90).contains(&errors), "{errors} errors of 200");
        assert!((15..=65).contains(&aborts), "{aborts} aborts of 200");
    }
}
