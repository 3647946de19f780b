//! Prometheus metrics for every request: a counter and a latency histogram,
//! labelled by method, matched route and status.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets in seconds: fine below 100 ms where the lab's services
/// live, coarse above where only timeouts and injected faults land.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Without the exporter's HTTP listener nobody drains histogram samples
/// unless `/metrics` is scraped, so a thread does it on this interval.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process-wide recorder's handle. The recorder is global, so it is
/// installed once per process; later calls (several apps in one test
/// binary) share it.
pub fn prometheus_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Same as `install_recorder()`, split so that a recorder installed by
        // someone else degrades to empty metrics instead of a panic.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                &DURATION_BUCKETS,
            )
            .expect("bucket list is non-empty")
            .build_recorder();
        let handle = recorder.handle();
        if let Err(error) = metrics::set_global_recorder(recorder) {
            tracing::warn!(%error, "a metrics recorder was already installed; /metrics will be empty");
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "metrics upkeep thread not started");
        }
        handle
    })
}

/// `GET /metrics`: the Prometheus text exposition format.
pub(super) async fn render(handle: PrometheusHandle) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// A request's method and matched route, read before the handler takes
/// the request.
pub(super) struct Labels {
    method: &'static str,
    route: Option<MatchedPath>,
}

impl Labels {
    /// The labels of `request` (`unmatched` when no route matched).
    pub(super) fn of(request: &Request) -> Self {
        Self {
            method: method_label(request.method()),
            route: request.extensions().get::<MatchedPath>().cloned(),
        }
    }
}

/// One label set's series.
struct Series {
    method: &'static str,
    route: Box<str>,
    status: u16,
    count: Counter,
    duration: Histogram,
}

/// The series seen so far, by a hash of their labels: looking a handle up
/// here costs a hash and a read lock, where `counter!` with owned labels
/// allocated them and hashed them into the registry on every request.
/// Bounded: methods collapse to a few, routes are matched routes, statuses
/// are three digits.
static SERIES: LazyLock<RwLock<HashMap<u64, Vec<Series>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Records `http_requests_total` and `http_request_duration_seconds` for
/// one response.
pub(super) fn record(labels: &Labels, status: StatusCode, took: Duration) {
    let method = labels.method;
    let route = labels
        .route
        .as_ref()
        .map_or("unmatched", MatchedPath::as_str);
    let status = status.as_u16();
    let key = {
        let mut h = std::hash::DefaultHasher::new();
        (method, route, status).hash(&mut h);
        h.finish()
    };
    let seconds = took.as_secs_f64();
    let same = |s: &&Series| s.method == method && &*s.route == route && s.status == status;
    if let Some(s) = SERIES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .and_then(|v| v.iter().find(same))
    {
        s.count.increment(1);
        s.duration.record(seconds);
        return;
    }
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    let series = Series {
        method,
        route: route.into(),
        status,
        count: metrics::counter!("http_requests_total", &labels),
        duration: metrics::histogram!("http_request_duration_seconds", &labels),
    };
    series.count.increment(1);
    series.duration.record(seconds);
    let mut all = SERIES.write().unwrap_or_else(PoisonError::into_inner);
    let bucket = all.entry(key).or_default();
    if !bucket.iter().any(|s| same(&s)) {
        bucket.push(series);
    }
}

/// Standard methods as-is; anything else collapses to `OTHER` so a client
/// inventing methods can't add label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
