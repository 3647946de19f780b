//! One way to read a service's `/metrics`: [`scrape`] fetches the page and
//! parses it with `prom_text_format_parser` (a real parser of the text
//! exposition format: label values may hold braces and commas, as
//! `route="/products/{id}"` does), and [`Page`] answers typed questions of
//! it — a counter summed over the label sets a predicate keeps, a gauge, a
//! histogram's cumulative buckets, one label's values.
//!
//! (`prometheus-parse` was tried first and left: its sample regex drops every
//! line whose label values hold a `}`, so `/products/{id}` would count 0.)

use anyhow::{Context, Result, bail};
use prom_text_format_parser::{Metric, ScrapeParseError, ValueType, parse_scrape};

/// `GET {base}/metrics`, parsed. Errors name the URL and, for an answer
/// that is not 2xx, its status.
pub async fn scrape(http: &reqwest::Client, base: &str) -> Result<Page> {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("GET {url}: {status}");
    }
    let text = resp
        .text()
        .await
        .with_context(|| format!("GET {url}: reading the body"))?;
    Page::parse(&text).with_context(|| format!("GET {url}"))
}

/// One sample's labels, as the predicates of [`Page`] see them.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a>(&'a prom_text_format_parser::Labels);

impl<'a> Labels<'a> {
    /// The value of `key` (escapes left as the page wrote them), if the sample has it.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|l| l.key == key)
            .map(|l| l.value.as_str())
    }

    /// Whether `key` is exactly `value`.
    pub fn is(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    families: Vec<Metric>,
}

impl Page {
    /// Parses a whole page. A line that is not the text format is an error;
    /// families the parser could not assemble (e.g. a histogram missing its
    /// `_count`) are left out and the rest kept, as Prometheus keeps them.
    pub fn parse(text: &str) -> Result<Page> {
        if text.trim().is_empty() {
            return Ok(Page::default());
        }
        let (families, error) = parse_scrape(text);
        match error {
            Some(ScrapeParseError::Parse(e)) => bail!("not the Prometheus text format: {e}"),
            Some(ScrapeParseError::Collect(_)) | None => Ok(Page { families }),
        }
    }

    fn family(&self, name: &str) -> impl Iterator<Item = &Metric> {
        self.families.iter().filter(move |m| m.name == name)
    }

    /// The plain samples (not a histogram's `_sum`/`_count`) of `name` whose
    /// labels `keep` keeps, as `(labels, value)`.
    fn samples<'p>(
        &'p self,
        name: &'p str,
        keep: impl Fn(Labels<'_>) -> bool + 'p,
    ) -> impl Iterator<Item = (Labels<'p>, f64)> + 'p {
        self.family(name)
            .flat_map(|m| &m.samples)
            .filter(|s| s.value.value_type == ValueType::Sample)
            .map(|s| (Labels(&s.labels), s.value.value.as_f64()))
            .filter(move |(l, _)| keep(*l))
    }

    /// Whether the page has any sample of `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples(name, |_| true).next().is_some()
    }

    /// A counter (or any family) summed over the label sets `keep` keeps;
    /// 0 when none (a counter not yet touched is not exported).
    pub fn counter(&self, name: &str, keep: impl Fn(Labels<'_>) -> bool) -> f64 {
        self.samples(name, keep).map(|(_, v)| v).sum()
    }

    /// A gauge summed over its label sets, if the page has it at all.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.has(name).then(|| self.counter(name, |_| true))
    }

