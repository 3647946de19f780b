//! The claims service's OpenAPI document, derived from its handlers'
//! `#[utoipa::path]` attributes; served at `GET /openapi.json`.
//!
//! Declared inside `routes` (as `routes::openapi`) so it can name the
//! handlers of the private route modules.

use utoipa::OpenApi;

use super::claims;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "storefront claims",
        description = "Customer claims, idempotent by Idempotency-Key. The kit's probes \
            (/health, /ready, /metrics) and the lab endpoints (off by default, behind the \
            admin token) are not documented here."
    ),
    paths(claims::create, claims::get)
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use storefront_kit::openapi::{documented_paths, problem_ref};

    use super::*;
    use crate::claim::{MAX_ID_LEN, MAX_NOTE_LEN};

    #[test]
    fn the_documented_bounds_are_the_validators_bounds() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let request = &doc["components"]["schemas"]["ClaimRequest"]["properties"];
        assert_eq!(request["order_id"]["maxLength"], MAX_ID_LEN);
        assert_eq!(request["note"]["maxLength"], MAX_NOTE_LEN);
    }

    #[test]
    fn both_public_routes_are_documented_with_their_problem_responses() {
        let doc = ApiDoc::openapi();
        assert_eq!(documented_paths(&doc), ["/claims", "/claims/{id}"]);
        assert_eq!(
            problem_ref(&doc, "/claims", "post", "403").as_deref(),
            Some("#/components/schemas/Problem")
        );
        let doc = serde_json::to_value(doc).unwrap();
        assert!(doc["components"]["schemas"]["Claim"].is_object());
    }
}
