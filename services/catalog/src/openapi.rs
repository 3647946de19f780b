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

/// `GET /openapi.json`.
pub fn router() -> axum::Router {
    storefront_kit::openapi::router(&ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_route_is_documented_with_its_problem_responses() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        documented.sort_unstable();
        assert_eq!(
            documented,
            [
                "/products",
                "/products/{id}",
                "/reservations",
                "/reservations/{id}"
            ]
        );
        let problem = &paths["/products/{id}"]["patch"]["responses"]["428"]["content"]["application/problem+json"]
            ["schema"]["$ref"];
        assert_eq!(problem, "#/components/schemas/Problem");
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        assert!(doc["components"]["schemas"]["Product"].is_object());
    }
}
