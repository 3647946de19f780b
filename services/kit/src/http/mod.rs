//! Wraps a service's own routes with what every service exposes and every
//! request passes through, in one call: [`app`].

mod bare;
mod edge;
mod lab;
mod metrics;
mod pipeline;
mod probes;
pub(crate) mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::routing::get;

use crate::CommonConfig;
use crate::checks::Check;
pub use bare::problem_bodies;
pub use edge::NUL_PROBLEM_TYPE;
pub use metrics::prometheus_handle;
pub use server::{CLIENT_IDLE_TIMEOUT, ClientAddr, HEADER_READ_TIMEOUT};

/// The header carrying the request id across services and into logs.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Largest request body accepted; storefront bodies are small JSON.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;
/// A request still running after this is answered with 503, so a stuck
/// dependency can't hold connections forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A request body not fully received by then is answered with 408: a
/// client trickling its body can't hold a handler's slot for
/// [`REQUEST_TIMEOUT`].
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns `routes` plus `GET /health`, `GET /ready` (running `checks`) and
/// `GET /metrics`, all behind the request-id, tracing, metrics, timeout,
/// body-limit, body-read-deadline, NUL-byte and lab-token layers, with
/// every bare framework error given a problem+json body.
///
/// `common` supplies the service's name and `LAB_ADMIN_TOKEN`, which every
/// `/lab/…` path requires (401 otherwise, and always when it is unset).
///
/// Layers are added with [`Router::layer`] after routing so that
/// [`MatchedPath`] (`/products/{id}`, not `/products/42`) is known to the
/// metrics and the span: raw paths would explode label cardinality.
pub fn app(
    common: &CommonConfig,
    routes: Router,
    checks: impl IntoIterator<Item = Check>,
) -> Router {
    let deadlines = Deadlines {
        body_read: BODY_READ_TIMEOUT,
        request: REQUEST_TIMEOUT,
    };
    app_with(
        &common.service_name,
        lab::LabGate::new(common.lab_admin_token.clone()),
        deadlines,
        routes,
        checks,
    )
}

/// How long a request may take, in two parts; tests shorten them.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    /// See [`BODY_READ_TIMEOUT`].
    body_read: Duration,
    /// See [`REQUEST_TIMEOUT`].
    request: Duration,
}

/// [`app`] with the lab gate and deadlines given.
fn app_with(
    service_name: &str,
    lab_gate: lab::LabGate,
    deadlines: Deadlines,
    routes: Router,
    checks: impl IntoIterator<Item = Check>,
) -> Router {
    let service: Arc<str> = Arc::from(service_name);
    let probes = probes::Probes {
        service: service.clone(),
        checks: checks.into_iter().collect(),
    };
    let handle = prometheus_handle().clone();
    let operational = Router::new()
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .with_state(Arc::new(probes))
        .route("/metrics", get(move || metrics::render(handle.clone())));

    // One layer, added after routing so that [`MatchedPath`] is known to
    // the metrics and the span; see [`pipeline`] for what it does, in order.
    let pipeline = Arc::new(pipeline::Pipeline {
        service,
        lab_gate,
        deadlines,
        body_limit: BODY_LIMIT_BYTES,
    });
    routes
        .merge(operational)
        .layer(axum::middleware::from_fn_with_state(
            pipeline,
            pipeline::run,
        ))
}

/// The span every log line of a request is recorded in: a child of the
/// caller's trace when the request carries a W3C `traceparent`, else the
/// root of a new one; its ids are in every line and on every outbound call
/// ([`crate::telemetry`]).
fn request_span(service: &str, request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    // Text where there is text: a `%` (Display) field goes through the
    // formatting machinery, a `&str` is written as it is.
    let uri = request.uri();
    let uri: std::borrow::Cow<'_, str> = match origin_form(uri) {
        Some(text) => text.into(),
        None => uri.to_string().into(),
    };
    let span = tracing::info_span!(
        "request",
        service,
        method = request.method().as_str(),
        route,
        uri = &*uri,
        request_id,
    );
    crate::telemetry::continue_trace(&span, crate::telemetry::traceparent_of(request.headers()));
    span
}

/// An origin-form target (`/path?query`, what a client sends a server) as
/// the text `Uri`'s `Display` writes for it; `None` for any other form.
fn origin_form(uri: &axum::http::Uri) -> Option<&str> {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return None;
    }
    uri.path_and_query()
        .map(axum::http::uri::PathAndQuery::as_str)
        .filter(|text| text.starts_with('/'))
}

#[cfg(test)]
mod tests;
