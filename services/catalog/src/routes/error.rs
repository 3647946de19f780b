//! The one error type of the catalog's handlers, mapped to a status in one
//! `match` in [`IntoResponse`]. Database text never reaches a client: the
//! store turns the constraint violations that mean something into outcomes,
//! and anything else is logged and answered with a fixed sentence.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;
use uuid::Uuid;

use super::preconditions::etag;

/// Everything that can go wrong in a catalog handler.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The query string doesn't deserialise (e.g. `limit=abc`).
    #[error(transparent)]
    BadQuery(#[from] QueryRejection),
    /// A path parameter has the wrong type.
    #[error(transparent)]
    BadPath(#[from] PathRejection),
    /// The body isn't the JSON the route takes (including unknown fields).
    #[error(transparent)]
    BadJson(#[from] JsonRejection),
    /// `limit` is outside `1..=MAX_LIMIT`.
    #[error("limit must be between 1 and {max}, got {got}")]
    LimitOutOfRange {
        /// What was asked for.
        got: u32,
        /// The largest allowed.
        max: u32,
    },
    /// The body parsed but says something invalid; the message says what.
    #[error("{0}")]
    InvalidBody(String),
    /// A number beyond what the catalog accepts (see `crate::bounds`).
    #[error("{0}")]
    OutOfBounds(String),
    /// A write without `If-Match`: we won't guess which version it meant.
    #[error("this request needs an If-Match header with the ETag of the version it changes")]
    PreconditionRequired,
    /// `If-Match` is not one strong ETag of ours.
    #[error("If-Match must be one ETag as returned by GET, like \"1234\"")]
    MalformedIfMatch,
    /// No product has this id.
    #[error("no product with id {0}")]
    NotFound(i64),
    /// The product changed since the client read it.
    #[error("the product has changed since this ETag was issued; GET it again and retry")]
    PreconditionFailed {
        /// The version now stored.
        current_version: i64,
    },
    /// The change would leave stock below zero; nothing was stored.
    #[error("this change would make the stock of product {0} negative")]
    NegativeStock(i64),
    /// The change would overflow the stock counter; nothing was stored.
    #[error("this change would push the stock of product {0} out of range")]
    StockOutOfRange(i64),
    /// A reservation item can't be served; nothing was reserved.
    #[error("product {product_id} has {available} in stock, {requested} requested")]
    OutOfStock {
        /// The product that is short.
        product_id: i64,
        /// What was asked for.
        requested: i32,
        /// What is on hand.
        available: i32,
    },
    /// A reservation item names no product; nothing was reserved.
    #[error("no product with id {0}")]
    UnknownProduct(i64),
    /// Every item is in stock but the total is above the caller's
    /// `max_amount_cents`; nothing was reserved.
    #[error("the order's total is {total} cents, above max_amount_cents {max}")]
    TotalAboveMax {
        /// Σ price × quantity, in minor units.
        total: i128,
        /// The caller's limit.
        max: i64,
    },
    /// The reservation id is taken by a reservation with other items.
    #[error("reservation {0} already exists with different items")]
    ReservationMismatch(Uuid),
    /// The reservation id was used and released; ids are single-use.
    #[error("reservation {0} was released and can't be reserved again")]
    ReservationReleased(Uuid),
    /// No reservation has this id.
    #[error("no reservation with id {0}")]
    ReservationNotFound(Uuid),
    /// Postgres failed; details are logged, never sent.
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let mut etag_header = None;
        let problem = match self {
            Self::BadQuery(rejection) => Problem::from(rejection),
            Self::BadPath(rejection) => Problem::from(rejection),
            // axum says 422 for well-formed JSON of the wrong shape; the
            // contract says 400 for any body we can't take as given.
            Self::BadJson(JsonRejection::MissingJsonContentType(rejection)) => {
                Problem::new(rejection.status()).with_detail(rejection.body_text())
            }
            Self::BadJson(rejection) => Problem::bad_request(rejection.body_text()),
            Self::LimitOutOfRange { .. } => {
                Problem::bad_request(detail).with_member("param", "limit")
            }
            Self::InvalidBody(_) => Problem::bad_request(detail),
            Self::OutOfBounds(_) => unprocessable("out-of-bounds", detail),
            Self::PreconditionRequired => Problem::new(StatusCode::PRECONDITION_REQUIRED)
                .with_type("/problems/precondition-required")
                .with_detail(detail),
            Self::MalformedIfMatch => {
                Problem::bad_request(detail).with_member("header", "If-Match")
            }
            Self::NotFound(id) => Problem::not_found(detail).with_member("id", id),
            Self::PreconditionFailed { current_version } => {
                etag_header = Some(etag(current_version));
                Problem::new(StatusCode::PRECONDITION_FAILED)
                    .with_type("/problems/precondition-failed")
                    .with_detail(detail)
                    .with_member("current_etag", etag(current_version))
                    .with_member("current_version", current_version)
            }
            Self::NegativeStock(id) => {
                unprocessable("negative-stock", detail).with_member("product_id", id)
            }
            Self::StockOutOfRange(id) => {
                unprocessable("stock-out-of-range", detail).with_member("product_id", id)
            }
            Self::OutOfStock {
                product_id,
                requested,
                available,
            } => Problem::conflict(detail)
                .with_type("/problems/out-of-stock")
                .with_member("product_id", product_id)
                .with_member("requested", requested)
                .with_member("available", available),
            Self::UnknownProduct(id) => {
                unprocessable("unknown-product", detail).with_member("product_id", id)
            }
            Self::TotalAboveMax { max, .. } => {
                unprocessable("total-above-max", detail).with_member("max_amount_cents", max)
            }
            Self::ReservationMismatch(id) => unprocessable("reservation-mismatch", detail)
                .with_member("reservation_id", id.to_string()),
            Self::ReservationReleased(id) => unprocessable("reservation-released", detail)
                .with_member("reservation_id", id.to_string()),
            Self::ReservationNotFound(id) => {
                Problem::not_found(detail).with_member("reservation_id", id.to_string())
            }
            // The pool couldn't hand out a connection: the database is down
            // or saturated, which a retry may outlive.
            Self::Database(ref error @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))) => {
                tracing::warn!(%error, "database unavailable");
                Problem::unavailable("the product database is unavailable; retry later")
            }
            Self::Database(ref error) => Problem::internal(error),
        };
        let mut response = problem.into_response();
        if let Some(value) = etag_header.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(header::ETAG, value);
        }
        response
    }
}

/// 422 with a `type` of `/problems/<kind>`.
fn unprocessable(kind: &str, detail: String) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
        .with_type(format!("/problems/{kind}"))
        .with_detail(detail)
}
