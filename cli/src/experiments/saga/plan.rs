//! What a run will do, decided up front from the seed: the fixture
//! products and, per order, the failure it injects (by the sandbox test
//! card or a sold-out item), its provider and its items — and so what its
//! saga must end as.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::clients::contract::payments::Provider;

/// Which failure the orders inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FailAt {
    /// Half the orders include a sold-out product: rejected, nothing to undo.
    Reserve,
    /// Half the orders use a card declined at authorization: stock released.
    Payment,
    /// Half the orders use a card whose capture fails: payment voided, stock released.
    Capture,
    /// Half the orders use a card the provider never confirms: timed out, voided, released.
    Timeout,
    /// A fifth each of: success and the four failures above.
    Mixed,
}

/// Which service is killed (SIGKILL) and restarted mid-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Crash {
    /// The checkout orchestrator.
    Orchestrator,
    /// The payments service (and with it the simulated provider).
    Payments,
}

impl Crash {
    /// The fleet instance it kills.
    pub fn instance(self) -> &'static str {
        match self {
            Self::Orchestrator => "checkout",
            Self::Payments => "payments",
        }
    }
}

/// What one order is made to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Approved card, items in stock.
    Succeed,
    /// A sold-out item.
    OutOfStock,
    /// Declined card.
    Decline,
    /// Capture fails.
    CaptureFails,
    /// The provider never answers.
    Timeout,
}

impl Scenario {
    /// The sandbox card that makes it happen.
    pub fn card(self) -> &'static str {
        match self {
            Self::Succeed | Self::OutOfStock => "4242424242424242",
            Self::Decline => "4000000000000002",
            Self::CaptureFails => "4000000000000341",
            Self::Timeout => "4000000000009995",
        }
    }

    /// The saga's terminal state and failure.
    pub fn outcome(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Succeed => ("completed", None),
            Self::OutOfStock => ("rejected", Some("out_of_stock")),
            Self::Decline => ("failed", Some("payment_declined")),
            Self::CaptureFails => ("failed", Some("capture_failed")),
            Self::Timeout => ("failed", Some("authorization_timeout")),
        }
    }

    /// The states its saga passes through, repeats collapsed: the steps and
    /// the named compensations for its failure.
    pub fn path(self) -> &'static [&'static str] {
        match self {
            Self::Succeed => &[
                "reserving",
                "awaiting_authorization",
                "awaiting_capture",
                "completed",
            ],
            Self::OutOfStock => &["reserving", "rejected"],
            Self::Decline => &[
                "reserving",
                "awaiting_authorization",
                "releasing_stock",
                "failed",
            ],
            Self::CaptureFails => &[
                "reserving",
                "awaiting_authorization",
                "awaiting_capture",
                "voiding_payment",
                "releasing_stock",
                "failed",
            ],
            Self::Timeout => &[
                "reserving",
                "awaiting_authorization",
                "voiding_payment",
                "releasing_stock",
                "failed",
            ],
        }
    }

    /// Label for outcome tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Succeed => "succeed",
            Self::OutOfStock => "out_of_stock",
            Self::Decline => "decline",
            Self::CaptureFails => "capture_fails",
            Self::Timeout => "timeout",
        }
    }
}

/// A product made for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixture {
    /// Its id in catalog.products.
    pub id: i64,
    /// Its price.
    pub price_cents: i64,
    /// Its stock when the run started.
    pub start_stock: i32,
}

/// One order of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Position in the run.
    pub index: usize,
    /// Its `Idempotency-Key`.
    pub key: String,
    /// The failure it injects.
    pub scenario: Scenario,
    /// Stripe or PayPal.
    pub provider: Provider,
    /// `(product_id, quantity)`, product ids ascending.
    pub items: Vec<(i64, i32)>,
    /// Σ price × quantity, if it completes.
    pub amount_cents: i64,
}

