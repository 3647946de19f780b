//! Lab-only routes (`LAB_ENDPOINTS=true`): what `storefront rotate` needs to
//! see and steer the credential rotation. Lease ids are operator secrets:
//! with a Vault token they revoke the service's database access, which is
//! exactly what the experiment does with them. So every lab route needs
//! `Authorization: Bearer <LAB_ADMIN_TOKEN>` (the kit's lab gate, in
//! `storefront_kit::http::app`, checks every `/lab/…` path), and so does
//! the lab-only `access_ttl_secs` of `POST /token` ([`authorize`]); without
//! a configured token they are refused, never open.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use storefront_kit::Problem;

use super::{AppState, IdentityError};
use crate::contract::{Lease, Rotated, RotationMode};

/// SHA-256 of a token: what [`AppState::lab_token_digest`] holds. Comparing
/// digests of fixed length leaks nothing useful about the token by timing.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `Ok` when the request carries the lab admin token as its bearer token;
/// `what` names the route or parameter in the refusal.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    what: &'static str,
) -> Result<(), IdentityError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| digest(t.trim()));
    match (&state.lab_token_digest, presented) {
        (Some(expected), Some(presented)) if **expected == presented => Ok(()),
        _ => Err(IdentityError::LabTokenRequired(what)),
    }
}

/// How long `POST /lab/rotate` waits for the new generation.
const ROTATE_WAIT: Duration = Duration::from_secs(15);

/// `GET /lab/lease`: the current login and lease, and every generation's
/// timeline (Unix ms), for the experiment's windows and ground truth.
pub async fn lease(State(state): State<AppState>) -> Json<Lease> {
    let current = state.db.current();
    Json(Lease {
        generation: current.number,
        username: current.username.clone(),
        lease_id: current.lease_id.clone(),
        naive: state.db.is_naive(),
        history: state.db.history(),
    })
}

/// `POST /lab/rotate`: rotate now (e.g. to pick up a role's new TTLs);
/// answers once the new generation is current.
pub async fn rotate(State(state): State<AppState>) -> Result<Json<Rotated>, Problem> {
    let before = state.db.current().number;
    if !state.db.request_rotation() {
        return Err(Problem::conflict(
            "this instance uses a static DATABASE_URL; there is nothing to rotate",
        ));
    }
    let now = state.db.wait_newer_than(before, ROTATE_WAIT).await;
    if now.number == before {
        return Err(Problem::new(StatusCode::GATEWAY_TIMEOUT)
            .with_detail("the rotation did not complete in time; see the service log"));
    }
    Ok(Json(Rotated {
        generation: now.number,
        username: now.username.clone(),
    }))
}

/// `PUT /lab/rotation-mode` `{"naive": bool}`.
pub async fn rotation_mode(
    State(state): State<AppState>,
    body: Result<Json<RotationMode>, JsonRejection>,
) -> Result<Json<RotationMode>, Problem> {
    let Json(mode) = body.map_err(Problem::from)?;
    state.db.set_naive(mode.naive);
    tracing::warn!(naive = mode.naive, "rotation mode changed");
    Ok(Json(mode))
}
