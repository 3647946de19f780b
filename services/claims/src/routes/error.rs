//! Everything that can go wrong in the claims handlers, mapped to a status
//! and problem type once, in [`IntoResponse`].

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;
use uuid::Uuid;

use crate::claim::FieldError;
use crate::idempotency::{IdempotencyKey, KeyError};

/// Problem type for a key already bound to a different request body.
pub const KEY_REUSED_TYPE: &str = "/problems/idempotency-key-reused";
/// Problem type for a missing `Idempotency-Key`.
pub const KEY_MISSING_TYPE: &str = "/problems/idempotency-key-missing";
/// Problem type for an unusable `Idempotency-Key`.
pub const KEY_MALFORMED_TYPE: &str = "/problems/idempotency-key-malformed";
/// Problem type for an `X-User-Id` that is not one UUID.
pub const USER_ID_MALFORMED_TYPE: &str = "/problems/user-id-malformed";
/// Problem type for a claim whose `customer_id` is someone else.
pub const FOREIGN_CUSTOMER_TYPE: &str = "/problems/foreign-customer";
/// Problem type for a body that parses but breaks a field rule.
pub const INVALID_CLAIM_TYPE: &str = "/problems/invalid-claim";

/// Why a claims request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    /// `Idempotency-Key` missing or malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// `X-User-Id` (set by the BFF) is not one UUID.
    #[error("the X-User-Id header must be one UUID")]
    UserIdMalformed,
    /// The body's `customer_id` is not the verified customer.
    #[error("customer_id must be your own user id (or left out)")]
    ForeignCustomer,
    /// The body isn't JSON (or not declared as JSON).
    #[error(transparent)]
    BadBody(#[from] JsonRejection),
    /// The body is JSON but not a valid claim.
    #[error("the claim is invalid")]
    Invalid(Vec<FieldError>),
    /// The path id isn't a UUID.
    #[error(transparent)]
    BadPath(#[from] PathRejection),
    /// No claim has this id (or it has expired).
    #[error("no claim with id {0}")]
    NotFound(Uuid),
    /// The key was first used with a different body.
    #[error("this Idempotency-Key was already used with a different request body")]
    KeyReused(IdempotencyKey),
    /// A stored response status outside HTTP's range.
    #[error("stored response status {0} is not an HTTP status")]
    CorruptRecord(i16),
    /// Rendering the response failed.
    #[error("failed to render the claim")]
    Render(#[source] serde_json::Error),
    /// Postgres failed; details are logged, never sent.
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ClaimsError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Key(KeyError::Missing) => Problem::bad_request(self.to_string())
                .with_type(KEY_MISSING_TYPE)
                .with_title("Idempotency-Key required")
                .with_member("header", "Idempotency-Key"),
            Self::Key(KeyError::Malformed(_)) => Problem::bad_request(self.to_string())
                .with_type(KEY_MALFORMED_TYPE)
                .with_title("Idempotency-Key malformed")
                .with_member("header", "Idempotency-Key"),
            Self::UserIdMalformed => Problem::bad_request(self.to_string())
                .with_type(USER_ID_MALFORMED_TYPE)
                .with_member("header", "X-User-Id"),
            Self::ForeignCustomer => Problem::new(StatusCode::FORBIDDEN)
                .with_type(FOREIGN_CUSTOMER_TYPE)
                .with_title("Not your customer id")
                .with_detail(self.to_string()),
            Self::BadBody(rejection) => Problem::from(rejection),
            Self::BadPath(rejection) => Problem::from(rejection),
            Self::Invalid(ref errors) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type(INVALID_CLAIM_TYPE)
                .with_title("Invalid claim")
                .with_detail(self.to_string())
                .with_member("errors", serde_json::to_value(errors).unwrap_or_default()),
            Self::NotFound(id) => {
                Problem::not_found(self.to_string()).with_member("claim_id", id.to_string())
            }
            Self::KeyReused(ref key) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_type(KEY_REUSED_TYPE)
                .with_title("Idempotency-Key reused")
                .with_detail(self.to_string())
                .with_member("idempotency_key", key.as_str()),
            Self::CorruptRecord(_) | Self::Render(_) => Problem::internal(&self),
            // The pool couldn't hand out a connection: the database is down
            // or saturated, which a retry (same key!) may outlive.
            Self::Database(ref error @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))) => {
                tracing::warn!(%error, "database unavailable");
                Problem::unavailable(
                    "the claims database is unavailable; retry with the same Idempotency-Key",
                )
            }
            // Only the lab's naive path can hit this (the main path has
            // ON CONFLICT): two requests both saw "no row" and both inserted.
            // Logged with the constraint, answered with the generic 500.
            Self::Database(ref error)
                if error
                    .as_database_error()
                    .is_some_and(|e| e.is_unique_violation()) =>
            {
                tracing::warn!(%error, "check-then-insert lost a race: unique violation");
                Problem::internal(error)
            }
            Self::Database(ref error) => Problem::internal(error),
        };
        problem.into_response()
    }
}
