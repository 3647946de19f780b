//! The plan, pure and seeded: one idempotency key and one claim body per
//! round, and where they go (the real route or the control arm's).

use anyhow::Result;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::Params;
use crate::run::Lab;

/// One key's round.
#[derive(Debug, Clone)]
pub struct Key {
    pub key: String,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the POSTs go.
    pub url: String,
    /// The table the route writes (the ground truth).
    pub table: &'static str,
    /// The control arm's lab token; `None` in the real arm.
    pub lab_token: Option<String>,
    pub keys: Vec<Key>,
}

pub fn plan(lab: &Lab, p: &Params, seed: u64) -> Result<Plan> {
    let base = &lab.urls("claims")?[0];
    let (url, table, lab_token) = if p.control {
        (
            format!("{base}/lab/claims/check-then-insert"),
            "claims.lab_claims",
            Some(crate::experiments::race::lab_admin_token(lab)?),
        )
    } else {
        (format!("{base}/claims"), "claims.claims", None)
    };
    Ok(Plan {
        url,
        table,
        lab_token,
        keys: keys(p.keys, seed),
    })
}

/// The run's keys (unique to the run) and their claim bodies.
pub fn keys(n: u32, seed: u64) -> Vec<Key> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let run_id: u64 = rng.random();
    (0..n)
        .map(|k| Key {
            key: format!("replay-{run_id:016x}-{k}"),
            body: claim_body(&mut rng, k),
        })
        .collect()
}

fn claim_body(rng: &mut impl Rng, k: u32) -> Value {
    const REASONS: [&str; 4] = ["damaged", "missing", "wrong_item", "other"];
    json!({
        "order_id": format!("order-{k}-{}", rng.random_range(10_000..99_999)),
        "customer_id": format!("customer-{}", rng.random_range(1..500)),
        "reason": REASONS[rng.random_range(0..REASONS.len())],
        "amount_cents": rng.random_range(100..50_000),
        "note": "filed by storefront replay",
    })
}

/// The same claim with another amount: a different body under a used key.
pub fn mismatched(body: &Value) -> Value {
    let mut other = body.clone();
    other["amount_cents"] = json!(body["amount_cents"].as_i64().unwrap_or(0) + 1);
    other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_plans_the_same_keys_and_bodies_and_another_seed_does_not() {
        let (a, b, c) = (keys(3, 7), keys(3, 7), keys(3, 8));
        let text = |v: &[Key]| {
            format!(
                "{:?}",
                v.iter().map(|k| (&k.key, &k.body)).collect::<Vec<_>>()
            )
        };
        assert_eq!(text(&a), text(&b));
        assert_ne!(text(&a), text(&c));
        assert_eq!(a.len(), 3);
        assert!(a[2].key.ends_with("-2"));
    }

    #[test]
    fn the_mismatched_body_differs_only_in_its_amount() {
        let k = &keys(1, 1)[0];
        let other = mismatched(&k.body);
        assert_ne!(other, k.body);
        assert_eq!(other["order_id"], k.body["order_id"]);
        assert_eq!(
            other["amount_cents"].as_i64().unwrap(),
            k.body["amount_cents"].as_i64().unwrap() + 1
        );
    }
}
