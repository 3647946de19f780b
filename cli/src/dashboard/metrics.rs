//! What the page shows from one instance's `/metrics`: its request and 5xx
//! counts (the probes the dashboard itself sends not counted), its latency
//! buckets, and a few gauges; and per-second rates and percentiles from two
//! scrapes. Pure functions of the parsed pages ([`crate::clients::metrics`]),
//! tested below.

use crate::clients::metrics::{Labels, Page};

/// Routes that are the lab's own probing (the dashboard reads the BFF's
/// admin API every tick), not traffic.
fn traffic(l: Labels<'_>) -> bool {
    !["/metrics", "/ready", "/health"]
        .iter()
        .any(|r| l.is("route", r))
        && !l.get("route").is_some_and(|r| r.starts_with("/admin/"))
}

/// The figures of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub requests: f64,
    pub errors: f64,
    /// `(le seconds, cumulative count)`, ascending, summed over routes.
    pub buckets: Vec<(f64, f64)>,
    /// identity: seconds left on the Postgres lease.
    pub lease_ttl_s: Option<f64>,
    /// identity: credential rotations so far.
    pub rotations: Option<f64>,
    /// Outbox rows not yet published, and the oldest one's age.
    pub outbox_depth: Option<f64>,
    pub outbox_oldest_s: Option<f64>,
    /// RabbitMQ queues this instance reads the depth of (checkout and
    /// payments ask the broker with a passive declare): `queue → (ready,
    /// dead-lettered)`.
    pub queues: std::collections::BTreeMap<String, (f64, f64)>,
}

/// The page's figures.
pub fn figures(page: &Page) -> Scrape {
    Scrape {
        requests: page.counter("http_requests_total", traffic),
        errors: page.counter("http_requests_total", |l| {
            traffic(l) && l.get("status").is_some_and(|s| s.starts_with('5'))
        }),
        buckets: page.histogram("http_request_duration_seconds", traffic),
        lease_ttl_s: page.gauge("identity_db_lease_ttl_seconds"),
        rotations: page.gauge("identity_db_credential_rotations_total"),
        outbox_depth: page.gauge("outbox_depth"),
        outbox_oldest_s: page.gauge("outbox_oldest_pending_age_seconds"),
        queues: {
            let mut q = std::collections::BTreeMap::new();
            for (name, n) in page.by_label("amqp_queue_messages", "queue") {
                q.entry(name).or_insert((0.0, 0.0)).0 = n;
            }
            for (name, n) in page.by_label("amqp_queue_dead_letters", "queue") {
                q.entry(name).or_insert((0.0, 0.0)).1 = n;
            }
            q
        },
    }
}

/// One instance over one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Rates {
    /// Requests in the interval (not per second: the page's chart counts them).
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub err_rps: f64,
    /// Upper bound of the bucket holding the quantile, ms; None without requests.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Rates between two scrapes `secs` apart. A restarted instance (counters
/// went down) counts from zero.
pub fn rates(before: &Scrape, now: &Scrape, secs: f64) -> Rates {
    let restarted = now.requests < before.requests;
    let base = |b: f64| if restarted { 0.0 } else { b };
    let requests = (now.requests - base(before.requests)).max(0.0);
    let errors = (now.errors - base(before.errors)).max(0.0);
    let diff: Vec<(f64, f64)> = now
        .buckets
        .iter()
        .map(|(le, n)| {
            let was = before
                .buckets
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |x| base(x.1));
            (*le, (n - was).max(0.0))
        })
        .collect();
    let secs = secs.max(1e-3);
    Rates {
        requests: requests.round() as u64,
        errors: errors.round() as u64,
        rps: requests / secs,
        err_rps: errors / secs,
        p50_ms: quantile_ms(&diff, 0.50),
        p99_ms: quantile_ms(&diff, 0.99),
    }
}

