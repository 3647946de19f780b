//! The catalog's SQL. Queries name tables unqualified: the service's role
//! has `search_path = catalog`. Functions take `impl PgExecutor` so they
//! work on a pool, a connection or a transaction alike.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

/// A product as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Product {
    /// Identity key; also the pagination cursor.
    pub id: i64,
    /// Human-facing stock-keeping unit, e.g. `COF-0001`.
    pub sku: String,
    /// Display name including the variant, e.g. `Kenya Nyeri AA, 250 g`.
    pub name: String,
    /// A sentence or two for the product page.
    pub description: String,
    /// One of a handful of categories; filterable.
    pub category: String,
    /// Price in minor units: integers, so no float rounding in totals.
    pub price_cents: i64,
    /// ISO 4217 code; always `EUR` for now.
    pub currency: String,
    /// Units on hand.
    pub stock: i32,
    /// Last change, serialised as RFC 3339.
    pub updated_at: DateTime<Utc>,
}

/// One page request: rows with `id > after`, at most `limit` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct PageQuery {
    /// The last id the client has seen (0 for the first page).
    pub after: i64,
    /// How many rows to return; the store fetches one more to detect a next page.
    pub limit: i64,
    /// Only this category, if given.
    pub category: Option<String>,
}

/// The columns of [`Product`], spelled once for every query.
macro_rules! select_products {
    ($rest:literal) => {
        concat!(
            "SELECT id, sku, name, description, category, price_cents, currency, stock, updated_at ",
            "FROM products ",
            $rest
        )
    };
}

const LIST_ALL: &str = select_products!("WHERE id > $1 ORDER BY id LIMIT $2");
const LIST_IN_CATEGORY: &str =
    select_products!("WHERE category = $3 AND id > $1 ORDER BY id LIMIT $2");
const GET_ONE: &str = select_products!("WHERE id = $1");

/// Up to `limit + 1` products after `after`, ordered by id; the extra row,
/// if present, tells the caller there is a next page.
///
/// Two statements rather than `($3 IS NULL OR category = $3)`, so each gets
/// a plan that uses its index (the primary key, or `(category, id)`).
#[tracing::instrument(skip_all, fields(after = page.after, limit = page.limit, category = page.category.as_deref()))]
pub async fn list_products(
    db: impl PgExecutor<'_>,
    page: &PageQuery,
) -> Result<Vec<Product>, sqlx::Error> {
    let fetch = page.limit + 1;
    match &page.category {
        None => {
            sqlx::query_as(LIST_ALL)
                .bind(page.after)
                .bind(fetch)
                .fetch_all(db)
                .await
        }
        Some(category) => {
            sqlx::query_as(LIST_IN_CATEGORY)
                .bind(page.after)
                .bind(fetch)
                .bind(category)
                .fetch_all(db)
                .await
        }
    }
}

/// The product with this id, if any.
#[tracing::instrument(skip_all, fields(id = id))]
pub async fn get_product(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Product>, sqlx::Error> {
    sqlx::query_as(GET_ONE).bind(id).fetch_optional(db).await
}
