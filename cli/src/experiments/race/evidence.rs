//! Evidence: each round's product stock in Postgres, the ground truth the
//! HTTP answers are checked against.

use anyhow::{Context, Result};
use sqlx::PgPool;

use super::plan::Plan;

/// Each round's stock at the end of the run, in round order.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub final_stock: Vec<i32>,
}

pub async fn stock(pg: &PgPool, id: i64) -> Result<i32> {
    sqlx::query_scalar("SELECT stock FROM catalog.products WHERE id = $1")
        .bind(id)
        .fetch_one(pg)
        .await
        .with_context(|| format!("ground truth: reading product {id}'s stock"))
}

pub async fn read(pg: &PgPool, plan: &Plan) -> Result<Evidence> {
    let mut final_stock = Vec::with_capacity(plan.rounds.len());
    for r in &plan.rounds {
        final_stock.push(stock(pg, r.id).await?);
    }
    Ok(Evidence { final_stock })
}
