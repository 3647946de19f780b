//! What each fault did, as plain data: the report lists them, marks them on
//! the timeline and judges that every one was injected. A fault that could
//! not be injected is its own line with why, never silence.

use serde::Serialize;

use super::plan::Planned;
use crate::run::Invariant;
use crate::run::Mark;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultOutcome {
    /// `kill payments`, `restart postgres (fast)`.
    pub label: String,
    /// The plan's time, seconds since the load began.
    pub planned_s: f64,
    /// When it was injected (after waiting its turn on the component).
    pub start_s: Option<f64>,
    /// When it was over: healed (restarted, resumed, cleared) or gave up.
    pub end_s: Option<f64>,
    /// `injected` or `failed`.
    pub outcome: Status,
    /// What happened, or why it could not.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Injected,
    Failed,
}

impl FaultOutcome {
    pub fn started(p: &Planned, start_s: f64) -> Self {
        Self {
            label: p.label(),
            planned_s: p.at.as_secs_f64(),
            start_s: Some(start_s),
            end_s: None,
            outcome: Status::Failed,
            detail: "did not finish".into(),
        }
    }

    pub fn not_started(p: &Planned, why: &str) -> Self {
        Self {
            start_s: None,
            detail: why.into(),
            ..Self::started(p, 0.0)
        }
    }

    /// A fault whose task itself was lost (it panicked or was cancelled).
    pub fn lost(why: String) -> Self {
        Self {
            label: "a fault".into(),
            planned_s: 0.0,
            start_s: None,
            end_s: None,
            outcome: Status::Failed,
            detail: why,
        }
    }

    pub fn injected(&mut self, detail: String) {
        self.outcome = Status::Injected;
        self.detail = detail;
    }

    pub fn failed(&mut self, why: String) {
        self.outcome = Status::Failed;
        self.detail = why;
    }

    /// Its marker on the timeline.
    pub fn mark(&self) -> Mark {
        let verdict = match self.outcome {
            Status::Injected => "injected",
            Status::Failed => "FAILED",
        };
        Mark {
            t_s: self.start_s.unwrap_or(self.planned_s),
            until_s: self.end_s,
            label: format!("{} ({verdict}): {}", self.label, self.detail),
        }
    }

    /// One line of the terminal report.
    pub fn line(&self) -> String {
        let when = match (self.start_s, self.end_s) {
            (Some(a), Some(b)) => format!("{a:>6.1}s → {b:>6.1}s"),
            (Some(a), None) => format!("{a:>6.1}s →    ?   "),
            _ => format!("{:>6.1}s (planned)  ", self.planned_s),
        };
        let verdict = match self.outcome {
            Status::Injected => "injected",
            Status::Failed => "FAILED  ",
        };
        format!("{when}  {verdict}  {}: {}", self.label, self.detail)
    }
}

/// The invariant every fault run carries: each planned fault was injected
/// (and healed), so the run measured what its schedule says.
pub fn invariant(outcomes: &[FaultOutcome]) -> Invariant {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.outcome == Status::Failed)
        .map(|o| format!("{} at {:.1}s: {}", o.label, o.planned_s, o.detail))
        .collect();
    let evidence = if failed.is_empty() {
        format!(
            "{} faults through the control plane, Vault and the BFF admin API",
            outcomes.len()
        )
    } else {
        failed.join("; ")
    };
    Invariant::equal(
        "every scheduled fault was injected and healed",
        0,
        failed.len(),
        evidence,
    )
}

/// How long the fleet may take to be ready again after the last fault
/// (`exec::settle` waits this long; [`settled`] judges against it).
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The fleet was ready again after the faults (`exec::settle`'s result).
pub fn settled(r: &Result<std::time::Duration, String>) -> Invariant {
    let name = "the whole fleet is ready again after the faults";
    let expected = format!(
        "every component answers its readiness probe within {}s of the last fault's heal",
        SETTLE.as_secs()
    );
    let evidence = "each component's own probe, as `storefront status` runs it";
    match r {
        Ok(d) => Invariant::check(
            name,
            true,
            expected,
            format!("ready {:.2}s after", d.as_secs_f64()),
            evidence,
        ),
        Err(why) => Invariant::check(name, false, expected, why.clone(), evidence),
    }
}
