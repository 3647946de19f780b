//! `POST /lab/claims/check-then-insert`, mounted only with
//! `LAB_ENDPOINTS=true`: the naive idempotency everyone writes first —
//! look the key up, and if it isn't there, insert. Between the two
//! statements every concurrent request with the same key also finds
//! nothing, so all of them insert. It writes to `lab_claims`, which has no
//! unique constraint on the key, so the race leaves duplicate rows behind
//! for the experiment to count; a unique violation, were there a
//! constraint, would surface as a generic 500 (see `ClaimsError`).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;
use sqlx::PgPool;

use super::{ClaimsError, Prepared, respond};
use crate::store;

/// Same request and response contract as `POST /claims`, wrong under
/// concurrency on purpose.
#[tracing::instrument(skip_all, fields(key))]
pub async fn check_then_insert(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ClaimsError> {
    let prepared = Prepared::from_request(&headers, body)?;
    tracing::Span::current().record("key", prepared.key.as_str());
    if let Some(recorded) = store::lab::find(&pool, &prepared.key).await? {
        return respond(prepared, recorded);
    }
    // Widen the window between check and insert a little, as any real work
    // (a call to another service, a slow query) would.
    tokio::task::yield_now().await;
    let recorded = store::lab::insert(&pool, &prepared.record()).await?;
    respond(prepared, recorded)
}
