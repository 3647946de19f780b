//! The plan, pure and seeded: one idempotency key and one claim body per
//! round, and where they go (the real route or the control arm's).

use anyhow::Result;
use rand::{Rng, SeedableRng};

use super::Params;
use crate::clients::claims::Claims;
use crate::clients::contract::claims::{ClaimRequest, Reason};
use crate::run::Lab;

/// One key's round.
#[derive(Debug, Clone)]
pub struct Key {
    pub key: String,
    pub body: ClaimRequest,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the POSTs go (with the lab token in the control arm).
    pub claims: Claims,
    /// The control arm: the lab's check-then-insert instead of `POST /claims`.
    pub control: bool,
    /// The table the route writes (the ground truth).
    pub table: &'static str,
    pub keys: Vec<Key>,
}

pub fn plan(lab: &Lab, p: &Params, seed: u64) -> Result<Plan> {
    let claims = Claims::new(lab.http.clone(), lab.urls("claims")?[0].clone());
    let (claims, table) = if p.control {
        let token = crate::experiments::race::lab_admin_token(lab)?;
        (claims.with_lab_token(token), "claims.lab_claims")
    } else {
        (claims, "claims.claims")
    };
    Ok(Plan {
        claims,
        control: p.control,
        table,
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

fn claim_body(rng: &mut impl Rng, k: u32) -> ClaimRequest {
    ClaimRequest {
        order_id: format!("order-{k}-{}", rng.random_range(10_000..99_999)),
        customer_id: Some(format!("customer-{}", rng.random_range(1..500))),
        reason: Reason::ALL[rng.random_range(0..Reason::ALL.len())],
        amount_cents: rng.random_range(100..50_000),
        note: Some("filed by storefront replay".into()),
    }
}

/// The same claim with another amount: a different body under a used key.
pub fn mismatched(body: &ClaimRequest) -> ClaimRequest {
    ClaimRequest {
        amount_cents: body.amount_cents + 1,
        ..body.clone()
    }
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
        assert_eq!(other.order_id, k.body.order_id);
        assert_eq!(other.amount_cents, k.body.amount_cents + 1);
    }
}
