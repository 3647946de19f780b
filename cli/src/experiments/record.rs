//! Recording what happened: exact outcome counts and HDR latency histograms,
//! and beside them per-second buckets (answers, errors, latencies) for the
//! HTML report's timeline. Workers record into their own copies and merge,
//! so nothing contends on a lock in the hot path.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

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

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds")
}

impl Latencies {
    pub fn record(&mut self, label: &str, d: Duration) {
        self.record_at(label, d, Instant::now());
    }

    /// `record` for an answer that came at `answered` (recorded later).
    pub fn record_at(&mut self, label: &str, d: Duration, answered: Instant) {
        let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
        self.1.latency(unix_second(answered), us, None);
        self.0
            .entry(label.into())
            .or_insert_with(new_histogram)
            .record(us)
            .expect("clamped into bounds");
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.1.merge(&other.1);
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

/// One second's answers, errors and latencies. Its histograms keep 2
/// significant digits and grow only as far as the values recorded: enough
/// for a p99 line, small enough to keep one per second per worker.
#[derive(Debug, Clone)]
pub struct Second {
    pub requests: u64,
    pub errors: u64,
    pub raw: Histogram<u64>,
    pub corrected: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        let h = || Histogram::new(2).expect("2 significant digits is valid");
        Self {
            requests: 0,
            errors: 0,
            raw: h(),
            corrected: h(),
        }
    }
}

/// Per-second buckets keyed by a whole second (since the Unix epoch for
/// experiments, since the load began for `load`).
#[derive(Debug, Clone, Default)]
pub struct Seconds(pub BTreeMap<u64, Second>);

impl Seconds {
    /// One answer (or failed attempt) in second `t`.
    pub fn count(&mut self, t: u64, error: bool) {
        let s = self.0.entry(t).or_default();
        s.requests += 1;
        s.errors += u64::from(error);
    }

    /// One latency (µs) in second `t`, and its corrected value if any.
    pub fn latency(&mut self, t: u64, raw_us: u64, corrected_us: Option<u64>) {
        let s = self.0.entry(t).or_default();
        let _ = s.raw.record(raw_us.max(1));
        if let Some(c) = corrected_us {
            let _ = s.corrected.record(c.max(1));
        }
    }

    pub fn merge(&mut self, o: &Seconds) {
        for (t, b) in &o.0 {
            let s = self.0.entry(*t).or_default();
            s.requests += b.requests;
            s.errors += b.errors;
            // Auto-resizing histograms: adding never runs out of range.
            let _ = s.raw.add(&b.raw);
            let _ = s.corrected.add(&b.corrected);
        }
    }

    /// The timeline with seconds counted from `origin`; every second from
    /// the first to the last is present (a silent second shows as zero).
    pub fn timeline(&self, origin: u64) -> Timeline {
        let (Some(first), Some(last)) = (self.0.keys().next(), self.0.keys().next_back()) else {
            return Timeline::default();
        };
        let p99 =
            |h: &Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1000.0);
        let seconds = (*first..=*last)
            .map(|t| {
                let s = self.0.get(&t);
                SecondPoint {
                    t_s: t.saturating_sub(origin),
                    requests: s.map_or(0, |s| s.requests),
                    errors: s.map_or(0, |s| s.errors),
                    p99_ms: s.and_then(|s| p99(&s.raw)),
                    p99_corrected_ms: s.and_then(|s| p99(&s.corrected)),
                }
            })
            .collect();
        Timeline {
            seconds,
            marks: Vec::new(),
        }
    }

    pub fn first(&self) -> Option<u64> {
        self.0.keys().next().copied()
    }
}

/// A run second by second: what the HTML report's timeline draws.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Timeline {
    pub seconds: Vec<SecondPoint>,
    /// Faults injected during the run, drawn as markers over the timeline
    /// (none yet: fault schedules fill them).
    pub marks: Vec<Mark>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecondPoint {
    /// Seconds since the run's first answer (load: since the load began).
    pub t_s: u64,
    /// Answers (and attempts that got none) in this second.
    pub requests: u64,
    /// Of those, errors: a 5xx or no answer (load: outside `success`).
    pub errors: u64,
    /// p99 latency of the requests answered in this second.
    pub p99_ms: Option<f64>,
    /// The same, corrected for coordinated omission (open model only).
    pub p99_corrected_ms: Option<f64>,
}

/// A fault on the timeline: from `t_s` (until `until_s`, if it lasted).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    pub t_s: f64,
    pub until_s: Option<f64>,
    pub label: String,
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
    fn seconds_fill_the_gaps_and_count_errors_and_p99_per_second() {
        let mut s = Seconds::default();
        for i in 0..100u64 {
            s.count(1_000, i == 0);
            s.latency(1_000, 1_000 + i * 10, None);
        }
        s.count(1_003, true);
        let mut other = Seconds::default();
        other.latency(1_003, 5_000, Some(9_000));
        s.merge(&other);
        let t = s.timeline(1_000);
        let at: Vec<u64> = t.seconds.iter().map(|p| p.t_s).collect();
        assert_eq!(at, [0, 1, 2, 3]);
        assert_eq!((t.seconds[0].requests, t.seconds[0].errors), (100, 1));
        let p99 = t.seconds[0].p99_ms.unwrap();
        assert!((p99 - 1.98).abs() < 0.02, "{p99}");
        assert_eq!(t.seconds[1].requests, 0);
        assert_eq!(t.seconds[1].p99_ms, None);
        assert_eq!((t.seconds[3].requests, t.seconds[3].errors), (1, 1));
        assert!((t.seconds[3].p99_corrected_ms.unwrap() - 9.0).abs() < 0.1);
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
