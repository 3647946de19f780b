//! The judge fed a consistent shop, then evidence that must fail each
//! invariant in turn.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::check::evidence::{
    ClaimsSeen, DlqSeen, KeysSeen, OrderSeen, OutboxSeen, PaymentSeen, Placed, ReservationSeen,
    Retries, Shop, StockSeen, TimeoutSeen,
};
use crate::run::Verdict;

const DONE: u128 = 1;
const DECLINED: u128 = 2;
const TIMED_OUT: u128 = 3;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn order(state: &str, failure: Option<&str>) -> OrderSeen {
    OrderSeen {
        state: state.into(),
        failure: failure.map(Into::into),
        amount_cents: Some(500),
        items: vec![(1, 2)],
        terminal: true,
        timeout: None,
    }
}

fn payment(status: &str, captures: i64) -> PaymentSeen {
    PaymentSeen {
        status: status.into(),
        amount_cents: 500,
        into_captured: captures,
        provider_captures: captures,
    }
}

fn reservation(status: &str) -> ReservationSeen {
    ReservationSeen {
        status: status.into(),
        items: vec![(1, 2)],
    }
}

/// A consistent shop: one completed, one declined, one timed-out order.
fn good() -> Shop {
    let mut timed_out = order("failed", Some("authorization_timeout"));
    timed_out.timeout = Some(TimeoutSeen {
        published_at: Some(Some(at(0))),
        gave_up_at: Some(at(6)),
    });
    Shop {
        scope: "orders since test".into(),
        orders: BTreeMap::from([
            (id(DONE), order("completed", None)),
            (id(DECLINED), order("failed", Some("payment_declined"))),
            (id(TIMED_OUT), timed_out),
        ]),
        placed: [(
            id(DONE),
            Placed {
                items: vec![(1, 2)],
                amount_cents: 500,
            },
        )]
        .into(),
        reservations: [
            (id(DONE), reservation("reserved")),
            (id(DECLINED), reservation("released")),
            (id(TIMED_OUT), reservation("released")),
        ]
        .into(),
        payments: [
            (id(DONE), payment("captured", 1)),
            (id(DECLINED), payment("declined", 0)),
            (id(TIMED_OUT), payment("voided", 0)),
        ]
        .into(),
        stock: StockSeen {
            before: Some(BTreeMap::from([(1, 10)])),
            now: BTreeMap::from([(1, 8)]),
        },
        outboxes: vec![OutboxSeen {
            name: "payments.outbox".into(),
            pending: 0,
            dead_since: 0,
        }],
        dlqs: vec![DlqSeen {
            queue: "payments.commands.dlq".into(),
            before: Some(1),
            now: Some(1),
            baseline: true,
            since: None,
        }],
        keys: KeysSeen {
            duplicated: vec![],
            unique_constraint: true,
            keys: 3,
        },
        retries: Some(Retries { same: 1, total: 1 }),
        claims: Some(ClaimsSeen {
            rows: 4,
            keys: 4,
            unique_constraint: true,
        }),
        bound: Duration::from_secs(30),
        quiesced: true,
        authorization_timeout: Duration::from_secs(6),
        ..Shop::default()
    }
}

fn verdicts(ev: &Shop) -> BTreeMap<String, Verdict> {
    judge(ev).into_iter().map(|i| (i.name, i.verdict)).collect()
}

fn failing(ev: &Shop) -> Vec<String> {
    judge(ev)
        .into_iter()
        .filter(|i| i.verdict != Verdict::Pass)
        .map(|i| i.name)
        .collect()
}

#[test]
fn a_consistent_shop_passes_every_invariant() {
    let names = verdicts(&good());
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(failing(&good()), Vec::<String>::new());
}

