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
        (status = 400, description = "The order id is not a UUID", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No payment for this order", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = storefront_kit::Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id))]
pub async fn get(
    State(state): State<AppState>,
    order_id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(order_id) = order_id?;
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let (payment, history) = state
        .store
        .payment_of_order(order_id)
        .await?
        .ok_or(ApiError::NotFound(order_id))?;
    Ok(Json(json!({ "payment": payment, "history": history })))
}
