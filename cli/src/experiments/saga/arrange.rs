//! Arrange: the run's fixture products (category `lab`, kept: reservations
//! point at them), one of them sold out, and the lab token payments'
//! `/lab/sign` needs.

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::plan::Fixture;
use crate::run::Lab;

/// Fixture products per run.
const FIXTURES: usize = 8;
/// Their starting stock: ample, so only the sold-out product refuses.
const FIXTURE_STOCK: i32 = 100_000;

/// The fixtures and the sold-out product's id; `run` tells this run's apart.
pub async fn fixtures(lab: &Lab, seed: u64, run: &str) -> Result<(Vec<Fixture>, i64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fixtures = Vec::with_capacity(FIXTURES);
    for i in 0..=FIXTURES {
        let sold_out = i == FIXTURES;
        let price_cents = rng.random_range(50..=500) * 10;
        let stock = if sold_out { 0 } else { FIXTURE_STOCK };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO catalog.products (sku, name, description, category, price_cents, stock) \
             VALUES ($1, 'Saga fixture', 'Created by storefront saga', 'lab', $2, $3) RETURNING id",
        )
        .bind(format!("SAGA-{seed}-{run}-{i}"))
        .bind(price_cents)
        .bind(stock)
        .fetch_one(&lab.pg)
        .await
        .context("arrange: cannot insert fixture products (is the catalog migrated?)")?;
        if sold_out {
            return Ok((fixtures, id));
        }
        fixtures.push(Fixture {
            id,
            price_cents,
            start_stock: stock,
        });
    }
    unreachable!("the loop returns at the sold-out fixture")
}

/// The lab admin token payments' `/lab/sign` needs: the running fleet's
/// profile's bff `BFF_ADMIN_TOKEN`, which the fleet hands every service as
/// `LAB_ADMIN_TOKEN`; `None` if it sets none (signing then says why).
pub fn lab_token(lab: &Lab) -> Result<Option<String>> {
    let root = crate::fleet::project_root()?;
    let (profile, _) = crate::fleet::profile::FleetProfile::load(&root, &lab.state.profile)?;
    Ok(crate::fleet::services::lab_admin_token(&profile).map(str::to_owned))
}
