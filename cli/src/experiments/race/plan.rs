//! Arrange: a product of the run's own per round, with stock for both
//! phases; deleted again at the end.

use anyhow::{Context, Result};
use sqlx::PgPool;

use super::Params;
use crate::run::Lab;

/// One round's product.
#[derive(Debug, Clone)]
pub struct Round {
    pub round: u32,
    pub id: i64,
    pub start_stock: i32,
}

/// What the race runs against.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rounds: Vec<Round>,
    /// Every catalog replica; client `i` talks to `urls[i % len]`.
    pub urls: Vec<String>,
    /// The control arm's lab token (its blind path needs it); `None` in the real arm.
    pub lab_token: Option<String>,
}

/// Stock for `n` clients: room for phase 1 and phase 2 and to spare.
pub fn start_stock(n: u32) -> i32 {
    2 * n as i32 + 10
}

pub async fn arrange(lab: &Lab, p: &Params, seed: u64) -> Result<Plan> {
    let urls = lab.urls("catalog")?.to_vec();
    let lab_token = if p.control {
        Some(super::lab_admin_token(lab)?)
    } else {
        None
    };
    let mut plan = Plan {
        rounds: Vec::with_capacity(p.rounds as usize),
        urls,
        lab_token,
    };
    for round in 0..p.rounds {
        let start_stock = start_stock(p.n);
        match product(&lab.pg, seed, round, start_stock).await {
            Ok(id) => plan.rounds.push(Round {
                round,
                id,
                start_stock,
            }),
            Err(e) => {
                delete(&lab.pg, &plan).await;
                return Err(e);
            }
        }
    }
    Ok(plan)
}

/// A product made for one round: ours alone.
async fn product(pg: &PgPool, seed: u64, round: u32, stock: i32) -> Result<i64> {
    let sku = format!("RACE-{seed}-{round}-{:016x}", rand::random::<u64>());
    sqlx::query_scalar(
        "INSERT INTO catalog.products (sku, name, description, category, price_cents, stock)
         VALUES ($1, 'Race fixture', 'Created by storefront race', 'lab', 1000, $2) RETURNING id",
    )
    .bind(&sku)
    .bind(stock)
    .fetch_one(pg)
    .await
    .context("arrange: cannot insert the round's product (is the catalog migrated?)")
}

/// Deletes the run's products (best effort: a leftover fixture is harmless).
pub async fn delete(pg: &PgPool, plan: &Plan) {
    let ids: Vec<i64> = plan.rounds.iter().map(|r| r.id).collect();
    sqlx::query("DELETE FROM catalog.products WHERE id = ANY($1)")
        .bind(&ids)
        .execute(pg)
        .await
        .ok();
}
