//! Invariants and verdicts: what should hold, what was seen, and the verdict
//! of a whole run (any fail → fail; else any unknown → unknown; else pass).

use serde::Serialize;

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
}
