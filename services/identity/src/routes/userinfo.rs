//! `GET /userinfo`: what a resource server does with a bearer token —
//! verify it locally, reject a denylisted `jti`, and load the subject.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};

use super::{AppState, IdentityError, Rejected};
use crate::contract::UserInfo;
use crate::tokens::Claims;
use crate::{denylist, store};

/// The bearer token from `Authorization: Bearer …`.
pub fn bearer(headers: &HeaderMap) -> Result<&str, IdentityError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(IdentityError::Unauthorized(Rejected::Missing))
}

/// Verified and not denylisted: the claims.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Claims, IdentityError> {
    let claims = state
        .minter
        .verify(token)
        .map_err(|e| IdentityError::Unauthorized(e.into()))?;
    let mut redis = state.redis.clone();
    if denylist::contains(&mut redis, claims.jti).await? {
        return Err(IdentityError::Unauthorized(Rejected::Revoked));
    }
    Ok(claims)
}

#[utoipa::path(get, path = "/userinfo", tag = "tokens",
    params(("Authorization" = Option<String>, Header, description = "Bearer <access token>")),
    responses(
        (status = 200, description = "Who the token belongs to", body = UserInfo),
        (status = 401, description = "No token, or it is invalid, expired or revoked", body = storefront_kit::Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "Bearer challenge"))),
        storefront_kit::openapi::StoreUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(sub))]
pub async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<UserInfo>, IdentityError> {
    let claims = authenticate(&state, bearer(&headers)?).await?;
    tracing::Span::current().record("sub", tracing::field::display(claims.sub));
    let sub = claims.sub;
    let profile = state
        .db
        .run(|pool| async move { store::profile(&pool, sub).await })
        .await?
        .ok_or(IdentityError::Unauthorized(Rejected::Invalid))?;
    Ok(Json(UserInfo {
        sub: profile.id,
        username: profile.username,
        display_name: profile.display_name,
        roles: profile.roles,
        jti: claims.jti,
        exp: claims.exp,
    }))
}
