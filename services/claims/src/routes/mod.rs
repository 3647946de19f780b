//! The claims service's routes; the kit adds `/health`, `/ready`, `/metrics`.
//!
//! `POST /claims` and the lab's naive variant share everything but the
//! SQL: [`Prepared::from_request`] validates the key and body and renders
//! the response up front, [`respond`] turns what the database returned into
//! a 201, a replay or a 422.
//!
//! Whose claim: the BFF passes the verified customer as `X-User-Id`. With
//! it the claim is the customer's — a body `customer_id` may be left out,
//! and one naming anybody else is a 403 — only that customer reads it (404
//! for anyone else, as for a missing claim), and Idempotency-Keys are
//! scoped per customer, so another customer's replay of a key is a claim
//! of their own, never the first one's. Without it (the lab, direct) the
//! body's `customer_id` is required and claims share one key space.

mod claims;
mod error;
mod lab;
#[path = "../openapi.rs"]
mod openapi;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::claim::{Claim, NewClaim};
use crate::fingerprint::fingerprint;
use crate::idempotency::{IDEMPOTENT_REPLAYED, IdempotencyKey, Outcome, Recorded};
use crate::store::NewRecord;
pub use error::ClaimsError;

/// Counter of `POST /claims` outcomes, labelled `created|replayed|key_reused`.
pub const OUTCOME_METRIC: &str = "claims_idempotency_outcomes_total";

/// The service's routes, with the pool as state. The lab route exists only
/// when `lab_endpoints` is on; otherwise it is an ordinary 404.
pub fn router(pool: PgPool, lab_endpoints: bool) -> Router {
    let mut router = Router::new()
        .route("/claims", post(claims::create))
        .route("/claims/{id}", get(claims::get));
    if lab_endpoints {
        router = router.route(
            "/lab/claims/check-then-insert",
            post(lab::check_then_insert),
        );
    }
    router
        .with_state(pool)
        .merge(storefront_kit::openapi::router::<openapi::ApiDoc>())
}

/// The customer the BFF verified, if the request came through it: absent →
/// `None`; anything but exactly one UUID → 400.
fn customer(headers: &HeaderMap) -> Result<Option<Uuid>, ClaimsError> {
    storefront_kit::headers::verified_customer(headers).map_err(|_| ClaimsError::UserIdMalformed)
}

/// A request that passed validation, with its response already rendered.
struct Prepared {
    /// The client's key.
    key: IdempotencyKey,
    /// The verified customer, whose key space `key` is in (`None`: the lab's).
    owner: Option<Uuid>,
    /// Fingerprint of the body as sent (canonical JSON, SHA-256).
    request_hash: String,
    /// The claim to record, id and timestamp included.
    claim: Claim,
    /// The 201 body, rendered once so a replay can send the same bytes.
    body: String,
}

impl Prepared {
    /// Checks the key and `X-User-Id` (400), then the body (400/415
    /// unparsable, 422 invalid, 403 someone else's customer id).
    fn from_request(
        headers: &HeaderMap,
        body: Result<axum::Json<Value>, JsonRejection>,
    ) -> Result<Self, ClaimsError> {
        let key = IdempotencyKey::from_headers(headers)?;
        let owner = customer(headers)?;
        let axum::Json(body) = body?;
        let mut request = NewClaim::from_json(&body, owner).map_err(ClaimsError::Invalid)?;
        if let Some(user) = owner {
            if Uuid::try_parse(&request.customer_id).ok() != Some(user) {
                return Err(ClaimsError::ForeignCustomer);
            }
            request.customer_id = user.to_string();
        }
        let claim = Claim::new(request, chrono::Utc::now());
        let rendered = serde_json::to_string(&claim).map_err(ClaimsError::Render)?;
        Ok(Self {
            key,
            owner,
            request_hash: fingerprint(&body),
            claim,
            body: rendered,
        })
    }

    /// The row to insert for this request.
    fn record(&self) -> NewRecord<'_> {
        NewRecord {
            claim: &self.claim,
            key: &self.key,
            owner: self.owner,
            request_hash: &self.request_hash,
            response_status: 201,
            response_body: &self.body,
        }
    }
}

/// 201 with `Location`, the stored response again with
/// `Idempotent-Replayed: true`, or 422 when the key belongs to another body.
fn respond(prepared: Prepared, recorded: Recorded) -> Result<Response, ClaimsError> {
    let outcome = Outcome::of(&recorded, &prepared.request_hash);
    metrics::counter!(OUTCOME_METRIC, "outcome" => outcome.as_str()).increment(1);
    tracing::info!(
        outcome = outcome.as_str(),
        key = prepared.key.as_str(),
        claim_id = %recorded.claim_id,
        "idempotent request answered"
    );
    match outcome {
        Outcome::Created => Ok(stored_response(
            StatusCode::CREATED,
            &recorded,
            prepared.body,
        )),
        Outcome::Replayed => {
            // The status is stored as a smallint; anything out of range would
            // be a corrupt row, not something to replay.
            let status = u16::try_from(recorded.response_status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or(ClaimsError::CorruptRecord(recorded.response_status))?;
            let mut response = stored_response(status, &recorded, recorded.response_body.clone());
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            Ok(response)
        }
        Outcome::KeyReused => Err(ClaimsError::KeyReused(prepared.key)),
    }
}

/// `body` verbatim as `application/json`, with `Location` of the claim.
fn stored_response(status: StatusCode, recorded: &Recorded, body: String) -> Response {
    let location = format!("/claims/{}", recorded.claim_id);
    let mut response = (status, Body::from(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    response
}

#[cfg(test)]
mod tests;
