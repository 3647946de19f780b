//! Authentication at the edge, in front of every `/api/*` request.
//!
//! - Identity headers are the BFF's to set: a client's own `X-User-Id` or
//!   `X-User-Roles` is always removed.
//! - `Authorization: Bearer <token>` is verified ([`crate::auth::Verifier`]):
//!   a valid token makes the request the user's ([`Caller`] in the
//!   extensions; `X-User-Id` and `X-User-Roles` for the upstream, and the
//!   token itself for upstreams that check it again); an invalid, expired or
//!   revoked one is a 401 here and never reaches an upstream; a token that
//!   cannot be checked (identity's keys or the denylist unreachable) is a
//!   503, never waved through.
//! - No `Authorization`: anonymous.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;

use super::AppState;
use crate::auth::{Identity, Rejected};

/// The verified user's id, for upstreams.
pub const X_USER_ID: &str = "x-user-id";
/// The verified user's roles, comma-separated, for upstreams.
pub const X_USER_ROLES: &str = "x-user-roles";
/// Counter of bearer tokens judged, labelled `outcome`.
pub const TOKENS_METRIC: &str = "bff_bearer_tokens_total";

/// Who made the request, once authenticated.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

fn refuse(r: Rejected) -> Response {
    let status = match r {
        Rejected::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut response = Problem::new(status)
        .with_detail(r.to_string())
        .into_response();
    let h = response.headers_mut();
    if r == Rejected::Unavailable {
        h.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    } else {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    response
}

/// The bearer token of an `Authorization` value; `Err` for any other scheme
/// or an empty token.
fn bearer(value: &HeaderValue) -> Result<&str, ()> {
    let v = value.to_str().map_err(drop)?;
    let (scheme, token) = v.split_once(' ').ok_or(())?;
    let token = token.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
        Ok(token)
    } else {
        Err(())
    }
}

/// The middleware.
pub async fn authenticate(
    State(gw): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers_mut();
    headers.remove(X_USER_ID);
    headers.remove(X_USER_ROLES);
    let Some(value) = headers.get(header::AUTHORIZATION).cloned() else {
        return next.run(request).await;
    };
    let Ok(token) = bearer(&value) else {
        metrics::counter!(TOKENS_METRIC, "outcome" => "malformed").increment(1);
        return refuse(Rejected::Invalid);
    };
    let identity = match &gw.verifier {
        Some(v) => v.verify(token).await,
        None => Err(Rejected::Unavailable),
    };
    match identity {
        Ok(id) => {
            metrics::counter!(TOKENS_METRIC, "outcome" => "valid").increment(1);
            let headers = request.headers_mut();
            let user = HeaderValue::from_str(&id.user.hyphenated().to_string());
            let roles = HeaderValue::from_str(&id.roles.join(","));
            match (user, roles) {
                (Ok(u), Ok(r)) => {
                    headers.insert(X_USER_ID, u);
                    headers.insert(X_USER_ROLES, r);
                }
                // A role that is not a header value: the token is not ours.
                _ => return refuse(Rejected::Invalid),
            }
            request.extensions_mut().insert(Caller(id));
            next.run(request).await
        }
        Err(r) => {
            metrics::counter!(TOKENS_METRIC, "outcome" => r.label()).increment(1);
            refuse(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_empty_bearer_token_is_taken() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(bearer(&v("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(&v("bearer  abc ")), Ok("abc"));
        assert!(bearer(&v("Basic YTpi")).is_err());
        assert!(bearer(&v("Bearer ")).is_err());
        assert!(bearer(&v("Bearer")).is_err());
    }

    #[test]
    fn a_refusal_is_401_with_a_challenge_or_503_with_retry_after() {
        let r = refuse(Rejected::Expired);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let r = refuse(Rejected::Unavailable);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
    }
}
