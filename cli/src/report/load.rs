//! Rendering a load report: per-transaction counts, rates and errors; both
//! latency distributions with a compact histogram; goose's figures beside
//! ours; the thresholds and invariants tables; the verdict.

use std::fmt::Write;

use crate::faults::outcome::FaultOutcome;
use crate::load::summary::LoadReport;
use crate::run::{Invariant, Verdict};
use crate::run::{Summary, Timeline};

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
    out.push_str(&timeline(&r.run.timeline, &r.run.faults));
    if !r.thresholds.is_empty() {
        let _ = writeln!(out, "{}", judged("threshold", &r.thresholds));
    }
    if !r.invariants.is_empty() {
        let _ = writeln!(out, "{}", judged("invariant", &r.invariants));
    }
    for (k, v) in &r.measurements {
        let _ = writeln!(out, "{k}: {v}");
    }
    if let Some(line) = cleanup_line(r) {
        let _ = writeln!(out, "{line}");
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

/// The clean-up's own line, once it ran.
pub fn cleanup_line(r: &LoadReport) -> Option<String> {
    r.run
        .cleanup
        .as_ref()
        .map(|c| format!("clean-up: {}", c.detail))
}

/// Rows at most in the terminal's timeline; longer runs group seconds.
const TIMELINE_ROWS: usize = 90;

/// The whole load second by second (grouped when long): answers, errors,
/// p99, a bar, and where each fault started (▼) and ended (▲); then one
/// line per fault with its outcome.
pub fn timeline(t: &Timeline, faults: &[FaultOutcome]) -> String {
    let mut out = String::new();
    let s = &t.seconds;
    if s.is_empty() {
        return out;
    }
    let k = s.len().div_ceil(TIMELINE_ROWS);
    let rows: Vec<(u64, u64, u64, Option<f64>)> = s
        .chunks(k)
        .map(|c| {
            let p99 = c.iter().filter_map(|p| p.p99_ms).reduce(f64::max);
            (
                c[0].t_s,
                c.iter().map(|p| p.requests).sum(),
                c.iter().map(|p| p.errors).sum(),
                p99,
            )
        })
        .collect();
    let top = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let unit = if k == 1 {
        "per second".to_owned()
    } else {
        format!("per {k} seconds; p99 = the highest second's")
    };
    let _ = writeln!(out, "timeline ({unit}; ▼ fault injected, ▲ over):");
    let _ = writeln!(
        out,
        "{:>6}  {:>8}  {:>6}  {:>9}  {:<20}  faults",
        "t", "answers", "errors", "p99 ms", ""
    );
    for (t0, n, e, p99) in &rows {
        let span = *t0 as f64..(*t0 + k as u64) as f64;
        let mut marks = Vec::new();
        for f in faults {
            let start = f.start_s.unwrap_or(f.planned_s);
            if span.contains(&start) {
                let v = if f.outcome == crate::faults::outcome::Status::Injected {
                    "▼"
                } else {
                    "✗"
                };
                marks.push(format!("{v} {}", f.label));
            }
            if f.end_s.is_some_and(|e| span.contains(&e)) {
                marks.push(format!("▲ {}", f.label));
            }
        }
        let width = (20 * n).div_ceil(top) as usize;
        let _ = writeln!(
            out,
            "{:>5}s  {n:>8}  {e:>6}  {:>9}  {:<20}  {}",
            t0,
            p99.map_or("-".into(), |v| format!("{v:.1}")),
            "█".repeat(width),
            marks.join(", ")
        );
    }
    if !faults.is_empty() {
        let _ = writeln!(out, "faults:");
        for f in faults {
            let _ = writeln!(out, "  {}", f.line());
        }
    }
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
            run: Default::default(),
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

    /// A report whose one transaction answered 10 requests a second for
    /// 6 s, all errors in second 3, with `faults`.
    fn fault_run(faults: Vec<FaultOutcome>) -> LoadReport {
        use crate::load::recorder::TxTally;
        let mut tally = TxTally::default();
        for t in 0..6u64 {
            for i in 0..10u64 {
                tally.seconds.count(t, t == 3);
                tally.seconds.latency(t, 1_000 + i * 100 + t * 10_000, None);
                tally.raw.record(1_000).unwrap();
                tally.corrected.record(1_000).unwrap();
            }
        }
        let tx = TxReport::new("shop/checkout".into(), tally, 6.0);
        let txs = vec![tx];
        let run = crate::load::summary::RunLog::new(&txs, faults.clone());
        let mut r = LoadReport {
            profile: "checkout-faults".into(),
            description: String::new(),
            model: "closed".into(),
            target: "through the BFF".into(),
            seed: Some(7),
            run_tag: "a1b2c3d4".into(),
            verdict: Verdict::Unknown,
            window_s: 6.0,
            corrected_means: String::new(),
            transactions: txs,
            thresholds: vec![],
            invariants: vec![crate::faults::outcome::invariant(&faults)],
            measurements: vec![],
            took_ms: 6000,
            run,
        };
        r.conclude();
        r
    }

    fn fault(label: &str, start: f64, end: f64, ok: bool, detail: &str) -> FaultOutcome {
        use crate::faults::outcome::Status;
        FaultOutcome {
            label: label.into(),
            planned_s: start,
            start_s: Some(start),
            end_s: Some(end),
            outcome: if ok { Status::Injected } else { Status::Failed },
            detail: detail.into(),
        }
    }

    #[test]
    fn a_fault_run_prints_its_timeline_with_each_fault_marked_and_a_failed_one_on_its_own_line() {
        let r = fault_run(vec![
            fault("kill payments", 2.4, 4.7, true, "SIGKILL; started again"),
            fault(
                "restart redis",
                3.1,
                3.9,
                false,
                "stopped, but the start failed: port taken",
            ),
        ]);
        let text = render(&r);
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .and_then(|w| w.strip_suffix('s'))
                    .is_some_and(|n| n.parse::<u64>().is_ok())
            })
            .collect();
        assert_eq!(rows.len(), 6, "one row per second:\n{text}");
        assert!(rows[2].contains("▼ kill payments"), "{text}");
        assert!(
            rows[3].contains("✗ restart redis") && rows[3].contains("▲ restart redis"),
            "{text}"
        );
        assert!(
            rows[3].contains("    10  "),
            "second 3: its 10 errors\n{text}"
        );
        assert!(rows[4].contains("▲ kill payments"), "{text}");
        assert!(
            text.contains("FAILED    restart redis: stopped, but the start failed: port taken"),
            "{text}"
        );
        assert!(text.contains("injected  kill payments: SIGKILL"), "{text}");
        assert_eq!(
            r.verdict,
            Verdict::Fail,
            "a fault not injected fails the run"
        );
        assert_eq!(r.run.timeline.marks.len(), 2);
        assert!(r.run.timeline.marks[1].label.contains("FAILED"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["faults"][1]["outcome"], "failed");
        assert_eq!(json["timeline"]["seconds"].as_array().unwrap().len(), 6);
        assert_eq!(json["timeline"]["marks"][0]["t_s"], 2.4);
    }

    /// Issue 12, defect d: a clean-up that fails after the checks used to
    /// throw the whole report away. Now the report stands, the clean-up is
    /// its own line, and a passing run exits 3 for it.
    #[test]
    fn a_failed_clean_up_keeps_the_report_is_its_own_line_and_exits_3() {
        let mut r = fault_run(vec![fault("kill payments", 2.0, 3.0, true, "ok")]);
        assert_eq!((r.verdict, r.exit_code()), (Verdict::Pass, crate::exit::OK));
        r.cleaned_up(Err(anyhow::anyhow!(
            "POST /reservations/x/release: 504 Gateway Timeout"
        )));
        assert_eq!(r.verdict, Verdict::Pass, "the judged verdict stands");
        assert_eq!(r.exit_code(), crate::exit::ERROR);
        assert_eq!(r.invariants.len(), 1);
        let text = render(&r);
        assert!(
            text.contains("clean-up: FAILED: cannot release the run's reservations"),
            "{text}"
        );
        assert!(text.contains("504 Gateway Timeout"), "{text}");
        assert!(text.contains("verdict: PASS"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["cleanup"]["ok"], false);
        r.cleaned_up(Ok(3));
        assert_eq!(r.exit_code(), crate::exit::OK);
        assert!(render(&r).contains("clean-up: released 3 reservations"));
    }
}
