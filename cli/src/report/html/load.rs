//! A load run's page (also `report html` over merged interval logs):
//! verdict, thresholds and invariants, per transaction its exact counts,
//! outcomes, both latency distributions and their percentile plot, the
//! timeline of the whole load, the run.

use std::fmt::Write as _;

use anyhow::Result;

use super::{About, Page, count, esc, num, percentile_spec, ptr};
use crate::load::summary::LoadReport;
use crate::run::Seconds;

pub fn page(r: &LoadReport, about: &About) -> Result<String> {
    let mut p = Page::new(
        format!("storefront load {}", r.profile),
        serde_json::to_value(r)?,
    );
    let (requests, errors, rps) = r.totals();
    let judged = if r.thresholds.is_empty() && r.invariants.is_empty() {
        " · nothing judged (no threshold or invariant ran)"
    } else {
        ""
    };
    p.header(
        r.verdict,
        &format!(
            "{requests} requests over {:.2} s ({rps:.1} req/s), {errors} errors{judged}",
            r.window_s
        ),
    );
    p.invariants("Thresholds", &r.thresholds, "/thresholds");
    p.invariants("Invariants", &r.invariants, "/invariants");
    transactions(&mut p, r);
    latency(&mut p, r);
    // The whole load second by second: every transaction's seconds merged.
    let mut all = Seconds::default();
    for t in &r.transactions {
        all.merge(&t.tally.seconds);
    }
    let mut timeline = all.timeline(0);
    timeline.marks = r.run.marks();
    if timeline.seconds.is_empty() && requests > 0 {
        p.push("<h2>Timeline</h2><p class=\"sub\">No per-second data: interval logs hold one interval per histogram, spanning the whole load.</p>");
    }
    p.timeline(
        "all transactions, per second: requests, errors, p99",
        &timeline,
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
            ("load profile", r.profile.clone()),
            ("description", r.description.clone()),
            ("model", r.model.clone()),
            ("target", r.target.clone()),
            ("seed", r.seed.map_or("-".into(), |s| s.to_string())),
            ("run tag", r.run_tag.clone()),
            ("corrected means", r.corrected_means.clone()),
            ("took", format!("{:.3} s", r.took_ms as f64 / 1000.0)),
        ],
    );
    p.finish()
}

fn transactions(p: &mut Page, r: &LoadReport) {
    let mut h = String::from(
        "<h2>Transactions (exact counts)</h2><table><tr><th>transaction</th><th class=\"n\">requests</th><th class=\"n\">errors</th><th class=\"n\">error %</th><th class=\"n\">req/s</th><th>outcomes</th></tr>",
    );
    for (i, t) in r.transactions.iter().enumerate() {
        let b = format!("/transactions/{i}");
        let outcomes: Vec<String> = t
            .outcomes
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}: <span data-json=\"{b}/outcomes/{}\">{v}</span>",
                    esc(k),
                    ptr(k)
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td>{}{}{}{}<td>{}</td></tr>",
            esc(&t.name),
            count(&format!("{b}/requests"), t.requests),
            count(&format!("{b}/errors"), t.errors),
            num(&format!("{b}/error_pct"), t.error_pct, 3),
            num(&format!("{b}/rps"), t.rps, 2),
            outcomes.join(", ")
        );
    }
    h.push_str("</table>");
    p.push(&h);
}

fn latency(p: &mut Page, r: &LoadReport) {
    let mut h = String::from("<h2>Latency (ms)</h2><table><tr><th>transaction</th><th></th>");
    for c in ["count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"] {
        let _ = write!(h, "<th class=\"n\">{c}</th>");
    }
    h.push_str("</tr>");
    for (i, t) in r.transactions.iter().enumerate() {
        for (kind, s) in [("corrected", &t.corrected), ("raw", &t.raw)] {
            let Some(s) = s else { continue };
            let b = format!("/transactions/{i}/{kind}");
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{kind}</td>{}{}{}{}{}{}{}{}</tr>",
                esc(&t.name),
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
    }
    h.push_str("</table>");
    if !r.corrected_means.is_empty() {
        let _ = write!(
            h,
            "<p class=\"sub\">corrected: {}</p>",
            esc(&r.corrected_means)
        );
    }
    h.push_str("<div class=\"charts\">");
    p.push(&h);
    for t in &r.transactions {
        p.chart(
            "percentile",
            percentile_spec(
                &format!("{}: latency by percentile", t.name),
                Some(&t.tally.corrected),
                Some(&t.tally.raw),
            ),
        );
    }
    p.push("</div>");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::recorder::{Recorder, Sample};
    use crate::load::summary::TxReport;
    use crate::run::Verdict;

    #[test]
    fn the_page_shows_every_transaction_with_both_distributions_and_a_timeline() {
        let rec = Recorder::new(2, 2);
        for i in 0..200u64 {
            rec.record(
                i as usize,
                Sample {
                    tx: (i % 2) as usize,
                    raw: Duration::from_micros(500 + i * 13),
                    corrected: Some(Duration::from_micros(900 + i * 13)),
                    outcome: if i == 3 { "503" } else { "200" },
                    ok: i != 3,
                },
            );
        }
        let transactions = rec
            .finish()
            .into_iter()
            .enumerate()
            .map(|(i, t)| TxReport::new(format!("shop/t{i}"), t, 2.0))
            .collect();
        let r = LoadReport {
            profile: "smoke".into(),
            description: "d".into(),
            model: "open".into(),
            target: "direct".into(),
            seed: Some(3),
            run_tag: "abcd".into(),
            verdict: Verdict::Pass,
            window_s: 2.0,
            corrected_means: "intended send time".into(),
            transactions,
            thresholds: vec![],
            invariants: vec![],
            measurements: vec![],
            took_ms: 2000,
            run: Default::default(),
        };
        let html = page(&r, &About::now("dev")).unwrap();
        assert!(
            html.contains("data-json=\"/transactions/1/errors\">1<"),
            "one 503"
        );
        assert!(html.contains("data-json=\"/transactions/0/rps\">50.00<"));
        assert!(html.contains("data-json=\"/transactions/1/outcomes/503\">1<"));
        assert!(html.contains("data-json=\"/transactions/0/corrected/p99_ms\""));
        assert_eq!(html.matches("data-chart=\"percentile\"").count(), 2);
        assert!(html.contains("data-chart=\"timeline\""));
        assert!(html.contains("\"name\":\"corrected\""));
    }
}
