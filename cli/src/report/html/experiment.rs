//! An experiment's page: verdict and invariants, exact outcome counts, the
//! latency table and one percentile plot per label, the timeline, the run.

use std::fmt::Write as _;

use anyhow::Result;

use super::{About, Page, count, esc, num, percentile_spec, ptr};
use hdrhistogram::Histogram;

use crate::run::summarize;
use crate::run::{Latencies, Report};

pub fn page(r: &Report, about: &About) -> Result<String> {
    let mut p = Page::new(
        format!("storefront {}", r.experiment),
        serde_json::to_value(r)?,
    );
    let passed = r
        .invariants
        .iter()
        .filter(|i| i.verdict == crate::run::Verdict::Pass)
        .count();
    p.header(
        r.verdict,
        &format!(
            "{passed}/{} invariants passed · {:.2} s · seed {}",
            r.invariants.len(),
            r.took_ms as f64 / 1000.0,
            r.seed
        ),
    );
    p.invariants("Invariants", &r.invariants, "/invariants");
    if !r.outcomes.0.is_empty() {
        let mut h = String::from(
            "<h2>Outcomes (exact counts)</h2><table><tr><th>requests</th><th>outcome</th><th class=\"n\">count</th></tr>",
        );
        for (label, m) in &r.outcomes.0 {
            for (outcome, n) in m {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td>{}</tr>",
                    esc(label),
                    esc(outcome),
                    count(&format!("/outcomes/{}/{}", ptr(label), ptr(outcome)), *n)
                );
            }
        }
        h.push_str("</table>");
        p.push(&h);
    }
    if !r.latencies.0.is_empty() {
        let mut h = String::from("<h2>Latency (ms)</h2><table><tr><th>requests</th>");
        for c in ["count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"] {
            let _ = write!(h, "<th class=\"n\">{c}</th>");
        }
        h.push_str("</tr>");
        for (label, hist) in &r.latencies.0 {
            let s = summarize(hist);
            let b = format!("/latencies/{}", ptr(label));
            let _ = write!(
                h,
                "<tr><td>{}</td>{}{}{}{}{}{}{}{}</tr>",
                esc(label),
                count(&format!("{b}/count"), s.count),
                num(&format!("{b}/min_ms"), s.min_ms, 3),
                num(&format!("{b}/p50_ms"), s.p50_ms, 3),
                num(&format!("{b}/p90_ms"), s.p90_ms, 3),
                num(&format!("{b}/p99_ms"), s.p99_ms, 3),
                num(&format!("{b}/p999_ms"), s.p999_ms, 3),
                num(&format!("{b}/max_ms"), s.max_ms, 3),
                num(&format!("{b}/mean_ms"), s.mean_ms, 3),
            );
        }
        h.push_str("</table><div class=\"charts\">");
        p.push(&h);
        for (label, corrected, raw) in pairs(&r.latencies) {
            p.chart(
                "percentile",
                percentile_spec(
                    &format!("{label}: latency by percentile"),
                    corrected,
                    Some(raw),
                ),
            );
        }
        p.push("</div>");
    }
    p.timeline(
        "per second: answers, errors (5xx or none), p99",
        &r.timeline,
    );
    if !r.measurements.is_empty() {
        let rows: Vec<(&str, String)> = r
            .measurements
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        p.facts("Measurements", &rows);
    }
    p.about(
        about,
        vec![
            ("experiment", r.experiment.clone()),
            ("seed", r.seed.to_string()),
            ("parameters", r.params.to_string()),
            ("took", format!("{:.3} s", r.took_ms as f64 / 1000.0)),
        ],
    );
    p.finish()
}

/// A plot's label, its corrected histogram if any, and its raw one.
type Plot<'a> = (&'a str, Option<&'a Histogram<u64>>, &'a Histogram<u64>);

/// One plot per label. An open-model experiment records `L` from each
/// request's intended send time and `L (service time)` from its actual
/// send: those two are the corrected and raw curves of one plot. Any other
/// label is measured from the actual send: raw only.
fn pairs(l: &Latencies) -> Vec<Plot<'_>> {
    const SERVICE: &str = " (service time)";
    l.0.iter()
        .filter_map(|(label, h)| match label.strip_suffix(SERVICE) {
            Some(base) if l.0.contains_key(base) => None,
            _ => Some(match l.0.get(&format!("{label}{SERVICE}")) {
                Some(raw) => (label.as_str(), Some(h), raw),
                None => (label.as_str(), None, h),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Invariant;

    #[test]
    fn the_page_shows_each_invariant_outcome_and_latency_with_its_json_pointer() {
        let mut r = Report::new("race", 7, serde_json::json!({"n": 2}));
        r.push(Invariant::equal("exactly one winner", 1, 2, "statuses"));
        r.outcomes.add("decrement", "200");
        r.outcomes.add("decrement", "412");
        r.latencies
            .record("decrement", std::time::Duration::from_millis(3));
        r.conclude(std::time::Duration::from_millis(10));
        let about = About::now("dev");
        let html = page(&r, &about).unwrap();
        assert!(html.contains("exactly one winner"));
        assert!(html.contains("class=\"verdict fail\""));
        assert!(html.contains("data-json=\"/outcomes/decrement/412\">1<"));
        let p99 = summarize(r.latencies.get("decrement").unwrap()).p99_ms;
        assert!(html.contains(&format!(
            "data-json=\"/latencies/decrement/p99_ms\">{p99:.3}<"
        )));
        assert!(html.contains("data-chart=\"percentile\""));
        assert!(html.contains("data-chart=\"timeline\""));
        assert!(html.contains("\"seed\":7"));
    }

    #[test]
    fn an_open_model_label_and_its_service_time_share_one_plot() {
        let mut l = Latencies::default();
        let ms = std::time::Duration::from_millis;
        l.record("accepted", ms(9));
        l.record("accepted (service time)", ms(2));
        l.record("rejected", ms(1));
        l.record("probe (service time)", ms(1));
        let p: Vec<(&str, bool)> = pairs(&l)
            .iter()
            .map(|(n, c, _)| (*n, c.is_some()))
            .collect();
        assert_eq!(
            p,
            [
                ("accepted", true),
                ("probe (service time)", false),
                ("rejected", false)
            ]
        );
        let (_, corrected, raw) = pairs(&l)[0];
        assert!(corrected.unwrap().max() > raw.max());
    }
}
