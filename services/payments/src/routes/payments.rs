//! `GET /payments/{order_id}`: a payment's status and history, for
//! operators and tests.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiError, AppState};

/// The order's payment with its transitions, oldest first.
#[utoipa::path(get, path = "/payments/{order_id}", tag = "payments",
    params(("order_id" = uuid::Uuid, Path, description = "The order the payment is for")),
    responses(
        (status = 200, description = "The payment and its transitions, oldest first", body = super::openapi::PaymentView),
        storefront_kit::openapi::IdNotUuid,
        (status = 404, description = "No payment for this order", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(order_id))]
pub async fn get(
    State(state): State<AppState>,
    order_id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let order_id = storefront_kit::path::recorded_uuid(order_id, "order_id")?;
    let (payment, history) = state
        .store
        .payment_of_order(order_id)
        .await?
        .ok_or(ApiError::NotFound(order_id))?;
    Ok(Json(json!({ "payment": payment, "history": history })))
}
