//! The circuit breaker of one upstream instance: a plain state machine whose
//! transitions take `now` as a parameter, so its tests step time instead of
//! sleeping.
//!
//! - **Closed**: calls pass. It opens after `consecutive_failures` failures
//!   in a row, or when at least `min_calls` calls in the current window of
//!   `window` length failed at `failure_ratio` or more.
//! - **Open**: calls are refused without touching the upstream, with the
//!   time left as the retry hint, until `open_for` has passed.
//! - **Half-open**: up to `half_open_probes` probes are let through at once;
//!   that many successes close it, one failure opens it again.
//!
//! The window is a fixed one (it restarts when `window` has passed since it
//! began): simpler than a rolling one, and the consecutive-failure rule
//! already catches a replica that fails every call.

use std::time::{Duration, Instant};

use serde::Serialize;

/// When the breaker trips and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker.
    pub consecutive_failures: u32,
    /// Length of the failure-ratio window.
    #[serde(rename = "window_ms", serialize_with = "as_millis")]
    pub window: Duration,
    /// Calls the window needs before its ratio counts.
    pub min_calls: u32,
    /// Failed share of the window's calls that opens the breaker.
    pub failure_ratio: f64,
    /// How long it stays open before letting probes through.
    #[serde(rename = "open_ms", serialize_with = "as_millis")]
    pub open_for: Duration,
    /// Probes let through at once when half-open, and successes that close it.
    pub half_open_probes: u32,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The three states, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// A probe is let through to test the upstream.
    HalfOpen,
}

impl State {
    /// Lowercase name, for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

/// What the breaker says about a call about to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call.
    Call,
    /// Half-open: call, and report back; the outcome decides the state.
    Probe,
    /// Open (or half-open with all probes out): don't call.
    Reject {
        /// Until the breaker lets a probe through.
        retry_after: Duration,
    },
}

/// A state change, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Closed {
        consecutive: u32,
        window_start: Instant,
        calls: u32,
        failures: u32,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
    },
}

/// One upstream instance's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
}

