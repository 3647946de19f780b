//! The shop's invariants — money, stock, sagas, outboxes, dead letters,
//! Idempotency-Keys, claims — judged over a scope of orders: those created
//! since a time, a run's own order ids, or a load run's keys. This is the
//! one checker: `storefront check` judges the shop with it after any
//! session, `saga` judges its orders with it, and `load`'s `shop` check
//! judges a load run's orders with it.
//!
//! gather ([`gather`]: bounded waits, then Postgres and the broker) →
//! evidence ([`evidence`], plain data) → the pure [`judge`].

mod dlq;
pub mod evidence;
pub mod gather;
pub mod judge;

use std::time::{Duration, Instant};

use anyhow::Result;
use uuid::Uuid;

pub use evidence::Shop;
pub use gather::{Baseline, Scope, Select};
pub use judge::judge;

use crate::run::Lab;

/// What to read besides the orders, and what was seen before them.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub baseline: Baseline,
    /// Also judge one claim per key over claims created in scope.
    pub claims: bool,
    /// The bound the orders had to be terminal within (for the report).
    pub bound: Duration,
    /// Whether the orders' messages settled before the deadline.
    pub quiesced: bool,
}

/// Waits until the orders of `ids` are terminal and their messages settled,
/// or `deadline`; whether they settled.
pub async fn settle(lab: &Lab, ids: &[Uuid], deadline: Instant) -> bool {
    let terminal = gather::wait_terminal(&lab.pg, ids, deadline).await;
    terminal == ids.len() && gather::wait_quiet(&lab.pg, ids, deadline).await
}

/// Reads the evidence about `ids` (already settled, or not).
pub async fn read(lab: &Lab, scope: &Scope, ids: &[Uuid], r: &Reading) -> Result<Shop> {
    let pg = &lab.pg;
    let orders = gather::orders(pg, ids).await?;
    let stock = gather::stock_seen(pg, r.baseline.stock.as_ref(), &orders).await?;
    let amqp = &lab.state.endpoints.amqp_url;
    let dlqs = match r.baseline.dlqs.as_deref() {
        Some(before) => gather::dlqs(before, &dlq::depths(amqp).await),
        None => gather::dlqs_dated(&dlq::depths_since(amqp, scope.since).await),
    };
    Ok(Shop {
        scope: scope.describe(),
        reservations: gather::reservations(pg, ids).await?,
        payments: gather::payments(pg, ids).await?,
        stock,
        outboxes: gather::outboxes(pg, scope.since).await?,
        dlqs,
        keys: gather::keys(pg, ids).await?,
        claims: if r.claims {
            Some(gather::claims(pg, scope.since).await?)
        } else {
            None
        },
        bound: r.bound,
        quiesced: r.quiesced,
        authorization_timeout: gather::authorization_timeout(lab),
        orders,
        ..Shop::default()
    })
}

/// Finds the orders in scope, gives them `settle` to finish and settle,
/// and reads the evidence.
pub async fn gather(
    lab: &Lab,
    scope: &Scope,
    mut r: Reading,
    settle_for: Duration,
) -> Result<Shop> {
    let ids = scope.orders(&lab.pg).await?;
    r.quiesced = settle(lab, &ids, Instant::now() + settle_for).await;
    r.bound = settle_for;
    read(lab, scope, &ids, &r).await
}
