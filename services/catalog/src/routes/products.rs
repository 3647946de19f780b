//! `GET /products` (keyset pagination), `GET /products/{id}` (through the
//! cache, with an ETag) and `PATCH /products/{id}` (optimistic concurrency:
//! `If-Match` is required and checked in the same statement that writes).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::ETAG;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::preconditions::{self, etag};
use crate::bounds::{MAX_PRICE_CENTS, MAX_STOCK};
use crate::cache::Source;
use crate::contract::{PatchBody, ProductPage};
use crate::store::{self, PageQuery, PatchOutcome, Product, ProductPatch, StockChange};

/// Page size when the client doesn't ask for one.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page a client may ask for; bounds the cost of one request.
pub const MAX_LIMIT: u32 = 100;
/// Says which level answered a `GET /products/{id}`: `l1`, `l2` or `db`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// `GET /products` query string.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
    fn into_page(self) -> Result<PageQuery, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::LimitOutOfRange {
                got: limit,
                max: MAX_LIMIT,
            });
        }
        Ok(PageQuery {
            after: self.after.unwrap_or(0),
            limit: i64::from(limit),
            category: self.category,
        })
    }
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

impl PatchBody {
    /// Validates the body into a store patch. A negative resulting stock is
    /// left to the database's CHECK: only it knows the stored value, and
    /// the version precondition must be judged first.
    fn into_patch(self) -> Result<ProductPatch, ApiError> {
        let stock = match (self.stock, self.stock_delta) {
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidBody(
                    "give stock or stock_delta, not both".into(),
                ));
            }
            (Some(n), None) => Some(StockChange::Set(n)),
            (None, Some(d)) => Some(StockChange::Delta(d)),
            (None, None) => None,
        };
        if self.price_cents.is_some_and(|p| p < 0) {
            return Err(ApiError::InvalidBody(
                "price_cents must not be negative".into(),
            ));
        }
        if self.price_cents.is_some_and(|p| p > MAX_PRICE_CENTS) {
            return Err(ApiError::OutOfBounds(format!(
                "price_cents must be at most {MAX_PRICE_CENTS}"
            )));
        }
        if self.stock.is_some_and(|n| n > MAX_STOCK) {
            return Err(ApiError::OutOfBounds(format!(
                "stock must be at most {MAX_STOCK}"
            )));
        }
        if self
            .stock_delta
            .is_some_and(|d| d.unsigned_abs() > MAX_STOCK.unsigned_abs())
        {
            return Err(ApiError::OutOfBounds(format!(
                "stock_delta must be between -{MAX_STOCK} and {MAX_STOCK}"
            )));
        }
        if stock.is_none() && self.price_cents.is_none() {
            return Err(ApiError::InvalidBody(
                "nothing to change: give stock_delta, stock or price_cents".into(),
            ));
        }
        Ok(ProductPatch {
            stock,
            price_cents: self.price_cents,
        })
    }
}

/// `GET /products?limit=N&after=ID&category=C`.
#[utoipa::path(get, path = "/products", tag = "products", params(ListParams),
    responses(
        (status = 200, description = "One page, ordered by id", body = ProductPage),
        (status = 400, description = "A parameter is malformed or out of range", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(limit, after, category))]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ProductPage>, ApiError> {
    let Query(params) = params?;
    let page = params.into_page()?;
    let span = tracing::Span::current();
    span.record("limit", page.limit);
    span.record("after", page.after);
    span.record("category", page.category.as_deref());
    let rows = store::list_products(&state.pool, &page).await?;
    Ok(Json(ProductPage::from_rows(rows, page.limit)))
}

