//! What a run will do, decided up front from the seed: one operation per
//! fresh order id — an `authorize_payment` command to payments, which the
//! simulated provider answers by webhook, which makes exactly one change
//! that announces exactly one event (`payment_authorized`, or
//! `payment_declined` for the declining test card) — split into two waves,
//! one per fault. The order ids are fresh each run; the seed picks the
//! amounts, cards, providers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

/// Sandbox test cards: approved, declined.
const CARDS: [&str; 2] = ["4242424242424242", "4000000000000002"];

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// A fresh order id (no saga in checkout knows it: checkout drops its
    /// events as "unknown order" after recording them in its inbox).
    pub order_id: Uuid,
    /// The command's message id.
    pub message_id: Uuid,
    pub amount_cents: i64,
    pub card: &'static str,
    pub provider: &'static str,
    /// 0: before the kill, 1: before the broker pause.
    pub wave: usize,
}

impl Op {
    /// The command, as payments' contract spells it.
    pub fn command(&self) -> Value {
        json!({
            "type": "authorize_payment",
            "order_id": self.order_id,
            "amount_cents": self.amount_cents,
            "currency": "EUR",
            "card_number": self.card,
            "provider": self.provider,
        })
    }
}

/// `n` operations; the first half is wave 0. A quarter use the declining card.
pub fn ops(n: usize, seed: u64) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| Op {
            // Fresh every run (a replayed seed must not find its orders
            // already paid); the seed decides only what each op does.
            order_id: Uuid::new_v4(),
            message_id: Uuid::new_v4(),
            amount_cents: rng.random_range(100..=50_000),
            card: CARDS[usize::from(i % 4 == 3)],
            provider: if rng.random_bool(0.5) {
                "stripe"
            } else {
                "paypal"
            },
            wave: usize::from(i >= n.div_ceil(2)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_plans_the_same_run_in_two_waves() {
        let a = ops(10, 7);
        let what = |ops: &[Op]| -> Vec<(i64, &str, &str, usize)> {
            ops.iter()
                .map(|o| (o.amount_cents, o.card, o.provider, o.wave))
                .collect()
        };
        assert_eq!(what(&a), what(&ops(10, 7)));
        assert_ne!(what(&a), what(&ops(10, 8)));
        assert_ne!(a[0].order_id, ops(10, 7)[0].order_id);
        assert_eq!(a.iter().filter(|o| o.wave == 0).count(), 5);
        assert_eq!(a.iter().filter(|o| o.card == CARDS[1]).count(), 2);
        assert_eq!(a[0].command()["type"], "authorize_payment");
    }
}
