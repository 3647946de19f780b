//! Rendering an experiment's report: invariants, outcomes, latency table and
//! a compact bar rendering of each latency distribution.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::run::summarize;
use crate::run::{Report, Verdict};

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "experiment `{}`  seed {}  params {}",
        r.experiment, r.seed, r.params
    );
    let mut t = super::table(&["invariant", "verdict", "expected", "observed", "evidence"]);
    for i in &r.invariants {
        t.add_row(vec![
            i.name.clone(),
            verdict(i.verdict).into(),
            i.expected.clone(),
            i.observed.clone(),
            i.evidence.clone(),
        ]);
    }
    let _ = writeln!(out, "{t}");
    if !r.outcomes.0.is_empty() {
        let mut t = super::table(&["requests", "outcomes (exact counts)"]);
        for label in r.outcomes.0.keys() {
            t.add_row(vec![label.clone(), r.outcomes.summary(label)]);
        }
        let _ = writeln!(out, "{t}");
    }
    if !r.latencies.0.is_empty() {
        let mut t = super::table(&[
            "latency (ms)",
            "count",
            "min",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "distribution",
        ]);
        for (label, h) in &r.latencies.0 {
            let s = summarize(h);
            let f = |v: f64| format!("{v:.2}");
            t.add_row(vec![
                label.clone(),
                s.count.to_string(),
                f(s.min_ms),
                f(s.p50_ms),
                f(s.p90_ms),
                f(s.p99_ms),
                f(s.p999_ms),
                f(s.max_ms),
                bars(h),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }
    for (k, v) in &r.measurements {
        let _ = writeln!(out, "{k}: {v}");
    }
    let passed = r
        .invariants
        .iter()
        .filter(|i| i.verdict == Verdict::Pass)
        .count();
    let _ = writeln!(
        out,
        "verdict: {}  ({passed}/{} invariants passed, {:.2}s)",
        verdict(r.verdict),
        r.invariants.len(),
        r.took_ms as f64 / 1000.0
    );
    out
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Unknown => "UNKNOWN",
    }
}

/// 16 log-spaced buckets from min to max, each drawn as one bar character
/// scaled to the fullest bucket; the label says the range.
pub fn bars(h: &Histogram<u64>) -> String {
    const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    const N: usize = 16;
    if h.is_empty() {
        return String::new();
    }
    let (lo, hi) = (h.min().max(1) as f64, h.max().max(1) as f64);
    let ratio = (hi / lo).max(1.000_001);
    let edge = |i: usize| lo * ratio.powf(i as f64 / N as f64);
    let mut counts = [0u64; N];
    for v in h.iter_recorded() {
        let x = v.value_iterated_to() as f64;
        let i = (((x / lo).ln() / ratio.ln()) * N as f64)
            .floor()
            .clamp(0.0, (N - 1) as f64) as usize;
        counts[i] += v.count_at_value();
    }
    let max = *counts.iter().max().unwrap_or(&1);
    let bar: String = counts
        .iter()
        .map(|&c| {
            if c == 0 {
                LEVELS[0]
            } else {
                LEVELS[1 + ((c as f64 / max as f64) * 7.0).round() as usize]
            }
        })
        .collect();
    format!(
        "{:.2}ms |{bar}| {:.2}ms",
        edge(0) / 1000.0,
        edge(N) / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Invariant;

    #[test]
    fn bars_span_min_to_max_and_mark_the_mode() {
        let mut h = crate::run::hdr::histogram();
        for _ in 0..100 {
            h.record(1_000).unwrap();
        }
        h.record(100_000).unwrap();
        let b = bars(&h);
        assert!(b.starts_with("1.00ms |█"), "{b}");
        assert!(b.contains("| 100."), "{b}");
    }

    #[test]
    fn report_shows_each_invariant_and_the_verdict() {
        let mut r = Report::new("race", 7, serde_json::json!({"n": 2}));
        r.push(Invariant::equal("exactly one winner", 1, 2, "statuses"));
        r.outcomes.add("decrement", "200");
        r.latencies
            .record("decrement", std::time::Duration::from_millis(3));
        r.conclude(std::time::Duration::from_millis(10));
        let text = render(&r);
        assert!(text.contains("exactly one winner"));
        assert!(text.contains("FAIL"));
        assert!(text.contains("200: 1"));
        assert!(text.contains("verdict: FAIL"));
    }
}
