//! The invariants a profile can ask for, checked in Postgres after the load.
//! Every UUID a run generates starts with the run's tag, so each check
//! finds the run's rows by prefix. Each judge is a pure function of the
//! evidence, unit-tested with evidence that must fail. `shop` is the one
//! shop checker's ([`crate::check`]) over the orders whose Idempotency-Key
//! carries the run's tag.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::plan::Plan;
use super::profile::{Check, Method};
use super::recorder::TxTally;
use crate::run::{Invariant, Lab};

/// How long after the load the run's orders get to become terminal and
/// their messages to settle, for the `shop` check.
pub const ORDERS_SETTLE: Duration = Duration::from_secs(30);

/// Evidence gathered before the load.
#[derive(Debug, Default)]
pub struct Before {
    /// Every product's stock.
    stock: Option<BTreeMap<i64, i64>>,
    /// For `shop`: when the load started and the shop before it.
    shop: Option<(DateTime<Utc>, crate::check::Baseline)>,
}

pub async fn before(lab: &Lab, checks: &[Check]) -> Result<Before> {
    let mut b = Before::default();
    if checks.contains(&Check::CatalogStockConservation) {
        b.stock = Some(stock(lab).await?);
    }
    if checks.contains(&Check::Shop) {
        let since = Utc::now();
        b.shop = Some((since, crate::check::Baseline::take(lab).await?));
    }
    Ok(b)
}

/// The shop's invariants over the run's orders (their Idempotency-Keys
/// start with the run's tag), after giving them [`ORDERS_SETTLE`].
async fn shop(lab: &Lab, before: &Before, tag: &str) -> Result<Vec<Invariant>> {
    let (since, baseline) = before
        .shop
        .as_ref()
        .context("no snapshot of the shop before the load")?;
    let scope = crate::check::Scope {
        since: *since,
        select: crate::check::Select::KeyPrefix(tag.to_owned()),
    };
    let reading = crate::check::Reading {
        baseline: baseline.clone(),
        ..Default::default()
    };
    let shop = crate::check::gather(lab, &scope, reading, ORDERS_SETTLE).await?;
    Ok(crate::check::judge(&shop))
}

async fn stock(lab: &Lab) -> Result<BTreeMap<i64, i64>> {
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, stock::bigint FROM catalog.products")
        .fetch_all(&lab.pg)
        .await
        .context("ground truth: cannot read catalog.products")?;
    Ok(rows.into_iter().collect())
}

/// The run's reservations still holding stock: product → quantity.
async fn held(lab: &Lab, tag: &str) -> Result<BTreeMap<i64, i64>> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT ri.product_id, sum(ri.quantity)::bigint
           FROM catalog.reservations r JOIN catalog.reservation_items ri USING (reservation_id)
          WHERE r.reservation_id::text LIKE $1 AND r.status = 'reserved'
          GROUP BY ri.product_id",
    )
    .bind(format!("{tag}-%"))
    .fetch_all(&lab.pg)
    .await
    .context("ground truth: cannot read catalog.reservations")?;
    Ok(rows.into_iter().collect())
}

/// Runs each check; a check whose evidence cannot be read is `unknown`.
pub async fn after(
    lab: &Lab,
    checks: &[Check],
    before: &Before,
    tag: &str,
    plan: &Plan,
    tallies: &[TxTally],
) -> Vec<Invariant> {
    let mut out = Vec::new();
    for c in checks {
        let r = match c {
            Check::Shop => {
                match shop(lab, before, tag).await {
                    Ok(all) => out.extend(all),
                    Err(e) => out.push(Invariant::unknown(c.name(), "a verdict", format!("{e:#}"))),
                }
                continue;
            }
            Check::CatalogStockConservation => {
                async {
                    let after = stock(lab).await?;
                    let held = held(lab, tag).await?;
                    let before = before.stock.as_ref().context("no stock snapshot")?;
                    Ok(conservation(before, &after, &held))
                }
                .await
            }
            Check::ClaimsOneRowPerKey => {
                async {
                    let (rows, keys): (i64, i64) = sqlx::query_as(
                        "SELECT count(*), count(DISTINCT idempotency_key) FROM claims.claims
                      WHERE idempotency_key LIKE $1",
                    )
                    .bind(format!("{tag}-%"))
                    .fetch_one(&lab.pg)
                    .await
                    .context("ground truth: cannot read claims.claims")?;
                    let (created, lost) = claim_posts(plan, tallies);
                    Ok(one_row_per_key(rows as u64, keys as u64, created, lost))
                }
                .await
            }
        };
        out.push(r.unwrap_or_else(|e: anyhow::Error| {
            Invariant::unknown(c.name(), "a verdict", format!("{e:#}"))
        }));
    }
    out
}

/// `201`s of POSTs to claims, and those POSTs that got no answer at all.
fn claim_posts(plan: &Plan, tallies: &[TxTally]) -> (u64, u64) {
    let (mut created, mut lost) = (0, 0);
    for (tx, t) in plan.txs.iter().zip(tallies) {
        if tx.service == "claims" && tx.method == Method::Post {
            created += t.outcomes.get("201").copied().unwrap_or(0);
            lost += t
                .outcomes
                .iter()
                .filter(|(k, _)| k.starts_with("error:"))
                .map(|(_, v)| v)
                .sum::<u64>();
        }
    }
    (created, lost)
}

