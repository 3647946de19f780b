//! The counters flood compares against, read before and after the flood
//! from the services' own `/metrics` (through the one scrape helper).

use crate::clients::metrics::scrape;
use crate::run::Lab;

/// The catalog replicas' own count of `GET /products/{id}`, all statuses;
/// `None` if a replica's /metrics can't be read.
pub async fn upstream_count(lab: &Lab, catalog: &[String]) -> Option<f64> {
    let mut total = 0.0;
    for base in catalog {
        let page = scrape(&lab.http, base).await.ok()?;
        total += page.counter("http_requests_total", |l| {
            l.is("method", "GET") && l.is("route", "/products/{id}")
        });
    }
    Some(total)
}

/// The BFF instances' count of requests let through unlimited because Redis
/// did not answer in time (`bff_ratelimit_decisions_total{decision="fail_open"}`).
pub async fn failed_open(lab: &Lab, bffs: &[String]) -> Option<f64> {
    let mut total = 0.0;
    for bff in bffs {
        let page = scrape(&lab.http, bff).await.ok()?;
        total += page.counter("bff_ratelimit_decisions_total", |l| {
            l.is("decision", "fail_open")
        });
    }
    Some(total)
}
