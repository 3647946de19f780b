//! The payments service's routes; the kit adds `/health`, `/ready`, `/metrics`.

mod error;
mod lab;
#[path = "../openapi.rs"]
mod openapi;
mod payments;
mod webhooks;

use axum::Router;
use axum::routing::{get, post};

use crate::config::WebhookConfig;
use crate::store::Store;

pub use error::ApiError;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Payments in Postgres.
    pub store: Store,
    /// Secrets and tolerance for the webhook signatures.
    pub webhooks: WebhookConfig,
}

/// `POST /webhooks/stripe`, `POST /webhooks/paypal`, `GET /payments/{order_id}`;
/// with `lab_endpoints`, also the signing oracle `POST /lab/sign/{provider}`.
pub fn router(state: AppState, lab_endpoints: bool) -> Router {
    let mut router = Router::new()
        .route("/webhooks/stripe", post(webhooks::stripe))
        .route("/webhooks/paypal", post(webhooks::paypal))
        .route("/payments/{order_id}", get(payments::get));
    if lab_endpoints {
        router = router
            .route("/lab/sign/{provider}", post(lab::sign))
            .route("/lab/outbox", get(lab::outbox).put(lab::set_outbox));
    }
    router
        .with_state(state)
        .merge(storefront_kit::openapi::router::<openapi::ApiDoc>())
}
