//! The identity service's OpenAPI document, derived from its handlers'
//! `#[utoipa::path]` attributes; served at `GET /openapi.json`.
//!
//! The token, revoke and userinfo bodies are the handlers' own types
//! ([`crate::contract`]); the JWK Set, built by `keys`, is described here.
//! Declared inside `routes` (as `routes::openapi`) so it can name the
//! handlers of the private route modules.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

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

#[cfg(test)]
mod tests {
    use storefront_kit::openapi::documented_paths;

    use super::*;

    #[test]
    fn the_four_public_routes_are_documented() {
        let doc = ApiDoc::openapi();
        assert_eq!(
            documented_paths(&doc),
            ["/.well-known/jwks.json", "/revoke", "/token", "/userinfo"]
        );
        let doc = serde_json::to_value(doc).unwrap();
        let throttled = &doc["paths"]["/token"]["post"]["responses"]["429"];
        assert!(throttled["headers"]["Retry-After"].is_object());
    }
}
