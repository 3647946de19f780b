//! `GET /.well-known/jwks.json`: the keys verifiers accept.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

/// The JWKS, cacheable for five minutes: a verifier that meets an unknown
/// `kid` refetches regardless.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, description = "The public keys verifiers accept", body = super::openapi::Jwks)))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.minter.keys().jwks()),
    )
}
