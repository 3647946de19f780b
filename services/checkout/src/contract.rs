//! The checkout service's wire types: the `POST /checkout` body
//! ([`CheckoutBody`]) and its lines ([`Item`]). The handler reads these and
//! the OpenAPI document describes them; the `storefront` CLI compiles this
//! same file (`cli/src/clients/contract.rs`) for its typed checkout client,
//! so a change here is a change on both sides of the wire.
//!
//! The provider is payments' own type, named as `super::payments::Provider`:
//! in this crate `payments` is the root's alias of `storefront_payments::
//! contract`; in the CLI it is the sibling module that compiles that same
//! file. So both sides read one definition, and this file names nothing of
//! the service's own: only `serde` and `utoipa`.

use serde::{Deserialize, Serialize};

use super::payments::Provider;

/// One line of an order.
#[derive(
    utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// The catalog's product id.
    pub product_id: i64,
    /// Units; positive.
    pub quantity: i32,
}

/// `POST /checkout` body. Unknown members are refused.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// What to buy.
    pub items: Vec<Item>,
    /// The card (sandbox test numbers choose the provider's behaviour).
    pub card_number: String,
    /// `stripe` or `paypal`.
    pub provider: Provider,
    /// Only `EUR` is sold.
    #[serde(default = "eur")]
    pub currency: String,
}

/// The only currency sold.
pub fn eur() -> String {
    "EUR".into()
}
