//! The one error type of the payments handlers, mapped to a status in one
//! `match`. Database text never reaches a client.

use axum::extract::rejection::PathRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;
use uuid::Uuid;

use crate::signature::SignatureError;

/// Everything that can go wrong in a payments handler.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The webhook's signature headers are missing or unreadable.
    #[error("{0}")]
    MalformedSignature(SignatureError),
    /// The webhook is not signed by the provider (or too long ago).
    #[error("{0}")]
    BadSignature(SignatureError),
    /// The signed body isn't a webhook of this provider's shape (or holds a NUL).
    #[error("the webhook body is not a valid event: {0}")]
    BadBody(#[source] serde_json::Error),
    /// A transmission id already accepted, now with another body.
    #[error("this transmission id was already used for another body")]
    TransmissionReused,
    /// A path parameter has the wrong type.
    #[error(transparent)]
    BadPath(#[from] PathRejection),
    /// A lab request is unusable; the message says why.
    #[error("{0}")]
    Lab(String),
    /// No payment for this order.
    #[error("no payment for order {0}")]
    NotFound(Uuid),
    /// Postgres failed; details are logged, never sent.
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl From<SignatureError> for ApiError {
    fn from(error: SignatureError) -> Self {
        if error.is_malformed() {
            Self::MalformedSignature(error)
        } else {
            Self::BadSignature(error)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let problem = match self {
            Self::MalformedSignature(_) => {
                Problem::bad_request(detail).with_type("/problems/malformed-signature")
            }
            Self::BadSignature(_) => Problem::new(StatusCode::UNAUTHORIZED)
                .with_type("/problems/invalid-signature")
                .with_detail(detail),
            Self::BadBody(_) => Problem::bad_request(detail).with_type("/problems/invalid-event"),
            Self::TransmissionReused => Problem::new(StatusCode::CONFLICT)
                .with_type("/problems/transmission-reused")
                .with_detail(detail),
            Self::BadPath(rejection) => Problem::from(rejection),
            Self::Lab(_) => Problem::bad_request(detail),
            Self::NotFound(id) => {
                Problem::not_found(detail).with_member("order_id", id.to_string())
            }
            Self::Database(ref error @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))) => {
                tracing::warn!(%error, "database unavailable");
                Problem::unavailable("the payments database is unavailable; retry later")
            }
            Self::Database(ref error) => Problem::internal(error),
        };
        problem.into_response()
    }
}
