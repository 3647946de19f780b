//! `POST /webhooks/stripe` and `POST /webhooks/paypal`: verify the
//! signature over the raw body (forged or stale → 400/401, nothing
//! stored), parse, then apply in one transaction deduplicated by the
//! provider's event id, and answer 200 at once — the work is one short
//! transaction; anything slow (telling checkout) goes through the outbox.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::contract::Provider;
use crate::signature::{self, PaypalHeaders};
use crate::webhook;

/// Counter of webhooks received, by provider and outcome.
pub const WEBHOOKS_METRIC: &str = "payments_webhooks_total";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Stripe-like webhook.
#[tracing::instrument(skip_all, fields(provider = "stripe"))]
pub async fn stripe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let verified = signature::verify_stripe(
        state.webhooks.stripe_secret.expose_secret().as_bytes(),
        header(&headers, signature::STRIPE_SIGNATURE),
        &body,
        now(),
        state.webhooks.tolerance_secs,
    );
    receive(&state, Provider::Stripe, verified, &body).await
}

/// PayPal-like webhook.
#[tracing::instrument(skip_all, fields(provider = "paypal"))]
pub async fn paypal(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let verified = signature::verify_paypal(
        state.webhooks.paypal_secret.expose_secret().as_bytes(),
        PaypalHeaders {
            transmission_id: header(&headers, signature::PAYPAL_TRANSMISSION_ID),
            transmission_time: header(&headers, signature::PAYPAL_TRANSMISSION_TIME),
            signature: header(&headers, signature::PAYPAL_TRANSMISSION_SIG),
        },
        &body,
        now(),
        state.webhooks.tolerance_secs,
    );
    receive(&state, Provider::Paypal, verified, &body).await
}

/// Everything after the provider-specific signature check.
async fn receive(
    state: &AppState,
    provider: Provider,
    verified: Result<(), signature::SignatureError>,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let count = |outcome: &'static str| {
        metrics::counter!(WEBHOOKS_METRIC, "provider" => provider.as_str(), "outcome" => outcome)
            .increment(1);
    };
    if let Err(error) = verified {
        count("rejected_signature");
        tracing::warn!(%error, "webhook refused");
        return Err(error.into());
    }
    let parsed = webhook::parse(provider, body)
        .and_then(|event| Ok((event, serde_json::from_slice::<Value>(body)?)));
    let (event, value) = match parsed {
        Ok(p) => p,
        Err(error) => {
            count("bad_body");
            return Err(ApiError::BadBody(error));
        }
    };
    let outcome = state.store.handle_webhook(provider, &event, &value).await?;
    count(outcome.label());
    Ok(Json(json!({
        "received": true,
        "event_id": event.event_id,
        "outcome": outcome.label(),
    })))
}
