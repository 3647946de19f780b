//! The saga checks fed failing evidence: each invariant fails (or is
//! unknown) when its evidence says so, and a consistent run passes them all.

use std::time::Duration;

use super::delivery::forgery_refused;
use super::*;
use crate::check::evidence::{
    DlqSeen, KeysSeen, OrderSeen, OutboxSeen, PaymentSeen, ReservationSeen, StockSeen,
};
use crate::run::Verdict;

fn planned(index: usize, scenario: Scenario) -> Planned {
    Planned {
        index,
        key: format!("k{index}"),
        scenario,
        provider: crate::clients::contract::payments::Provider::Stripe,
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
    assert!(
        bad.contains(
            &"completed orders took their stock once and were captured exactly once".into()
        )
    );
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

#[test]
fn a_re_delivery_that_was_not_acknowledged_is_caught() {
    let (placed, mut ev, shop) = good();
    ev.replays.insert("500".into(), 1);
    assert_eq!(
        failing(&placed, &ev, &shop),
        ["re-delivered webhooks were acknowledged"]
    );
}

#[test]
fn without_forgeries_or_re_deliveries_their_invariants_cannot_be_judged() {
    let (placed, mut ev, shop) = good();
    ev.forged.clear();
    ev.replays.clear();
    let unknown: Vec<String> = invariants(&placed, &ev, &shop)
        .into_iter()
        .filter(|i| i.verdict == Verdict::Unknown)
        .map(|i| i.name)
        .collect();
    assert_eq!(
        unknown,
        [
            "forged and stale webhooks were refused and changed nothing",
            "re-delivered webhooks were acknowledged"
        ]
    );
}

#[test]
fn a_crashed_service_that_never_came_back_leaves_the_run_unjudged() {
    let inv = crash(Some(&Err("not ready within 30 s".into()))).unwrap();
    assert_eq!(inv.verdict, Verdict::Unknown);
    assert!(inv.evidence.contains("not ready"));
    assert!(crash(Some(&Ok(Duration::from_secs(2)))).is_none());
    assert!(crash(None).is_none());
}
