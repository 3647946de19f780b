//! Everything that can go wrong in the identity handlers, mapped to a
//! status and problem type once, in [`IntoResponse`]. Token-endpoint
//! errors carry OAuth's `error` code (RFC 6749 §5.2) as a member, so OAuth
//! clients and problem+json clients both find what they look for.

use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;

use std::time::Duration;

use crate::password::Busy;
use crate::refresh::Refusal;
use crate::throttle::Scope;
use crate::tokens::TokenError;

/// Problem type: the request is malformed or lacks a field.
pub const INVALID_REQUEST_TYPE: &str = "/problems/invalid-request";
/// Problem type: wrong password, or an unusable refresh token.
pub const INVALID_GRANT_TYPE: &str = "/problems/invalid-grant";
/// Problem type: a `grant_type` other than `password` or `refresh_token`.
pub const UNSUPPORTED_GRANT_TYPE: &str = "/problems/unsupported-grant-type";
/// Problem type: no usable bearer token (missing, invalid, expired, revoked).
pub const INVALID_TOKEN_TYPE: &str = "/problems/invalid-token";
/// Problem type: too many failed logins for this account or address.
pub const THROTTLED_TYPE: &str = "/problems/login-throttled";
/// Problem type: every password-check permit is busy.
pub const BUSY_TYPE: &str = "/problems/busy";
/// Problem type: a lab-only route or parameter without the admin token.
pub const LAB_TOKEN_TYPE: &str = "/problems/lab-token-required";

/// Why a bearer token was not accepted; the `reason` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// No `Authorization: Bearer` token.
    Missing,
    /// The token does not verify or is malformed.
    Invalid,
    /// The token expired.
    Expired,
    /// The token is on the denylist.
    Revoked,
}

impl Rejected {
    /// The `reason` member's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

impl From<TokenError> for Rejected {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => Self::Expired,
            TokenError::Invalid => Self::Invalid,
        }
    }
}

/// Why an identity request failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The body isn't JSON (or not declared as JSON).
    #[error(transparent)]
    BadBody(#[from] JsonRejection),
    /// A required field is missing or a value is out of range.
    #[error("{0}")]
    InvalidRequest(String),
    /// `grant_type` is none we support.
    #[error("grant_type {0:?} is not supported (use \"password\" or \"refresh_token\")")]
    UnsupportedGrant(String),
    /// Unknown user or wrong password (one message for both).
    #[error("wrong username or password")]
    BadCredentials,
    /// The refresh token can't be used.
    #[error("the refresh token cannot be used ({})", .0.as_str())]
    RefreshRefused(Refusal),
    /// A used refresh token came back: its family is revoked.
    #[error("this refresh token was already used; its session is revoked")]
    ReuseDetected,
    /// The bearer token is not accepted.
    #[error("the access token is {}", .0.as_str())]
    Unauthorized(Rejected),
    /// Too many failed password grants in this window.
    #[error("too many failed logins for this {}; retry after {} s", .scope.as_str(), .retry_after.as_secs())]
    Throttled {
        /// Which limit refused.
        scope: Scope,
        /// When the client may try again.
        retry_after: Duration,
    },
    /// No hashing permit came free within the queue deadline.
    #[error("the service is busy checking passwords; retry after {} s", .0.retry_after.as_secs())]
    Busy(#[from] Busy),
    /// A lab-only route or parameter without `Authorization: Bearer <LAB_ADMIN_TOKEN>`.
    #[error("{0} needs the lab admin token (Authorization: Bearer <LAB_ADMIN_TOKEN>)")]
    LabTokenRequired(&'static str),
    /// Postgres failed; details are logged, never sent.
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
    /// Redis (the denylist, the guessing throttle) failed. Both fail
    /// closed: no token is trusted and no password is checked uncounted.
    #[error("Redis unavailable")]
    Redis(#[from] redis::RedisError),
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let problem = match self {
            Self::BadBody(rejection) => Problem::from(rejection),
            Self::InvalidRequest(_) => Problem::bad_request(detail)
                .with_type(INVALID_REQUEST_TYPE)
                .with_title("Invalid request")
                .with_member("error", "invalid_request"),
            Self::UnsupportedGrant(_) => Problem::bad_request(detail)
                .with_type(UNSUPPORTED_GRANT_TYPE)
                .with_title("Unsupported grant type")
                .with_member("error", "unsupported_grant_type"),
            Self::BadCredentials => invalid_grant(detail, "bad_credentials"),
            Self::RefreshRefused(why) => invalid_grant(detail, why.as_str()),
            Self::ReuseDetected => invalid_grant(detail, "reuse_detected"),
            Self::Unauthorized(why) => {
                let problem = Problem::new(StatusCode::UNAUTHORIZED)
                    .with_type(INVALID_TOKEN_TYPE)
                    .with_title("Invalid token")
                    .with_detail(detail)
                    .with_member("error", "invalid_token")
                    .with_member("reason", why.as_str());
                return with_challenge(problem.into_response(), why);
            }
            Self::Throttled { scope, retry_after } => {
                let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
                    .with_type(THROTTLED_TYPE)
                    .with_title("Too many failed logins")
                    .with_detail(detail)
                    .with_member("scope", scope.as_str())
                    .with_member("retry_after_secs", retry_after.as_secs());
                return with_retry_after(problem.into_response(), retry_after);
            }
            Self::Busy(busy) => {
                let problem = Problem::unavailable(detail)
                    .with_type(BUSY_TYPE)
                    .with_title("Busy")
                    .with_member("retry_after_secs", busy.retry_after.as_secs());
                return with_retry_after(problem.into_response(), busy.retry_after);
            }
            Self::LabTokenRequired(_) => {
                let problem = Problem::new(StatusCode::UNAUTHORIZED)
                    .with_type(LAB_TOKEN_TYPE)
                    .with_title("Lab admin token required")
                    .with_detail(detail);
                let mut response = problem.into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="storefront-lab""#),
                );
                return response;
            }
            Self::Database(ref error)
                if crate::db::is_stale(error) || matches!(error, sqlx::Error::PoolTimedOut) =>
            {
                tracing::warn!(%error, "database unavailable");
                Problem::unavailable("the identity database is unavailable; retry shortly")
            }
            Self::Database(ref error) => Problem::internal(error),
            Self::Redis(ref error) => {
                tracing::warn!(%error, "Redis unavailable");
                Problem::unavailable(
                    "the token denylist and login throttle are unavailable; retry shortly",
                )
            }
        };
        problem.into_response()
    }
}

fn invalid_grant(detail: String, reason: &str) -> Problem {
    Problem::bad_request(detail)
        .with_type(INVALID_GRANT_TYPE)
        .with_title("Invalid grant")
        .with_member("error", "invalid_grant")
        .with_member("reason", reason)
}

/// `Retry-After` in whole seconds (RFC 9110 §10.2.3).
fn with_retry_after(mut response: Response, after: Duration) -> Response {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(after.as_secs().max(1)),
    );
    response
}

/// RFC 6750 §3: a 401 names the scheme and, for a presented token, why.
fn with_challenge(mut response: Response, why: Rejected) -> Response {
    let value = match why {
        Rejected::Missing => r#"Bearer realm="storefront""#.to_owned(),
        other => format!(
            r#"Bearer realm="storefront", error="invalid_token", error_description="the access token is {}""#,
            other.as_str()
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
