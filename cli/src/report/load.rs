//! Rendering a load report: per-transaction counts, rates and errors; both
//! latency distributions with a compact histogram; goose's figures beside
//! ours; the thresholds and invariants tables; the verdict.

use std::fmt::Write;

use crate::experiments::record::Summary;
use crate::experiments::{Invariant, Verdict};
use crate::load::summary::LoadReport;

use super::experiment::bars;

pub fn render(r: &LoadReport) -> String {
    let mut out = String::new();
    let (requests, errors, rps) = r.totals();
    let _ = writeln!(out, "load `{}`: {}", r.profile, r.description);
    let _ = writeln!(out, "{}  {}", r.model, r.target);
    let _ = writeln!(
        out,
        "{}run {}: {requests} requests in {:.2}s ({rps:.1} req/s), {errors} errors",
        r.seed.map(|s| format!("seed {s}, ")).unwrap_or_default(),
        r.run_tag,
        r.window_s
    );
    out.push_str(&tables(r));
    if !r.thresholds.is_empty() {
        let _ = writeln!(out, "{}", judged("threshold", &r.thresholds));
    }
    if !r.invariants.is_empty() {
        let _ = writeln!(out, "{}", judged("invariant", &r.invariants));
    }
    for (k, v) in &r.measurements {
        let _ = writeln!(out, "{k}: {v}");
    }
    let all: Vec<&Invariant> = r.thresholds.iter().chain(&r.invariants).collect();
    let passed = all.iter().filter(|i| i.verdict == Verdict::Pass).count();
    let _ = writeln!(
        out,
        "verdict: {}  ({passed}/{} thresholds and invariants passed, {:.2}s)",
        verdict_label(r.verdict),
        all.len(),
        r.took_ms as f64 / 1000.0
    );
    out
}

/// The transactions and latency tables (also what `report merge` prints).
pub fn tables(r: &LoadReport) -> String {
    let mut out = String::new();
    let mut t = super::table(&[
        "transaction",
        "requests",
        "req/s",
        "errors",
        "outcomes (exact counts)",
    ]);
    for tx in &r.transactions {
        t.add_row(vec![
            tx.name.clone(),
            tx.requests.to_string(),
            format!("{:.1}", tx.rps),
            format!("{} ({:.2} %)", tx.errors, tx.error_pct),
            tx.outcomes
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    let _ = writeln!(out, "{t}");
    let mut t = super::table(&[
        "latency (ms)",
        "",
        "count",
        "min",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "distribution",
    ]);
    for tx in &r.transactions {
        for (kind, s, h) in [
            ("corrected", &tx.corrected, &tx.tally.corrected),
            ("raw", &tx.raw, &tx.tally.raw),
        ] {
            if let Some(s) = s {
                t.add_row(row(&tx.name, kind, s, bars(h)));
            }
        }
    }
    let _ = writeln!(out, "{t}");
    if !r.corrected_means.is_empty() {
        let _ = writeln!(out, "corrected = {}", r.corrected_means);
    }
    if r.transactions.iter().any(|t| t.goose.is_some()) {
        let mut t = super::table(&[
            "cross-check",
            "goose requests",
            "goose failures",
            "goose backfilled",
            "goose p50",
            "goose p99",
            "goose p99 (CO)",
            "ours p50",
            "ours p99",
        ]);
        let f = |v: f64| format!("{v:.2}");
        for tx in &r.transactions {
            let Some(g) = &tx.goose else { continue };
            let ours = tx.raw.as_ref();
            t.add_row(vec![
                tx.name.clone(),
                g.requests.to_string(),
                g.failures.map_or("?".into(), |f| f.to_string()),
                g.backfilled.to_string(),
                f(g.p50_ms),
                f(g.p99_ms),
                g.co_p99_ms.map_or("no backfill".into(), f),
                ours.map_or("-".into(), |s| f(s.p50_ms)),
                ours.map_or("-".into(), |s| f(s.p99_ms)),
            ]);
        }
        let _ = writeln!(
            out,
            "{t}\n(goose times to the first byte in its own buckets; ours to the last byte, HDR 3 significant digits)"
        );
    }
    out
}

fn row(name: &str, kind: &str, s: &Summary, dist: String) -> Vec<String> {
    let f = |v: f64| format!("{v:.3}");
    vec![
        name.into(),
        kind.into(),
        s.count.to_string(),
        f(s.min_ms),
        f(s.p50_ms),
        f(s.p90_ms),
        f(s.p99_ms),
        f(s.p999_ms),
        f(s.max_ms),
        dist,
    ]
}

pub fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Unknown => "UNKNOWN",
    }
}

fn judged(what: &str, v: &[Invariant]) -> comfy_table::Table {
    let mut t = super::table(&[what, "verdict", "expected", "observed", "evidence"]);
    for i in v {
        t.add_row(vec![
            i.name.clone(),
            verdict_label(i.verdict).into(),
            i.expected.clone(),
            i.observed.clone(),
            i.evidence.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::recorder::{Recorder, Sample};
    use crate::load::summary::TxReport;

    #[test]
    fn the_report_shows_transactions_both_distributions_thresholds_and_the_verdict() {
        let rec = Recorder::new(1, 1);
        for i in 0..10u64 {
            rec.record(
                0,
                Sample {
                    tx: 0,
                    raw: Duration::from_millis(1 + i),
                    corrected: Some(Duration::from_millis(2 + i)),
                    outcome: "200",
                    ok: true,
                },
            );
        }
        let tx = TxReport::new("shop/product".into(), rec.finish().remove(0), 2.0);
        let mut r = LoadReport {
            profile: "smoke".into(),
            description: String::new(),
            model: "closed: 2 users".into(),
            target: "direct: catalog ×2".into(),
            seed: Some(7),
            run_tag: "a1b2c3d4".into(),
            verdict: Verdict::Unknown,
            window_s: 2.0,
            corrected_means: "from the intended send".into(),
            transactions: vec![tx],
            thresholds: vec![Invariant::check(
                "shop/product p99 ≤ 0.001 ms",
                false,
                "≤ 0.001 ms",
                "11 ms",
                "e",
            )],
            invariants: vec![Invariant::check(
                "recorded request count = goose's count",
                true,
                "x",
                "x",
                "e",
            )],
            measurements: vec![],
            took_ms: 2000,
        };
        r.conclude();
        let text = render(&r);
        for needle in [
            "load `smoke`",
            "shop/product",
            "200: 10",
            "corrected",
            "raw",
            "5.0",
            "p99 ≤ 0.001 ms",
            "recorded request count",
            "verdict: FAIL  (1/2",
        ] {
            assert!(text.contains(needle), "`{needle}` missing from\n{text}");
        }
    }
}
