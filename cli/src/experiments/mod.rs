//! The experiment framework. Every experiment has one shape:
//! arrange (its own fresh data) → act (drive requests, recording every
//! latency and every outcome exactly) → check (invariants read from the
//! databases, each with expected, observed and evidence) → report.
//! The verdict is the report's: any fail → 1, else any unknown → 2, else 0.

pub mod breaker;
pub mod flood;
pub mod hostile;
pub mod lab;
pub mod outbox;
pub mod race;
pub mod record;
pub mod replay;
pub mod rotate;
pub mod saga;

use serde::Serialize;

pub use lab::Lab;
pub use record::{Latencies, Outcomes, Timeline};

use crate::exit;

/// A verdict on one invariant, or on a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Could not be judged (evidence missing, e.g. a read failed).
    Unknown,
}

/// One checked property: what should hold, what was seen, and why we think so.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub name: String,
    pub verdict: Verdict,
    pub expected: String,
    pub observed: String,
    /// Where `observed` came from (a query, a count of HTTP statuses, ...).
    pub evidence: String,
}

impl Invariant {
    /// Pass iff `holds`.
    pub fn check(
        name: &str,
        holds: bool,
        expected: impl ToString,
        observed: impl ToString,
        evidence: impl ToString,
    ) -> Self {
        Self {
            name: name.into(),
            verdict: if holds { Verdict::Pass } else { Verdict::Fail },
            expected: expected.to_string(),
            observed: observed.to_string(),
            evidence: evidence.to_string(),
        }
    }

    /// Pass iff `observed == expected`.
    pub fn equal<T: PartialEq + std::fmt::Display>(
        name: &str,
        expected: T,
        observed: T,
        evidence: impl ToString,
    ) -> Self {
        let holds = expected == observed;
        Self::check(name, holds, expected, observed, evidence)
    }

    /// The evidence could not be gathered.
    pub fn unknown(name: &str, expected: impl ToString, why: impl ToString) -> Self {
        Self {
            name: name.into(),
            verdict: Verdict::Unknown,
            expected: expected.to_string(),
            observed: "?".into(),
            evidence: why.to_string(),
        }
    }
}

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

/// Any fail → fail; else any unknown (or nothing checked) → unknown; else pass.
pub fn overall(invariants: &[Invariant]) -> Verdict {
    if invariants.iter().any(|i| i.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if invariants.is_empty() || invariants.iter().any(|i| i.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Pass
    }
}

/// Output switches every experiment takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Seed for every random choice, so a run can be replayed [default: random, printed in the report].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page to FILE (charts inlined, nothing fetched).
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

impl CommonArgs {
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(rand::random)
    }
}

/// Prints the report (text or JSON), writes its HTML page when asked, and
/// returns its exit code. `fleet_profile` names the fleet it ran against.
pub fn finish(report: &Report, common: &CommonArgs, fleet_profile: &str) -> anyhow::Result<u8> {
    if common.json {
        crate::report::json(report)?;
    } else {
        print!("{}", crate::report::experiment::render(report));
    }
    // After the report is out: a page that cannot be written loses no result.
    if let Some(path) = &common.html {
        let about = crate::report::html::About::now(fleet_profile);
        let page = crate::report::html::experiment::page(report, &about)?;
        crate::report::html::write(path, &page)?;
        if !common.json {
            println!("HTML report: {}", path.display());
        }
    }
    Ok(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_fail_fails_the_run() {
        let v = vec![
            Invariant::equal("a", 1, 1, "x"),
            Invariant::equal("b", 1, 2, "y"),
        ];
        assert_eq!(overall(&v), Verdict::Fail);
        assert_eq!(v[1].observed, "2");
    }

    #[test]
    fn unknown_without_fail_is_unknown_and_empty_is_never_a_pass() {
        let v = vec![
            Invariant::equal("a", 1, 1, "x"),
            Invariant::unknown("b", 1, "read failed"),
        ];
        assert_eq!(overall(&v), Verdict::Unknown);
        assert_eq!(overall(&[]), Verdict::Unknown);
    }

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
