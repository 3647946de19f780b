//! The identity service's OpenAPI document, derived from its handlers'
//! `#[utoipa::path]` attributes; served at `GET /openapi.json`.
//!
//! The handlers answer with `json!` values, so the response types here
//! describe those bodies; a test renders the real ones against them.
//! Declared inside `routes` (as `routes::openapi`) so it can name the
//! handlers of the private route modules.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use super::{jwks, revoke, token, userinfo};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "storefront identity",
        description = "Password and refresh-token grants (EdDSA JWTs), revocation, userinfo \
            and the JWKS. The kit's probes (/health, /ready, /metrics) and the lab endpoints \
            (off by default, behind the admin token) are not documented here."
    ),
    paths(token::token, revoke::revoke, userinfo::userinfo, jwks::jwks)
)]
pub struct ApiDoc;

/// `POST /token`'s 200 body.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// An EdDSA-signed JWT.
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Seconds the access token lives.
    #[schema(minimum = 0)]
    expires_in: u64,
    /// Opaque; single use (rotated on every refresh).
    refresh_token: String,
    /// Seconds the refresh token lives.
    #[schema(minimum = 0)]
    refresh_expires_in: u64,
    /// The access token's id (what `/revoke` denylists).
    jti: Uuid,
}

/// `POST /revoke`'s 200 body; which members are present depends on the token.
#[derive(Serialize, ToSchema)]
pub struct RevokeResponse {
    /// Whether something was revoked now.
    revoked: bool,
    /// `access_token` or `refresh_token`, when the token was recognised.
    token_type: Option<String>,
    /// Why nothing was revoked: `expired` or `invalid`.
    reason: Option<String>,
    /// The revoked access token's id.
    jti: Option<Uuid>,
    /// Where the denylist entry lives.
    denylist_key: Option<String>,
}

/// `GET /userinfo`'s 200 body.
#[derive(Serialize, ToSchema)]
pub struct UserInfo {
    /// The user's id.
    sub: Uuid,
    /// The login name.
    username: String,
    /// For display.
    display_name: String,
    /// e.g. `customer`, `staff`.
    roles: Vec<String>,
    /// The presented token's id.
    jti: Uuid,
    /// The presented token's expiry, seconds since the epoch.
    exp: u64,
}

/// The JWK Set.
#[derive(Serialize, ToSchema)]
pub struct Jwks {
    /// Public keys only (OKP / Ed25519).
    keys: Vec<Jwk>,
}

/// One public key.
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    /// `OKP`.
    kty: String,
    /// `Ed25519`.
    crv: String,
    /// The public key, base64url.
    x: String,
    /// The RFC 7638 thumbprint.
    kid: String,
    /// `EdDSA`.
    alg: String,
}

/// `GET /openapi.json`.
pub fn router() -> axum::Router {
    storefront_kit::openapi::router(&ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_public_routes_are_documented() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        documented.sort_unstable();
        assert_eq!(
            documented,
            ["/.well-known/jwks.json", "/revoke", "/token", "/userinfo"]
        );
        let throttled = &paths["/token"]["post"]["responses"]["429"];
        assert!(throttled["headers"]["Retry-After"].is_object());
        assert!(paths.keys().all(|p| !p.starts_with("/lab")));
    }
}
