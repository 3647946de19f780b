//! `/admin/*`: chaos, breakers and the live configuration, for operators
//! and the CLI's experiments. Every route wants
//! `Authorization: Bearer <BFF_ADMIN_TOKEN>`; anything else is a 401.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use storefront_kit::Problem;
use storefront_kit::sync::lock;

use super::AppState;
use crate::chaos::{Chaos, ChaosRequest};

/// 401 with the challenge the RFC asks for.
fn unauthorized(detail: &str) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED)
        .with_detail(detail)
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"bff-admin\""),
    );
    response
}

/// Checks the bearer token: `Some(401)` unless it is the admin's
/// ([`same_secret`]).
fn refuse(gw: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &gw.admin_token else {
        return Some(unauthorized(
            "the admin API is disabled: BFF_ADMIN_TOKEN is not set",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    (!same_secret(given, expected)).then(|| unauthorized("a valid admin bearer token is required"))
}

/// Whether `given` is the admin token; every byte is compared whatever the
/// first mismatch, so timing doesn't tell how much of a guess was right.
pub(super) fn same_secret(given: &str, expected: &SecretString) -> bool {
    let expected = expected.expose_secret().as_bytes();
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn lock_chaos(gw: &AppState) -> std::sync::MutexGuard<'_, Chaos> {
    lock(&gw.chaos)
}

/// `GET /admin/chaos`: the active faults and the seed.
pub async fn show_chaos(State(gw): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    Json(lock_chaos(&gw).view(Instant::now())).into_response()
}

/// `PUT /admin/chaos`: replaces the active faults; 422 names a bad field.
pub async fn set_chaos(
    State(gw): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ChaosRequest>, JsonRejection>,
) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    let Json(request) = match body {
        Ok(b) => b,
        Err(rejection) => return Problem::from(rejection).into_response(),
    };
    if let Err(why) = Chaos::validate(&request, &gw.upstreams.targets()) {
        return Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_detail(why)
            .into_response();
    }
    tracing::warn!(faults = ?request.faults, seed = ?request.seed, "chaos set");
    let mut chaos = lock_chaos(&gw);
    let now = Instant::now();
    chaos.set(request, now);
    Json(chaos.view(now)).into_response()
}

/// `DELETE /admin/chaos`: lifts every fault.
pub async fn clear_chaos(State(gw): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    tracing::warn!("chaos cleared");
    let mut chaos = lock_chaos(&gw);
    chaos.clear();
    Json(chaos.view(Instant::now())).into_response()
}

/// `GET /admin/breakers`: each upstream instance's breaker and counters.
pub async fn breakers(State(gw): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    Json(json!({ "upstreams": gw.upstreams.views(Instant::now()) })).into_response()
}

/// `GET /admin/config`: what this BFF enforces, so experiments compute
/// their expectations from the running configuration, not a file.
pub async fn config(State(gw): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    let policy = gw.limiter.policy();
    let upstreams: Vec<Value> = gw
        .upstreams
        .services
        .iter()
        .map(|s| {
            json!({
                "service": s.name,
                "instances": s.instances.iter().map(|i| json!({"name": i.name, "url": i.base})).collect::<Vec<_>>(),
                "timeout_ms": s.timeout.as_millis() as u64,
            })
        })
        .collect();
    Json(json!({
        "rate_limit": {
            "capacity": policy.capacity,
            "refill_per_sec": policy.refill_per_sec,
            "redis_failure": gw.redis_failure,
            "clock": "redis",
        },
        "breaker": gw.breaker,
        "retry": gw.retry,
        "upstreams": upstreams,
        "lab_endpoints": gw.lab_endpoints,
    }))
    .into_response()
}
