//! How the gate judges a check: a normal arm's test cases are its
//! invariants; a control arm's one case is "the checkers catch it", which
//! passes only when the arm failed.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::gate::Check;
use crate::experiments::experiment::Expect;
use crate::load::summary::LoadReport;
use crate::report::{self, html};
use crate::run::{Invariant, Report, Verdict, overall};

/// A check's own result, whatever ran it.
pub struct Ran {
    pub verdict: Verdict,
    pub invariants: Vec<Invariant>,
    pub text: String,
    pub json: serde_json::Value,
    /// The report itself, for its HTML page.
    pub shown: Option<Shown>,
}

pub enum Shown {
    Experiment(Box<Report>),
    Load(Box<LoadReport>),
}

impl Shown {
    pub fn page(&self, about: &html::About) -> Result<String> {
        match self {
            Shown::Experiment(r) => html::experiment::page(r, about),
            Shown::Load(r) => html::load::page(r, about),
        }
    }
}

impl From<Report> for Ran {
    fn from(r: Report) -> Self {
        Self {
            verdict: r.verdict,
            text: report::experiment::render(&r),
            json: serde_json::to_value(&r).unwrap_or_default(),
            invariants: r.invariants.clone(),
            shown: Some(Shown::Experiment(Box::new(r))),
        }
    }
}

impl From<LoadReport> for Ran {
    fn from(r: LoadReport) -> Self {
        Self {
            verdict: r.verdict,
            text: report::load::render(&r),
            json: serde_json::to_value(&r).unwrap_or_default(),
            invariants: r.thresholds.iter().chain(&r.invariants).cloned().collect(),
            shown: Some(Shown::Load(Box::new(r))),
        }
    }
}

/// One check as judged by the gate: its test cases are its invariants, or
/// for a control arm the single "the checkers catch it" case.
#[derive(Serialize)]
pub struct Judged {
    pub name: &'static str,
    pub expect: Expect,
    pub verdict: Verdict,
    pub took_ms: u64,
    pub cases: Vec<Invariant>,
    pub report: serde_json::Value,
    #[serde(skip)]
    pub text: String,
    #[serde(skip)]
    pub shown: Option<Shown>,
    /// Its HTML page's file name in `--html DIR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

pub fn judge(c: &Check, ran: Result<Ran>, took: Duration) -> Judged {
    judged(c.name(), c.expect(), ran, took)
}

fn judged(name: &'static str, expect: Expect, mut ran: Result<Ran>, took: Duration) -> Judged {
    let shown = ran.as_mut().ok().and_then(|r| r.shown.take());
    let (cases, text, json) = match (ran, expect) {
        (Err(e), _) => (
            vec![Invariant::unknown(name, "the check runs", format!("{e:#}"))],
            format!("{name}: could not run: {e:#}\n"),
            serde_json::Value::Null,
        ),
        (Ok(r), Expect::Pass) => (r.invariants, r.text, r.json),
        (Ok(r), Expect::Fail) => (vec![caught(name, &r)], r.text, r.json),
    };
    Judged {
        name,
        expect,
        verdict: overall(&cases),
        took_ms: took.as_millis() as u64,
        cases,
        report: json,
        text,
        shown,
        page: None,
    }
}

/// A control arm's one case: its checkers caught the broken behaviour.
fn caught(arm: &str, r: &Ran) -> Invariant {
    let caught: Vec<&str> = r
        .invariants
        .iter()
        .filter(|i| i.verdict == Verdict::Fail)
        .map(|i| i.name.as_str())
        .collect();
    let name = format!("{arm}: the checkers catch the control arm");
    match r.verdict {
        Verdict::Unknown => {
            Invariant::unknown(&name, "FAIL", "the control arm could not be judged")
        }
        v => Invariant::check(
            &name,
            v == Verdict::Fail,
            "FAIL (the broken path is caught)",
            report::load::verdict_label(v),
            if caught.is_empty() {
                "no invariant failed".into()
            } else {
                format!("failed as they must: {}", caught.join("; "))
            },
        ),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn ran(verdict: Verdict, invariants: Vec<Invariant>) -> Result<Ran> {
        Ok(Ran {
            verdict,
            invariants,
            text: String::new(),
            json: serde_json::Value::Null,
            shown: None,
        })
    }

    /// A control arm judged as the gate judges it.
    pub fn control(ran: Result<Ran>) -> Judged {
        judged("race --control", Expect::Fail, ran, Duration::ZERO)
    }

    #[test]
    fn a_control_arm_passes_the_gate_only_by_failing() {
        let failed = judged(
            "x --control",
            Expect::Fail,
            ran(
                Verdict::Fail,
                vec![Invariant::check("no lost update", false, 0, 3, "pg")],
            ),
            Duration::ZERO,
        );
        assert_eq!(failed.verdict, Verdict::Pass);
        assert_eq!(failed.cases.len(), 1);
        assert!(
            failed.cases[0].observed.contains("FAIL")
                && failed.cases[0].evidence.contains("no lost update")
        );
        let passed = judged(
            "x --control",
            Expect::Fail,
            ran(Verdict::Pass, vec![]),
            Duration::ZERO,
        );
        assert_eq!(
            passed.verdict,
            Verdict::Fail,
            "a control arm that passes means a checker that cannot fail"
        );
    }

    #[test]
    fn a_control_arm_that_could_not_be_judged_is_unknown() {
        let j = control(ran(Verdict::Unknown, vec![]));
        assert_eq!(j.verdict, Verdict::Unknown);
    }

    #[test]
    fn a_check_that_cannot_run_is_unknown_and_a_normal_arm_keeps_its_invariants() {
        let j = judged(
            "race",
            Expect::Pass,
            Err(anyhow::anyhow!("boom")),
            Duration::ZERO,
        );
        assert_eq!(j.verdict, Verdict::Unknown);
        assert!(j.text.contains("could not run: boom"));
        let inv = vec![
            Invariant::check("a", true, 1, 1, "e"),
            Invariant::check("b", true, 1, 1, "e"),
        ];
        let j = judged(
            "race",
            Expect::Pass,
            ran(Verdict::Pass, inv),
            Duration::ZERO,
        );
        assert_eq!((j.verdict, j.cases.len()), (Verdict::Pass, 2));
    }
}
