//! Checkout's routes; the kit adds `/health`, `/ready`, `/metrics`.

mod checkout;
mod error;
#[path = "../openapi.rs"]
mod openapi;

use axum::Router;
use axum::routing::{get, post};

use crate::config::SagaConfig;
use crate::orchestrator::Orchestrator;

pub use error::ApiError;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Sagas and their driver.
    pub orchestrator: Orchestrator,
    /// The reservation deadline given to new sagas.
    pub saga: SagaConfig,
}

/// `POST /checkout`, `GET /checkout/{order_id}`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/checkout", post(checkout::create))
        .route("/checkout/{order_id}", get(checkout::get))
        .with_state(state)
        .merge(storefront_kit::openapi::router::<openapi::ApiDoc>())
}
