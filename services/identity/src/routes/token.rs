//! `POST /token`: the password grant and the refresh-token grant (RFC 6749
//! §4.3 and §6, JSON bodies). Both answer with an access token and a new
//! refresh token, `Cache-Control: no-store`.
//!
//! The password grant, in order: the fields are checked (present, bounded,
//! no NUL — Postgres refuses NUL in text, and it would be a 500); the
//! guessing throttle reserves an attempt for the account and the client
//! address ([`throttle`]: 429 when over); the user is looked up; the
//! password is checked under a bounded permit ([`PasswordChecker`]: 503 when
//! shed). A success or a shed check gives the attempt back.
//!
//! [`PasswordChecker`]: crate::password::PasswordChecker

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{Extensions, HeaderMap, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::{AppState, IdentityError, lab};
use crate::contract::{TokenRequest, TokenResponse};
use crate::store::{self, Exchange, Exchanged, NewFamily};
use crate::throttle::{self, Keys, Verdict};
use crate::tokens::{self, Subject, new_refresh_token, refresh_hash};

/// Counter of tokens issued, labelled `grant`.
pub const ISSUED_METRIC: &str = "identity_tokens_issued_total";
/// Counter of refresh-token reuses caught (each revoked a family).
pub const REUSE_METRIC: &str = "identity_refresh_reuse_detected_total";
/// Longest access-token lifetime a lab request may ask for.
const MAX_LAB_TTL_SECS: u64 = 86_400;
/// Longest username accepted (bytes).
pub const MAX_USERNAME_LEN: usize = 256;
/// Longest password accepted (bytes): Argon2 hashes any length, but a
/// megabyte of password is no password, only work.
pub const MAX_PASSWORD_LEN: usize = 1_024;

#[utoipa::path(post, path = "/token", tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "An access token (EdDSA JWT) and a refresh token", body = TokenResponse),
        (status = 400, description = "Malformed body, unsupported grant, or invalid grant (bad credentials, refresh refused or reused)", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 401, description = "access_ttl_secs without the lab admin token", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::BodyNotJson,
        storefront_kit::openapi::BodyWrongShape,
        (status = 429, description = "Too many failed logins for this account or address", body = storefront_kit::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 503, description = "Password hashing is saturated, or a store is unavailable", body = storefront_kit::Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(grant_type))]
pub async fn token(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Response, IdentityError> {
    let Json(req) = body?;
    let grant = req.grant_type.as_deref().unwrap_or_default();
    tracing::Span::current().record("grant_type", grant);
    let ttl = access_ttl(&state, &headers, req.access_ttl_secs)?;
    match grant {
        "password" => {
            let client = throttle::client_address(&extensions, &headers, &state.trusted_proxies);
            password_grant(&state, req, ttl, client).await
        }
        "refresh_token" => refresh_grant(&state, req, ttl).await,
        "" => Err(IdentityError::InvalidRequest(
            "grant_type is required".into(),
        )),
        other => Err(IdentityError::UnsupportedGrant(other.to_owned())),
    }
}

/// The access token's lifetime: the configured one, or — lab only, with
/// the lab admin token — the one asked for.
fn access_ttl(
    state: &AppState,
    headers: &HeaderMap,
    asked: Option<u64>,
) -> Result<Duration, IdentityError> {
    if asked.is_some() && state.lab_endpoints {
        lab::authorize(state, headers, "access_ttl_secs")?;
    }
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

/// [`required`], at most `max` bytes, and no NUL.
fn bounded(field: Option<String>, name: &str, max: usize) -> Result<String, IdentityError> {
    let value = required(field, name)?;
    if value.len() > max {
        return Err(IdentityError::InvalidRequest(format!(
            "{name} is longer than {max} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(IdentityError::InvalidRequest(format!(
            "{name} must not contain NUL characters"
        )));
    }
    Ok(value)
}

async fn password_grant(
    state: &AppState,
    req: TokenRequest,
    ttl: Duration,
    client: Option<std::net::IpAddr>,
) -> Result<Response, IdentityError> {
    let username = bounded(req.username, "username", MAX_USERNAME_LEN)?;
    let password = bounded(req.password, "password", MAX_PASSWORD_LEN)?;
    let keys = Keys::new(&state.throttle_prefix, &username, client);
    admit(state, &keys).await?;
    let user = check_password(state, &keys, &username, password).await?;
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
    let subject = Subject {
        id: user.id,
        name: &user.username,
        roles: &user.roles,
    };
    Ok(issue(
        state,
        &subject,
        family.family_id,
        ttl,
        refresh,
        "password",
    ))
}

/// Refuses when the account or the address is at its limit of failures.
async fn admit(state: &AppState, keys: &Keys) -> Result<(), IdentityError> {
    let mut redis = state.redis.clone();
    let (account, address) = throttle::peek(&mut redis, keys).await?;
    match throttle::judge(account, address, &state.login_limits) {
        Verdict::Allow => Ok(()),
        Verdict::Refuse { scope, retry_after } => {
            metrics::counter!(throttle::REFUSED_METRIC, "scope" => scope.as_str()).increment(1);
            let key = match scope {
                throttle::Scope::Account => &keys.account,
                throttle::Scope::Address => &keys.address,
            };
            tracing::warn!(scope = scope.as_str(), %key, "password grant throttled");
            Err(IdentityError::Throttled { scope, retry_after })
        }
    }
}

/// The user, if the password is theirs: waits for a hashing permit, looks
/// at the throttle again (the queue may have filled the window meanwhile),
/// checks, and counts a mismatch before giving the permit up. If Redis
/// fails while counting, the guess answers 503 rather than 400: nobody
/// learns a wrong password for free while the counter is down.
async fn check_password(
    state: &AppState,
    keys: &Keys,
    username: &str,
    password: String,
) -> Result<store::Credentials, IdentityError> {
    let user = state
        .db
        .run(|pool| async move { store::credentials(&pool, username).await })
        .await?;
    let permit = state.passwords.permit().await?;
    admit(state, keys).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    // Held until the failure is counted, so the next check reads it.
    let checked = state.passwords.verify(permit, password, hash).await;
    match user.filter(|_| checked.matched) {
        Some(user) => Ok(user),
        None => {
            let mut redis = state.redis.clone();
            throttle::record_failure(&mut redis, keys, state.login_limits.window).await?;
            Err(IdentityError::BadCredentials)
        }
    }
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
            roles,
            family_id,
        } => {
            let subject = Subject {
                id: user_id,
                name: &username,
                roles: &roles,
            };
            Ok(issue(
                state,
                &subject,
                family_id,
                ttl,
                successor,
                "refresh_token",
            ))
        }
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
    subject: &Subject<'_>,
    family: Uuid,
    ttl: Duration,
    refresh: String,
    grant: &'static str,
) -> Response {
    let claims = state
        .minter
        .claims(subject, family, tokens::now_secs(), ttl);
    let access = state.minter.sign(&claims);
    metrics::counter!(ISSUED_METRIC, "grant" => grant).increment(1);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(TokenResponse {
            access_token: access,
            token_type: "Bearer".into(),
            expires_in: ttl.as_secs(),
            refresh_token: refresh,
            refresh_expires_in: state.refresh_ttl.as_secs(),
            jti: claims.jti,
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_username_with_nul_is_an_invalid_request_not_a_query() {
        let err = bounded(Some("al\0ice".into()), "username", MAX_USERNAME_LEN).unwrap_err();
        assert!(
            matches!(err, IdentityError::InvalidRequest(ref d) if d.contains("NUL")),
            "{err}"
        );
    }

    #[test]
    fn fields_are_required_and_bounded() {
        assert!(bounded(None, "username", 8).is_err());
        assert!(bounded(Some(String::new()), "username", 8).is_err());
        assert_eq!(
            bounded(Some("12345678".into()), "username", 8).unwrap(),
            "12345678"
        );
        let err = bounded(Some("123456789".into()), "username", 8).unwrap_err();
        assert!(err.to_string().contains("longer than 8 bytes"), "{err}");
    }
}
