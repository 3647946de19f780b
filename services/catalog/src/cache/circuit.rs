//! Whether L2 is worth asking after Redis failed: the circuit, a pure
//! state machine of `(state, now)`, and its tests.

use std::time::{Duration, Instant};

/// How long Redis is skipped after a failure before one probe is let through.
pub const CIRCUIT_OPEN_FOR: Duration = Duration::from_secs(1);

/// Whether L2 is worth asking: a plain state machine, `now` a parameter.
///
/// ```text
///  Closed --failure--> Open{until}
///  Open --admit at/after until--> Probing (this caller probes; others skip)
///  Probing --success--> Closed        Probing --failure--> Open{until}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Redis answers; every call goes to it.
    Closed,
    /// Redis failed; skip it until this instant.
    Open {
        /// When one probe may go through.
        until: Instant,
    },
    /// One caller is finding out whether Redis is back.
    Probing {
        /// When the probe started; a probe that never reports (its future
        /// dropped) is given up on after [`CIRCUIT_OPEN_FOR`].
        since: Instant,
    },
}

impl Circuit {
    /// Whether a caller at `now` may use Redis, and the state after asking.
    pub fn admit(self, now: Instant) -> (Self, bool) {
        match self {
            Self::Closed => (self, true),
            Self::Open { until } if now >= until => (Self::Probing { since: now }, true),
            Self::Open { .. } => (self, false),
            Self::Probing { since } if now >= since + CIRCUIT_OPEN_FOR => {
                (Self::Probing { since: now }, true)
            }
            Self::Probing { .. } => (self, false),
        }
    }

    /// The state after an admitted call's outcome at `now`.
    pub fn record(self, ok: bool, now: Instant) -> Self {
        if ok {
            Self::Closed
        } else {
            Self::Open {
                until: now + CIRCUIT_OPEN_FOR,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_circuit_admits_everyone() {
        let now = Instant::now();
        assert_eq!(Circuit::Closed.admit(now), (Circuit::Closed, true));
    }

    #[test]
    fn a_failure_opens_the_circuit_so_redis_is_skipped_until_it_is_due() {
        let now = Instant::now();
        let open = Circuit::Closed.record(false, now);
        assert!(!open.admit(now).1);
        assert!(!open.admit(now + CIRCUIT_OPEN_FOR / 2).1);
        let (probing, admitted) = open.admit(now + CIRCUIT_OPEN_FOR);
        assert!(admitted);
        assert!(matches!(probing, Circuit::Probing { .. }));
    }

    #[test]
    fn while_one_caller_probes_the_others_skip_redis() {
        let now = Instant::now();
        let probing = Circuit::Probing { since: now };
        assert!(!probing.admit(now + Duration::from_millis(10)).1);
    }

    #[test]
    fn a_successful_probe_closes_the_circuit_and_a_failed_one_reopens_it() {
        let now = Instant::now();
        let probing = Circuit::Probing { since: now };
        assert_eq!(probing.record(true, now), Circuit::Closed);
        let reopened = probing.record(false, now);
        assert_eq!(
            reopened,
            Circuit::Open {
                until: now + CIRCUIT_OPEN_FOR
            }
        );
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_the_open_period() {
        let now = Instant::now();
        let probing = Circuit::Probing { since: now };
        let (next, admitted) = probing.admit(now + CIRCUIT_OPEN_FOR);
        assert!(admitted);
        assert_eq!(
            next,
            Circuit::Probing {
                since: now + CIRCUIT_OPEN_FOR
            }
        );
    }
}
