//! `/health` says the process is alive; `/ready` says it can serve, i.e.
//! its dependencies answer. The supervisor restarts on the first and routes
//! traffic on the second, so they must not be the same endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::checks::{Check, Outcome};

/// What the probe handlers need.
pub(super) struct Probes {
    /// Echoed in bodies so a probe shows which replica answered.
    pub(super) service: Arc<str>,
    /// Run on every `/ready`.
    pub(super) checks: Vec<Check>,
}

/// Liveness: always 200 while the process can answer HTTP at all.
pub(super) async fn health(State(probes): State<Arc<Probes>>) -> Json<Value> {
    Json(json!({ "status": "ok", "service": &*probes.service }))
}

/// Readiness: runs all checks concurrently; 200 if all pass, else 503, with
/// each check's outcome either way.
pub(super) async fn ready(State(probes): State<Arc<Probes>>) -> (StatusCode, Json<Value>) {
    let outcomes = futures::future::join_all(probes.checks.iter().map(Check::run)).await;
    let all_ok = outcomes.iter().all(Outcome::is_ok);
    let checks: BTreeMap<&str, Outcome> = probes
        .checks
        .iter()
        .map(Check::name)
        .zip(outcomes)
        .collect();
    let (status, word) = if all_ok {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    let body = json!({ "status": word, "service": &*probes.service, "checks": checks });
    (status, Json(body))
}
