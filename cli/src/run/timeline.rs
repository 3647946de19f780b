//! A run second by second: per-second buckets of answers, errors and
//! latencies ([`Seconds`]), and the [`Timeline`] the HTML report draws from
//! them, with the faults injected as [`Mark`]s.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::hdr;

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
        Self {
            requests: 0,
            errors: 0,
            raw: hdr::per_second(),
            corrected: hdr::per_second(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
