//! Checkout's OpenAPI document, derived from its handlers'
//! `#[utoipa::path]` attributes; served at `GET /openapi.json`.
//!
//! Declared inside `routes` (as `routes::openapi`) so it can name the
//! handlers of the private route modules.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use super::checkout;
use crate::catalog::Item;
use crate::store::StepRow;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "storefront checkout",
        description = "Orders, each driven by a saga (reserve, pay, capture; compensate on \
            failure), idempotent by Idempotency-Key. The kit's probes (/health, /ready, \
            /metrics) are not documented here; checkout has no lab endpoints."
    ),
    paths(checkout::create, checkout::get)
)]
pub struct ApiDoc;

/// An order as clients see it (the handlers' `view`).
#[derive(Serialize, ToSchema)]
pub struct CheckoutView {
    /// The order (and saga) id.
    order_id: Uuid,
    /// Who ordered; `null` for the lab's direct orders.
    customer_id: Option<Uuid>,
    /// The saga's state, e.g. `reserving`, `completed`, `cancelled`.
    state: String,
    /// Whether the saga has finished.
    terminal: bool,
    /// Why it failed, once it has.
    failure: Option<String>,
    /// What was ordered.
    items: Vec<Item>,
    /// `stripe` or `paypal`.
    provider: String,
    /// The total, once the prices are known.
    amount_cents: Option<i64>,
    /// `EUR`.
    currency: String,
    /// Bumped on every transition.
    version: i32,
    /// When the order was accepted.
    created_at: DateTime<Utc>,
    /// The last transition.
    updated_at: DateTime<Utc>,
    /// When the saga finished.
    finished_at: Option<DateTime<Utc>>,
    /// Every transition, oldest first.
    history: Vec<StepRow>,
}

#[cfg(test)]
mod tests {
    use storefront_kit::openapi::documented_paths;

    use super::*;

    #[test]
    fn both_routes_are_documented_with_the_key_header_required() {
        let doc = ApiDoc::openapi();
        assert_eq!(
            documented_paths(&doc),
            ["/checkout", "/checkout/{order_id}"]
        );
        let doc = serde_json::to_value(doc).unwrap();
        let paths = &doc["paths"];
        let post = &paths["/checkout"]["post"];
        let key = post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap();
        assert_eq!(key["required"], true);
        assert!(post["responses"]["202"].is_object());
        assert!(paths["/checkout/{order_id}"]["get"]["responses"]["404"].is_object());
    }
}
