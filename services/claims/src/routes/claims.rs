//! `POST /claims` (idempotent, one statement) and `GET /claims/{id}`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{ClaimsError, Prepared, respond};
use crate::claim::Claim;
use crate::store;

/// `POST /claims` with `Idempotency-Key`: validate, render the 201 up
/// front, then one `INSERT … ON CONFLICT … RETURNING` decides between
/// created, replayed and key reused.
#[utoipa::path(post, path = "/claims", tag = "claims",
    params(
        ("Idempotency-Key" = String, Header, description = "The client's key for this request (1 to 255 visible ASCII characters)"),
        ("X-User-Id" = Option<uuid::Uuid>, Header, description = "The verified customer, set by the BFF"),
    ),
    request_body = crate::contract::ClaimRequest,
    responses(
        (status = 201, description = "The claim was recorded (or this is a byte-identical replay: Idempotent-Replayed: true)", body = crate::claim::Claim,
            headers(("Location" = String, description = "/claims/{id}"))),
        (status = 400, description = "Idempotency-Key or X-User-Id missing or malformed, or the body is not JSON", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 403, description = "customer_id is not the verified customer", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::BodyNotJson,
        (status = 422, description = "A field rule is broken, or the key was used with another body", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(key))]
pub async fn create(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ClaimsError> {
    let prepared = Prepared::from_request(&headers, body)?;
    tracing::Span::current().record("key", prepared.key.as_str());
    let recorded = store::insert_or_fetch(&pool, &prepared.record()).await?;
    respond(prepared, recorded)
}

/// `GET /claims/{id}`: the claim in the same shape as the 201 body; with
/// `X-User-Id` only the customer's own (another's is the same 404 as a
/// missing one).
#[utoipa::path(get, path = "/claims/{id}", tag = "claims",
    params(
        ("id" = uuid::Uuid, Path, description = "The claim id"),
        ("X-User-Id" = Option<uuid::Uuid>, Header, description = "The verified customer, set by the BFF: only their own claims"),
    ),
    responses(
        (status = 200, description = "The claim, as the 201 showed it", body = crate::claim::Claim),
        (status = 400, description = "The id is not a UUID, or X-User-Id is malformed", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No claim with this id (for this customer)", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(claim_id))]
pub async fn get(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Claim>, ClaimsError> {
    let reader = super::customer(&headers)?;
    let id = storefront_kit::path::recorded_uuid(id, "claim_id")?;
    store::get_claim(&pool, id, reader)
        .await?
        .map(Json)
        .ok_or(ClaimsError::NotFound(id))
}
