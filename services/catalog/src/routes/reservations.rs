//! `POST /reservations` and `DELETE /reservations/{id}`: stock held for a
//! checkout, idempotent by the caller's reservation id, all items or none.
//! A reservation answers with the price each line's units were taken at
//! and the total, and refuses (nothing taken) a total above the caller's
//! `max_amount_cents`: checkout prices an order from that answer instead of
//! asking for each product first (issue 15).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::bounds::MAX_QUANTITY;
use crate::store::{self, PricedLine, ReleaseOutcome, ReservationItem, ReserveOutcome};

/// Most lines one reservation may have; bounds one transaction's locks.
pub const MAX_ITEMS: usize = 100;

/// `POST /reservations` body.
#[derive(utoipa::ToSchema, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// Chosen by the caller, so a retry is recognised as the same request.
    reservation_id: Uuid,
    /// What to hold.
    items: Vec<ReservationItem>,
    /// If given, the largest total (Σ price × quantity, in minor units)
    /// the caller accepts: a larger one is refused with 422 and nothing is
    /// taken. Not negative.
    #[serde(default)]
    max_amount_cents: Option<i64>,
}

impl ReserveBody {
    /// Validates and sorts the items by product id: the lock order, and the
    /// canonical form two requests are compared in.
    fn into_parts(self) -> Result<(Uuid, Vec<ReservationItem>), ApiError> {
        if self.max_amount_cents.is_some_and(|max| max < 0) {
            return Err(ApiError::InvalidBody(
                "max_amount_cents must not be negative".into(),
            ));
        }
        let mut items = self.items;
        if items.is_empty() || items.len() > MAX_ITEMS {
            return Err(ApiError::InvalidBody(format!(
                "items must hold between 1 and {MAX_ITEMS} lines"
            )));
        }
        if let Some(bad) = items.iter().find(|i| i.quantity <= 0) {
            return Err(ApiError::InvalidBody(format!(
                "quantity must be positive (product {})",
                bad.product_id
            )));
        }
        if let Some(bad) = items.iter().find(|i| i.quantity > MAX_QUANTITY) {
            return Err(ApiError::OutOfBounds(format!(
                "quantity must be at most {MAX_QUANTITY} (product {})",
                bad.product_id
            )));
        }
        if let Some(bad) = items.iter().find(|i| i.product_id <= 0) {
            return Err(ApiError::UnknownProduct(bad.product_id));
        }
        items.sort_unstable();
        if let Some(pair) = items
            .windows(2)
            .find(|w| w[0].product_id == w[1].product_id)
        {
            return Err(ApiError::InvalidBody(format!(
                "product {} appears more than once",
                pair[0].product_id
            )));
        }
        Ok((self.reservation_id, items))
    }
}

/// A reservation as every response shows it; items in product-id order.
#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct ReservationBody {
    /// The caller's id.
    reservation_id: Uuid,
    /// `reserved` or `released`.
    status: &'static str,
    /// What is (or was) held, each line with the price its units were
    /// taken at.
    items: Vec<PricedLine>,
    /// Σ price × quantity of the lines, in minor units (`null` only past
    /// `i64`, which the catalog's bounds rule out).
    amount_cents: Option<i64>,
}

impl ReservationBody {
    fn new(reservation_id: Uuid, status: &'static str, items: Vec<PricedLine>) -> Self {
        Self {
            reservation_id,
            status,
            amount_cents: store::total_cents(&items),
            items,
        }
    }
}

