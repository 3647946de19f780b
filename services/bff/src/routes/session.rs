//! `/api/session`: sign in, who am I, sign out, for browsers.
//!
//! - `POST` `{username, password}`: the BFF runs identity's password grant,
//!   keeps the tokens in Redis ([`crate::session`]) and answers 201 with
//!   `{user, name, roles, csrf_token}` and the `sf_session` cookie. A wrong
//!   password is 401; identity's 429 and 503 are passed on with their
//!   `Retry-After`.
//! - `GET`: the caller (cookie session or bearer token), or 401.
//! - `DELETE` (a cookie session, with its CSRF token): identity revokes the
//!   refresh family and the access token's `jti`, the entry is deleted, the
//!   cookie cleared; 204. If identity cannot be reached nothing is deleted
//!   (503), so a retry finishes the job: a sign-out that leaves a working
//!   refresh token behind would be a lie.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use storefront_kit::Problem;

use super::AppState;
use super::auth::{Caller, CookieSession, challenge};
use crate::session::identity::Failure;
use crate::session::{Session, clear_cookie, id_hash, new_secret, set_cookie};

/// Where sessions are managed.
pub const PATH: &str = "/api/session";

/// A sign-in.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    username: String,
    password: String,
}

fn unavailable(detail: &str) -> Response {
    let mut r = Problem::unavailable(detail).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    r
}

/// What a failed password grant becomes for the browser.
fn sign_in_refused(f: Failure) -> Response {
    if f.invalid_grant() {
        return challenge(
            Problem::new(StatusCode::UNAUTHORIZED).with_detail("wrong username or password"),
        );
    }
    match f {
        Failure::Refused {
            status,
            body,
            retry_after,
        } if matches!(status.as_u16(), 400 | 429 | 503) => {
            let detail = body["detail"]
                .as_str()
                .unwrap_or("identity refused the sign-in");
            let mut r = Problem::new(status).with_detail(detail).into_response();
            if status != StatusCode::BAD_REQUEST {
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    retry_after.unwrap_or(HeaderValue::from(1u64)),
                );
            }
            r
        }
        other => {
            tracing::warn!(failure = ?other, "sign-in: identity failed");
            unavailable("identity cannot sign anyone in right now")
        }
    }
}

/// `POST /api/session`.
#[utoipa::path(post, path = "/api/session", tag = "session",
    request_body = SignIn,
    responses(
        (status = 201, description = "Signed in: the sf_session cookie is set; send csrf_token as X-CSRF-Token on unsafe methods", body = super::openapi::SessionView),
        (status = 400, description = "The body is not JSON, or identity refused the request", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 403, description = "A cross-site request", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::BodyNotJson,
        storefront_kit::openapi::BodyWrongShape,
        (status = 429, description = "Too many attempts (Retry-After says when)", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Identity is unavailable or busy (Retry-After)", body = storefront_kit::Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn sign_in(
    State(gw): State<AppState>,
    extensions: Extensions,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(rejection) => return Problem::from(rejection).into_response(),
    };
    let Some(sessions) = &gw.sessions else {
        return unavailable("sign-in needs identity, and none is configured");
    };
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let grant = match sessions
        .identity
        .password(&req.username, &req.password, peer)
        .await
    {
        Ok(g) => g,
        Err(f) => return sign_in_refused(f),
    };
    let who = match sessions.verifier.verify(&grant.access_token).await {
        Ok(who) => who,
        Err(r) => {
            tracing::warn!(rejected = %r, "identity's access token does not verify");
            return unavailable("the sign-in could not be completed; try again");
        }
    };
    let (id, csrf) = (new_secret(), new_secret());
    let session = Session::new(&who, grant.access_token, grant.refresh_token, csrf);
    if let Err(e) = sessions
        .store
        .save(&id_hash(&id), &session, grant.refresh_expires_in)
        .await
    {
        tracing::warn!(error = %e, "sign-in: the session could not be stored");
        return unavailable("the session could not be stored; try again");
    }
    tracing::info!(user = %who.user, name = %who.name, "signed in");
    let mut r = (StatusCode::CREATED, Json(describe(&session, true))).into_response();
    let h = r.headers_mut();
    h.insert(
        header::SET_COOKIE,
        set_cookie(&id, sessions.config.cookie_secure),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The session as the browser may see it (never the tokens).
fn describe(s: &Session, with_csrf: bool) -> serde_json::Value {
    let mut v = json!({"user": s.user, "name": s.name, "roles": s.roles});
    if with_csrf {
        v["csrf_token"] = json!(s.csrf_token);
    }
    v
}

/// `GET /api/session`.
#[utoipa::path(get, path = "/api/session", tag = "session",
    responses(
        (status = 200, description = "The caller (cookie session or bearer token)", body = super::openapi::SessionView),
        (status = 401, description = "Not signed in, or the token is invalid", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller's rate limit is spent", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Sessions or token checks are unavailable", body = storefront_kit::Problem, content_type = "application/problem+json"),
    ))]
pub async fn who_am_i(extensions: Extensions) -> Response {
    if let Some(c) = extensions.get::<CookieSession>() {
        let mut r = Json(describe(&c.session, true)).into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    match extensions.get::<Caller>() {
        Some(Caller(id)) => {
            Json(json!({"user": id.user, "name": id.name, "roles": id.roles})).into_response()
        }
        None => challenge(Problem::new(StatusCode::UNAUTHORIZED).with_detail("not signed in")),
    }
}

/// `DELETE /api/session`.
#[utoipa::path(delete, path = "/api/session", tag = "session",
    params(("X-CSRF-Token" = Option<String>, Header, description = "The session's csrf_token")),
    responses(
        (status = 204, description = "Signed out: tokens revoked, the cookie cleared"),
        (status = 401, description = "No cookie session to end", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The CSRF token is missing or wrong, or a cross-site request", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller's rate limit is spent", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Identity is unavailable; nothing was deleted (retry)", body = storefront_kit::Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn sign_out(State(gw): State<AppState>, extensions: Extensions) -> Response {
    let (Some(c), Some(sessions)) = (extensions.get::<CookieSession>(), &gw.sessions) else {
        return challenge(
            Problem::new(StatusCode::UNAUTHORIZED).with_detail("no cookie session to end"),
        );
    };
    for token in [&c.session.refresh_token, &c.session.access_token] {
        if let Err(f) = sessions.identity.revoke(token).await {
            tracing::warn!(failure = ?f, "sign-out: identity could not revoke");
            return unavailable(
                "identity could not revoke the session's tokens; nothing was ended, try again",
            );
        }
    }
    if let Err(e) = sessions.store.delete(&c.hash).await {
        tracing::warn!(error = %e, "sign-out: the session entry could not be deleted");
        return unavailable(
            "the session's tokens are revoked but its entry could not be deleted; try again",
        );
    }
    tracing::info!(user = %c.session.user, "signed out");
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        clear_cookie(sessions.config.cookie_secure),
    );
    r
}