/// The scenarios of `n` orders, shuffled by `rng`.
fn scenarios(n: usize, fail_at: Option<FailAt>, rng: &mut StdRng) -> Vec<Scenario> {
    let cycle: &[Scenario] = match fail_at {
        None => &[Scenario::Succeed],
        Some(FailAt::Reserve) => &[Scenario::OutOfStock, Scenario::Succeed],
        Some(FailAt::Payment) => &[Scenario::Decline, Scenario::Succeed],
        Some(FailAt::Capture) => &[Scenario::CaptureFails, Scenario::Succeed],
        Some(FailAt::Timeout) => &[Scenario::Timeout, Scenario::Succeed],
        Some(FailAt::Mixed) => &[
            Scenario::Succeed,
            Scenario::OutOfStock,
            Scenario::Decline,
            Scenario::CaptureFails,
            Scenario::Timeout,
        ],
    };
    let mut all: Vec<Scenario> = (0..n).map(|i| cycle[i % cycle.len()]).collect();
    all.shuffle(rng);
    all
}

/// The run's orders: 1–3 distinct fixtures of 1–3 units each; a sold-out
/// order also asks for one unit of `sold_out`. Keys carry `run`, so a run
/// repeated with the same seed doesn't meet its predecessor's keys.
pub fn orders(
    run: &str,
    n: usize,
    fail_at: Option<FailAt>,
    seed: u64,
    fixtures: &[Fixture],
    sold_out: i64,
) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let kinds = scenarios(n, fail_at, &mut rng);
    kinds
        .into_iter()
        .enumerate()
        .map(|(index, scenario)| {
            let lines = rng.random_range(1..=3.min(fixtures.len()));
            let mut chosen: Vec<&Fixture> = fixtures.choose_multiple(&mut rng, lines).collect();
            chosen.sort_by_key(|f| f.id);
            let mut items: Vec<(i64, i32)> = chosen
                .iter()
                .map(|f| (f.id, rng.random_range(1..=3)))
                .collect();
            let amount_cents = chosen
                .iter()
                .zip(&items)
                .map(|(f, (_, q))| f.price_cents * i64::from(*q))
                .sum();
            if scenario == Scenario::OutOfStock {
                items.push((sold_out, 1));
                items.sort();
            }
            Planned {
                index,
                key: format!("saga-{seed}-{run}-{index}"),
                scenario,
                provider: if rng.random_bool(0.5) {
                    Provider::Stripe
                } else {
                    Provider::Paypal
                },
                items,
                amount_cents,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<Fixture> {
        (1..=6)
            .map(|id| Fixture {
                id,
                price_cents: 100 * id,
                start_stock: 1000,
            })
            .collect()
    }

    #[test]
    fn mixed_runs_inject_every_failure_in_equal_parts() {
        let plan = orders("r", 50, Some(FailAt::Mixed), 7, &fixtures(), 99);
        for s in [
            Scenario::Succeed,
            Scenario::OutOfStock,
            Scenario::Decline,
            Scenario::CaptureFails,
            Scenario::Timeout,
        ] {
            assert_eq!(plan.iter().filter(|o| o.scenario == s).count(), 10, "{s:?}");
        }
    }

    #[test]
    fn a_plan_is_a_function_of_the_seed() {
        let a = orders("r", 20, Some(FailAt::Payment), 3, &fixtures(), 99);
        assert_eq!(
            a,
            orders("r", 20, Some(FailAt::Payment), 3, &fixtures(), 99)
        );
        assert_ne!(
            a,
            orders("r", 20, Some(FailAt::Payment), 4, &fixtures(), 99)
        );
        assert_eq!(
            a.iter().filter(|o| o.scenario == Scenario::Decline).count(),
            10
        );
    }

    #[test]
    fn amounts_are_the_priced_items_and_sold_out_orders_carry_the_sold_out_item() {
        for o in orders("r", 30, Some(FailAt::Reserve), 1, &fixtures(), 99) {
            let priced: i64 = o
                .items
                .iter()
                .filter(|(id, _)| *id != 99)
                .map(|(id, q)| 100 * id * i64::from(*q))
                .sum();
            assert_eq!(o.amount_cents, priced);
            assert_eq!(
                o.items.iter().any(|(id, _)| *id == 99),
                o.scenario == Scenario::OutOfStock
            );
            assert!(o.items.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
}
