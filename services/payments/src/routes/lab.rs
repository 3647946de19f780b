//! Lab-only: a signing oracle, mounted only when `LAB_ENDPOINTS=true`, and
//! (like every `/lab/…` route, by the kit's gate) answering only requests
//! bearing the lab admin token: it signs anything, so an anonymous caller
//! with it could sign any claim — which the provider check would still
//! refuse to apply, but no stranger should get that far.
//! `POST /lab/sign/{provider}` signs a body as the provider would at a
//! given time, so `storefront saga` can replay real webhooks (freshly
//! signed, as a provider's resend does) and make stale ones (validly signed
//! long ago) without holding the secrets. A real provider keeps this to
//! itself; a production replica doesn't have the route at all (404).
//!
//! `GET`/`PUT /lab/outbox` read and set the outbox experiment's switches
//! (`storefront outbox`, [`crate::outbox_lab`]): the control arm's naive
//! dual write and the hold before an event's transaction commits.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use secrecy::ExposeSecret;
use std::time::Duration;

use super::{ApiError, AppState};
use crate::contract::{OutboxSwitches, Provider, SignRequest, Signed};
use crate::outbox_lab::{MAX_HOLD, Settings};
use crate::signature;

/// The headers to send with `body`.
pub async fn sign(
    State(state): State<AppState>,
    provider: Result<Path<String>, PathRejection>,
    request: Result<Json<SignRequest>, JsonRejection>,
) -> Result<Json<Signed>, ApiError> {
    let Path(provider) = provider?;
    let Json(request) = request.map_err(|e| ApiError::Lab(e.body_text()))?;
    let provider = Provider::parse(&provider)
        .ok_or_else(|| ApiError::Lab(format!("unknown provider {provider:?}")))?;
    let at = request.at.unwrap_or_else(|| chrono::Utc::now().timestamp());
    let body = request.body.as_bytes();
    let headers = match provider {
        Provider::Stripe => [(
            signature::STRIPE_SIGNATURE,
            signature::stripe_header(
                state.webhooks.stripe_secret.expose_secret().as_bytes(),
                at,
                body,
            ),
        )]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        Provider::Paypal => {
            let id = uuid::Uuid::new_v4().to_string();
            let time = chrono::DateTime::from_timestamp(at, 0)
                .ok_or_else(|| ApiError::Lab("at is out of range".into()))?
                .to_rfc3339();
            let sig = signature::paypal_signature(
                state.webhooks.paypal_secret.expose_secret().as_bytes(),
                &id,
                &time,
                body,
            );
            [
                (signature::PAYPAL_TRANSMISSION_ID, id),
                (signature::PAYPAL_TRANSMISSION_TIME, time),
                (signature::PAYPAL_TRANSMISSION_SIG, sig),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
        }
    };
    Ok(Json(Signed { headers }))
}

/// `GET /lab/outbox`: the switches and how many transactions are held now.
pub async fn outbox(State(state): State<AppState>) -> Json<Settings> {
    Json(state.store.lab.settings())
}

/// `PUT /lab/outbox`: sets the switches; answers with them.
pub async fn set_outbox(
    State(state): State<AppState>,
    request: Result<Json<OutboxSwitches>, JsonRejection>,
) -> Result<Json<Settings>, ApiError> {
    let Json(request) = request.map_err(|e| ApiError::Lab(e.body_text()))?;
    let hold = Duration::from_millis(request.hold_ms);
    if hold > MAX_HOLD {
        return Err(ApiError::Lab(format!(
            "hold_ms {} is over the most the lab holds a transaction, {} ms",
            request.hold_ms,
            MAX_HOLD.as_millis()
        )));
    }
    state.store.lab.set(request.dual_write, hold);
    tracing::warn!(
        dual_write = request.dual_write,
        hold_ms = request.hold_ms,
        "lab outbox switches set"
    );
    Ok(Json(state.store.lab.settings()))
}
