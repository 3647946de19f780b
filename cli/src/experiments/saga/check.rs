//! The saga run's invariants, as pure functions of the evidence read from
//! the databases and the broker, so unit tests can feed them bad evidence
//! (a double capture, a leaked reservation, a wrong compensation) and see
//! them fail.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::plan::{Fixture, Planned, Scenario};
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

/// A reservation as catalog's schema holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationSeen {
    /// `reserved` or `released`.
    pub status: String,
    /// `(product_id, quantity)` ascending.
    pub items: Vec<(i64, i32)>,
}

/// A payment as payments' schema holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSeen {
    pub status: String,
    pub amount_cents: i64,
    /// History rows entering `captured`.
    pub into_captured: i64,
    /// Captures in the provider's ledger.
    pub provider_captures: i64,
}

/// An outbox's state after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxSeen {
    pub name: String,
    pub pending: i64,
    pub dead_before: i64,
    pub dead_after: i64,
}

/// A dead-letter queue's depth before and after, as the owning service's
/// /metrics reports the broker's count (`None`: not readable).
#[derive(Debug, Clone, PartialEq)]
pub struct DlqSeen {
    pub queue: String,
    pub before: Option<f64>,
    pub after: Option<f64>,
}

/// Everything the checks read.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub sagas: HashMap<Uuid, SagaSeen>,
    pub reservations: HashMap<Uuid, ReservationSeen>,
    pub payments: HashMap<Uuid, PaymentSeen>,
    pub fixtures: Vec<Fixture>,
    pub stock_now: HashMap<i64, i32>,
    pub outboxes: Vec<OutboxSeen>,
    pub dlqs: Vec<DlqSeen>,
    /// Forged webhooks sent: their event ids and the statuses they got.
    pub forged: Vec<(String, String)>,
    /// Of the forged event ids, how many payments applied.
    pub forged_applied: i64,
    /// Genuine webhooks re-delivered by the run: statuses they got.
    pub replays: BTreeMap<String, u64>,
    /// The bound sagas had to finish within, in seconds.
    pub bound_secs: u64,
    /// Whether the run waited for the outboxes etc. to settle in time.
    pub quiesced: bool,
}