/// `GET /products/{id}`: L1, then L2, then Postgres; 304 when
/// `If-None-Match` names the current version.
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(
        ("id" = i64, Path, description = "The product id"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds; 304 if one is current"),
    ),
    responses(
        (status = 200, description = "The product", body = Product,
            headers(("ETag" = String, description = "The version, quoted"), ("X-Cache" = String, description = "l1, l2 or db"))),
        (status = 304, description = "The client's copy is current"),
        (status = 400, description = "The id is not an integer", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No product has this id", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(id, cache))]
pub async fn get(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let span = tracing::Span::current();
    span.record("id", id);
    let pool = &state.pool;
    let (product, source) = state
        .cache
        .get_or_load(id, || store::get_product(pool, id))
        .await?
        .ok_or(ApiError::NotFound(id))?;
    span.record("cache", source.as_str());
    let headers_out = [
        (ETAG, etag(product.version)),
        (X_CACHE, source.as_str().to_owned()),
    ];
    if preconditions::none_match(&headers, product.version) {
        return Ok((StatusCode::NOT_MODIFIED, headers_out).into_response());
    }
    Ok((headers_out, Json(&*product)).into_response())
}

/// `PATCH /products/{id}` with `If-Match`: 200 with the new version, 412
/// if someone wrote first, 422 if stock would go negative.
#[utoipa::path(patch, path = "/products/{id}", tag = "products",
    params(
        ("id" = i64, Path, description = "The product id"),
        ("If-Match" = Option<String>, Header, description = "The ETag of the version this changes (required: 428 without it)"),
    ),
    request_body = PatchBody,
    responses(
        (status = 200, description = "The product as changed", body = Product,
            headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "Malformed id, If-Match or body", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No product has this id", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The product changed since this ETag", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Out of bounds, or stock would go negative", body = storefront_kit::Problem, content_type = "application/problem+json"),
        (status = 428, description = "No If-Match header", body = storefront_kit::Problem, content_type = "application/problem+json"),
        storefront_kit::openapi::DatabaseUnavailable,
    ))]
#[tracing::instrument(skip_all, fields(id, expected_version))]
pub async fn patch(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<PatchBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let span = tracing::Span::current();
    span.record("id", id);
    let expected = preconditions::if_match(&headers)?;
    span.record("expected_version", expected);
    let Json(body) = body?;
    let patch = body.into_patch()?;
    match store::patch_product(&state.pool, id, expected, &patch).await? {
        PatchOutcome::Updated(product) => {
            state.cache.invalidate(&[id]).await;
            Ok(product_response(&product))
        }
        PatchOutcome::Stale { current_version } => {
            Err(ApiError::PreconditionFailed { current_version })
        }
        PatchOutcome::Missing => Err(ApiError::NotFound(id)),
        PatchOutcome::NegativeStock => Err(ApiError::NegativeStock(id)),
        PatchOutcome::OutOfRange => Err(ApiError::StockOutOfRange(id)),
    }
}

/// A product fresh from Postgres, with its ETag.
fn product_response(product: &Product) -> Response {
    let headers = [
        (ETAG, etag(product.version)),
        (X_CACHE, Source::Db.as_str().to_owned()),
    ];
    (headers, Json(product)).into_response()
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
            version: 1,
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
            Err(ApiError::LimitOutOfRange { got: 0, .. })
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

    fn body(json: &str) -> Result<ProductPatch, String> {
        let body: PatchBody = serde_json::from_str(json).map_err(|e| e.to_string())?;
        body.into_patch().map_err(|e| e.to_string())
    }

    #[test]
    fn patch_body_takes_any_one_or_price_with_stock() {
        assert_eq!(
            body(r#"{"stock_delta": -3}"#).unwrap(),
            ProductPatch {
                stock: Some(StockChange::Delta(-3)),
                price_cents: None
            }
        );
        assert_eq!(
            body(r#"{"stock": 5, "price_cents": 990}"#).unwrap(),
            ProductPatch {
                stock: Some(StockChange::Set(5)),
                price_cents: Some(990)
            }
        );
        assert_eq!(body(r#"{"price_cents": 0}"#).unwrap().stock, None);
    }

    #[test]
    fn patch_body_must_change_something() {
        assert!(body("{}").unwrap_err().contains("nothing to change"));
        assert!(body(r#"{"stock": null}"#).is_err());
    }

    #[test]
    fn patch_body_refuses_unknown_fields_and_both_stock_forms() {
        assert!(
            body(r#"{"stok": 1}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(
            body(r#"{"stock": 1, "stock_delta": 1}"#)
                .unwrap_err()
                .contains("not both")
        );
    }

    #[test]
    fn patch_body_refuses_stock_price_and_delta_beyond_their_bounds() {
        for json in [
            r#"{"stock": 1000000001}"#,
            r#"{"stock": 2147483647}"#,
            r#"{"stock_delta": 2147483647}"#,
            r#"{"stock_delta": -2147483648}"#,
            r#"{"price_cents": 10000000001}"#,
            r#"{"price_cents": 9223372036854775807}"#,
        ] {
            assert!(body(json).unwrap_err().contains("must be"), "{json}");
        }
        assert!(body(r#"{"stock": 1000000000, "price_cents": 10000000000}"#).is_ok());
        assert!(body(r#"{"stock_delta": -1000000000}"#).is_ok());
    }

    #[test]
    fn patch_body_refuses_negative_price_but_leaves_stock_to_the_database() {
        assert!(body(r#"{"price_cents": -1}"#).is_err());
        assert!(body(r#"{"stock": -1}"#).is_ok());
    }
}
