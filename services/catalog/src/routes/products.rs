//! `GET /products` (keyset pagination) and `GET /products/{id}`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use storefront_kit::Problem;

use crate::store::{self, PageQuery, Product};

/// Page size when the client doesn't ask for one.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page a client may ask for; bounds the cost of one request.
pub const MAX_LIMIT: u32 = 100;

/// Everything that can go wrong in these handlers, mapped to a status once,
/// in [`IntoResponse`].
#[derive(Debug, thiserror::Error)]
pub enum ProductsError {
    /// The query string doesn't deserialise (e.g. `limit=abc`).
    #[error(transparent)]
    BadQuery(#[from] QueryRejection),
    /// The path id isn't an integer.
    #[error(transparent)]
    BadPath(#[from] PathRejection),
    /// `limit` is outside `1..=MAX_LIMIT`.
    #[error("limit must be between 1 and {MAX_LIMIT}, got {0}")]
    LimitOutOfRange(u32),
    /// No product has this id.
    #[error("no product with id {0}")]
    NotFound(i64),
    /// Postgres failed; details are logged, never sent.
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ProductsError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::BadQuery(rejection) => Problem::from(rejection),
            Self::BadPath(rejection) => Problem::from(rejection),
            Self::LimitOutOfRange(_) => {
                Problem::bad_request(self.to_string()).with_member("param", "limit")
            }
            Self::NotFound(id) => Problem::not_found(self.to_string()).with_member("id", id),
            // The pool couldn't hand out a connection: the database is down
            // or saturated, which a retry may outlive.
            Self::Database(ref error @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))) => {
                tracing::warn!(%error, "database unavailable");
                Problem::unavailable("the product database is unavailable; retry later")
            }
            Self::Database(ref error) => Problem::internal(error),
        };
        problem.into_response()
    }
}

/// `GET /products` query string.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    /// Page size, `1..=100`, default 20.
    limit: Option<u32>,
    /// Cursor: the `next_after` of the previous page.
    after: Option<i64>,
    /// Only products in this category.
    category: Option<String>,
}

impl ListParams {
    /// Validates the parameters into a store query.
    fn into_page(self) -> Result<PageQuery, ProductsError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ProductsError::LimitOutOfRange(limit));
        }
        Ok(PageQuery {
            after: self.after.unwrap_or(0),
            limit: i64::from(limit),
            category: self.category,
        })
    }
}

/// One page of products.
#[derive(Debug, Serialize)]
pub struct ProductPage {
    /// At most `limit` products, ordered by id.
    items: Vec<Product>,
    /// Pass as `after` to get the next page; `null` on the last page.
    next_after: Option<i64>,
}

impl ProductPage {
    /// Trims the look-ahead row the store fetched, if any, into a cursor.
    fn from_rows(mut rows: Vec<Product>, limit: i64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_after = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|p| p.id)
        } else {
            None
        };
        Self {
            items: rows,
            next_after,
        }
    }
}

/// `GET /products?limit=N&after=ID&category=C`.
#[tracing::instrument(skip_all, fields(limit, after, category))]
pub async fn list(
    State(pool): State<PgPool>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ProductPage>, ProductsError> {
    let Query(params) = params?;
    let page = params.into_page()?;
    let span = tracing::Span::current();
    span.record("limit", page.limit);
    span.record("after", page.after);
    span.record("category", page.category.as_deref());
    let rows = store::list_products(&pool, &page).await?;
    Ok(Json(ProductPage::from_rows(rows, page.limit)))
}

/// `GET /products/{id}`.
#[tracing::instrument(skip_all, fields(id))]
pub async fn get(
    State(pool): State<PgPool>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Product>, ProductsError> {
    let Path(id) = id?;
    tracing::Span::current().record("id", id);
    store::get_product(&pool, id)
        .await?
        .map(Json)
        .ok_or(ProductsError::NotFound(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(limit: Option<u32>) -> ListParams {
        ListParams {
            limit,
            after: None,
            category: None,
        }
    }

    fn product(id: i64) -> Product {
        Product {
            id,
            sku: format!("COF-{id:04}"),
            name: "n".into(),
            description: "d".into(),
            category: "coffee".into(),
            price_cents: 100,
            currency: "EUR".into(),
            stock: 1,
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn limit_defaults_to_20_and_after_to_0() {
        let page = params(None).into_page().unwrap();
        assert_eq!((page.limit, page.after), (20, 0));
    }

    #[test]
    fn limit_outside_1_to_100_is_rejected() {
        assert!(matches!(
            params(Some(0)).into_page(),
            Err(ProductsError::LimitOutOfRange(0))
        ));
        assert!(params(Some(101)).into_page().is_err());
        assert!(params(Some(100)).into_page().is_ok());
    }

    #[test]
    fn look_ahead_row_becomes_the_cursor() {
        let page = ProductPage::from_rows((1..=4).map(product).collect(), 3);
        assert_eq!(page.items.len(), 3);
        assert_eq!(page.next_after, Some(3));
    }

    #[test]
    fn last_page_has_no_cursor() {
        let page = ProductPage::from_rows((1..=2).map(product).collect(), 3);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_after, None);
    }
}
