//! The lab's fault-injection and introspection routes (`/lab/…`) rotate
//! credentials, switch a service to a naive arm and sign arbitrary bodies:
//! nothing an anonymous caller may do. [`super::app`] puts every path under
//! `/lab/` behind `Authorization: Bearer <LAB_ADMIN_TOKEN>`, whichever
//! service mounts it, so no service can forget. With no token configured the
//! lab is closed (401), never open.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::Problem;

/// The token lab requests must present, if one is configured.
#[derive(Clone)]
pub(super) struct LabGate {
    /// `LAB_ADMIN_TOKEN`; `None` keeps the lab shut.
    token: Option<Arc<SecretString>>,
}

impl LabGate {
    pub(super) fn new(token: Option<SecretString>) -> Self {
        Self {
            token: token.map(Arc::new),
        }
    }
}

/// Whether a request path is the lab's. axum matches routes on the path as
/// sent (`/%6cab/…` matches no `/lab/…` route), so the raw path is the
/// right thing to test.
fn is_lab_path(path: &str) -> bool {
    path == "/lab" || path.starts_with("/lab/")
}

/// The answer to a lab request without the right token, or `None` to let
/// the request through.
///
/// A lab path that matches no route (no [`MatchedPath`]: lab endpoints are
/// off) passes through to the ordinary 404; there is nothing to guard.
pub(super) fn refusal(gate: &LabGate, request: &Request) -> Option<Response> {
    let routed = request.extensions().get::<MatchedPath>().is_some();
    if !routed || !is_lab_path(request.uri().path()) {
        return None;
    }
    let Some(expected) = gate.token.as_deref() else {
        return Some(unauthorized(
            "lab endpoints are closed: no LAB_ADMIN_TOKEN is configured",
        ));
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match presented {
        Some(token) if tokens_match(token, expected.expose_secret()) => None,
        Some(_) => Some(unauthorized("the bearer token is not the lab admin token")),
        None => Some(unauthorized(
            "lab endpoints need Authorization: Bearer <lab admin token>",
        )),
    }
}

/// The credentials of a `Bearer` authorization (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares in time independent of where the tokens first differ, so the
/// token can't be guessed byte by byte from response times.
fn tokens_match(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

fn unauthorized(detail: &str) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED)
        .with_detail(detail)
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_lab_are_the_labs() {
        assert!(is_lab_path("/lab/claims/check-then-insert"));
        assert!(is_lab_path("/lab"));
        assert!(!is_lab_path("/laboratory"));
        assert!(!is_lab_path("/products/lab/1"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cre", "s3cret"));
        assert!(!tokens_match("s3creT", "s3cret"));
        assert!(!tokens_match("", "s3cret"));
    }
}
