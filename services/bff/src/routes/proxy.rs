//! `ANY /api/{service}/{*rest}`: [`resolve`] parses the path once (see
//! [`crate::path`]); [`forward`] sends the checked path to a replica of
//! `service`, retrying idempotent requests on another replica with
//! full-jitter backoff while the retry budget allows, and only when the
//! upstream was at fault (see [`crate::upstream::Attempt`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;
use storefront_kit::sync::lock;

use super::{Gateway, Rest};
use crate::bucket::whole_seconds_up;
use crate::path::{self, Target};
use crate::retry::{full_jitter, is_idempotent};
use crate::upstream::{self, Attempt, Forward, Instance, Service, Transport};

/// Request headers passed to the upstream; anything else (cookies) stays
/// at the edge. `Authorization` and the `X-User-*` identity reach here only
/// as [`super::auth::authenticate`] verified and set them.
static FORWARDED_REQUEST: [HeaderName; 10] = [
    header::AUTHORIZATION,
    HeaderName::from_static(super::auth::X_USER_ID),
    HeaderName::from_static(super::auth::X_USER_ROLES),
    header::ACCEPT,
    header::CONTENT_TYPE,
    HeaderName::from_static("idempotency-key"),
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::ETAG,
    HeaderName::from_static("x-request-id"),
];

/// Names the instance that answered (or last failed).
pub const X_UPSTREAM: HeaderName = HeaderName::from_static("x-upstream");
/// Lab only: pins a request to one instance (`catalog-2`), so experiments
/// can aim at a replica whose breaker is open. Needs [`X_LAB_TOKEN`].
pub const X_LAB_UPSTREAM: &str = "x-lab-upstream";
/// The admin token, proving an `X-Lab-Upstream` comes from the lab (its own
/// header: `Authorization` belongs to the caller's identity). Never
/// forwarded.
pub const X_LAB_TOKEN: &str = "x-lab-token";
/// Counter of retries, labelled `service` and `result`.
pub const RETRIES_METRIC: &str = "bff_retries_total";

/// Counter of paths refused before routing, labelled `reason`.
pub const REFUSED_METRIC: &str = "bff_refused_paths_total";

/// The one parse of the path: an unroutable path is answered here with its
/// 4xx; a routable one goes on to `next` with its [`Target`] in the
/// request's extensions.
pub async fn resolve(gw: &Gateway, mut request: Request, next: impl Rest) -> Response {
    let uri = request.uri();
    match path::parse(uri.path(), uri.query(), |s| gw.upstreams.get(s).is_some()) {
        Ok(target) => {
            request.extensions_mut().insert(target);
            next.run(request).await
        }
        Err(refusal) => {
            tracing::info!(%refusal, "path not routed");
            metrics::counter!(REFUSED_METRIC, "reason" => refusal.reason()).increment(1);
            refusal.problem().into_response()
        }
    }
}

/// The forward, last in the chain, after [`resolve`] put the [`Target`] in
/// the extensions. No span of its own: the request's span names the path,
/// and one span less per request is measurable on the BFF.
pub async fn forward(gw: &Gateway, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(target) = parts.extensions.remove::<Target>() else {
        // Only reachable if the steps are misordered.
        tracing::error!("the forward ran before the path was parsed");
        return Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("the request could not be routed")
            .into_response();
    };
    let Some(svc) = gw.upstreams.get(&target.service) else {
        return Problem::not_found(format!("no upstream service named {:?}", target.service))
            .into_response();
    };
    // The kit has read the body already, within its size limit and
    // deadline; this takes the bytes out.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(error) => {
            return Problem::bad_request(format!("the request body could not be read: {error}"))
                .into_response();
        }
    };
    let (method, headers) = (parts.method, parts.headers);
    let pinned = match pin(gw, svc, &headers) {
        Ok(p) => p,
        Err(problem) => return problem.into_response(),
    };
    let idempotent = is_idempotent(&method, &headers);
    let forward = Forward {
        method,
        path_and_query: target.path_and_query,
        headers,
        send: &FORWARDED_REQUEST,
        body,
    };
    relay(gw, svc, pinned, &forward, idempotent).await
}

