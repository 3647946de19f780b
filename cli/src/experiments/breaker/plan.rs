//! Arrange: what the run is judged against (the breaker settings the BFF
//! itself reports), which replica it fails and how long it stays dead, the
//! product every read asks for and the session that tags the run's reads.
//! The pure parts (the replica's URL, the default dead time, the client
//! errors to send) are functions of their inputs, unit-tested below.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::Params;
use crate::clients::bff_admin::{AdminConfig, BffAdmin, BreakerState};
use crate::fleet::Ctx;
use crate::run::Lab;

/// Background reads through the BFF (every phase's and phase 1's own).
pub const READS: &str = "reads through the BFF";
/// Phase 2's requests pinned to the open replica.
pub const PINNED: &str = "pinned to the open replica";
/// Phase 0's client errors pinned to the target.
pub const CLIENT_ERRORS: &str = "client errors pinned to the target (phase 0)";

/// The breaker settings the run is judged against, from `GET /admin/config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub consecutive_failures: u64,
    pub open: Duration,
    pub half_open_probes: u64,
}

impl Settings {
    pub fn of(config: &AdminConfig) -> Self {
        Self {
            consecutive_failures: config.breaker.consecutive_failures,
            open: Duration::from_millis(config.breaker.open_ms),
            half_open_probes: config.breaker.half_open_probes,
        }
    }

    /// Sequential reads phase 1 makes at most while waiting for the breaker
    /// to open: far more than the threshold, so "never opened" means it.
    pub fn read_limit(self) -> u64 {
        4 * self.consecutive_failures + 10
    }
}

/// What arrange made: the admin client, the settings and the run's targets.
pub struct Plan {
    pub admin: BffAdmin,
    pub settings: Settings,
    /// How long the replica stays dead.
    pub dead_for: Duration,
    /// The target replica's own base URL (for its /metrics).
    pub target_url: String,
    /// A product read through the BFF, `{bff}/api/catalog/products/{id}`.
    pub read_url: String,
    pub product: i64,
    /// `X-Session-Id` of every read (the run's own bucket at the limiter).
    pub session: String,
    pub seed: u64,
}

/// Reads the BFF's settings, checks the target's breaker is closed and
/// picks the product to read.
pub async fn arrange(ctx: &Ctx, lab: &Lab, p: &Params, seed: u64) -> Result<Plan> {
    let admin = BffAdmin::from_state(ctx, &lab.state)?;
    let settings = Settings::of(&admin.admin_config().await?);
    let dead_for = dead_for(p.dead_ms, settings);
    let target_url = target_url(lab.urls("catalog")?, &p.target)?;
    if admin.upstream(&p.target).await?.state != BreakerState::Closed {
        bail!(
            "{}'s breaker is not closed before the run; wait {} ms and try again",
            p.target,
            settings.open.as_millis()
        );
    }
    let product: i64 = sqlx::query_scalar("SELECT id FROM catalog.products ORDER BY id LIMIT 1")
        .fetch_one(&lab.pg)
        .await
        .context("arrange: no product in catalog.products")?;
    let read_url = format!("{}/api/catalog/products/{product}", admin.url);
    let session = format!("breaker-{seed:x}-{:x}", rand::random::<u32>());
    Ok(Plan {
        admin,
        settings,
        dead_for,
        target_url,
        read_url,
        product,
        session,
        seed,
    })
}

/// The parameters as the report shows them, with what the BFF said.
pub fn params_json(p: &Params, s: Settings, dead_for: Duration) -> serde_json::Value {
    json!({
        "target": p.target, "read_rate": p.read_rate, "pinned": p.pinned,
        "fail_fast_p99_ms": p.fail_fast_p99_ms, "dead_ms": dead_for.as_millis() as u64,
        "close_slack_ms": p.close_slack_ms,
        "breaker (from GET /admin/config)": {
            "consecutive_failures": s.consecutive_failures,
            "open_ms": s.open.as_millis() as u64,
            "half_open_probes": s.half_open_probes,
        },
    })
}

/// `--dead-ms`, or 2 × the breaker's open time + 0.5 s, so the dead replica
/// is probed at least once.
pub fn dead_for(dead_ms: Option<u64>, s: Settings) -> Duration {
    Duration::from_millis(dead_ms.unwrap_or(2 * s.open.as_millis() as u64 + 500))
}

/// `catalog-N`'s base URL among the fleet's catalog replicas.
pub fn target_url(urls: &[String], target: &str) -> Result<String> {
    let n: usize = target
        .strip_prefix("catalog-")
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=urls.len()).contains(n))
        .with_context(|| {
            format!(
                "--target {target:?}: expected catalog-1..catalog-{} (the fleet's replicas)",
                urls.len()
            )
        })?;
    if urls.len() < 2 {
        bail!(
            "the breaker experiment needs at least 2 catalog replicas (one to fail, one to serve)"
        );
    }
    Ok(urls[n - 1].clone())
}

/// Requests that are the client's fault, one of each kind: refused by the
/// BFF itself (an encoded service name, a NUL in the query) or answered
/// 4xx by the replica (an unknown product, an id that is no number).
pub fn client_error_paths(id: i64) -> [String; 4] {
    [
        format!("/api/c%61talog/products/{id}"),
        "/api/catalog/products?category=%00".to_owned(),
        format!("/api/catalog/products/{}", i64::MAX - id),
        "/api/catalog/products/not-a-number".to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("http://127.0.0.1:{i}")).collect()
    }

    #[test]
    fn the_target_is_one_of_the_fleets_replicas() {
        assert_eq!(
            target_url(&urls(2), "catalog-2").unwrap(),
            "http://127.0.0.1:2"
        );
        for bad in ["catalog-3", "catalog-0", "catalog", "claims-1", "catalog-x"] {
            let e = target_url(&urls(2), bad).unwrap_err().to_string();
            assert!(e.contains("catalog-1..catalog-2"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_replica_is_not_enough_to_fail_one() {
        let e = target_url(&urls(1), "catalog-1").unwrap_err().to_string();
        assert!(e.contains("at least 2"), "{e}");
    }

    #[test]
    fn the_replica_stays_dead_past_two_open_periods_unless_told() {
        let s = Settings {
            consecutive_failures: 5,
            open: Duration::from_secs(2),
            half_open_probes: 1,
        };
        assert_eq!(dead_for(None, s), Duration::from_millis(4500));
        assert_eq!(dead_for(Some(700), s), Duration::from_millis(700));
        assert_eq!(s.read_limit(), 30);
    }

    #[test]
    fn client_errors_are_four_distinct_paths_about_the_product() {
        let paths = client_error_paths(7);
        assert!(paths[0].contains("c%61talog") && paths[0].ends_with("/7"));
        assert!(paths[2].ends_with(&(i64::MAX - 7).to_string()));
        let distinct: std::collections::HashSet<_> = paths.iter().collect();
        assert_eq!(distinct.len(), 4);
    }
}
