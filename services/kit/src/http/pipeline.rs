//! Everything [`super::app`] does around a service's own handler, as one
//! middleware instead of a stack of nine tower layers: each layer boxed
//! its future and cloned its inner service per request, and on a proxy
//! doing little else (the BFF) the stack was a large part of a request's
//! CPU (scripts/bench.sh, BENCH_PERF=1). In the request's order:
//!
//! 1. the request id: the client's `X-Request-Id`, else a new UUID v4, set
//!    on the request (handlers forward it) and on the response;
//! 2. the span every log line of the request is written in
//!    ([`super::request_span`]), continuing the caller's W3C trace;
//! 3. the deadline ([`Deadlines::request`]): past it, 503;
//! 4. the lab gate ([`super::lab`]): `/lab/…` needs the lab admin token,
//!    checked before any body is read;
//! 5. the body ([`super::edge`]): over [`super::BODY_LIMIT_BYTES`] 413, not
//!    in within [`Deadlines::body_read`] 408, a NUL byte 400;
//! 6. the handler;
//!
//! and on the way out: `http_requests_total` and
//! `http_request_duration_seconds` ([`super::metrics`]), a problem+json
//! body for any bare framework error ([`super::problem_bodies`]), and one
//! log line, `finished processing request` with its status and latency
//! (and `response failed` at ERROR for a 5xx), as tower-http's trace layer
//! wrote them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::{Deadlines, REQUEST_ID, bare, edge, lab, metrics};

/// What the middleware needs, shared by every request.
pub(super) struct Pipeline {
    /// The service's name, in every request's span.
    pub service: Arc<str>,
    /// The lab admin token.
    pub lab_gate: lab::LabGate,
    /// Body-read and whole-request deadlines.
    pub deadlines: Deadlines,
    /// Largest body accepted.
    pub body_limit: usize,
}

/// The middleware.
pub(super) async fn run(
    State(p): State<Arc<Pipeline>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = match request.headers().get(REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let id = new_request_id();
            request.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let labels = metrics::Labels::of(&request);
    let span = super::request_span(&p.service, &request);
    let handled = async {
        match tokio::time::timeout(p.deadlines.request, inner(&p, request, next)).await {
            Ok(response) => response,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    .instrument(span.clone())
    .await;
    metrics::record(&labels, handled.status(), started.elapsed());
    let mut response = bare::problem_bodies(handled).await;
    let latency = started.elapsed();
    span.in_scope(|| log_response(response.status(), latency));
    if !response.headers().contains_key(REQUEST_ID) {
        response.headers_mut().insert(REQUEST_ID, request_id);
    }
    response
}

/// Steps 4 to 6.
async fn inner(p: &Pipeline, request: Request, next: Next) -> Response {
    if let Some(refused) = lab::refusal(&p.lab_gate, &request) {
        return refused;
    }
    match edge::admit(request, p.body_limit, p.deadlines.body_read).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// A fresh request id: a UUID v4, hyphenated.
fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The request's closing log line, in its span.
fn log_response(status: StatusCode, latency: Duration) {
    // u64: 2^64 µs is 584,000 years.
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let text = Micros::new(micros);
    tracing::info!(
        latency = text.as_str(),
        status = status.as_u16(),
        "finished processing request"
    );
    if status.is_server_error() {
        tracing::error!(
            classification = %format_args!("Status code: {status}"),
            latency = %format_args!("{micros} μs"),
            "response failed"
        );
    }
}

/// `"{micros} μs"`, written digit by digit ([`crate::decimal`]): the
/// closing line's latency field, once a request.
struct Micros {
    buf: [u8; 24],
    len: usize,
}

impl Micros {
    const UNIT: &'static [u8] = " μs".as_bytes();

    fn new(micros: u64) -> Self {
        let digits = crate::decimal::Decimal::new(micros);
        let digits = digits.digits();
        let mut buf = [0u8; 24];
        let len = digits.len() + Self::UNIT.len();
        buf[..digits.len()].copy_from_slice(digits);
        buf[digits.len()..len].copy_from_slice(Self::UNIT);
        Self { buf, len }
    }

    fn as_str(&self) -> &str {
        // ASCII digits and " μs" only.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("? μs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_text_is_what_format_writes() {
        for micros in [0, 7, 10, 99, 100, 12_345, 1_000_000, u64::MAX / 3, u64::MAX] {
            assert_eq!(Micros::new(micros).as_str(), format!("{micros} μs"));
        }
    }

    #[test]
    fn a_new_request_id_is_a_hyphenated_uuid_v4() {
        let id = new_request_id();
        let parsed = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(id.len(), 36);
    }
}
