//! The one error type of checkout's handlers, mapped to a status in one
//! `match`. Database text never reaches a client.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;
use uuid::Uuid;

/// Everything that can go wrong in a checkout handler.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Idempotency-Key` header.
    #[error("POST /checkout needs an Idempotency-Key header (retries send the same one)")]
    KeyMissing,
    /// The key isn't 1–255 characters of `A-Za-z0-9_.:-`.
    #[error("the Idempotency-Key must be 1-255 characters of A-Z a-z 0-9 _ . : -")]
    KeyMalformed,
    /// The key was first used with another request.
    #[error("this Idempotency-Key was already used with a different request body")]
    KeyReused,
    /// `X-User-Id` (set by the BFF) is not one UUID.
    #[error("the X-User-Id header must be one UUID")]
    UserIdMalformed,
    /// The body isn't the JSON the route takes.
    #[error(transparent)]
    BadJson(#[from] JsonRejection),
    /// The body parsed but says something invalid; the message says what.
    #[error("{0}")]
    Invalid(String),
    /// A path parameter has the wrong type.
    #[error(transparent)]
    BadPath(#[from] PathRejection),
    /// No saga has this id.
    #[error("no checkout with order id {0}")]
    NotFound(Uuid),
    /// Postgres failed; details are logged, never sent.
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let problem = match self {
            Self::KeyMissing => Problem::bad_request(detail)
                .with_type("/problems/idempotency-key-missing")
                .with_member("header", "Idempotency-Key"),
            Self::KeyMalformed => Problem::bad_request(detail)
                .with_type("/problems/idempotency-key-malformed")
                .with_member("header", "Idempotency-Key"),
            Self::KeyReused => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type("/problems/idempotency-key-reused")
                .with_detail(detail),
            Self::UserIdMalformed => Problem::bad_request(detail)
                .with_type("/problems/user-id-malformed")
                .with_member("header", "X-User-Id"),
            Self::BadJson(JsonRejection::MissingJsonContentType(rejection)) => {
                Problem::new(rejection.status()).with_detail(rejection.body_text())
            }
            Self::BadJson(rejection) => Problem::bad_request(rejection.body_text()),
            Self::Invalid(_) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type("/problems/invalid-checkout")
                .with_detail(detail),
            Self::BadPath(rejection) => Problem::from(rejection),
            Self::NotFound(id) => {
                Problem::not_found(detail).with_member("order_id", id.to_string())
            }
            Self::Database(ref error @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))) => {
                tracing::warn!(%error, "database unavailable");
                Problem::unavailable("the checkout database is unavailable; retry later")
            }
            Self::Database(ref error) => Problem::internal(error),
        };
        problem.into_response()
    }
}