    /// `name`'s samples that carry `label`, as `(its value, sample value)`.
    pub fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        self.samples(name, |_| true)
            .filter_map(|(l, v)| Some((l.get(label)?.to_owned(), v)))
            .collect()
    }

    /// A histogram's cumulative buckets `(le seconds, count)` summed over the
    /// label sets `keep` keeps (the `le` label aside), ascending by `le`,
    /// `+Inf` last.
    pub fn histogram(&self, name: &str, keep: impl Fn(Labels<'_>) -> bool) -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for (labels, v) in self.samples(name, keep) {
            let Some(le) = labels.get("le").and_then(parse_le) else {
                continue;
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(slot) => slot.1 += v,
                None => buckets.push((le, v)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// A bucket bound: a float, or `+Inf`.
fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape metrics-exporter-prometheus gives the services' pages.
    const PAGE: &str = r#"# HELP http_requests_total requests served
# TYPE http_requests_total counter
http_requests_total{method="GET",route="/products",status="200"} 90
http_requests_total{method="GET",route="/products/{id}",status="503"} 10
http_requests_total{method="POST",route="/products/{id}",status="200"} 3
http_requests_total{method="GET",route="/metrics",status="200"} 70

# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route="/products",le="0.005"} 50
http_request_duration_seconds_bucket{route="/products",le="0.05"} 90
http_request_duration_seconds_bucket{route="/products",le="+Inf"} 90
http_request_duration_seconds_sum{route="/products"} 1.25
http_request_duration_seconds_count{route="/products"} 90
http_request_duration_seconds_bucket{route="/products/{id}",le="0.005"} 0
http_request_duration_seconds_bucket{route="/products/{id}",le="0.05"} 9
http_request_duration_seconds_bucket{route="/products/{id}",le="+Inf"} 10
http_request_duration_seconds_sum{route="/products/{id}"} 0.5
http_request_duration_seconds_count{route="/products/{id}"} 10

# TYPE bff_ratelimit_decisions_total counter
bff_ratelimit_decisions_total{decision="allowed"} 12
bff_ratelimit_decisions_total{decision="fail_open"} 4
# TYPE identity_db_lease_ttl_seconds gauge
identity_db_lease_ttl_seconds 41.5
amqp_queue_messages{queue="payments.commands"} 7
amqp_queue_messages{queue="checkout.events"} 1e0
"#;

    #[test]
    fn a_counter_sums_the_label_sets_its_predicate_keeps_even_with_braces_in_a_route() {
        let p = Page::parse(PAGE).unwrap();
        let by_id = p.counter("http_requests_total", |l| {
            l.is("method", "GET") && l.is("route", "/products/{id}")
        });
        assert_eq!(by_id, 10.0);
        assert_eq!(
            p.counter("http_requests_total", |l| !l.is("route", "/metrics")),
            103.0
        );
        assert_eq!(
            p.counter("bff_ratelimit_decisions_total", |l| l
                .is("decision", "fail_open")),
            4.0
        );
        assert_eq!(p.counter("never_exported_total", |_| true), 0.0);
    }

    #[test]
    fn a_gauge_is_none_when_the_page_lacks_it() {
        let p = Page::parse(PAGE).unwrap();
        assert_eq!(p.gauge("identity_db_lease_ttl_seconds"), Some(41.5));
        assert_eq!(p.gauge("outbox_depth"), None);
        // A name that is only a prefix of another is not that other.
        assert_eq!(p.gauge("identity_db_lease"), None);
    }

    #[test]
    fn a_histogram_sums_buckets_over_kept_label_sets_and_skips_sum_and_count() {
        let p = Page::parse(PAGE).unwrap();
        assert_eq!(
            p.histogram("http_request_duration_seconds", |_| true),
            vec![(0.005, 50.0), (0.05, 99.0), (f64::INFINITY, 100.0)]
        );
        assert_eq!(
            p.histogram("http_request_duration_seconds", |l| l
                .is("route", "/products")),
            vec![(0.005, 50.0), (0.05, 90.0), (f64::INFINITY, 90.0)]
        );
    }

    #[test]
    fn by_label_lists_each_label_value() {
        let p = Page::parse(PAGE).unwrap();
        let mut q = p.by_label("amqp_queue_messages", "queue");
        q.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            q,
            [
                ("checkout.events".to_owned(), 1.0),
                ("payments.commands".to_owned(), 7.0)
            ]
        );
    }

    #[test]
    fn a_page_that_is_not_the_text_format_is_an_error() {
        let e = Page::parse("<html>502 Bad Gateway</html>\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("not the Prometheus text format"),
            "{e:#}"
        );
        assert!(!Page::parse("").unwrap().has("http_requests_total"));
    }
}
