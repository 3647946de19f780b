//! `POST /token`: the password grant and the refresh-token grant (RFC 6749
//! §4.3 and §6, JSON bodies). Both answer with an access token and a new
//! refresh token, `Cache-Control: no-store`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{AppState, IdentityError};
use crate::password;
use crate::store::{self, Exchange, Exchanged, NewFamily};
use crate::tokens::{self, new_refresh_token, refresh_hash};

/// Counter of tokens issued, labelled `grant`.
pub const ISSUED_METRIC: &str = "identity_tokens_issued_total";
/// Counter of refresh-token reuses caught (each revoked a family).
pub const REUSE_METRIC: &str = "identity_refresh_reuse_detected_total";
/// Longest access-token lifetime a lab request may ask for.
const MAX_LAB_TTL_SECS: u64 = 86_400;

/// Both grants' fields; which are required depends on `grant_type`.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    /// Lab only: a shorter access-token lifetime (expiry tests).
    access_ttl_secs: Option<u64>,
}

#[tracing::instrument(skip_all, fields(grant_type))]
pub async fn token(
    State(state): State<AppState>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Response, IdentityError> {
    let Json(req) = body?;
    let grant = req.grant_type.as_deref().unwrap_or_default();
    tracing::Span::current().record("grant_type", grant);
    let ttl = access_ttl(&state, req.access_ttl_secs)?;
    match grant {
        "password" => password_grant(&state, req, ttl).await,
        "refresh_token" => refresh_grant(&state, req, ttl).await,
        "" => Err(IdentityError::InvalidRequest(
            "grant_type is required".into(),
        )),
        other => Err(IdentityError::UnsupportedGrant(other.to_owned())),
    }
}

fn access_ttl(state: &AppState, asked: Option<u64>) -> Result<Duration, IdentityError> {
    match asked {
        None => Ok(state.access_ttl),
        Some(_) if !state.lab_endpoints => Err(IdentityError::InvalidRequest(
            "access_ttl_secs is a lab-only parameter (LAB_ENDPOINTS is off)".into(),
        )),
        Some(secs @ 1..=MAX_LAB_TTL_SECS) => Ok(Duration::from_secs(secs)),
        Some(_) => Err(IdentityError::InvalidRequest(format!(
            "access_ttl_secs must be between 1 and {MAX_LAB_TTL_SECS}"
        ))),
    }
}

fn required(field: Option<String>, name: &str) -> Result<String, IdentityError> {
    field.filter(|v| !v.is_empty()).ok_or_else(|| {
        IdentityError::InvalidRequest(format!("{name} is required for this grant_type"))
    })
}

async fn password_grant(
    state: &AppState,
    req: TokenRequest,
    ttl: Duration,
) -> Result<Response, IdentityError> {
    let username = required(req.username, "username")?;
    let password = required(req.password, "password")?;
    let user = state
        .db
        .run(|pool| {
            let username = &username;
            async move { store::credentials(&pool, username).await }
        })
        .await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let user = match (password::verify_blocking(password, hash).await, user) {
        (true, Some(user)) => user,
        _ => return Err(IdentityError::BadCredentials),
    };
    let refresh = new_refresh_token();
    let hash = refresh_hash(&refresh);
    let family = NewFamily {
        family_id: Uuid::new_v4(),
        user_id: user.id,
        token_hash: &hash,
        expires_at: expiry(state.refresh_ttl),
    };
    state
        .db
        .run(|pool| {
            let family = &family;
            async move { store::start_family(&pool, family).await }
        })
        .await?;
    Ok(issue(
        state,
        user.id,
        &user.username,
        family.family_id,
        ttl,
        refresh,
        "password",
    ))
}

async fn refresh_grant(
    state: &AppState,
    req: TokenRequest,
    ttl: Duration,
) -> Result<Response, IdentityError> {
    let presented = refresh_hash(&required(req.refresh_token, "refresh_token")?);
    let successor = new_refresh_token();
    let successor_hash = refresh_hash(&successor);
    let exchange = Exchange {
        presented: &presented,
        successor: &successor_hash,
        request_id: Uuid::new_v4(),
        now: chrono::Utc::now(),
        expires_at: expiry(state.refresh_ttl),
    };
    let outcome = state
        .db
        .run(|pool| {
            let exchange = &exchange;
            async move { store::exchange(&pool, exchange).await }
        })
        .await?;
    match outcome {
        Exchanged::Rotated {
            user_id,
            username,
            family_id,
        } => Ok(issue(
            state,
            user_id,
            &username,
            family_id,
            ttl,
            successor,
            "refresh_token",
        )),
        Exchanged::ReuseDetected { family_id } => {
            metrics::counter!(REUSE_METRIC).increment(1);
            tracing::warn!(%family_id, "refresh token reused; family revoked");
            Err(IdentityError::ReuseDetected)
        }
        Exchanged::Refused(why) => Err(IdentityError::RefreshRefused(why)),
    }
}

fn expiry(ttl: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

/// The token response (RFC 6749 §5.1).
fn issue(
    state: &AppState,
    user: Uuid,
    username: &str,
    family: Uuid,
    ttl: Duration,
    refresh: String,
    grant: &'static str,
) -> Response {
    let claims = state
        .minter
        .claims(user, username, family, tokens::now_secs(), ttl);
    let access = state.minter.sign(&claims);
    metrics::counter!(ISSUED_METRIC, "grant" => grant).increment(1);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "refresh_token": refresh,
            "refresh_expires_in": state.refresh_ttl.as_secs(),
            "jti": claims.jti,
        })),
    )
        .into_response()
}