#[test]
fn an_order_that_is_not_terminal_fails_and_leaves_the_others_unknown() {
    let mut ev = good();
    ev.orders.get_mut(&id(DECLINED)).unwrap().terminal = false;
    let v = verdicts(&ev);
    assert_eq!(v[TERMINAL], Verdict::Fail);
    assert_eq!(v[FAILED], Verdict::Unknown);
    assert_eq!(v[MONEY], Verdict::Unknown);
    let mut ev = good();
    ev.not_accepted.push("order 7 never accepted".into());
    assert_eq!(verdicts(&ev)[TERMINAL], Verdict::Fail);
}

#[test]
fn a_double_capture_fails_completed_and_money() {
    let mut ev = good();
    ev.payments.get_mut(&id(DONE)).unwrap().provider_captures = 2;
    assert_eq!(failing(&ev), [COMPLETED, MONEY]);
    // Payments recorded a second capture the provider did not make.
    let mut ev = good();
    ev.payments.get_mut(&id(DONE)).unwrap().into_captured = 2;
    assert_eq!(failing(&ev), [COMPLETED, MONEY]);
}

#[test]
fn a_completed_order_charged_another_amount_fails() {
    let mut ev = good();
    ev.payments.get_mut(&id(DONE)).unwrap().amount_cents = 499;
    assert!(failing(&ev).contains(&COMPLETED.to_owned()));
    // Not what the client placed.
    let mut ev = good();
    ev.placed.get_mut(&id(DONE)).unwrap().amount_cents = 600;
    assert_eq!(failing(&ev), [COMPLETED]);
}

#[test]
fn a_completed_order_whose_stock_went_back_fails() {
    let mut ev = good();
    ev.reservations.get_mut(&id(DONE)).unwrap().status = "released".into();
    ev.stock.now.insert(1, 10);
    let bad = failing(&ev);
    assert!(bad.contains(&COMPLETED.to_owned()), "{bad:?}");
    assert!(bad.contains(&STOCK.to_owned()), "{bad:?}");
}

#[test]
fn a_failed_order_holding_stock_or_captured_fails() {
    let mut ev = good();
    ev.reservations.get_mut(&id(DECLINED)).unwrap().status = "reserved".into();
    assert!(failing(&ev).contains(&FAILED.to_owned()));
    let mut ev = good();
    *ev.payments.get_mut(&id(DECLINED)).unwrap() = payment("captured", 1);
    assert_eq!(failing(&ev), [FAILED, MONEY]);
}

#[test]
fn a_timed_out_order_holding_stock_or_a_capture_fails() {
    let mut ev = good();
    ev.reservations.get_mut(&id(TIMED_OUT)).unwrap().status = "reserved".into();
    assert!(failing(&ev).contains(&FAILED.to_owned()));
    let mut ev = good();
    *ev.payments.get_mut(&id(TIMED_OUT)).unwrap() = payment("authorized", 0);
    assert_eq!(failing(&ev), [FAILED]);
}

#[test]
fn a_timeout_counted_from_the_outbox_write_not_the_publish_fails() {
    // Published at 4 s (the broker was paused), gave up at 6 s: 2 s waited.
    let mut ev = good();
    ev.orders.get_mut(&id(TIMED_OUT)).unwrap().timeout = Some(TimeoutSeen {
        published_at: Some(Some(at(4))),
        gave_up_at: Some(at(6)),
    });
    assert_eq!(failing(&ev), [TIMEOUTS]);
    // Never published at all.
    let mut ev = good();
    ev.orders.get_mut(&id(TIMED_OUT)).unwrap().timeout = Some(TimeoutSeen {
        published_at: Some(None),
        gave_up_at: Some(at(6)),
    });
    assert_eq!(failing(&ev), [TIMEOUTS]);
    // The outbox row is gone: cannot be judged.
    let mut ev = good();
    ev.orders.get_mut(&id(TIMED_OUT)).unwrap().timeout = Some(TimeoutSeen {
        published_at: None,
        gave_up_at: Some(at(6)),
    });
    assert_eq!(verdicts(&ev)[TIMEOUTS], Verdict::Unknown);
}

