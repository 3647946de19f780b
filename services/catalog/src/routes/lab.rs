//! Lab-only endpoints, mounted only when `LAB_ENDPOINTS=true`. They do on
//! purpose what production code must not, so experiments can show the
//! failure the real endpoints prevent.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};

use super::AppState;
use super::error::ApiError;
use crate::contract::{BlindDecrement, BlindOutcome};
use crate::store;

/// The naive read-modify-write: read stock, compute in Rust, write it back
/// with no precondition. Two of these interleaving both read the same value
/// and the second write erases the first: a lost update. The `yield_now`
/// widens the gap, as any real work between read and write would.
#[tracing::instrument(skip_all, fields(id, by))]
pub async fn blind_decrement(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<BlindDecrement>, JsonRejection>,
) -> Result<Json<BlindOutcome>, ApiError> {
    let Path(id) = id?;
    let Json(BlindDecrement { by }) = body?;
    let span = tracing::Span::current();
    span.record("id", id);
    span.record("by", by);
    let before = store::read_stock(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound(id))?;
    tokio::task::yield_now().await;
    let after = i64::from(before) - i64::from(by);
    if after < 0 {
        return Err(ApiError::NegativeStock(id));
    }
    let after = i32::try_from(after).map_err(|_| ApiError::StockOutOfRange(id))?;
    if !store::overwrite_stock(&state.pool, id, after).await? {
        return Err(ApiError::NotFound(id));
    }
    state.cache.invalidate(&[id]).await;
    Ok(Json(BlindOutcome {
        stock_before: before,
        stock_after: after,
    }))
}
