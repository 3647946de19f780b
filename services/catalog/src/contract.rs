//! The catalog's wire types: a product as every answer shows it, a page of
//! them, the `PATCH /products/{id}` body and the lab's blind decrement. The
//! handlers build and read these, the OpenAPI document describes them, and
//! the `storefront` CLI compiles this same file (`cli/src/clients/contract.rs`)
//! for its typed client, so a change here is a change on both sides of the wire.
//!
//! This file names only `serde`, `chrono` and `utoipa`: nothing of the
//! service's own, so it compiles as well in the CLI. (The store reads a
//! [`Product`] from a row with its own `FromRow`.)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A product as the API returns it (and as the L2 cache stores it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The row's `xmin`; the ETag is this number in quotes.
    pub version: i64,
}

/// One page of products (`GET /products`).
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductPage {
    /// At most `limit` products, ordered by id.
    pub items: Vec<Product>,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

/// `PATCH /products/{id}` body: at least one field; unknown fields are
/// refused rather than ignored, so a typo can't pass as a no-op.
#[derive(utoipa::ToSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// Add this to the stored stock (negative to take away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock_delta: Option<i32>,
    /// Set the stock to this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<i32>,
    /// Set the price to this, in minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_cents: Option<i64>,
}

/// `POST /lab/products/{id}/blind-decrement` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlindDecrement {
    /// Units to take away (negative adds).
    pub by: i32,
}

/// What the blind decrement read and wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindOutcome {
    /// The stock the `SELECT` saw.
    pub stock_before: i32,
    /// The stock the `UPDATE` wrote, computed in Rust.
    pub stock_after: i32,
}
