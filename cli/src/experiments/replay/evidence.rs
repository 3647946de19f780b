//! Evidence from Postgres: the rows each key holds.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use sqlx::PgPool;

use super::plan::Plan;

/// Rows per key, as counted in the route's table (a key with none is absent).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub rows: BTreeMap<String, i64>,
}

pub async fn rows(pg: &PgPool, plan: &Plan) -> Result<Evidence> {
    let keys: Vec<&str> = plan.keys.iter().map(|k| k.key.as_str()).collect();
    let table = plan.table;
    let rows = sqlx::query_as::<_, (String, i64)>(&format!(
        "SELECT idempotency_key, count(*) FROM {table} WHERE idempotency_key = ANY($1) GROUP BY 1"
    ))
    .bind(&keys)
    .fetch_all(pg)
    .await
    .with_context(|| format!("ground truth: counting rows in {table}"))?
    .into_iter()
    .collect();
    Ok(Evidence { rows })
}

/// The stored rows of a key, as comparable text (all of them, in id order).
pub async fn row_of(pg: &PgPool, table: &str, key: &str) -> Result<Vec<String>> {
    sqlx::query_scalar(&format!(
        "SELECT concat_ws('|', claim_id, request_hash, response_status, response_body) FROM {table} WHERE idempotency_key = $1 ORDER BY 1"
    ))
    .bind(key)
    .fetch_all(pg)
    .await
    .with_context(|| format!("ground truth: reading {table}"))
}
