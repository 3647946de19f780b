//! What the gate writes besides its run: the summary table, the HTML
//! index and one page per check.

use std::path::Path;

use anyhow::Result;

use super::Outcome;
use super::judge::Judged;
use crate::experiments::experiment::Expect;
use crate::report::{self, html};
use crate::run::Verdict;

fn expect_label(e: Expect) -> &'static str {
    match e {
        Expect::Pass => "PASS",
        Expect::Fail => "FAIL",
    }
}

fn passed(j: &Judged) -> usize {
    j.cases
        .iter()
        .filter(|i| i.verdict == Verdict::Pass)
        .count()
}

/// `NN-<check name as a file name>.html`.
fn page_name(n: usize, check: &str) -> String {
    let slug: String = check
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug: Vec<&str> = slug.split('-').filter(|s| !s.is_empty()).collect();
    format!("{n:02}-{}.html", slug.join("-"))
}

/// Writes a check's page (when it ran and left a report); its file name.
pub fn write_page(dir: &Path, n: usize, j: &Judged, fleet_profile: &str) -> Result<Option<String>> {
    let Some(shown) = &j.shown else {
        return Ok(None);
    };
    let name = page_name(n, j.name);
    let page = shown.page(&html::About::now(fleet_profile))?;
    let page = html::verify::annotate(&page, j.name, expect_label(j.expect), j.verdict);
    html::write(&dir.join(&name), &page)?;
    Ok(Some(name))
}

pub fn write_index(dir: &Path, o: &Outcome, fleet_profile: &str) -> Result<()> {
    let entries: Vec<html::verify::Entry<'_>> = o
        .checks
        .iter()
        .map(|c| html::verify::Entry {
            name: c.name,
            expect: expect_label(c.expect),
            verdict: c.verdict,
            passed: passed(c),
            cases: c.cases.len(),
            took_ms: c.took_ms,
            page: c.page.as_deref(),
        })
        .collect();
    let page = html::verify::index(
        o.verdict,
        o.seed,
        &entries,
        &o.not_run,
        serde_json::to_value(o)?,
        &html::About::now(fleet_profile),
    )?;
    html::write(&dir.join("index.html"), &page)
}

pub fn print_summary(o: &Outcome, junit: Option<&Path>) {
    let mut t = report::table(&["check", "expected", "verdict", "cases passed", "took"]);
    for c in &o.checks {
        t.add_row(vec![
            c.name.to_string(),
            expect_label(c.expect).to_string(),
            report::load::verdict_label(c.verdict).into(),
            format!("{}/{}", passed(c), c.cases.len()),
            report::secs(Some(c.took_ms)),
        ]);
    }
    println!("{t}");
    if let Some(p) = junit {
        println!("JUnit report: {}", p.display());
    }
    if !o.not_run.is_empty() {
        println!(
            "not run (--only): {} of the gate's {} checks: {}",
            o.not_run.len(),
            o.not_run.len() + o.checks.len(),
            o.not_run.join(", ")
        );
    }
    println!(
        "verify: {}  (seed {})",
        report::load::verdict_label(o.verdict),
        o.seed
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::commands::verify::judge::tests::control;
    use crate::run::{Invariant, Report};

    #[test]
    fn html_writes_a_page_per_check_that_ran_and_an_index_linking_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = Report::new("race", 5, serde_json::json!({"n": 2}));
        report.push(Invariant::check("no lost update", false, 0, 3, "pg"));
        report.outcomes.add("decrement", "200");
        report.conclude(Duration::ZERO);
        let mut ran_ok = control(Ok(report.into()));
        let mut broke = control(Err(anyhow::anyhow!("boom")));
        ran_ok.page = write_page(dir.path(), 1, &ran_ok, "dev").unwrap();
        broke.page = write_page(dir.path(), 2, &broke, "dev").unwrap();
        assert_eq!(ran_ok.page.as_deref(), Some("01-race-control.html"));
        assert_eq!(
            broke.page, None,
            "a check that could not run has no report to show"
        );
        let page = std::fs::read_to_string(dir.path().join("01-race-control.html")).unwrap();
        assert!(
            page.contains("expected FAIL, gate verdict PASS"),
            "the control arm's note"
        );
        assert!(page.contains("no lost update"));
        let outcome = Outcome {
            verdict: Verdict::Unknown,
            seed: 5,
            booted_a_fleet: false,
            checks: vec![ran_ok, broke],
            not_run: vec![],
        };
        write_index(dir.path(), &outcome, "dev").unwrap();
        let index = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
        assert!(index.contains("<a href=\"01-race-control.html\">"));
        assert!(index.contains("data-json=\"/checks/1/verdict\">UNKNOWN<"));
    }

    #[test]
    fn each_check_page_gets_a_numbered_file_name_from_its_check() {
        assert_eq!(page_name(2, "race --control"), "02-race-control.html");
        assert_eq!(
            page_name(11, "load --profile smoke"),
            "11-load-profile-smoke.html"
        );
    }
}
