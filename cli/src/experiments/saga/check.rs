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
use crate::experiments::Invariant;

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

/// Forged and re-delivered webhooks.
fn webhook_invariants(ev: &Evidence) -> Vec<Invariant> {
    let mut out = Vec::new();
    let refused = ev
        .forged
        .iter()
        .filter(|(_, got)| forgery_refused(got))
        .count();
    let name = "forged and stale webhooks were refused and changed nothing";
    out.push(if ev.forged.is_empty() {
        Invariant::unknown(
            name,
            "400/401 or not applied, none applied",
            "no forged webhook was sent",
        )
    } else {
        let counts = ev
            .forged
            .iter()
            .fold(BTreeMap::<&str, usize>::new(), |mut m, (_, got)| {
                *m.entry(got.as_str()).or_default() += 1;
                m
            });
        Invariant::check(
            name,
            refused == ev.forged.len() && ev.forged_applied == 0,
            format!(
                "{} × 400/401 (or, correctly signed, 2xx not applied), 0 applied",
                ev.forged.len()
            ),
            format!(
                "{refused} refused ({}), {} applied",
                counts
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                ev.forged_applied
            ),
            "HTTP statuses and outcomes of the forged POSTs; payments.webhook_events rows with \
             their event ids and outcome applied",
        )
    });

    let replays: u64 = ev.replays.values().sum();
    let replays_ok: u64 = ev
        .replays
        .iter()
        .filter(|(k, _)| k.starts_with('2'))
        .map(|(_, v)| v)
        .sum();
    let name = "re-delivered webhooks were acknowledged";
    out.push(if replays == 0 {
        Invariant::unknown(name, "2xx", "no webhook was re-delivered")
    } else {
        Invariant::check(
            name,
            replays_ok == replays,
            format!("{replays} × 2xx (deduplicated by event id)"),
            ev.replays
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            "HTTP statuses of the run's re-deliveries (1–3 per genuine webhook, out of order)",
        )
    });

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

/// How a correctly signed forgery's answer is labelled (`signed, 200
/// unconfirmed`): a forgery the signature check cannot refuse.
pub const SIGNED: &str = "signed, ";

/// Whether a forged webhook's answer shows it was refused: a badly signed
/// one got 400/401 from the signature check; a correctly signed one
/// ([`SIGNED`]) got a 2xx whose reported outcome is anything but applied
/// (the provider's record didn't back it, or the state machine had no use
/// for it).
fn forgery_refused(got: &str) -> bool {
    match got.strip_prefix(SIGNED) {
        None => got == "400" || got == "401",
        Some(answer) => answer
            .split_once(' ')
            .is_some_and(|(status, outcome)| status.starts_with('2') && outcome != "applied"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::check::evidence::{
        DlqSeen, KeysSeen, OrderSeen, OutboxSeen, PaymentSeen, ReservationSeen, StockSeen,
    };
    use crate::experiments::Verdict;

    fn planned(index: usize, scenario: Scenario) -> Planned {
        Planned {
            index,
            key: format!("k{index}"),
            scenario,
            provider: "stripe",
            items: vec![(1, 2)],
            amount_cents: 500,
        }
    }

    /// A consistent run: one completed, one declined order.
    fn good() -> (Vec<Placed>, Evidence, Shop) {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let placed = vec![
            Placed {
                plan: planned(0, Scenario::Succeed),
                order_id: Some(a),
                replay_same: Some(true),
            },
            Placed {
                plan: planned(1, Scenario::Decline),
                order_id: Some(b),
                replay_same: None,
            },
        ];
        let saga = |s: Scenario| {
            let (state, failure) = s.outcome();
            SagaSeen {
                state: state.into(),
                failure: failure.map(Into::into),
                amount_cents: Some(500),
                path: s.path().iter().map(|x| (*x).to_owned()).collect(),
                terminal: true,
            }
        };
        let ev = Evidence {
            sagas: HashMap::from([(a, saga(Scenario::Succeed)), (b, saga(Scenario::Decline))]),
            forged: vec![("evt_forged".into(), "401".into())],
            replays: BTreeMap::from([("200".into(), 3)]),
            ..Evidence::default()
        };
        let order = |s: Scenario| {
            let seen = saga(s);
            OrderSeen {
                state: seen.state,
                failure: seen.failure,
                amount_cents: Some(500),
                items: vec![(1, 2)],
                terminal: true,
                timeout: None,
            }
        };
        let reservation = |status: &str| ReservationSeen {
            status: status.into(),
            items: vec![(1, 2)],
        };
        let payment = |status: &str, n| PaymentSeen {
            status: status.into(),
            amount_cents: 500,
            into_captured: n,
            provider_captures: n,
        };
        let mut shop = Shop {
            orders: [(a, order(Scenario::Succeed)), (b, order(Scenario::Decline))].into(),
            reservations: [(a, reservation("reserved")), (b, reservation("released"))].into(),
            payments: [(a, payment("captured", 1)), (b, payment("declined", 0))].into(),
            stock: StockSeen {
                before: Some([(1, 10)].into()),
                now: [(1, 8)].into(),
            },
            outboxes: vec![OutboxSeen {
                name: "payments.outbox".into(),
                pending: 0,
                dead_since: 0,
            }],
            dlqs: vec![DlqSeen {
                queue: "payments.commands.dlq".into(),
                before: Some(0),
                now: Some(0),
                baseline: true,
                since: None,
            }],
            keys: KeysSeen {
                duplicated: vec![],
                unique_constraint: true,
                keys: 2,
            },
            bound: Duration::from_secs(60),
            quiesced: true,
            authorization_timeout: Duration::from_secs(6),
            ..Shop::default()
        };
        shop_evidence(&placed, &mut shop);
        (placed, ev, shop)
    }

    fn failing(placed: &[Placed], ev: &Evidence, shop: &Shop) -> Vec<String> {
        invariants(placed, ev, shop)
            .into_iter()
            .filter(|i| i.verdict != Verdict::Pass)
            .map(|i| i.name)
            .collect()
    }

    #[test]
    fn a_consistent_run_passes_every_invariant_under_the_names_saga_always_printed() {
        let (placed, ev, shop) = good();
        assert_eq!(failing(&placed, &ev, &shop), Vec::<String>::new());
        let names: Vec<String> = invariants(&placed, &ev, &shop)
            .into_iter()
            .map(|i| i.name)
            .collect();
        for name in [
            "every order was accepted and its saga is terminal within the bound",
            "each saga ended as its injected failure says",
            "the compensation steps recorded match the failure injected",
            "completed orders took their stock once and were captured exactly once",
            "failed orders hold no stock and no capture",
            "the sum captured equals the sum of completed order totals",
            "stock is conserved: start = now + sold",
            "the outboxes drained",
            "no unexplained dead letters",
            "forged and stale webhooks were refused and changed nothing",
            "re-delivered webhooks were acknowledged",
            "the same Idempotency-Key gave the same saga",
        ] {
            assert!(names.contains(&name.to_owned()), "{name}: {names:?}");
        }
        assert_eq!(names.last().map(String::as_str), Some(check::judge::KEYS));
    }

    #[test]
    fn a_double_capture_is_caught() {
        let (placed, ev, mut shop) = good();
        shop.payments
            .get_mut(&Uuid::from_u128(1))
            .unwrap()
            .provider_captures = 2;
        let bad = failing(&placed, &ev, &shop);
        assert!(bad.contains(
            &"completed orders took their stock once and were captured exactly once".into()
        ));
        assert!(bad.contains(&"the sum captured equals the sum of completed order totals".into()));
    }

    #[test]
    fn a_completed_order_unlike_its_plan_is_caught() {
        let (mut placed, ev, mut shop) = good();
        placed[0].plan.items = vec![(1, 3)];
        shop_evidence(&placed, &mut shop);
        assert_eq!(
            failing(&placed, &ev, &shop),
            ["completed orders took their stock once and were captured exactly once"]
        );
    }

    #[test]
    fn a_leaked_reservation_and_lost_stock_are_caught() {
        let (placed, ev, mut shop) = good();
        shop.reservations
            .get_mut(&Uuid::from_u128(2))
            .unwrap()
            .status = "reserved".into();
        shop.stock.now.insert(1, 6);
        let bad = failing(&placed, &ev, &shop);
        assert!(bad.contains(&"failed orders hold no stock and no capture".into()));
        assert!(bad.contains(&"stock is conserved: start = now + sold".into()));
    }

    #[test]
    fn a_wrong_compensation_is_caught() {
        let (placed, mut ev, shop) = good();
        // Declined, but the recorded path voided a payment that never existed.
        ev.sagas.get_mut(&Uuid::from_u128(2)).unwrap().path = [
            "reserving",
            "awaiting_authorization",
            "voiding_payment",
            "releasing_stock",
            "failed",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            failing(&placed, &ev, &shop),
            ["the compensation steps recorded match the failure injected"]
        );
    }

    #[test]
    fn a_signed_forgery_answered_200_passes_only_if_it_was_not_applied() {
        let name = "forged and stale webhooks were refused and changed nothing";
        let (placed, mut ev, shop) = good();
        ev.forged = vec![
            ("evt_a".into(), "401".into()),
            ("evt_b".into(), format!("{SIGNED}200 unconfirmed")),
            (
                "evt_c".into(),
                format!("{SIGNED}200 not applicable in this status"),
            ),
        ];
        assert!(!failing(&placed, &ev, &shop).contains(&name.into()));
        ev.forged
            .push(("evt_d".into(), format!("{SIGNED}200 applied")));
        assert!(failing(&placed, &ev, &shop).contains(&name.into()));
        ev.forged.pop();
        ev.forged_applied = 1;
        assert!(failing(&placed, &ev, &shop).contains(&name.into()));
        // A badly signed forgery that got past the signature check failed,
        // applied or not.
        for got in [
            "200",
            "200 unconfirmed",
            "200 not applicable in this status",
            "409",
            "500",
            "error: timeout",
        ] {
            assert!(!forgery_refused(got), "{got}");
        }
        for got in ["signed, 500 unconfirmed", "signed, 401", "signed, "] {
            assert!(!forgery_refused(got), "{got}");
        }
    }

    #[test]
    fn accepted_forgeries_dead_letters_and_stragglers_are_caught() {
        let (placed, mut ev, mut shop) = good();
        ev.forged = vec![("evt_forged".into(), "200".into())];
        ev.forged_applied = 1;
        shop.dlqs[0].now = Some(1);
        shop.outboxes[0].pending = 3;
        let bad = failing(&placed, &ev, &shop);
        for name in [
            "forged and stale webhooks were refused and changed nothing",
            "no unexplained dead letters",
            "the outboxes drained",
        ] {
            assert!(bad.contains(&name.into()), "{name}: {bad:?}");
        }
        let (placed, mut ev, mut shop) = good();
        ev.sagas.get_mut(&Uuid::from_u128(2)).unwrap().terminal = false;
        shop.orders.get_mut(&Uuid::from_u128(2)).unwrap().terminal = false;
        let verdicts: Vec<Verdict> = invariants(&placed, &ev, &shop)
            .iter()
            .map(|i| i.verdict)
            .collect();
        assert_eq!(verdicts[0], Verdict::Fail);
        assert!(verdicts.contains(&Verdict::Unknown));
    }

    #[test]
    fn a_re_post_that_made_a_new_saga_is_caught() {
        let (mut placed, ev, mut shop) = good();
        placed[0].replay_same = Some(false);
        shop_evidence(&placed, &mut shop);
        assert_eq!(
            failing(&placed, &ev, &shop),
            ["the same Idempotency-Key gave the same saga"]
        );
    }
}
