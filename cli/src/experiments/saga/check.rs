//! The saga run's invariants, as pure functions of the evidence: the
//! shop's (money, stock, outboxes, dead letters, keys) from the one
//! checker, [`crate::check`], and the saga's own (outcome and compensations
//! against the plan, forged and re-delivered webhooks), so unit tests can
//! feed them bad evidence (a double capture, a leaked reservation, a wrong
//! compensation) and see them fail.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::plan::{Planned, Scenario};
use crate::check::evidence::{Placed as ShopPlaced, Retries, merged};
use crate::check::judge::listed;
use crate::check::{self, Shop};
use crate::run::Invariant;

mod delivery;
#[cfg(test)]
mod tests;

pub use delivery::SIGNED;
use delivery::webhook_invariants;

/// An order as placed.
#[derive(Debug, Clone)]
pub struct Placed {
    /// What it was meant to do.
    pub plan: Planned,
    /// Its saga, if the POST was accepted.
    pub order_id: Option<Uuid>,
    /// For re-POSTed orders: whether the same key gave the same saga (200).
    pub replay_same: Option<bool>,
}

/// A saga as checkout's schema holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaSeen {
    pub state: String,
    pub failure: Option<String>,
    pub amount_cents: Option<i64>,
    /// States passed through, repeats collapsed.
    pub path: Vec<String>,
    pub terminal: bool,
}

/// What only the saga run knows, beside the shop's evidence.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub sagas: HashMap<Uuid, SagaSeen>,
    /// Forged webhooks sent: their event ids and the statuses they got.
    pub forged: Vec<(String, String)>,
    /// Of the forged event ids, how many payments applied.
    pub forged_applied: i64,
    /// Genuine webhooks re-delivered by the run: statuses they got.
    pub replays: BTreeMap<String, u64>,
}

/// Orders placed with a terminal saga; `Err(n)` when `n` aren't.
fn finished<'a>(placed: &'a [Placed], ev: &'a Evidence) -> Vec<(&'a Placed, Uuid, &'a SagaSeen)> {
    placed
        .iter()
        .filter_map(|p| {
            let id = p.order_id?;
            let saga = ev.sagas.get(&id).filter(|s| s.terminal)?;
            Some((p, id, saga))
        })
        .collect()
}

/// The shop's evidence as this run adds to it: what each order was meant
/// to be, the orders never accepted, and the key re-POSTs.
pub fn shop_evidence(placed: &[Placed], shop: &mut Shop) {
    shop.not_accepted = placed
        .iter()
        .filter(|p| p.order_id.is_none())
        .map(|p| format!("order {} never accepted", p.plan.index))
        .collect();
    for p in placed {
        if let Some(id) = p.order_id {
            let items = merged(p.plan.items.iter().map(|(p, q)| (*p, i64::from(*q))));
            let amount_cents = p.plan.amount_cents;
            shop.placed.insert(
                id,
                ShopPlaced {
                    items,
                    amount_cents,
                },
            );
        }
    }
    let replayed = placed.iter().filter_map(|p| p.replay_same);
    shop.retries = Some(
        replayed.fold(Retries { same: 0, total: 0 }, |r, same| Retries {
            same: r.same + u64::from(same),
            total: r.total + 1,
        }),
    );
}

/// All invariants of a run: the shop's (the one checker's), with the
/// saga's own beside them — each saga ended as its injected failure says,
/// its compensations match, forgeries changed nothing, re-deliveries were
/// acknowledged.
pub fn invariants(placed: &[Placed], ev: &Evidence, shop: &Shop) -> Vec<Invariant> {
    let mut shop = crate::check::judge(shop);
    let mut out = Vec::new();
    if !shop.is_empty() {
        out.push(shop.remove(0));
    }
    let unfinished = placed.len() - finished(placed, ev).len();
    out.extend(plan_invariants(placed, ev, unfinished));
    let keys = shop.iter().position(|i| i.name == check::judge::KEYS);
    let keys = keys.map(|k| shop.remove(k));
    out.extend(shop);
    out.extend(webhook_invariants(ev));
    out.extend(keys);
    out
}

/// The run's plan against the sagas' outcomes and histories.
fn plan_invariants(placed: &[Placed], ev: &Evidence, unfinished: usize) -> Vec<Invariant> {
    let done = finished(placed, ev);
    let mut out = Vec::new();
    // Per-order checks judge the finished sagas; with stragglers they can't
    // be complete, so they say unknown rather than pass.
    let judge = |name: &str, expected: String, bad: Vec<String>, evidence: &str| {
        if unfinished > 0 && bad.is_empty() {
            Invariant::unknown(
                name,
                expected,
                format!("{unfinished} saga(s) not terminal: {evidence}"),
            )
        } else {
            Invariant::check(name, bad.is_empty(), expected, listed(&bad), evidence)
        }
    };

    let mut bad = Vec::new();
    for (p, id, saga) in &done {
        let (state, failure) = p.plan.scenario.outcome();
        if saga.state != state || saga.failure.as_deref() != failure {
            bad.push(format!(
                "{id} ({}): {} / {}",
                p.plan.scenario.label(),
                saga.state,
                saga.failure.as_deref().unwrap_or("-")
            ));
        }
    }
    out.push(judge(
        "each saga ended as its injected failure says",
        "succeed → completed; out of stock → rejected; decline / capture / timeout → failed with that failure".into(),
        bad,
        "checkout.sagas state and failure vs the run's plan",
    ));

    let mut bad = Vec::new();
    for (p, id, saga) in &done {
        let expected = p.plan.scenario.path();
        if saga.path != expected {
            bad.push(format!(
                "{id} ({}): {}",
                p.plan.scenario.label(),
                saga.path.join("→")
            ));
        }
    }
    out.push(judge(
        "the compensation steps recorded match the failure injected",
        "decline: release stock; capture: void payment, release stock; timeout: void, release; out of stock: nothing".into(),
        bad,
        "checkout.saga_steps to_state in version order (repeats collapsed)",
    ));
    out
}

/// Counts of planned scenarios, for the report.
pub fn planned_counts(placed: &[Placed]) -> BTreeMap<Scenario, usize> {
    let mut m = BTreeMap::new();
    for p in placed {
        *m.entry(p.plan.scenario).or_default() += 1;
    }
    m
}

/// A crash that did not come back leaves the run unjudged on that point.
pub fn crash(crash: Option<&Result<std::time::Duration, String>>) -> Option<Invariant> {
    match crash {
        Some(Err(why)) => Some(Invariant::unknown(
            "the crashed service came back",
            "restarted and ready",
            why,
        )),
        _ => None,
    }
}
