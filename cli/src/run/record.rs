//! Recording what happened: exact outcome counts and HDR latency histograms,
//! and beside them per-second buckets (answers, errors, latencies, see
//! [`super::timeline`]) for the HTML report's timeline. Workers record into their own copies and merge,
//! so nothing contends on a lock in the hot path.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

use super::hdr::{self, Summary, summarize};
use super::timeline::Seconds;

/// Exact count of each outcome, per label (e.g. `decrement` → {`200`: 1, `412`: 49}),
/// and the answers and errors of each wall-clock second (the timeline).
#[derive(Debug, Clone, Default)]
pub struct Outcomes(pub BTreeMap<String, BTreeMap<String, u64>>, pub Seconds);

impl Serialize for Outcomes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Outcomes {
    pub fn add(&mut self, label: &str, outcome: impl Into<String>) {
        self.add_at(label, outcome, Instant::now());
    }

    /// `add` for an answer that came at `answered` (recorded later, e.g.
    /// drained from a channel): the timeline puts it in its own second.
    pub fn add_at(&mut self, label: &str, outcome: impl Into<String>, answered: Instant) {
        let outcome = outcome.into();
        self.1.count(unix_second(answered), is_error(&outcome));
        *self
            .0
            .entry(label.into())
            .or_default()
            .entry(outcome)
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
        self.1.merge(&other.1);
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

/// An outcome the timeline counts as an error: a 5xx, or no answer at all.
pub fn is_error(outcome: &str) -> bool {
    outcome.starts_with("error")
        || outcome
            .get(..3)
            .and_then(|s| s.parse::<u16>().ok())
            .is_some_and(|c| (500..600).contains(&c))
}

/// The wall-clock second `at` fell in.
fn unix_second(at: Instant) -> u64 {
    let wall = SystemTime::now()
        .checked_sub(Instant::now().saturating_duration_since(at))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Latency histograms in microseconds, 1 µs to 1 h, 3 significant digits,
/// and every wall-clock second's latencies (the timeline's p99).
#[derive(Debug, Clone, Default)]
pub struct Latencies(pub BTreeMap<String, Histogram<u64>>, pub Seconds);

impl Latencies {
    pub fn record(&mut self, label: &str, d: Duration) {
        self.record_at(label, d, Instant::now());
    }

    /// `record` for an answer that came at `answered` (recorded later).
    pub fn record_at(&mut self, label: &str, d: Duration, answered: Instant) {
        let us = hdr::micros(d);
        self.1.latency(unix_second(answered), us, None);
        self.0
            .entry(label.into())
            .or_insert_with(hdr::histogram)
            .record(us)
            .expect("clamped into bounds");
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.1.merge(&other.1);
        for (label, h) in &other.0 {
            self.0
                .entry(label.clone())
                .or_insert_with(hdr::histogram)
                .add(h)
                .expect("same bounds");
        }
    }

    pub fn get(&self, label: &str) -> Option<&Histogram<u64>> {
        self.0.get(label)
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
    fn the_timeline_counts_5xx_and_unanswered_as_errors_not_4xx() {
        assert!(is_error("503"));
        assert!(is_error("error: timeout"));
        assert!(!is_error("412"));
        assert!(!is_error("201 replayed"));
        let mut o = Outcomes::default();
        o.add("x", "200");
        o.add("x", "500");
        let t = o.1.timeline(o.1.first().unwrap());
        let (r, e): (u64, u64) = t
            .seconds
            .iter()
            .fold((0, 0), |(r, e), p| (r + p.requests, e + p.errors));
        assert_eq!((r, e), (2, 1));
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::json!({"x": {"200": 1, "500": 1}})
        );
    }

    #[test]
    fn an_answer_recorded_later_counts_in_the_second_it_came() {
        let now = Instant::now();
        let (mut o, mut l) = (Outcomes::default(), Latencies::default());
        o.add_at("x", "200", now - Duration::from_secs(5));
        o.add_at("x", "200", now);
        l.record_at("x", Duration::from_millis(1), now - Duration::from_secs(5));
        let mut all = o.1.clone();
        all.merge(&l.1);
        let t = all.timeline(all.first().unwrap());
        assert!(t.seconds.len() >= 5 && t.seconds.len() <= 7, "{t:?}");
        assert_eq!(t.seconds[0].requests, 1);
        assert!(t.seconds[0].p99_ms.is_some());
        assert_eq!(t.seconds.last().unwrap().requests, 1);
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
