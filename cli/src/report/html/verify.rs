//! `verify --html DIR`: the index page (one row per check, linking to its
//! own page), and the note each check's page carries about what the gate
//! expected of it.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;

use super::{About, Page, esc, label};
use crate::run::Verdict;

/// One check as the index lists it.
pub struct Entry<'a> {
    pub name: &'a str,
    /// `PASS`, or `FAIL` for a control arm.
    pub expect: &'a str,
    pub verdict: Verdict,
    pub passed: usize,
    pub cases: usize,
    pub took_ms: u64,
    /// The check's own page, relative to the index (none if it could not run).
    pub page: Option<&'a str>,
}

pub fn index(
    verdict: Verdict,
    seed: u64,
    entries: &[Entry<'_>],
    not_run: &[&str],
    run: Value,
    about: &About,
) -> Result<String> {
    let mut p = Page::new("storefront verify", run);
    let passed = entries
        .iter()
        .filter(|e| e.verdict == Verdict::Pass)
        .count();
    p.header(
        verdict,
        &format!(
            "{passed}/{} checks as expected · seed {seed}",
            entries.len()
        ),
    );
    let mut h = String::from(
        "<h2>Checks</h2><table><tr><th>check</th><th>expected</th><th>gate verdict</th><th class=\"n\">cases passed</th><th class=\"n\">took</th><th>page</th></tr>",
    );
    for (i, e) in entries.iter().enumerate() {
        let l = label(e.verdict);
        let link = e.page.map_or_else(
            || "-".to_owned(),
            |f| format!("<a href=\"{}\">{}</a>", esc(f), esc(f)),
        );
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\" data-json=\"/checks/{i}/verdict\">{l}</td><td class=\"n\">{}/{}</td><td class=\"n\">{:.2} s</td><td>{link}</td></tr>",
            esc(e.name),
            esc(e.expect),
            l.to_lowercase(),
            e.passed,
            e.cases,
            e.took_ms as f64 / 1000.0,
        );
    }
    h.push_str("</table><p class=\"sub\">A control arm (expected FAIL) passes the gate when its checkers catch the broken path: its own page shows FAIL.</p>");
    if !not_run.is_empty() {
        let _ = write!(
            h,
            "<p class=\"sub\">Not run (<code>--only</code>): {} of the gate's {} checks: {}.</p>",
            not_run.len(),
            not_run.len() + entries.len(),
            esc(&not_run.join(", "))
        );
    }
    p.push(&h);
    p.about(about, vec![("seed", seed.to_string())]);
    p.finish()
}

/// Puts a line under a check's page heading saying what the gate expected.
pub fn annotate(page: &str, name: &str, expect: &str, gate: Verdict) -> String {
    let note = format!(
        "<p class=\"sub\">verify check <b>{}</b>: expected {}, gate verdict {} · <a href=\"index.html\">all checks</a></p>",
        esc(name),
        esc(expect),
        label(gate)
    );
    page.replacen("</header>", &format!("</header>{note}"), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_links_every_check_and_shows_its_gate_verdict() {
        let entries = [
            Entry {
                name: "race",
                expect: "PASS",
                verdict: Verdict::Pass,
                passed: 3,
                cases: 3,
                took_ms: 1200,
                page: Some("01-race.html"),
            },
            Entry {
                name: "race --control",
                expect: "FAIL",
                verdict: Verdict::Fail,
                passed: 0,
                cases: 1,
                took_ms: 900,
                page: None,
            },
        ];
        let html = index(
            Verdict::Fail,
            9,
            &entries,
            &[],
            serde_json::json!({}),
            &About::now("dev"),
        )
        .unwrap();
        assert!(!html.contains("Not run"));
        assert!(html.contains("<a href=\"01-race.html\">"));
        assert!(html.contains("data-json=\"/checks/1/verdict\">FAIL<"));
        assert!(html.contains("1/2 checks as expected"));
        let part = index(
            Verdict::Fail,
            9,
            &entries,
            &["saga --fail-at mixed", "hostile"],
            serde_json::json!({}),
            &About::now("dev"),
        )
        .unwrap();
        assert!(part.contains(
            "Not run (<code>--only</code>): 2 of the gate's 4 checks: saga --fail-at mixed, hostile."
        ));
        let a = annotate(
            "<header>x</header><p>",
            "race --control",
            "FAIL",
            Verdict::Pass,
        );
        assert!(a.starts_with("<header>x</header><p class=\"sub\">verify check <b>race --control</b>: expected FAIL, gate verdict PASS"));
    }
}
