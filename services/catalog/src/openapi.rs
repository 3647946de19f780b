//! The catalog's OpenAPI document, derived from its handlers' `#[utoipa::path]`
//! attributes and the types they take and return; served at `GET /openapi.json`.
//!
//! Declared inside `routes` (as `routes::openapi`) so it can name the
//! handlers of the private route modules.

use utoipa::OpenApi;

use super::{products, reservations};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "storefront catalog",
        description = "Products (keyset pages, ETags, optimistic PATCH) and stock reservations. \
            The kit's probes (/health, /ready, /metrics) and the lab endpoints (off by default, \
            behind the admin token) are not documented here."
    ),
    paths(
        products::list,
        products::get,
        products::patch,
        reservations::create,
        reservations::release
    )
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use storefront_kit::openapi::{documented_paths, problem_ref};

    use super::*;

    #[test]
    fn every_public_route_is_documented_with_its_problem_responses() {
        let doc = ApiDoc::openapi();
        assert_eq!(
            documented_paths(&doc),
            [
                "/products",
                "/products/{id}",
                "/reservations",
                "/reservations/{id}"
            ]
        );
        assert_eq!(
            problem_ref(&doc, "/products/{id}", "patch", "428").as_deref(),
            Some("#/components/schemas/Problem")
        );
        let doc = serde_json::to_value(doc).unwrap();
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        assert!(doc["components"]["schemas"]["Product"].is_object());
    }
}
