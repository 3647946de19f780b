//! Ground truth around the hostile requests: every table's row count and
//! checksum, the BFF's breaker counters, and identity's resident memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::clients::bff_admin::BffAdmin as Gateway;
use crate::fleet::FleetState;

/// The schemas the services own.
const SCHEMAS: [&str; 5] = ["catalog", "claims", "identity", "payments", "checkout"];

/// `schema.table` → (rows, md5 of every row's text, in order).
pub type Tables = BTreeMap<String, (i64, String)>;

/// Reads every table of every service schema.
pub async fn tables(pg: &PgPool) -> Result<Tables> {
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema = ANY($1) \
         ORDER BY 1, 2",
    )
    .bind(SCHEMAS.map(str::to_owned).to_vec())
    .fetch_all(pg)
    .await
    .context("evidence: cannot list the services' tables")?;
    let mut out = Tables::new();
    for (schema, table) in names {
        let q = format!(
            "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) \
             FROM \"{schema}\".\"{table}\" t"
        );
        let row: (i64, String) = sqlx::query_as(&q)
            .fetch_one(pg)
            .await
            .with_context(|| format!("evidence: cannot checksum {schema}.{table}"))?;
        out.insert(format!("{schema}.{table}"), row);
    }
    Ok(out)
}

/// The tables whose content differs between two snapshots.
pub fn changed(before: &Tables, after: &Tables) -> Vec<String> {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| {
            let rows = |t: &Tables| t.get(n).map_or("absent".into(), |r| r.0.to_string());
            format!("{n} ({} → {} rows)", rows(before), rows(after))
        })
        .collect()
}

/// Waits until two snapshots a beat apart agree (background work — outbox
/// relays, webhook deliveries of earlier runs — has settled), so a change
/// seen later is this run's. Returns the quiet snapshot, or the tables that
/// kept changing.
pub async fn quiet_tables(pg: &PgPool, bound: Duration) -> Result<Result<Tables, Vec<String>>> {
    let deadline = Instant::now() + bound;
    let mut last = tables(pg).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = tables(pg).await?;
        let moving = changed(&last, &now);
        if moving.is_empty() {
            return Ok(Ok(now));
        }
        if Instant::now() >= deadline {
            return Ok(Err(moving));
        }
        last = now;
    }
}

/// What the BFF's breakers have counted so far, summed over instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BreakerTotals {
    pub opened: u64,
    pub failures: u64,
    /// Instances whose breaker is not closed right now.
    pub not_closed: u64,
}

pub fn totals(upstreams: &[Value]) -> BreakerTotals {
    let mut t = BreakerTotals::default();
    for u in upstreams {
        t.opened += u["counters"]["opened"].as_u64().unwrap_or(0);
        t.failures += u["counters"]["failures"].as_u64().unwrap_or(0);
        if u["state"].as_str().unwrap_or("closed") != "closed" {
            t.not_closed += 1;
        }
    }
    t
}

pub async fn breakers(gw: &Gateway) -> Result<BreakerTotals> {
    Ok(totals(&gw.breakers().await?))
}

/// Polls until every breaker is closed again (after the control arm), or
/// the bound passes. A breaker only half-opens when a request asks for it,
/// so each round sends one honest read through the BFF as the probe.
pub async fn wait_closed(gw: &Gateway, probe: &str, bound: Duration) -> Result<bool> {
    let deadline = Instant::now() + bound;
    loop {
        if breakers(gw).await?.not_closed == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        let _ = gw.http.get(probe).send().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Identity's failed-login windows (`LOGIN_THROTTLE_KEY_PREFIX`, default
/// `identity:login-attempts:`), which the guessing burst fills: this
/// run's guesses must not lock honest logins from loopback out of the
/// experiments that follow. Returns how many windows were cleared.
pub async fn clear_login_throttle(redis_url: &str, prefix: &str) -> Result<u64> {
    let client = redis::Client::open(redis_url).context("cleanup: bad Redis URL")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("cleanup: cannot reach Redis to clear the login throttle")?;
    let mut cursor: u64 = 0;
    let mut cleared = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
            .context("cleanup: SCAN")?;
        if !keys.is_empty() {
            cleared += redis::cmd("DEL")
                .arg(&keys)
                .query_async::<u64>(&mut conn)
                .await
                .context("cleanup: DEL")?;
        }
        if next == 0 {
            return Ok(cleared);
        }
        cursor = next;
    }
}

/// The pids of a service's instances, from fleet.json.
pub fn pids(state: &FleetState, service: &str) -> Vec<i32> {
    state
        .components
        .iter()
        .filter(|c| c.name == service || c.name.starts_with(&format!("{service}-")))
        .filter_map(|c| c.pid)
        .collect()
}

/// Resident memory of a process in MiB, from /proc.
pub fn rss_mib(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_names_tables_whose_rows_or_checksum_moved() {
        let mut a = Tables::new();
        a.insert("claims.claims".into(), (3, "x".into()));
        a.insert("catalog.products".into(), (128, "y".into()));
        let mut b = a.clone();
        assert!(changed(&a, &b).is_empty());
        b.insert("catalog.products".into(), (128, "z".into()));
        b.insert("payments.new".into(), (1, "w".into()));
        assert_eq!(
            changed(&a, &b),
            vec![
                "catalog.products (128 → 128 rows)".to_owned(),
                "payments.new (absent → 1 rows)".to_owned()
            ]
        );
    }

    #[test]
    fn totals_sum_counters_and_count_breakers_not_closed() {
        let v = vec![
            json!({"state": "closed", "counters": {"opened": 1, "failures": 4}}),
            json!({"state": "open", "counters": {"opened": 2, "failures": 5}}),
        ];
        assert_eq!(
            totals(&v),
            BreakerTotals {
                opened: 3,
                failures: 9,
                not_closed: 1
            }
        );
    }

    #[test]
    fn our_own_rss_is_readable() {
        let me = std::process::id() as i32;
        assert!(rss_mib(me).is_some_and(|m| m > 0.0));
        assert!(rss_mib(i32::MAX).is_none());
    }
}