/// The instance `X-Lab-Upstream` pins the request to: lab only, and only
/// with the admin token in `X-Lab-Token` (401 otherwise), so an anonymous
/// client can't aim traffic at one replica.
fn pin(gw: &Gateway, svc: &Service, headers: &HeaderMap) -> Result<Option<usize>, Problem> {
    let Some(v) = headers.get(X_LAB_UPSTREAM).filter(|_| gw.lab_endpoints) else {
        return Ok(None);
    };
    let token = headers
        .get(X_LAB_TOKEN)
        .and_then(|t| t.to_str().ok())
        .unwrap_or_default();
    let allowed = gw
        .admin_token
        .as_ref()
        .is_some_and(|expected| super::admin::same_secret(token, expected));
    if !allowed {
        return Err(Problem::new(StatusCode::UNAUTHORIZED)
            .with_detail("X-Lab-Upstream needs the admin token in X-Lab-Token"));
    }
    let name = v.to_str().unwrap_or_default();
    svc.position(name).map(Some).ok_or_else(|| {
        Problem::bad_request(format!(
            "X-Lab-Upstream {name:?} is not an instance of {}",
            svc.name
        ))
    })
}

/// Attempts, retries and the response.
async fn relay(
    gw: &Gateway,
    svc: &Service,
    pinned: Option<usize>,
    forward: &Forward,
    idempotent: bool,
) -> Response {
    lock(&gw.budget).deposit(Instant::now());
    let mut tried = Vec::new();
    let mut last: Option<(Attempt, Arc<Instance>)> = None;
    for n in 0..gw.retry.max_attempts {
        let admitted = match pinned {
            Some(i) => svc.admit_one(i, Instant::now()).map(|t| (i, t)),
            None => svc.admit(&tried, Instant::now()),
        };
        let (i, ticket) = match admitted {
            Ok(x) => x,
            Err(wait) => {
                return match last {
                    Some((attempt, instance)) => respond(attempt, &instance),
                    None => circuit_open(&svc.name, wait),
                };
            }
        };
        tried.push(i);
        let instance = Arc::clone(&ticket.instance);
        let attempt = upstream::send(&gw.proxy, &gw.chaos, &ticket, svc.timeout, forward).await;
        ticket.settle(attempt.verdict());
        let last_try = n + 1 == gw.retry.max_attempts;
        if !attempt.retryable() || !idempotent || last_try {
            return respond(attempt, &instance);
        }
        let granted = lock(&gw.budget).try_withdraw(Instant::now());
        let result = if granted {
            "retried"
        } else {
            "budget_exhausted"
        };
        metrics::counter!(RETRIES_METRIC, "service" => svc.name.clone(), "result" => result)
            .increment(1);
        if !granted {
            return respond(attempt, &instance);
        }
        let delay = {
            let mut rng = lock(&gw.rng);
            full_jitter(n, gw.retry.base, gw.retry.cap, &mut *rng)
        };
        last = Some((attempt, instance));
        tokio::time::sleep(delay).await;
    }
    match last {
        Some((attempt, instance)) => respond(attempt, &instance),
        None => Problem::unavailable("no attempt was made").into_response(),
    }
}

/// The client's response for an attempt, tagged with the instance.
fn respond(attempt: Attempt, upstream: &Instance) -> Response {
    let instance = upstream.name.as_str();
    let mut response = match attempt {
        Attempt::Reply(reply) => {
            let mut r = Response::new(Body::from(reply.body));
            *r.status_mut() = reply.status;
            // Only the forwarded ones ([`upstream::FORWARDED_ANSWER`]).
            *r.headers_mut() = reply.headers;
            r
        }
        Attempt::Failed(Transport::Timeout) => Problem::new(StatusCode::GATEWAY_TIMEOUT)
            .with_detail(format!("{instance} did not answer in time"))
            .into_response(),
        Attempt::Failed(Transport::Local) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("the BFF could not build the upstream request; the cause has been logged")
            .into_response(),
        Attempt::Failed(_) => Problem::new(StatusCode::BAD_GATEWAY)
            .with_detail(format!(
                "{instance} could not be reached or reset the connection"
            ))
            .into_response(),
    };
    if let Some(v) = upstream.header_value() {
        response.headers_mut().insert(X_UPSTREAM, v.clone());
    }
    response
}

/// 503 without calling anyone: every eligible breaker is open.
fn circuit_open(service: &str, wait: Duration) -> Response {
    let us = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
    let mut response = Problem::unavailable(format!(
        "the circuit to {service} is open; no call was made"
    ))
    .with_type("/problems/circuit-open")
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds_up(us)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_names_in_the_lists_match_parsed_headers() {
        // A name built by `from_static` and one parsed off the wire must be
        // equal, or a custom header would silently stop passing.
        for name in [
            "idempotency-key",
            "x-request-id",
            "x-user-id",
            "x-user-roles",
        ] {
            let parsed = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(FORWARDED_REQUEST.contains(&parsed), "{name}");
        }
        for name in ["idempotent-replayed", "x-cache", "x-chaos", "ETag"] {
            let parsed = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(upstream::FORWARDED_ANSWER.contains(&parsed), "{name}");
        }
    }
}
