//! The catalog's own routes; the kit adds `/health`, `/ready`, `/metrics`.

mod products;

use axum::Router;
use axum::routing::get;
use sqlx::PgPool;

/// The catalog's routes, with the pool as state.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/products", get(products::list))
        .route("/products/{id}", get(products::get))
        .with_state(pool)
}