#[test]
fn stock_off_by_one_unit_fails_conservation() {
    let mut ev = good();
    ev.stock.now.insert(1, 7);
    assert_eq!(failing(&ev), [STOCK]);
    // Without a snapshot, the reservations are the ledger.
    let mut ev = good();
    ev.stock.before = None;
    assert_eq!(failing(&ev), Vec::<String>::new());
    ev.reservations.get_mut(&id(DONE)).unwrap().items = vec![(1, 3)];
    assert_eq!(failing(&ev), [COMPLETED, STOCK]);
}

#[test]
fn a_pending_outbox_row_or_unsettled_messages_fail_the_drain() {
    let mut ev = good();
    ev.outboxes[0].pending = 3;
    assert_eq!(failing(&ev), [OUTBOXES]);
    let mut ev = good();
    ev.quiesced = false;
    assert_eq!(failing(&ev), [OUTBOXES]);
    let mut ev = good();
    ev.outboxes.clear();
    assert_eq!(verdicts(&ev)[OUTBOXES], Verdict::Unknown);
}

#[test]
fn new_dead_letters_fail_and_unreadable_queues_are_unknown() {
    let mut ev = good();
    ev.dlqs[0].now = Some(2);
    assert_eq!(failing(&ev), [DEAD_LETTERS]);
    let mut ev = good();
    ev.outboxes[0].dead_since = 1;
    assert_eq!(failing(&ev), [DEAD_LETTERS]);
    // Without a baseline a message dead-lettered since the start (by its
    // x-death time) is unexplained; older ones are not the scope's.
    let mut ev = good();
    ev.dlqs[0].baseline = false;
    ev.dlqs[0].before = None;
    ev.dlqs[0].since = Some(1);
    assert_eq!(failing(&ev), [DEAD_LETTERS]);
    ev.dlqs[0].since = Some(0);
    assert_eq!(failing(&ev), Vec::<String>::new());
    // Not dated (too many to peek): any message is unexplained.
    ev.dlqs[0].since = None;
    assert_eq!(failing(&ev), [DEAD_LETTERS]);
    ev.dlqs[0].now = Some(0);
    assert_eq!(failing(&ev), Vec::<String>::new());
    ev.dlqs[0].now = None;
    assert_eq!(verdicts(&ev)[DEAD_LETTERS], Verdict::Unknown);
}

#[test]
fn a_retried_key_that_made_a_second_order_fails() {
    let mut ev = good();
    ev.retries = Some(Retries { same: 0, total: 1 });
    assert_eq!(failing(&ev), [KEYS]);
    // A client that retried nothing proves nothing.
    ev.retries = Some(Retries { same: 0, total: 0 });
    assert_eq!(failing(&ev), [KEYS]);
    // From the database alone: two orders under one key, or no constraint.
    let mut ev = good();
    ev.retries = None;
    assert_eq!(failing(&ev), Vec::<String>::new());
    ev.keys
        .duplicated
        .push("customer -, key k1: 2 orders".into());
    assert_eq!(failing(&ev), [KEYS]);
    let mut ev = good();
    ev.retries = None;
    ev.keys.unique_constraint = false;
    assert_eq!(failing(&ev), [KEYS]);
}

#[test]
fn two_claims_under_one_key_fail_and_claims_are_judged_only_when_asked() {
    let mut ev = good();
    ev.claims = Some(ClaimsSeen {
        rows: 5,
        keys: 4,
        unique_constraint: true,
    });
    assert_eq!(failing(&ev), [CLAIMS]);
    ev.claims = Some(ClaimsSeen {
        rows: 4,
        keys: 4,
        unique_constraint: false,
    });
    assert_eq!(failing(&ev), [CLAIMS]);
    ev.claims = None;
    assert!(!verdicts(&ev).contains_key(CLAIMS));
}