/// Every product's stock after = before − what the run's reservations hold.
/// (The run must be the only writer of stock meanwhile.)
pub fn conservation(
    before: &BTreeMap<i64, i64>,
    after: &BTreeMap<i64, i64>,
    held: &BTreeMap<i64, i64>,
) -> Invariant {
    let mut bad = Vec::new();
    for (id, b) in before {
        let Some(a) = after.get(id) else { continue };
        let h = held.get(id).copied().unwrap_or(0);
        if *a != b - h {
            bad.push(format!("product {id}: {b} − {h} held ≠ {a}"));
        }
    }
    let held_total: i64 = held.values().sum();
    Invariant::check(
        Check::CatalogStockConservation.name(),
        bad.is_empty(),
        "stock after = stock before − quantity the run's reservations hold, for every product",
        if bad.is_empty() {
            format!(
                "{} products balance ({held_total} units held)",
                before.len()
            )
        } else {
            format!(
                "{} products off: {}",
                bad.len(),
                bad.into_iter().take(5).collect::<Vec<_>>().join("; ")
            )
        },
        "Postgres: catalog.products.stock before and after; catalog.reservations of the run with status 'reserved'",
    )
}

/// One row per key, and one row per `201`. A POST that got no answer may
/// have committed: then a mismatch cannot be judged.
pub fn one_row_per_key(rows: u64, keys: u64, created: u64, unanswered: u64) -> Invariant {
    let name = Check::ClaimsOneRowPerKey.name();
    let expected = "each key one row; rows = 201 Created answers";
    let observed = format!("{rows} rows for {keys} keys; {created} × 201");
    let evidence = "Postgres: claims.claims rows whose idempotency_key starts with the run's tag; statuses of the POSTs";
    if rows == 0 && created == 0 {
        return Invariant::unknown(name, expected, "the run created no claim: nothing to judge");
    }
    if rows != keys {
        return Invariant::check(name, false, expected, observed, evidence);
    }
    if rows != created && unanswered > 0 {
        return Invariant::unknown(
            name,
            expected,
            format!(
                "{observed}, but {unanswered} POSTs got no answer (a committed insert whose answer was lost would explain it)"
            ),
        );
    }
    Invariant::check(name, rows == created, expected, observed, evidence)
}

/// Releases what the run's reservations still hold, after the checks, so
/// repeated runs don't drain the seeded stock. Returns how many. This is
/// the lab's housekeeping, so it talks to catalog directly (through the
/// BFF a release is a staff-only catalog write).
pub async fn release_held(lab: &Lab, tag: &str) -> Result<usize> {
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT reservation_id::text FROM catalog.reservations
          WHERE reservation_id::text LIKE $1 AND status = 'reserved'",
    )
    .bind(format!("{tag}-%"))
    .fetch_all(&lab.pg)
    .await?;
    let catalog = lab.urls("catalog")?[0].clone();
    for (id,) in &ids {
        let url = format!("{catalog}/reservations/{id}");
        let r = lab.http.delete(&url).send().await?;
        anyhow::ensure!(
            r.status().is_success(),
            "DELETE {url} answered {}",
            r.status()
        );
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Verdict;

    fn m(v: &[(i64, i64)]) -> BTreeMap<i64, i64> {
        v.iter().copied().collect()
    }

    #[test]
    fn stock_balances_when_the_held_quantity_explains_the_change() {
        let inv = conservation(
            &m(&[(1, 50), (2, 30)]),
            &m(&[(1, 48), (2, 30)]),
            &m(&[(1, 2)]),
        );
        assert_eq!(inv.verdict, Verdict::Pass, "{inv:?}");
    }

    #[test]
    fn a_lost_or_doubled_decrement_fails_conservation() {
        // One unit gone that no reservation holds (a double decrement).
        let inv = conservation(&m(&[(1, 50)]), &m(&[(1, 47)]), &m(&[(1, 2)]));
        assert_eq!(inv.verdict, Verdict::Fail);
        assert!(inv.observed.contains("product 1"), "{inv:?}");
        // A release that gave back more than was held.
        let inv = conservation(&m(&[(1, 50)]), &m(&[(1, 51)]), &m(&[]));
        assert_eq!(inv.verdict, Verdict::Fail);
    }

    #[test]
    fn one_row_per_key_passes_only_when_rows_keys_and_201s_agree() {
        assert_eq!(one_row_per_key(10, 10, 10, 0).verdict, Verdict::Pass);
        // Duplicate rows for a key (check-then-insert) fail.
        assert_eq!(one_row_per_key(11, 10, 11, 0).verdict, Verdict::Fail);
        // A 201 without a row, or a row without a 201, fails...
        assert_eq!(one_row_per_key(9, 9, 10, 0).verdict, Verdict::Fail);
        // ...unless some POSTs got no answer: then it can't be judged.
        assert_eq!(one_row_per_key(11, 11, 10, 1).verdict, Verdict::Unknown);
        assert_eq!(one_row_per_key(0, 0, 0, 0).verdict, Verdict::Unknown);
    }
}