fn listed(bad: &[String]) -> String {
    const SHOWN: usize = 5;
    if bad.is_empty() {
        return "none".into();
    }
    let more = bad.len().saturating_sub(SHOWN);
    let mut s = bad
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if more > 0 {
        s.push_str(&format!("; … {more} more"));
    }
    format!("{} bad: {s}", bad.len())
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

/// All invariants of a run.
pub fn invariants(placed: &[Placed], ev: &Evidence) -> Vec<Invariant> {
    let n = placed.len();
    let done = finished(placed, ev);
    let unfinished = n - done.len();
    let mut out = Vec::new();
    let not_placed: Vec<String> = placed
        .iter()
        .filter(|p| p.order_id.is_none())
        .map(|p| format!("order {} never accepted", p.plan.index))
        .collect();
    out.push(Invariant::check(
        "every order was accepted and its saga is terminal within the bound",
        unfinished == 0,
        format!("{n} terminal within {} s", ev.bound_secs),
        if unfinished == 0 {
            format!("{n} terminal")
        } else {
            format!(
                "{} terminal, {unfinished} not ({})",
                done.len(),
                listed(&not_placed)
            )
        },
        "checkout.sagas state polled until terminal or the bound",
    ));
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

    let mut bad = Vec::new();
    for (p, id, saga) in done.iter().filter(|(_, _, s)| s.state == "completed") {
        let reservation = ev.reservations.get(id);
        let payment = ev.payments.get(id);
        let held = reservation.is_some_and(|r| r.status == "reserved" && r.items == p.plan.items);
        let captured_once = payment.is_some_and(|pay| {
            pay.status == "captured" && pay.into_captured == 1 && pay.provider_captures == 1
        });
        let priced = saga.amount_cents == Some(p.plan.amount_cents);
        if !(held && captured_once && priced) {
            bad.push(format!(
                "{id}: reservation {reservation:?}, payment {payment:?}, amount {:?}",
                saga.amount_cents
            ));
        }
    }
    out.push(judge(
        "completed orders took their stock once and were captured exactly once",
        "reservation held with the order's items; payment captured; 1 transition into captured; 1 provider capture".into(),
        bad,
        "catalog.reservations/reservation_items, payments.payments/payment_transitions/provider_intents",
    ));

    let mut bad = Vec::new();
    for (_, id, _) in done.iter().filter(|(_, _, s)| s.state != "completed") {
        let reservation = ev.reservations.get(id);
        let payment = ev.payments.get(id);
        let no_stock = reservation.is_none_or(|r| r.status == "released");
        let no_capture = payment.is_none_or(|pay| {
            matches!(pay.status.as_str(), "declined" | "voided")
                && pay.into_captured == 0
                && pay.provider_captures == 0
        });
        if !(no_stock && no_capture) {
            bad.push(format!(
                "{id}: reservation {reservation:?}, payment {payment:?}"
            ));
        }
    }
    out.push(judge(
        "failed orders hold no stock and no capture",
        "reservation absent or released; payment absent, declined or voided, never captured".into(),
        bad,
        "catalog.reservations, payments.payments, payments.provider_intents",
    ));

    let completed_total: i64 = done
        .iter()
        .filter(|(_, _, s)| s.state == "completed")
        .map(|(_, _, s)| s.amount_cents.unwrap_or(0))
        .sum();
    let captured_total: i64 = ev
        .payments
        .values()
        .map(|pay| pay.amount_cents * pay.provider_captures)
        .sum();
    let name = "the sum captured equals the sum of completed order totals";
    out.push(if unfinished > 0 && captured_total == completed_total {
        Invariant::unknown(name, completed_total, format!("{unfinished} saga(s) not terminal"))
    } else {
        Invariant::equal(
            name,
            completed_total,
            captured_total,
            "Σ amount × provider captures (payments) vs Σ amount_cents of completed sagas (checkout), in cents",
        )
    });

    let mut sold: HashMap<i64, i64> = HashMap::new();
    for (p, _, _) in done.iter().filter(|(_, _, s)| s.state == "completed") {
        for (product, q) in &p.plan.items {
            *sold.entry(*product).or_default() += i64::from(*q);
        }
    }
    let mut bad = Vec::new();
    for f in &ev.fixtures {
        let now = ev.stock_now.get(&f.id).copied().map(i64::from);
        let sold = sold.get(&f.id).copied().unwrap_or(0);
        if now.map(|now| now + sold) != Some(i64::from(f.start_stock)) {
            bad.push(format!(
                "product {}: start {}, now {now:?}, sold {sold}",
                f.id, f.start_stock
            ));
        }
    }
    out.push(judge(
        "stock is conserved: start = now + sold",
        format!("for each of the {} fixture products", ev.fixtures.len()),
        bad,
        "catalog.products stock before and after; units of completed orders",
    ));

    let pending: Vec<String> = ev
        .outboxes
        .iter()
        .filter(|o| o.pending != 0)
        .map(|o| format!("{}: {} pending", o.name, o.pending))
        .collect();
    let name = "the outboxes drained";
    out.push(if ev.outboxes.is_empty() {
        Invariant::unknown(name, "0 pending", "outbox tables unreadable")
    } else {
        Invariant::check(
            name,
            pending.is_empty() && ev.quiesced,
            "0 pending in payments.outbox and checkout.outbox",
            if pending.is_empty() {
                "0 pending".into()
            } else {
                pending.join(", ")
            },
            "outbox rows with published_at and dead_at NULL, after waiting for quiet",
        )
    });

    let mut bad: Vec<String> = ev
        .outboxes
        .iter()
        .filter(|o| o.dead_after != o.dead_before)
        .map(|o| format!("{}: {} → {} dead rows", o.name, o.dead_before, o.dead_after))
        .collect();
    let mut unreadable = Vec::new();
    for d in &ev.dlqs {
        match (d.before, d.after) {
            (Some(b), Some(a)) if a != b => {
                bad.push(format!("{}: {b} → {a} dead letters", d.queue))
            }
            (Some(_), Some(_)) => {}
            _ => unreadable.push(d.queue.clone()),
        }
    }
    let name = "no unexplained dead letters";
    out.push(if bad.is_empty() && !unreadable.is_empty() {
        Invariant::unknown(name, "0 new", format!("dead-letter depth unreadable for {}", unreadable.join(", ")))
    } else {
        Invariant::check(
            name,
            bad.is_empty(),
            "0 new dead outbox rows, 0 new messages in the dead-letter queues",
            if bad.is_empty() { "0 new".into() } else { bad.join(", ") },
            "outbox dead_at counts and amqp_queue_dead_letters (broker counts via /metrics), before vs after",
        )
    });

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

    let replayed: Vec<&Placed> = placed.iter().filter(|p| p.replay_same.is_some()).collect();
    let same = replayed
        .iter()
        .filter(|p| p.replay_same == Some(true))
        .count();
    out.push(Invariant::check(
        "the same Idempotency-Key gave the same saga",
        !replayed.is_empty() && same == replayed.len(),
        format!("{} × 200 with the first order id", replayed.len()),
        format!("{same} of {}", replayed.len()),
        "POST /checkout repeated with the key of an accepted order",
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
    use super::*;
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
    fn good() -> (Vec<Placed>, Evidence) {
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
        let saga = |s: Scenario, amount| {
            let (state, failure) = s.outcome();
            SagaSeen {
                state: state.into(),
                failure: failure.map(Into::into),
                amount_cents: Some(amount),
                path: s.path().iter().map(|x| (*x).to_owned()).collect(),
                terminal: true,
            }
        };
        let mut ev = Evidence {
            fixtures: vec![Fixture {
                id: 1,
                price_cents: 250,
                start_stock: 10,
            }],
            stock_now: HashMap::from([(1, 8)]),
            outboxes: vec![OutboxSeen {
                name: "payments.outbox".into(),
                pending: 0,
                dead_before: 0,
                dead_after: 0,
            }],
            dlqs: vec![DlqSeen {
                queue: "payments.commands".into(),
                before: Some(0.0),
                after: Some(0.0),
            }],
            forged: vec![("evt_forged".into(), "401".into())],
            replays: BTreeMap::from([("200".into(), 3)]),
            bound_secs: 60,
            quiesced: true,
            ..Evidence::default()
        };
        ev.sagas.insert(a, saga(Scenario::Succeed, 500));
        ev.sagas.insert(b, saga(Scenario::Decline, 500));
        ev.reservations.insert(
            a,
            ReservationSeen {
                status: "reserved".into(),
                items: vec![(1, 2)],
            },
        );
        ev.reservations.insert(
            b,
            ReservationSeen {
                status: "released".into(),
                items: vec![(1, 2)],
            },
        );
        ev.payments.insert(
            a,
            PaymentSeen {
                status: "captured".into(),
                amount_cents: 500,
                into_captured: 1,
                provider_captures: 1,
            },
        );
        ev.payments.insert(
            b,
            PaymentSeen {
                status: "declined".into(),
                amount_cents: 500,
                into_captured: 0,
                provider_captures: 0,
            },
        );
        (placed, ev)
    }

    fn failing(placed: &[Placed], ev: &Evidence) -> Vec<String> {
        invariants(placed, ev)
            .into_iter()
            .filter(|i| i.verdict != Verdict::Pass)
            .map(|i| i.name)
            .collect()
    }

    #[test]
    fn a_consistent_run_passes_every_invariant() {
        let (placed, ev) = good();
        assert_eq!(failing(&placed, &ev), Vec::<String>::new());
    }

    #[test]
    fn a_double_capture_is_caught() {
        let (placed, mut ev) = good();
        ev.payments
            .get_mut(&Uuid::from_u128(1))
            .unwrap()
            .provider_captures = 2;
        let bad = failing(&placed, &ev);
        assert!(bad.contains(
            &"completed orders took their stock once and were captured exactly once".into()
        ));
        assert!(bad.contains(&"the sum captured equals the sum of completed order totals".into()));
    }

    #[test]
    fn a_leaked_reservation_and_lost_stock_are_caught() {
        let (placed, mut ev) = good();
        ev.reservations.get_mut(&Uuid::from_u128(2)).unwrap().status = "reserved".into();
        ev.stock_now.insert(1, 6);
        let bad = failing(&placed, &ev);
        assert!(bad.contains(&"failed orders hold no stock and no capture".into()));
        assert!(bad.contains(&"stock is conserved: start = now + sold".into()));
    }

    #[test]
    fn a_wrong_compensation_is_caught() {
        let (placed, mut ev) = good();
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
            failing(&placed, &ev),
            ["the compensation steps recorded match the failure injected"]
        );
    }

    #[test]
    fn a_signed_forgery_answered_200_passes_only_if_it_was_not_applied() {
        let name = "forged and stale webhooks were refused and changed nothing";
        let (placed, mut ev) = good();
        ev.forged = vec![
            ("evt_a".into(), "401".into()),
            ("evt_b".into(), format!("{SIGNED}200 unconfirmed")),
            (
                "evt_c".into(),
                format!("{SIGNED}200 not applicable in this status"),
            ),
        ];
        assert!(!failing(&placed, &ev).contains(&name.into()));
        ev.forged
            .push(("evt_d".into(), format!("{SIGNED}200 applied")));
        assert!(failing(&placed, &ev).contains(&name.into()));
        ev.forged.pop();
        ev.forged_applied = 1;
        assert!(failing(&placed, &ev).contains(&name.into()));
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
        let (placed, mut ev) = good();
        ev.forged = vec![("evt_forged".into(), "200".into())];
        ev.forged_applied = 1;
        ev.dlqs[0].after = Some(1.0);
        ev.outboxes[0].pending = 3;
        let bad = failing(&placed, &ev);
        for name in [
            "forged and stale webhooks were refused and changed nothing",
            "no unexplained dead letters",
            "the outboxes drained",
        ] {
            assert!(bad.contains(&name.into()), "{name}: {bad:?}");
        }
        let (placed, mut ev) = good();
        ev.sagas.get_mut(&Uuid::from_u128(2)).unwrap().terminal = false;
        let verdicts: Vec<Verdict> = invariants(&placed, &ev).iter().map(|i| i.verdict).collect();
        assert_eq!(verdicts[0], Verdict::Fail);
        assert!(verdicts.contains(&Verdict::Unknown));
    }
}
