//! The one HDR histogram factory: every latency the CLI records (experiments,
//! load, the HTML report's tests) goes into a histogram made here, so any two
//! of them can be merged and their percentiles compared.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency recorded, in µs (1 h); anything slower is clamped.
pub const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in µs: 1 µs to 1 h, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static bounds")
}

/// A coarse, auto-resizing histogram (2 significant digits) for one second
/// of a timeline: enough for a p99 line, small enough to keep one per second
/// per worker.
pub fn per_second() -> Histogram<u64> {
    Histogram::new(2).expect("2 significant digits is valid")
}

/// `d` in µs, clamped into [`histogram`]'s bounds.
pub fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_US)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_outside_the_bounds_are_clamped_into_them() {
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_secs(7200)), MAX_US);
        let mut h = histogram();
        h.record(micros(Duration::from_secs(7200))).unwrap();
        assert!(h.record(MAX_US * 4).is_err(), "the bounds are real");
    }

    #[test]
    fn a_summary_is_in_milliseconds() {
        let mut h = histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1000).unwrap();
        }
        let s = summarize(&h);
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
    }
}
