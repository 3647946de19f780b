//! The page's metrics history: request rate, 5xx rate and p99 per service
//! over the last 5, 15 or 60 minutes, asked of the fleet's Prometheus
//! (`query_range`) by this server, so the browser talks to this origin only
//! and the token rules and CSP stay as they are. Without a Prometheus the
//! answer says so and the page keeps its live /metrics charts.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use crate::fleet::prometheus::{self, Range, Series};

/// The windows the page offers, in minutes.
pub const WINDOWS: [u64; 3] = [5, 15, 60];

/// Routes that are the lab's own probing, not traffic (as in
/// [`super::metrics`]): Prometheus's own scrapes would otherwise be most of
/// an idle fleet's "requests".
const NOT_TRAFFIC: &str = r#"route!~"/metrics|/ready|/health|/admin/.*""#;

/// One point per `step` (about 150 per chart, never under the 2 s scrape).
pub fn step(minutes: u64) -> Duration {
    Duration::from_secs((minutes * 60 / 150).max(2))
}

/// The `rate()` window: at least four scrapes, and at least one step so
/// no sample falls between points.
pub fn rate_window(step: Duration) -> Duration {
    step.max(Duration::from_secs(8))
}

/// The three charts' PromQL, by chart name, each summed per service (`job`).
pub fn queries(window: Duration) -> [(&'static str, String); 3] {
    let w = format!("{}s", window.as_secs());
    [
        (
            "requests",
            format!("sum by (job) (rate(http_requests_total{{{NOT_TRAFFIC}}}[{w}]))"),
        ),
        (
            "errors",
            format!(
                "sum by (job) (rate(http_requests_total{{{NOT_TRAFFIC},status=~\"5..\"}}[{w}]))"
            ),
        ),
        (
            "p99_ms",
            format!(
                "1000 * histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket{{{NOT_TRAFFIC}}}[{w}])))"
            ),
        ),
    ]
}

/// Series as the page draws them: `{service, points: [[unix s, value]]}`,
/// points that are not numbers (p99 of no traffic is NaN) left out, series
/// left with none dropped, sorted by service.
pub fn lines(series: Vec<Series>) -> Value {
    let mut out: Vec<(String, Vec<[f64; 2]>)> = series
        .into_iter()
        .map(|s| {
            let service = s.labels.get("job").cloned().unwrap_or_else(|| "?".into());
            let points = s
                .points
                .into_iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(t, v)| [t, v])
                .collect();
            (service, points)
        })
        .filter(|(_, p): &(String, Vec<[f64; 2]>)| !p.is_empty())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(
        out.into_iter()
            .map(|(service, points)| json!({"service": service, "points": points}))
            .collect(),
    )
}

/// The answer for the page: Prometheus's URL (null without one, with a
/// note), the window, and each chart's lines.
pub async fn fetch(client: &reqwest::Client, base: Option<&str>, minutes: u64) -> Result<Value> {
    let Some(base) = base else {
        return Ok(json!({
            "prometheus": null,
            "minutes": minutes,
            "note": "this fleet runs no Prometheus (profile `prometheus = true` and Debian's `prometheus`, from scripts/setup.sh); the live charts come from each instance's /metrics",
        }));
    };
    let step = step(minutes);
    let range = Range::last(Duration::from_secs(minutes * 60), step);
    let mut charts = serde_json::Map::new();
    for (name, promql) in queries(rate_window(step)) {
        let series = prometheus::query_range(client, base, &promql, range).await?;
        charts.insert(
            name.into(),
            json!({"promql": promql, "lines": lines(series)}),
        );
    }
    let up = prometheus::query(client, base, "up").await?;
    let targets_up = up
        .iter()
        .filter(|s| s.points.first().is_some_and(|p| p.1 == 1.0))
        .count();
    Ok(json!({
        "prometheus": base,
        "targets": up.len(),
        "targets_up": targets_up,
        "minutes": minutes,
        "step_s": step.as_secs(),
        "start": range.start.timestamp_millis() as f64 / 1000.0,
        "end": range.end.timestamp_millis() as f64 / 1000.0,
        "charts": charts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn each_window_asks_for_about_150_points_and_never_finer_than_the_scrape() {
        assert_eq!(step(5), Duration::from_secs(2));
        assert_eq!(step(15), Duration::from_secs(6));
        assert_eq!(step(60), Duration::from_secs(24));
        assert_eq!(rate_window(step(5)), Duration::from_secs(8));
        assert_eq!(rate_window(step(60)), Duration::from_secs(24));
    }

    #[test]
    fn the_queries_sum_per_service_leave_out_probes_and_read_5xx_and_p99_in_ms() {
        let q = queries(Duration::from_secs(8));
        for (_, promql) in &q {
            assert!(promql.contains("by (job"), "{promql}");
            assert!(promql.contains(r#"route!~"/metrics|/ready"#), "{promql}");
            assert!(promql.contains("[8s]"), "{promql}");
        }
        assert!(q[1].1.contains(r#"status=~"5..""#), "{}", q[1].1);
        assert!(!q[0].1.contains("status"), "{}", q[0].1);
        assert!(
            q[2].1.starts_with("1000 * histogram_quantile(0.99,"),
            "{}",
            q[2].1
        );
        assert!(q[2].1.contains("by (job, le)"), "{}", q[2].1);
    }

    #[test]
    fn lines_drop_nan_points_and_empty_series_and_sort_by_service() {
        let s = |job: &str, points: Vec<(f64, f64)>| Series {
            labels: BTreeMap::from([("job".to_owned(), job.to_owned())]),
            points,
        };
        let v = lines(vec![
            s("payments", vec![(1.0, 2.0), (3.0, f64::NAN), (5.0, 4.0)]),
            s("bff", vec![(1.0, 0.5)]),
            s("claims", vec![(1.0, f64::NAN)]),
        ]);
        assert_eq!(
            v,
            json!([
                {"service": "bff", "points": [[1.0, 0.5]]},
                {"service": "payments", "points": [[1.0, 2.0], [5.0, 4.0]]},
            ])
        );
    }

    #[tokio::test]
    async fn without_a_prometheus_the_answer_says_so_and_asks_nothing() {
        let client = reqwest::Client::new();
        let v = fetch(&client, None, 15).await.unwrap();
        assert!(v["prometheus"].is_null(), "{v}");
        assert!(v["note"].as_str().unwrap().contains("no Prometheus"), "{v}");
        assert!(v.get("charts").is_none(), "{v}");
    }
}
