//! The catalog's SQL. Queries name tables unqualified: the service's role
//! has `search_path = catalog`. Functions take `impl PgExecutor` so they
//! work on a pool, a connection or a transaction alike.
//!
//! A product's version is its row's `xmin`, the id of the transaction that
//! wrote the current row version: Postgres changes it on every update for
//! free, so optimistic concurrency needs no extra column or trigger. It is
//! only ever compared for equality: xids are not ordered by commit.

mod reservations;

use sqlx::PgExecutor;

pub use reservations::{
    PricedLine, ReleaseOutcome, ReservationItem, ReserveOutcome, release_reservation, reserve,
    total_cents,
};

/// The CHECK on `products.stock` (Postgres's default name for it): its
/// violation means "this change would make stock negative".
const STOCK_CHECK: &str = "products_stock_check";

pub use crate::contract::Product;

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Product {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            id: row.try_get("id")?,
            sku: row.try_get("sku")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            category: row.try_get("category")?,
            price_cents: row.try_get("price_cents")?,
            currency: row.try_get("currency")?,
            stock: row.try_get("stock")?,
            updated_at: row.try_get("updated_at")?,
            version: row.try_get("version")?,
        })
    }
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

/// The columns of [`Product`], for `SELECT` and `RETURNING` alike.
macro_rules! product_columns {
    () => {
        "id, sku, name, description, category, price_cents, currency, stock, updated_at, \
         xmin::text::bigint AS version"
    };
}

/// A `SELECT` of [`Product`]s, spelled once for every query.
macro_rules! select_products {
    ($rest:literal) => {
        concat!("SELECT ", product_columns!(), " FROM products ", $rest)
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

/// A validated change to one product, applied in a single statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductPatch {
    /// How stock changes, if it does.
    pub stock: Option<StockChange>,
    /// The new price, if it changes.
    pub price_cents: Option<i64>,
}

/// The two ways a PATCH may change stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    /// `{"stock": n}`: set it.
    Set(i32),
    /// `{"stock_delta": d}`: add to whatever is stored, in the database.
    Delta(i32),
}

/// What a conditional update found.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOutcome {
    /// The version matched; this is the product as now stored.
    Updated(Product),
    /// The product exists at another version (someone wrote first).
    Stale {
        /// The version now stored, for the client's next attempt.
        current_version: i64,
    },
    /// No product has this id.
    Missing,
    /// The change would make stock negative; nothing was stored.
    NegativeStock,
    /// The change would overflow the stock column; nothing was stored.
    OutOfRange,
}

const PATCH: &str = concat!(
    "UPDATE products SET ",
    "stock = CASE WHEN $3::integer IS NOT NULL THEN $3::integer ",
    "WHEN $4::integer IS NOT NULL THEN stock + $4::integer ELSE stock END, ",
    "price_cents = COALESCE($5::bigint, price_cents), ",
    "updated_at = now() ",
    // The number goes in as text: there is no bigint-to-xid cast.
    "WHERE id = $1 AND xmin = $2::text::xid ",
    "RETURNING ",
    product_columns!()
);

/// Applies `patch` if the product is still at `expected_version`: one
/// `UPDATE … WHERE xmin = $version`, so check and write are atomic. A
/// concurrent writer that commits first changes `xmin`, and Postgres
/// re-evaluates our `WHERE` against its row after waiting for its lock, so
/// exactly one of many writers holding the same version wins.
#[tracing::instrument(skip_all, fields(id = id, expected_version = expected_version))]
pub async fn patch_product(
    db: impl PgExecutor<'_> + Copy,
    id: i64,
    expected_version: u32,
    patch: &ProductPatch,
) -> Result<PatchOutcome, sqlx::Error> {
    let (set, delta) = match patch.stock {
        None => (None, None),
        Some(StockChange::Set(n)) => (Some(n), None),
        Some(StockChange::Delta(d)) => (None, Some(d)),
    };
    let updated = sqlx::query_as(PATCH)
        .bind(id)
        .bind(expected_version.to_string())
        .bind(set)
        .bind(delta)
        .bind(patch.price_cents)
        .fetch_optional(db)
        .await;
    match updated {
        Ok(Some(product)) => Ok(PatchOutcome::Updated(product)),
        Ok(None) => Ok(match current_version(db, id).await? {
            Some(current_version) => PatchOutcome::Stale { current_version },
            None => PatchOutcome::Missing,
        }),
        Err(error) if violates_stock_check(&error) => Ok(PatchOutcome::NegativeStock),
        Err(error) if is_out_of_range(&error) => Ok(PatchOutcome::OutOfRange),
        Err(error) => Err(error),
    }
}

/// The stored version of a product, if it exists.
#[tracing::instrument(skip_all, fields(id = id))]
pub async fn current_version(db: impl PgExecutor<'_>, id: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT xmin::text::bigint FROM products WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The stock on hand, read on its own: the first half of the lab's
/// read-modify-write.
#[tracing::instrument(skip_all, fields(id = id))]
pub async fn read_stock(db: impl PgExecutor<'_>, id: i64) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Overwrites stock with a value computed elsewhere, with no precondition:
/// the second half of the lab's read-modify-write, which loses updates when
/// two of them interleave. Returns whether the product still existed.
#[tracing::instrument(skip_all, fields(id = id, stock = stock))]
pub async fn overwrite_stock(
    db: impl PgExecutor<'_>,
    id: i64,
    stock: i32,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("UPDATE products SET stock = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(stock)
        .execute(db)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Whether `error` is the stock CHECK firing.
fn violates_stock_check(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.constraint() == Some(STOCK_CHECK))
}

/// Whether `error` is an integer overflow (SQLSTATE 22003).
fn is_out_of_range(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("22003"))
}
