//! JUnit XML for CI (quick-junit, as nextest writes it): one test suite per
//! check `storefront verify` ran, one test case per invariant or threshold.
//! A failed invariant is a `failure`; one that could not be judged
//! (`unknown`) is an `error`, since CI must not read it as a pass.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::run::{Invariant, Verdict};

/// One suite: a name, how long it took, its judged properties.
pub struct Suite<'a> {
    pub name: &'a str,
    pub took: Duration,
    pub cases: &'a [Invariant],
}

pub fn to_xml(report_name: &str, suites: &[Suite<'_>]) -> Result<String> {
    let mut report = Report::new(report_name);
    let mut total = Duration::ZERO;
    for s in suites {
        let mut suite = TestSuite::new(s.name);
        suite.set_time(s.took);
        total += s.took;
        for inv in s.cases {
            let mut status = match inv.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
                Verdict::Unknown => TestCaseStatus::non_success(NonSuccessKind::Error),
            };
            let detail = format!(
                "expected: {}\nobserved: {}\nevidence: {}",
                inv.expected, inv.observed, inv.evidence
            );
            if inv.verdict != Verdict::Pass {
                status
                    .set_message(format!(
                        "expected {}, observed {}",
                        inv.expected, inv.observed
                    ))
                    .set_description(detail.clone());
            }
            let mut case = TestCase::new(inv.name.as_str(), status);
            case.set_classname(s.name);
            case.set_system_out(detail);
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.set_time(total);
    report.to_string().context("cannot render the JUnit report")
}

pub fn write(path: &Path, report_name: &str, suites: &[Suite<'_>]) -> Result<()> {
    let xml = to_xml(report_name, suites)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, xml).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_invariant_is_a_test_case_and_fail_and_unknown_are_not_successes() {
        let cases = [
            Invariant::check("one winner", true, "1", "1", "statuses"),
            Invariant::check("p99 ≤ 1 ms", false, "≤ 1 ms", "3 ms", "hdr"),
            Invariant::unknown("stock", "balance", "read failed"),
        ];
        let xml = to_xml(
            "storefront verify",
            &[Suite {
                name: "race",
                took: Duration::from_millis(1500),
                cases: &cases,
            }],
        )
        .unwrap();
        assert!(xml.contains(r#"<testsuite name="race" tests="3""#), "{xml}");
        assert!(
            xml.contains(r#"failures="1""#) && xml.contains(r#"errors="1""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="one winner" classname="race""#),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"expected ≤ 1 ms, observed 3 ms\""),
            "{xml}"
        );
        assert!(xml.contains("<error"), "{xml}");
    }
}
