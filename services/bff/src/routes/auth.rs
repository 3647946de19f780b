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
//! - Else the `sf_session` cookie ([`crate::session`]): a cross-site
//!   request is 403; an unsafe method without the session's CSRF token is
//!   403; then the session's access token, refreshed first if it is about
//!   to expire, makes the request the session's user exactly as a bearer
//!   token would (and is what the upstream gets in `Authorization`). A
//!   cookie whose session is gone makes the request anonymous, and the
//!   response clears it.
//! - `POST /api/session` (sign-in) ignores any cookie, but a cross-site
//!   sign-in is refused (login CSRF).
//! - Neither: anonymous.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;

use super::{Gateway, Rest};
use crate::auth::{Identity, Rejected};
use crate::session::refresh::Unusable;
use crate::session::{self, Session, Sessions, csrf};

/// The verified user's id, for upstreams.
pub const X_USER_ID: &str = "x-user-id";
/// The verified user's roles, comma-separated, for upstreams.
pub const X_USER_ROLES: &str = "x-user-roles";
/// Counter of bearer tokens judged, labelled `outcome`.
pub const TOKENS_METRIC: &str = "bff_bearer_tokens_total";
/// Counter of cookie-session requests judged, labelled `outcome`.
pub const SESSIONS_METRIC: &str = "bff_cookie_sessions_total";

/// Who made the request, once authenticated.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

/// The cookie session a request came with (for `/api/session` itself).
#[derive(Debug, Clone)]
pub struct CookieSession {
    /// The store key's hash of the id.
    pub hash: String,
    /// What is stored under it.
    pub session: Session,
}

/// `problem` as a 401 with the challenge RFC 9110 asks of every 401.
pub fn challenge(problem: Problem) -> Response {
    let mut r = problem.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"storefront\""),
    );
    r
}

fn forbidden(detail: &'static str) -> Response {
    Problem::new(StatusCode::FORBIDDEN)
        .with_detail(detail)
        .into_response()
}

/// Gives the request `id`'s identity: the `X-User-*` headers for the
/// upstream and the [`Caller`]. `Err` if a value cannot be a header.
fn identify(request: &mut Request, id: Identity) -> Result<(), ()> {
    let user = HeaderValue::from_str(&id.user.hyphenated().to_string()).map_err(drop)?;
    let roles = HeaderValue::from_str(&id.roles.join(",")).map_err(drop)?;
    let headers = request.headers_mut();
    headers.insert(X_USER_ID, user);
    headers.insert(X_USER_ROLES, roles);
    request.extensions_mut().insert(Caller(id));
    Ok(())
}

/// A verified bearer token whose denylist entry (this Redis key) is still
/// to be read: by the rate limit ([`super::limit`]), which wraps exactly the
/// routes this layer does and refuses a revoked token before anything else
/// runs.
#[derive(Debug, Clone)]
pub struct DenylistPending(pub String);

pub(super) fn refuse(r: Rejected) -> Response {
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

/// The step: `next` (the rest of the chain) gets the request with its
/// identity set, or is never called.
pub async fn authenticate(gw: &Gateway, mut request: Request, next: impl Rest) -> Response {
    let headers = request.headers_mut();
    headers.remove(X_USER_ID);
    headers.remove(X_USER_ROLES);
    let Some(value) = headers.get(header::AUTHORIZATION).cloned() else {
        return without_bearer(gw, request, next).await;
    };
    let Ok(token) = bearer(&value) else {
        metrics::counter!(TOKENS_METRIC, "outcome" => "malformed").increment(1);
        return refuse(Rejected::Invalid);
    };
    let (identity, denylist) = match &gw.verifier {
        Some(v) => {
            let id = v.check(token).await;
            let key = id.as_ref().ok().and_then(|id| v.denylist_key(id.jti));
            (id, key)
        }
        None => (Err(Rejected::Unavailable), None),
    };
    match identity {
        Ok(id) => {
            // A role that is not a header value: the token is not ours.
            if identify(&mut request, id).is_err() {
                return refuse(Rejected::Invalid);
            }
            // The denylist is read by the rate limit, next, in the same
            // Redis call as the bucket; it counts the token valid or not.
            if let Some(key) = denylist {
                request.extensions_mut().insert(DenylistPending(key));
            } else {
                metrics::counter!(TOKENS_METRIC, "outcome" => "valid").increment(1);
            }
            next.run(request).await
        }
        Err(r) => {
            metrics::counter!(TOKENS_METRIC, "outcome" => r.label()).increment(1);
            refuse(r)
        }
    }
}

/// No `Authorization`: sign-in, a cookie session, or anonymous.
async fn without_bearer(gw: &Gateway, request: Request, next: impl Rest) -> Response {
    let sign_in = request.method() == Method::POST && request.uri().path() == super::session::PATH;
    if sign_in {
        if csrf::cross_site(request.headers()) {
            return forbidden("a sign-in must come from this site");
        }
        return next.run(request).await;
    }
    let (Some(cookie), Some(sessions)) = (session::cookie(request.headers()), &gw.sessions) else {
        return next.run(request).await;
    };
    if csrf::cross_site(request.headers()) {
        return forbidden("a cross-site request cannot use the session cookie");
    }
    // A cookie that names no live session: served anonymously, and the
    // browser is told to forget it.
    let secure = sessions.config.cookie_secure;
    let anonymous = |mut r: Response| {
        r.headers_mut()
            .append(header::SET_COOKIE, session::clear_cookie(secure));
        r
    };
    let Some(id) = cookie else {
        return anonymous(next.run(request).await);
    };
    let hash = session::id_hash(&id);
    match sessions.store.load(&hash).await {
        Ok(Some(s)) => with_session(sessions, hash, s, request, next).await,
        Ok(None) => anonymous(next.run(request).await),
        Err(e) => {
            tracing::warn!(error = %e, "session store unavailable");
            unavailable_session()
        }
    }
}

fn unavailable_session() -> Response {
    let mut r = Problem::unavailable("the session cannot be read right now").into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    r
}

/// A live cookie session: the CSRF check, a refresh if due, then the
/// session's identity and access token on the request.
async fn with_session(
    sessions: &Sessions,
    hash: String,
    s: Session,
    mut request: Request,
    next: impl Rest,
) -> Response {
    if csrf::is_unsafe(request.method()) {
        let given = request
            .headers()
            .get(csrf::HEADER)
            .and_then(|v| v.to_str().ok());
        if !csrf::token_matches(given, &s.csrf_token) {
            metrics::counter!(SESSIONS_METRIC, "outcome" => "csrf_refused").increment(1);
            return forbidden(
                "an unsafe request on a cookie session needs the session's X-CSRF-Token",
            );
        }
    }
    let s = match sessions.fresh(&hash, s).await {
        Ok(s) => s,
        Err(Unusable::Gone) => {
            let mut r = challenge(
                Problem::new(StatusCode::UNAUTHORIZED).with_detail(Unusable::Gone.to_string()),
            );
            r.headers_mut().append(
                header::SET_COOKIE,
                session::clear_cookie(sessions.config.cookie_secure),
            );
            return r;
        }
        Err(Unusable::Unavailable) => return unavailable_session(),
    };
    let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {}", s.access_token)) else {
        return unavailable_session();
    };
    if identify(&mut request, s.identity()).is_err() {
        return unavailable_session();
    }
    metrics::counter!(SESSIONS_METRIC, "outcome" => "valid").increment(1);
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    request
        .extensions_mut()
        .insert(CookieSession { hash, session: s });
    next.run(request).await
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
