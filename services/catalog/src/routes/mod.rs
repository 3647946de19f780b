//! The catalog's own routes; the kit adds `/health`, `/ready`, `/metrics`.

mod error;
mod lab;
#[path = "../openapi.rs"]
mod openapi;
mod preconditions;
mod products;
mod reservations;

use axum::Router;
use axum::routing::{delete, get, post};
use sqlx::PgPool;

use crate::cache::ProductCache;

pub use error::ApiError;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Postgres: the source of truth.
    pub pool: PgPool,
    /// Reads go through it; writes invalidate it after committing.
    pub cache: ProductCache,
}

/// The catalog's routes. The lab's are mounted only when `lab_endpoints`
/// is on; otherwise they don't exist (404), rather than refusing (403), so
/// a production replica gives nothing away.
pub fn router(state: AppState, lab_endpoints: bool) -> Router {
    let mut router = Router::new()
        .route("/products", get(products::list))
        .route("/products/{id}", get(products::get).patch(products::patch))
        .route("/reservations", post(reservations::create))
        .route("/reservations/{id}", delete(reservations::release));
    if lab_endpoints {
        router = router.route(
            "/lab/products/{id}/blind-decrement",
            post(lab::blind_decrement),
        );
    }
    router
        .with_state(state)
        .merge(storefront_kit::openapi::router::<openapi::ApiDoc>())
}
