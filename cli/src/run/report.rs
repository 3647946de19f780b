//! The [`Report`] of one experiment run: its invariants, exact outcomes,
//! latencies and timeline. `report/` renders it; nothing here prints.

use serde::Serialize;

use super::record::{Latencies, Outcomes};
use super::timeline::Timeline;
use super::verdict::{Invariant, Verdict, overall};
use crate::exit;

/// Everything one run produced.
#[derive(Debug, Serialize)]
pub struct Report {
    pub experiment: String,
    pub seed: u64,
    /// The run's parameters, as given.
    pub params: serde_json::Value,
    pub verdict: Verdict,
    pub invariants: Vec<Invariant>,
    /// Exact count of each outcome (`200`, `412`, `error: timeout`, ...) per label.
    pub outcomes: Outcomes,
    pub latencies: Latencies,
    /// Measured figures worth reporting beside the verdict (e.g. convergence time).
    pub measurements: Vec<(String, String)>,
    /// The run second by second (answers, errors, p99), from `outcomes` and
    /// `latencies`; filled by `conclude`.
    pub timeline: Timeline,
    pub took_ms: u64,
}

impl Report {
    pub fn new(experiment: &str, seed: u64, params: serde_json::Value) -> Self {
        Self {
            experiment: experiment.into(),
            seed,
            params,
            verdict: Verdict::Pass,
            invariants: Vec::new(),
            outcomes: Outcomes::default(),
            latencies: Latencies::default(),
            measurements: Vec::new(),
            timeline: Timeline::default(),
            took_ms: 0,
        }
    }

    pub fn push(&mut self, inv: Invariant) {
        self.invariants.push(inv);
    }

    pub fn measure(&mut self, name: &str, value: impl ToString) {
        self.measurements.push((name.into(), value.to_string()));
    }

    /// Derives the overall verdict from the invariants (no invariant, no
    /// pass) and the timeline from the recorded seconds.
    pub fn conclude(&mut self, took: std::time::Duration) {
        self.took_ms = took.as_millis() as u64;
        self.verdict = overall(&self.invariants);
        let mut seconds = self.outcomes.1.clone();
        seconds.merge(&self.latencies.1);
        self.timeline = seconds.timeline(seconds.first().unwrap_or(0));
    }

    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Pass => exit::OK,
            Verdict::Fail => exit::FAILED,
            Verdict::Unknown => exit::UNKNOWN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conclude_builds_the_timeline_from_what_was_recorded() {
        let mut r = Report::new("t", 1, serde_json::json!({}));
        r.outcomes.add("x", "200");
        r.outcomes.add("x", "503");
        r.latencies.record("x", std::time::Duration::from_millis(4));
        r.conclude(std::time::Duration::ZERO);
        let total: u64 = r.timeline.seconds.iter().map(|s| s.requests).sum();
        let errors: u64 = r.timeline.seconds.iter().map(|s| s.errors).sum();
        assert_eq!((total, errors), (2, 1));
        assert_eq!(r.timeline.seconds[0].t_s, 0);
        assert!(r.timeline.seconds.iter().any(|s| s.p99_ms.is_some()));
    }

    #[test]
    fn exit_codes_follow_the_verdict() {
        let mut r = Report::new("t", 1, serde_json::json!({}));
        r.push(Invariant::check("ok", true, "x", "x", "e"));
        r.conclude(std::time::Duration::ZERO);
        assert_eq!(r.exit_code(), exit::OK);
        r.push(Invariant::check("bad", false, "x", "y", "e"));
        r.conclude(std::time::Duration::ZERO);
        assert_eq!(r.exit_code(), exit::FAILED);
    }
}
