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
#[tracing::instrument(skip_all, fields(claim_id))]
pub async fn get(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Claim>, ClaimsError> {
    let reader = super::customer(&headers)?;
    let Path(id) = id?;
    tracing::Span::current().record("claim_id", tracing::field::display(id));
    store::get_claim(&pool, id, reader)
        .await?
        .map(Json)
        .ok_or(ClaimsError::NotFound(id))
}
