//! The payments service's OpenAPI document, derived from its handlers'
//! `#[utoipa::path]` attributes; served at `GET /openapi.json`.
//!
//! Declared inside `routes` (as `routes::openapi`) so it can name the
//! handlers of the private route modules.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::{payments, webhooks};
use crate::store::{PaymentRow, TransitionRow};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "storefront payments",
        description = "Signed provider webhooks (Stripe-like, PayPal-like) and payment status. \
            The kit's probes (/health, /ready, /metrics) and the lab endpoints (the signing \
            oracle; off by default, behind the admin token) are not documented here."
    ),
    paths(webhooks::stripe, webhooks::paypal, payments::get)
)]
pub struct ApiDoc;

/// `GET /payments/{order_id}`'s body.
#[derive(Serialize, ToSchema)]
pub struct PaymentView {
    /// The payment.
    payment: PaymentRow,
    /// Its transitions, oldest first.
    history: Vec<TransitionRow>,
}

/// A webhook's 200 body.
#[derive(Serialize, ToSchema)]
pub struct WebhookAck {
    /// Always true.
    received: bool,
    /// The provider's event id.
    event_id: String,
    /// What the event did, e.g. `applied`, `duplicate`, `unconfirmed`.
    outcome: String,
}

#[cfg(test)]
mod tests {
    use storefront_kit::openapi::{documented_paths, problem_ref};

    use super::*;

    #[test]
    fn webhooks_and_payment_status_are_documented_without_the_lab_oracle() {
        let doc = ApiDoc::openapi();
        assert_eq!(
            documented_paths(&doc),
            [
                "/payments/{order_id}",
                "/webhooks/paypal",
                "/webhooks/stripe"
            ]
        );
        assert_eq!(
            problem_ref(&doc, "/webhooks/paypal", "post", "409").as_deref(),
            Some("#/components/schemas/Problem")
        );
        let doc = serde_json::to_value(doc).unwrap();
        assert!(doc["components"]["schemas"]["PaymentRow"].is_object());
    }
}
