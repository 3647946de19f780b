//! The claims service's OpenAPI document, derived from its handlers'
//! `#[utoipa::path]` attributes; served at `GET /openapi.json`.
//!
//! Declared inside `routes` (as `routes::openapi`) so it can name the
//! handlers of the private route modules.

use utoipa::{OpenApi, ToSchema};

use super::claims;
use crate::claim::Reason;

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

/// `POST /claims` body. The handler validates a JSON value field by field
/// (so every broken rule is listed in one 422); this type only describes
/// what it accepts. Unknown members are refused.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documentation only: never constructed
pub struct ClaimRequest {
    /// The order the claim is about; not blank.
    #[schema(min_length = 1, max_length = 64)]
    order_id: String,
    /// Who is claiming; when the BFF sets X-User-Id it must be that id (or left out).
    #[schema(min_length = 1, max_length = 64)]
    customer_id: Option<String>,
    /// Why.
    reason: Reason,
    /// Minor units, never negative.
    #[schema(minimum = 0)]
    amount_cents: i64,
    /// Free text, at most 2000 characters.
    #[schema(max_length = 2000)]
    note: Option<String>,
}

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
