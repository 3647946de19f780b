//! Recording what happened: exact outcome counts and HDR latency histograms.
//! Workers record into their own copies and merge, so nothing contends on
//! a lock in the hot path.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

/// Exact count of each outcome, per label (e.g. `decrement` → {`200`: 1, `412`: 49}).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcomes(pub BTreeMap<String, BTreeMap<String, u64>>);

impl Outcomes {
    pub fn add(&mut self, label: &str, outcome: impl Into<String>) {
        *self
            .0
            .entry(label.into())
            .or_default()
            .entry(outcome.into())
            .or_default() += 1;
    }

    pub fn count(&self, label: &str, outcome: &str) -> u64 {
        self.0
            .get(label)
            .and_then(|m| m.get(outcome))
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self, label: &str) -> u64 {
        self.0.get(label).map_or(0, |m| m.values().sum())
    }

    /// Sum of outcomes for which `pred` holds.
    pub fn count_where(&self, label: &str, pred: impl Fn(&str) -> bool) -> u64 {
        self.0.get(label).map_or(0, |m| {
            m.iter().filter(|(k, _)| pred(k)).map(|(_, v)| v).sum()
        })
    }

    pub fn merge(&mut self, other: &Outcomes) {
        for (label, m) in &other.0 {
            for (k, v) in m {
                *self
                    .0
                    .entry(label.clone())
                    .or_default()
                    .entry(k.clone())
                    .or_default() += v;
            }
        }
    }

    /// `200: 1, 412: 49` for one label.
    pub fn summary(&self, label: &str) -> String {
        self.0
            .get(label)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "none".into())
    }
}

/// The outcome label of an HTTP attempt: the status code, or the error kind.
pub fn outcome_of(r: &Result<reqwest::StatusCode, reqwest::Error>) -> String {
    match r {
        Ok(s) => s.as_u16().to_string(),
        Err(e) if e.is_timeout() => "error: timeout".into(),
        Err(e) if e.is_connect() => "error: connect".into(),
        Err(_) => "error: other".into(),
    }
}

/// Latency histograms in microseconds, 1 µs to 1 h, 3 significant digits.
#[derive(Debug, Clone, Default)]
pub struct Latencies(pub BTreeMap<String, Histogram<u64>>);

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds")
}

impl Latencies {
    pub fn record(&mut self, label: &str, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
        self.0
            .entry(label.into())
            .or_insert_with(new_histogram)
            .record(us)
            .expect("clamped into bounds");
    }

    pub fn merge(&mut self, other: &Latencies) {
        for (label, h) in &other.0 {
            self.0
                .entry(label.clone())
                .or_insert_with(new_histogram)
                .add(h)
                .expect("same bounds");
        }
    }

    pub fn get(&self, label: &str) -> Option<&Histogram<u64>> {
        self.0.get(label)
    }
}

/// Summary of one histogram, in milliseconds, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

pub fn summarize(h: &Histogram<u64>) -> Summary {
    let ms = |us: u64| us as f64 / 1000.0;
    Summary {
        count: h.len(),
        min_ms: ms(h.min()),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    }
}

impl Serialize for Latencies {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m: BTreeMap<&String, Summary> = self.0.iter().map(|(k, h)| (k, summarize(h))).collect();
        m.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_count_exactly_and_merge() {
        let mut a = Outcomes::default();
        a.add("x", "200");
        a.add("x", "412");
        let mut b = Outcomes::default();
        b.add("x", "412");
        a.merge(&b);
        assert_eq!(a.count("x", "412"), 2);
        assert_eq!(a.total("x"), 3);
        assert_eq!(a.count_where("x", |s| s.starts_with('4')), 2);
        assert_eq!(a.summary("x"), "200: 1, 412: 2");
    }

    #[test]
    fn latencies_merge_and_summarize_in_ms() {
        let mut a = Latencies::default();
        for ms in 1..=100 {
            a.record("r", Duration::from_millis(ms));
        }
        let mut b = Latencies::default();
        b.record("r", Duration::from_secs(2));
        a.merge(&b);
        let s = summarize(a.get("r").unwrap());
        assert_eq!(s.count, 101);
        assert!((s.p50_ms - 51.0).abs() < 0.5, "{s:?}");
        assert!((s.max_ms - 2000.0).abs() < 2.0, "{s:?}");
    }
}