/// The upper bound (ms) of the first bucket whose cumulative count reaches
/// `q` of the total; the last finite bound when only +Inf reaches it.
pub fn quantile_ms(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let want = (q * total).ceil().max(1.0);
    let last_finite = buckets
        .iter()
        .rev()
        .find(|(le, _)| le.is_finite())
        .map(|b| b.0);
    buckets
        .iter()
        .find(|(_, n)| *n >= want)
        .map(|(le, _)| {
            if le.is_finite() {
                *le
            } else {
                last_finite.unwrap_or(0.0)
            }
        })
        .map(|s| s * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(page: &str) -> Scrape {
        figures(&Page::parse(page).expect("a text-format page"))
    }

    const PAGE: &str = r#"# TYPE http_requests_total counter
http_requests_total{method="GET",route="/products",status="200"} 90
http_requests_total{method="GET",route="/products/{id}",status="503"} 10
http_requests_total{method="GET",route="/ready",status="200"} 500
http_requests_total{method="GET",route="/metrics",status="200"} 70
http_requests_total{method="GET",route="/admin/breakers",status="200"} 33
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{method="GET",route="/products",status="200",le="0.005"} 50
http_request_duration_seconds_bucket{method="GET",route="/products",status="200",le="0.05"} 90
http_request_duration_seconds_bucket{method="GET",route="/products",status="200",le="+Inf"} 90
http_request_duration_seconds_sum{method="GET",route="/products",status="200"} 0.9
http_request_duration_seconds_count{method="GET",route="/products",status="200"} 90
http_request_duration_seconds_bucket{method="GET",route="/products/{id}",status="503",le="0.005"} 0
http_request_duration_seconds_bucket{method="GET",route="/products/{id}",status="503",le="0.05"} 9
http_request_duration_seconds_bucket{method="GET",route="/products/{id}",status="503",le="+Inf"} 10
http_request_duration_seconds_sum{method="GET",route="/products/{id}",status="503"} 0.2
http_request_duration_seconds_count{method="GET",route="/products/{id}",status="503"} 10
http_request_duration_seconds_bucket{method="GET",route="/ready",status="200",le="0.005"} 500
http_request_duration_seconds_bucket{method="GET",route="/ready",status="200",le="0.05"} 500
http_request_duration_seconds_bucket{method="GET",route="/ready",status="200",le="+Inf"} 500
http_request_duration_seconds_sum{method="GET",route="/ready",status="200"} 0.5
http_request_duration_seconds_count{method="GET",route="/ready",status="200"} 500
identity_db_lease_ttl_seconds 41.5
identity_db_credential_rotations_total{reason="max_ttl"} 2
identity_db_credential_rotations_total{reason="revoked"} 1
amqp_queue_messages{queue="payments.commands"} 7
amqp_queue_dead_letters{queue="payments.commands"} 2
amqp_queue_messages_total 99
"#;

    #[test]
    fn probes_are_not_traffic_and_5xx_are_errors() {
        let s = parse(PAGE);
        assert_eq!((s.requests, s.errors), (100.0, 10.0));
        assert_eq!(
            s.buckets,
            vec![(0.005, 50.0), (0.05, 99.0), (f64::INFINITY, 100.0)]
        );
        assert_eq!(s.lease_ttl_s, Some(41.5));
        assert_eq!(s.rotations, Some(3.0));
        assert_eq!(s.outbox_depth, None);
        assert_eq!(
            s.queues.into_iter().collect::<Vec<_>>(),
            [("payments.commands".to_owned(), (7.0, 2.0))]
        );
    }

    #[test]
    fn rates_are_differences_over_the_interval_and_a_restart_counts_from_zero() {
        let before = parse(PAGE);
        let mut now = before.clone();
        now.requests += 20.0;
        now.errors += 2.0;
        now.buckets = vec![(0.005, 60.0), (0.05, 119.0), (f64::INFINITY, 120.0)];
        let r = rates(&before, &now, 2.0);
        assert_eq!((r.requests, r.errors), (20, 2));
        assert_eq!((r.rps, r.err_rps), (10.0, 1.0));
        // 10 of 20 under 5 ms: the median is in the first bucket; the
        // 99th percentile (the 20th request) only under +Inf.
        assert_eq!(r.p50_ms, Some(5.0));
        assert_eq!(r.p99_ms, Some(50.0));
        let restarted = parse("http_requests_total{route=\"/x\",status=\"200\"} 4\n");
        assert_eq!(rates(&before, &restarted, 1.0).requests, 4);
        assert_eq!(rates(&before, &before, 1.0).p99_ms, None);
    }

    #[test]
    fn a_quantile_is_the_bound_of_the_bucket_that_reaches_it() {
        let b = [
            (0.001, 1.0),
            (0.01, 98.0),
            (0.1, 99.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(quantile_ms(&b, 0.5), Some(10.0));
        assert_eq!(quantile_ms(&b, 0.99), Some(100.0));
        assert_eq!(quantile_ms(&b, 1.0), Some(100.0));
        assert_eq!(quantile_ms(&[], 0.5), None);
    }
}
