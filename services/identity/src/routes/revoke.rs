//! `POST /revoke` (after RFC 7009): `{"token": …}` with an access token
//! puts its `jti` on the denylist until it expires (recorded in Postgres,
//! enforced from Redis); with a refresh token it ends that token's family.
//! Like RFC 7009, a token that is unknown, invalid or already expired is
//! answered 200 with `"revoked": false`: there is nothing left to revoke.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use chrono::{DateTime, Utc};

use super::{AppState, IdentityError};
use crate::contract::{RevokeRequest, RevokeResponse};
use crate::tokens::{self, TokenError, refresh_hash};
use crate::{denylist, store};

#[utoipa::path(post, path = "/revoke", tag = "tokens",
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "Revoked, or nothing left to revoke (revoked: false)", body = RevokeResponse),
        (status = 400, description = "No token, or the body is not JSON", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::BodyNotJson,
        storefront_kit::openapi::BodyWrongShape,
        storefront_kit::openapi::StoreUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(kind))]
pub async fn revoke(
    State(state): State<AppState>,
    body: Result<Json<RevokeRequest>, JsonRejection>,
) -> Result<Json<RevokeResponse>, IdentityError> {
    let Json(req) = body?;
    let token = req
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| IdentityError::InvalidRequest("token is required".into()))?;
    // A JWT has two dots; a refresh token (base64url) has none.
    if token.matches('.').count() == 2 {
        tracing::Span::current().record("kind", "access_token");
        revoke_access(&state, &token).await
    } else {
        tracing::Span::current().record("kind", "refresh_token");
        let hash = refresh_hash(&token);
        let known = state
            .db
            .run(|pool| {
                let hash = &hash;
                async move { store::revoke_family_of(&pool, hash).await }
            })
            .await?;
        Ok(Json(RevokeResponse {
            revoked: known,
            token_type: Some("refresh_token".into()),
            ..RevokeResponse::default()
        }))
    }
}

async fn revoke_access(
    state: &AppState,
    token: &str,
) -> Result<Json<RevokeResponse>, IdentityError> {
    let claims = match state.minter.verify(token) {
        Ok(claims) => claims,
        Err(why @ (TokenError::Expired | TokenError::Invalid)) => {
            let reason = if why == TokenError::Expired {
                "expired"
            } else {
                "invalid"
            };
            return Ok(Json(RevokeResponse {
                revoked: false,
                reason: Some(reason.into()),
                ..RevokeResponse::default()
            }));
        }
    };
    let expires_at = DateTime::<Utc>::from_timestamp(claims.exp as i64, 0).unwrap_or_else(Utc::now);
    state
        .db
        .run(|pool| async move {
            store::record_revocation(&pool, claims.jti, claims.sub, expires_at).await
        })
        .await?;
    let mut redis = state.redis.clone();
    denylist::put(
        &mut redis,
        claims.jti,
        claims.sub,
        claims.exp,
        tokens::now_secs(),
    )
    .await?;
    tracing::info!(jti = %claims.jti, sub = %claims.sub, "access token revoked");
    Ok(Json(RevokeResponse {
        revoked: true,
        token_type: Some("access_token".into()),
        jti: Some(claims.jti),
        denylist_key: Some(denylist::key(claims.jti)),
        reason: None,
    }))
}