/// A snapshot for `GET /admin/breakers`.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The current state.
    pub state: State,
    /// Failures in a row so far (closed only).
    pub consecutive_failures: u32,
    /// Calls and failures in the current window (closed only).
    pub window_calls: u32,
    /// Failures among `window_calls`.
    pub window_failures: u32,
    /// Open: ms until probes are let through.
    pub retry_after_ms: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            config,
            phase: closed(now),
        }
    }

    /// The state at `now`: an open breaker whose time is up reads as
    /// half-open, which it becomes on the next admission.
    pub fn state(&self, now: Instant) -> State {
        match self.phase {
            Phase::Closed { .. } => State::Closed,
            Phase::Open { until } if now < until => State::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// The snapshot reported by the admin API.
    pub fn view(&self, now: Instant) -> View {
        let (consecutive_failures, window_calls, window_failures) = match self.phase {
            Phase::Closed {
                consecutive,
                calls,
                failures,
                ..
            } => (consecutive, calls, failures),
            _ => (0, 0, 0),
        };
        let retry_after_ms = match self.phase {
            Phase::Open { until } => {
                u64::try_from(until.saturating_duration_since(now).as_millis()).unwrap_or(0)
            }
            _ => 0,
        };
        View {
            state: self.state(now),
            consecutive_failures,
            window_calls,
            window_failures,
            retry_after_ms,
        }
    }

    /// Asks to make a call at `now`.
    pub fn admit(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        let mut transition = None;
        if let Phase::Open { until } = self.phase {
            if now < until {
                return (
                    Admission::Reject {
                        retry_after: until - now,
                    },
                    None,
                );
            }
            transition = self.go(Phase::HalfOpen {
                in_flight: 0,
                successes: 0,
            });
        }
        let admission = match &mut self.phase {
            Phase::Closed { .. } => Admission::Call,
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                if *in_flight + *successes < self.config.half_open_probes {
                    *in_flight += 1;
                    Admission::Probe
                } else {
                    // The probes out will decide soon; a second is the
                    // smallest hint `Retry-After` can carry anyway.
                    Admission::Reject {
                        retry_after: Duration::from_secs(1),
                    }
                }
            }
            Phase::Open { .. } => unreachable!("left above"),
        };
        (admission, transition)
    }

    /// Reports how an admitted call ended.
    pub fn record(&mut self, admitted: Admission, ok: bool, now: Instant) -> Option<Transition> {
        let config = self.config;
        match (&mut self.phase, admitted) {
            (
                Phase::Closed {
                    consecutive,
                    window_start,
                    calls,
                    failures,
                },
                Admission::Call,
            ) => {
                if now.saturating_duration_since(*window_start) >= config.window {
                    (*window_start, *calls, *failures) = (now, 0, 0);
                }
                *calls += 1;
                if ok {
                    *consecutive = 0;
                    return None;
                }
                *consecutive += 1;
                *failures += 1;
                let ratio_tripped = *calls >= config.min_calls
                    && f64::from(*failures) >= config.failure_ratio * f64::from(*calls);
                if *consecutive >= config.consecutive_failures || ratio_tripped {
                    return self.open(now);
                }
                None
            }
            (
                Phase::HalfOpen {
                    in_flight,
                    successes,
                },
                Admission::Probe,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                if !ok {
                    return self.open(now);
                }
                *successes += 1;
                if *successes >= config.half_open_probes {
                    return self.go(closed(now));
                }
                None
            }
            // A call admitted before the state changed: its outcome says
            // nothing about the state the breaker is in now.
            _ => None,
        }
    }

    /// A probe that ended without an outcome (the client went away): frees
    /// its slot so the half-open breaker isn't stuck waiting for it.
    pub fn release(&mut self, admitted: Admission) {
        if let (Phase::HalfOpen { in_flight, .. }, Admission::Probe) = (&mut self.phase, admitted) {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    fn open(&mut self, now: Instant) -> Option<Transition> {
        let until = now + self.config.open_for;
        self.go(Phase::Open { until })
    }

    fn go(&mut self, phase: Phase) -> Option<Transition> {
        // The stored phase, not `state(now)`: an expired open breaker reads
        // as half-open, but its move to half-open is still a transition.
        let from = raw(self.phase);
        self.phase = phase;
        let to = raw(self.phase);
        (from != to).then_some(Transition { from, to })
    }
}

fn raw(phase: Phase) -> State {
    match phase {
        Phase::Closed { .. } => State::Closed,
        Phase::Open { .. } => State::Open,
        Phase::HalfOpen { .. } => State::HalfOpen,
    }
}

fn closed(now: Instant) -> Phase {
    Phase::Closed {
        consecutive: 0,
        window_start: now,
        calls: 0,
        failures: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            window: Duration::from_secs(10),
            min_calls: 10,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(2),
            half_open_probes: 2,
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Admits and records one call at `now`; returns the admission.
    fn call(b: &mut Breaker, now: Instant, ok: bool) -> Admission {
        let (a, _) = b.admit(now);
        if !matches!(a, Admission::Reject { .. }) {
            b.record(a, ok, now);
        }
        a
    }

    #[test]
    fn opens_after_the_configured_consecutive_failures_and_not_before() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        call(&mut b, t0, false);
        call(&mut b, t0, false);
        assert_eq!(b.state(t0), State::Closed);
        let (a, _) = b.admit(t0);
        let t = b.record(a, false, t0);
        assert_eq!(
            t,
            Some(Transition {
                from: State::Closed,
                to: State::Open
            })
        );
        assert_eq!(b.state(t0), State::Open);
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        for _ in 0..5 {
            call(&mut b, t0, false);
            call(&mut b, t0, false);
            call(&mut b, t0, true);
        }
        // 10 failures of 15 calls, never 3 in a row: but the ratio trips.
        assert_eq!(b.state(t0), State::Open);
    }

    #[test]
    fn the_ratio_needs_min_calls_and_the_window_restarts() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        // 4 failures, 4 successes alternating: 8 calls < min 10.
        for _ in 0..4 {
            call(&mut b, t0, false);
            call(&mut b, t0, true);
        }
        assert_eq!(b.state(t0), State::Closed);
        // The window ends; the next calls start a fresh count.
        let later = ms(t0, 10_000);
        call(&mut b, later, false);
        call(&mut b, later, true);
        assert_eq!(b.view(later).window_calls, 2);
        assert_eq!(b.state(later), State::Closed);
    }

    #[test]
    fn open_rejects_with_the_time_left_then_half_opens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        for _ in 0..3 {
            call(&mut b, t0, false);
        }
        assert_eq!(
            b.admit(ms(t0, 500)).0,
            Admission::Reject {
                retry_after: Duration::from_millis(1500)
            }
        );
        assert_eq!(b.view(ms(t0, 500)).retry_after_ms, 1500);
        assert_eq!(b.state(ms(t0, 2000)), State::HalfOpen);
        let (a, t) = b.admit(ms(t0, 2000));
        assert_eq!(a, Admission::Probe);
        assert_eq!(
            t,
            Some(Transition {
                from: State::Open,
                to: State::HalfOpen
            })
        );
    }

    #[test]
    fn half_open_limits_probes_and_closes_after_enough_successes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        for _ in 0..3 {
            call(&mut b, t0, false);
        }
        let t = ms(t0, 2000);
        let (p1, _) = b.admit(t);
        let (p2, _) = b.admit(t);
        let (p3, _) = b.admit(t);
        assert_eq!((p1, p2), (Admission::Probe, Admission::Probe));
        assert!(matches!(p3, Admission::Reject { .. }));
        assert_eq!(b.record(p1, true, t), None);
        assert_eq!(
            b.record(p2, true, t),
            Some(Transition {
                from: State::HalfOpen,
                to: State::Closed
            })
        );
        assert_eq!(b.admit(t).0, Admission::Call);
    }

    #[test]
    fn a_failed_probe_opens_again_for_the_full_period() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        for _ in 0..3 {
            call(&mut b, t0, false);
        }
        let t = ms(t0, 2500);
        let (p, _) = b.admit(t);
        assert_eq!(
            b.record(p, false, t),
            Some(Transition {
                from: State::HalfOpen,
                to: State::Open
            })
        );
        assert_eq!(b.state(ms(t0, 4499)), State::Open);
        assert_eq!(b.state(ms(t0, 4500)), State::HalfOpen);
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.half_open_probes = 1;
        let mut b = Breaker::new(cfg, t0);
        for _ in 0..3 {
            call(&mut b, t0, false);
        }
        let t = ms(t0, 2000);
        let (p, _) = b.admit(t);
        assert!(matches!(b.admit(t).0, Admission::Reject { .. }));
        b.release(p);
        assert_eq!(b.admit(t).0, Admission::Probe);
    }

    #[test]
    fn outcomes_of_calls_admitted_in_another_state_are_ignored() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        let (late, _) = b.admit(t0);
        for _ in 0..3 {
            call(&mut b, t0, false);
        }
        // A call admitted while closed finishes after the breaker opened.
        assert_eq!(b.record(late, true, t0), None);
        assert_eq!(b.state(t0), State::Open);
    }
}