/// `POST /reservations`: 201 when stock was taken now, 200 for a retry of
/// the same reservation, 409 when an item is short (nothing taken).
#[utoipa::path(post, path = "/reservations", tag = "reservations",
    request_body = ReserveBody,
    responses(
        (status = 201, description = "Stock was taken now", body = ReservationBody),
        (status = 200, description = "A retry of the same reservation; nothing changed", body = ReservationBody),
        (status = 400, description = "The body is malformed or invalid", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 409, description = "An item is out of stock; nothing was reserved", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown product, out of bounds, the total above max_amount_cents (nothing reserved), or the id is taken", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(reservation_id))]
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<ReserveBody>, JsonRejection>,
) -> Result<(StatusCode, Json<ReservationBody>), ApiError> {
    let Json(body) = body?;
    let max_amount_cents = body.max_amount_cents;
    let (id, items) = body.into_parts()?;
    tracing::Span::current().record("reservation_id", tracing::field::display(id));
    let (status, lines) = match store::reserve(&state.pool, id, &items, max_amount_cents).await? {
        ReserveOutcome::Created(lines) => {
            let ids: Vec<i64> = items.iter().map(|i| i.product_id).collect();
            state.cache.invalidate(&ids).await;
            (StatusCode::CREATED, lines)
        }
        ReserveOutcome::Existing(lines) => (StatusCode::OK, lines),
        ReserveOutcome::Mismatch => return Err(ApiError::ReservationMismatch(id)),
        ReserveOutcome::Released => return Err(ApiError::ReservationReleased(id)),
        ReserveOutcome::UnknownProduct(product_id) => {
            return Err(ApiError::UnknownProduct(product_id));
        }
        ReserveOutcome::OutOfStock {
            product_id,
            requested,
            available,
        } => {
            return Err(ApiError::OutOfStock {
                product_id,
                requested,
                available,
            });
        }
        ReserveOutcome::TotalAboveMax { total, max } => {
            return Err(ApiError::TotalAboveMax { total, max });
        }
    };
    Ok((status, Json(ReservationBody::new(id, "reserved", lines))))
}

/// `DELETE /reservations/{id}`: gives the stock back once; repeating it
/// answers the same and changes nothing.
#[utoipa::path(delete, path = "/reservations/{id}", tag = "reservations",
    params(("id" = uuid::Uuid, Path, description = "The reservation id")),
    responses(
        (status = 200, description = "Released (now or before)", body = ReservationBody),
        storefront_kit::openapi::IdNotUuid,
        (status = 404, description = "No reservation has this id", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(reservation_id))]
pub async fn release(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<ReservationBody>, ApiError> {
    let id = storefront_kit::path::recorded_uuid(id, "reservation_id")?;
    let items = match store::release_reservation(&state.pool, id).await? {
        ReleaseOutcome::Released(items) => {
            let ids: Vec<i64> = items.iter().map(|i| i.product_id).collect();
            state.cache.invalidate(&ids).await;
            items
        }
        ReleaseOutcome::AlreadyReleased(items) => items,
        ReleaseOutcome::Missing => return Err(ApiError::ReservationNotFound(id)),
    };
    Ok(Json(ReservationBody::new(id, "released", items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(json: &str) -> Result<Vec<ReservationItem>, String> {
        let body: ReserveBody = serde_json::from_str(json).map_err(|e| e.to_string())?;
        body.into_parts()
            .map(|(_, items)| items)
            .map_err(|e| e.to_string())
    }

    const ID: &str = "7d8f5a43-2b1e-4b44-9a53-0f6f5d7c9e01";

    #[test]
    fn items_are_sorted_by_product_id() {
        let items = parts(&format!(
            r#"{{"reservation_id": "{ID}", "items": [{{"product_id": 9, "quantity": 1}}, {{"product_id": 2, "quantity": 3}}]}}"#
        ))
        .unwrap();
        let ids: Vec<i64> = items.iter().map(|i| i.product_id).collect();
        assert_eq!(ids, [2, 9]);
    }

    #[test]
    fn a_negative_max_amount_is_refused_and_none_means_no_limit() {
        let body = |max: &str| {
            format!(
                r#"{{"reservation_id": "{ID}", "items": [{{"product_id": 1, "quantity": 1}}]{max}}}"#
            )
        };
        assert!(parts(&body(r#", "max_amount_cents": -1"#)).is_err());
        assert!(parts(&body(r#", "max_amount_cents": 0"#)).is_ok());
        assert!(parts(&body("")).is_ok());
    }

    #[test]
    fn bad_reservations_are_refused() {
        for items in [
            "[]",
            r#"[{"product_id": 1, "quantity": 0}]"#,
            r#"[{"product_id": 1, "quantity": 1}, {"product_id": 1, "quantity": 2}]"#,
            r#"[{"product_id": 1, "quantity": 1, "note": "x"}]"#,
        ] {
            let json = format!(r#"{{"reservation_id": "{ID}", "items": {items}}}"#);
            assert!(parts(&json).is_err(), "{items}");
        }
    }
}
