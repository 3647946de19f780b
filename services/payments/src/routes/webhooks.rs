//! `POST /webhooks/stripe` and `POST /webhooks/paypal`: verify the
//! signature over the raw body (forged or stale → 400/401, nothing
//! stored), parse (not an event, or a NUL character anywhere → 400, before
//! any query), then apply in one transaction deduplicated by the
//! provider's event id — and, for PayPal, by transmission id — and answer
//! 200 at once: the work is one short transaction; anything slow (telling
//! checkout) goes through the outbox.
//!
//! Answers, for a provider's retry logic: 200 for everything handled,
//! including a duplicate event, the same transmission resent (an honest
//! retry of a delivery whose answer was lost) and a claim the provider's
//! record doesn't back (`"outcome": "unconfirmed"`: retrying can't make it
//! true); 409 for a used transmission id with another body, which no
//! honest provider sends. None of those changes anything.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::contract::Provider;
use crate::signature::{self, PaypalHeaders};
use crate::store::{Outcome, Transmission};
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
#[utoipa::path(post, path = "/webhooks/stripe", tag = "webhooks",
    params(("Stripe-Signature" = Option<String>, Header, description = "t=<unix time>,v1=<HMAC-SHA256 of t.body, hex>")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "A provider event, signed byte for byte"),
    responses(
        (status = 200, description = "Handled (including a duplicate or an unconfirmed claim)", body = super::openapi::WebhookAck),
        (status = 400, description = "Signature header missing or unreadable, or the signed body is not an event", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The signature does not verify, or is too old", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
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
    receive(&state, Provider::Stripe, verified, None, &body).await
}

/// PayPal-like webhook.
#[utoipa::path(post, path = "/webhooks/paypal", tag = "webhooks",
    params(
        ("PayPal-Transmission-Id" = Option<String>, Header, description = "Accepted once per body"),
        ("PayPal-Transmission-Time" = Option<String>, Header, description = "Unix time"),
        ("PayPal-Transmission-Sig" = Option<String>, Header, description = "HMAC over id|time|sha256(body)"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "A provider event, signed byte for byte"),
    responses(
        (status = 200, description = "Handled (including a duplicate, a resent transmission or an unconfirmed claim)", body = super::openapi::WebhookAck),
        (status = 400, description = "Signature headers missing or unreadable, or the signed body is not an event", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The signature does not verify, or is too old", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The transmission id was used for another body", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(provider = "paypal"))]
pub async fn paypal(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let paypal = PaypalHeaders {
        transmission_id: header(&headers, signature::PAYPAL_TRANSMISSION_ID),
        transmission_time: header(&headers, signature::PAYPAL_TRANSMISSION_TIME),
        signature: header(&headers, signature::PAYPAL_TRANSMISSION_SIG),
    };
    let verified = signature::verify_paypal(
        state.webhooks.paypal_secret.expose_secret().as_bytes(),
        paypal,
        &body,
        now(),
        state.webhooks.tolerance_secs,
    );
    let digest = signature::body_digest(&body);
    let transmission = paypal.transmission_id.map(|id| Transmission {
        id,
        body_sha256: &digest,
    });
    receive(&state, Provider::Paypal, verified, transmission, &body).await
}

/// Everything after the provider-specific signature check.
async fn receive(
    state: &AppState,
    provider: Provider,
    verified: Result<(), signature::SignatureError>,
    transmission: Option<Transmission<'_>>,
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
    let (event, value) = match webhook::parse(provider, body) {
        Ok(parsed) => parsed,
        Err(error) => {
            count("bad_body");
            tracing::warn!(%error, "signed webhook body refused");
            return Err(ApiError::BadBody(error));
        }
    };
    let outcome = state
        .store
        .handle_webhook(provider, transmission, &event, &value)
        .await?;
    count(outcome.label());
    if outcome == Outcome::TransmissionReused {
        return Err(ApiError::TransmissionReused);
    }
    Ok(Json(json!({
        "received": true,
        "event_id": event.event_id,
        "outcome": outcome.label(),
    })))
}
