//! The evidence: what each phase observed, from three places — the HTTP
//! statuses the run saw, the BFF's own per-upstream counters
//! (`GET /admin/breakers`, the same numbers as `bff_upstream_*` in its
//! /metrics), and the replica's own `http_requests_total` while it is
//! alive. A dead replica has no /metrics, so calls to it are counted on the
//! BFF's side; the checks say which.
//!
//! Breaker's evidence is read phase by phase while it acts (a counter's
//! change over one phase, the state after each read), not afterwards:
//! [`Evidence`] is what `act` hands the pure checks.

use std::time::Duration;

use anyhow::Result;

use crate::clients::bff_admin::Counters;
use crate::clients::metrics::{self, Page};
use crate::run::{Latencies, Outcomes};

/// What the phases observed, for the checks.
#[derive(Debug, Default)]
pub struct Evidence {
    /// Phase 0: client errors pinned to the target, and what its breaker
    /// counted meanwhile (nothing, if only upstream faults count).
    pub client_errors: Outcomes,
    pub client_phase: Counters,
    pub closed_after_client_errors: bool,
    /// Phase 1: reads until open, and the failures the BFF counted by then.
    pub reads_to_open: u64,
    pub failures_at_open: Option<u64>,
    /// Every read through the BFF (the background reader's, every phase,
    /// and phase 1's sequential ones), under [`super::plan::READS`] and
    /// per phase.
    pub reads: Outcomes,
    pub read_lat: Latencies,
    /// Phase 2: the pinned requests' statuses and latencies.
    pub pinned: Outcomes,
    pub pinned_lat: Latencies,
    pub pinned_bad_retry_after: u64,
    /// Phase 2: the replica's own count, and the BFF's admitted attempts.
    pub replica_served_delta: Option<f64>,
    pub open_phase: Counters,
    /// Phase 2 must end before the breaker's open time does; if it didn't,
    /// a probe may legitimately have been let through and nothing is judged.
    pub open_outlasted: bool,
    /// Phase 3: BFF counters while the replica was dead.
    pub dead_phase: Counters,
    pub dead_for: Duration,
    /// Phase 4: ready → closed, and the replica's own count afterwards.
    pub closed_after: Option<Duration>,
    pub recovery: Counters,
    pub served_after_recovery: Option<f64>,
    pub restarted_in: Option<Duration>,
}

/// Attempts that got past the breaker (sent, or stopped by chaos after it).
pub fn admitted(c: Counters) -> u64 {
    c.sent_calls + c.sent_probes + c.injected
}

/// A replica's own count of the requests it served (its /metrics, through
/// the one scrape helper).
pub async fn served_by(http: &reqwest::Client, base: &str) -> Result<f64> {
    Ok(served(&metrics::scrape(http, base).await?))
}

/// `http_requests_total` over every route but `/metrics` (reading the
/// counter must not move it).
pub fn served(page: &Page) -> f64 {
    page.counter("http_requests_total", |l| !l.is("route", "/metrics"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_serves_what_it_counts_except_its_own_scrapes() {
        let page = Page::parse(
            "# TYPE http_requests_total counter\n\
            http_requests_total{method=\"GET\",route=\"/products/{id}\",status=\"200\"} 7\n\
            http_requests_total{method=\"GET\",route=\"/products\",status=\"404\"} 2\n\
            http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 3\n\
            # TYPE http_requests_total_other counter\n\
            http_requests_total_other 100\n",
        )
        .unwrap();
        assert_eq!(served(&page), 9.0);
        assert_eq!(served(&Page::default()), 0.0);
    }

    #[test]
    fn admitted_counts_calls_probes_and_chaos_but_not_refusals() {
        let c = Counters {
            sent_calls: 1,
            sent_probes: 2,
            injected: 3,
            rejected: 50,
            failures: 9,
            ..Counters::default()
        };
        assert_eq!(admitted(c), 6);
    }
}
