//! The shop's invariants as one pure function of [`Shop`] evidence. The
//! names are the ones `saga` has always printed, so its reports (and
//! `verify`) read the same.

use std::collections::BTreeMap;
use std::time::Duration;

use uuid::Uuid;

use super::evidence::{OrderSeen, Shop};
use crate::run::{Invariant, Verdict};

pub const TERMINAL: &str = "every order was accepted and its saga is terminal within the bound";
pub const COMPLETED: &str = "completed orders took their stock once and were captured exactly once";
pub const FAILED: &str = "failed orders hold no stock and no capture";
pub const MONEY: &str = "the sum captured equals the sum of completed order totals";
pub const STOCK: &str = "stock is conserved: start = now + sold";
pub const OUTBOXES: &str = "the outboxes drained";
pub const DEAD_LETTERS: &str = "no unexplained dead letters";
pub const KEYS: &str = "the same Idempotency-Key gave the same saga";
pub const TIMEOUTS: &str =
    "an authorization timed out only after its command was published and the timeout had run";
pub const CLAIMS: &str = "one claim per Idempotency-Key";

/// How much earlier than `published + timeout` a give-up may be recorded
/// (the service's clock and Postgres' are one machine's; this is rounding).
const CLOCK_SLACK: Duration = Duration::from_millis(50);

/// Every invariant of the shop over the evidence.
pub fn judge(ev: &Shop) -> Vec<Invariant> {
    let unfinished = ev.orders.values().filter(|o| !o.terminal).count() + ev.not_accepted.len();
    let mut out = vec![terminal(ev, unfinished)];
    let per_order = Judge { unfinished };
    out.push(per_order.verdict(
        COMPLETED,
        "reservation held with the order's items; payment captured for the order's total; 1 transition into captured; 1 provider capture".into(),
        completed(ev),
        "checkout.sagas, catalog.reservations/reservation_items (by order id), payments.payments/payment_transitions/provider_intents",
    ));
    out.push(per_order.verdict(
        FAILED,
        "failed or rejected (authorization_timeout included): reservation absent or released; payment absent, declined or voided, never captured".into(),
        failed(ev),
        "checkout.sagas, catalog.reservations, payments.payments, payments.provider_intents",
    ));
    out.push(money(ev, unfinished));
    out.push(per_order.verdict(
        STOCK,
        match &ev.stock.before {
            Some(before) => format!("for each of the {} products snapshotted before", before.len()),
            None => "no snapshot before the orders: per product, units their reservations (by order id) hold = units completed orders bought".into(),
        },
        stock(ev),
        match &ev.stock.before {
            Some(_) => "catalog.products stock before and now; units of completed orders (checkout.sagas.items)",
            None => "catalog.reservations/reservation_items by order id vs checkout.sagas.items of completed orders",
        },
    ));
    out.push(outboxes(ev));
    out.push(dead_letters(ev));
    out.push(keys(ev));
    out.push(per_order.verdict(
        TIMEOUTS,
        format!(
            "each authorization_timeout left awaiting_authorization ≥ {} ms after checkout's outbox published its authorize command",
            ev.authorization_timeout.as_millis()
        ),
        timeouts(ev),
        "checkout.outbox published_at of the order's latest authorize_payment row vs checkout.saga_steps leaving awaiting_authorization",
    ));
    let timed_out = done(ev).filter(|(_, o)| o.timeout.is_some()).count();
    if let Some(last) = out.last_mut().filter(|i| i.verdict == Verdict::Pass) {
        last.observed = format!("{timed_out} timed out, none early");
    }
    if let Some(c) = ev.claims {
        out.push(Invariant::check(
            CLAIMS,
            c.rows == c.keys && c.unique_constraint,
            "each (owner, Idempotency-Key) one row; the unique constraint in place",
            format!(
                "{} rows for {} keys; constraint {}",
                c.rows,
                c.keys,
                if c.unique_constraint {
                    "present"
                } else {
                    "MISSING"
                }
            ),
            format!(
                "claims.claims created {}; pg_constraint claims_owner_key",
                ev.scope
            ),
        ));
    }
    out
}

/// Per-order invariants judge only terminal orders: with stragglers they
/// can't be complete, so they say unknown rather than pass.
struct Judge {
    unfinished: usize,
}

impl Judge {
    fn verdict(
        &self,
        name: &str,
        expected: String,
        bad: Result<Vec<String>, String>,
        evidence: &str,
    ) -> Invariant {
        match bad {
            Err(why) => Invariant::unknown(name, expected, why),
            Ok(bad) if self.unfinished > 0 && bad.is_empty() => Invariant::unknown(
                name,
                expected,
                format!("{} order(s) not terminal: {evidence}", self.unfinished),
            ),
            Ok(bad) => Invariant::check(name, bad.is_empty(), expected, listed(&bad), evidence),
        }
    }
}

/// The first few offenders, then how many more: an invariant's `observed`.
pub(crate) fn listed(bad: &[String]) -> String {
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

fn done(ev: &Shop) -> impl Iterator<Item = (&Uuid, &OrderSeen)> {
    ev.orders.iter().filter(|(_, o)| o.terminal)
}

fn terminal(ev: &Shop, unfinished: usize) -> Invariant {
    let n = ev.orders.len() + ev.not_accepted.len();
    let mut late: Vec<String> = ev.not_accepted.clone();
    late.extend(
        ev.orders
            .iter()
            .filter(|(_, o)| !o.terminal)
            .map(|(id, o)| format!("{id} still {}", o.state)),
    );
    Invariant::check(
        TERMINAL,
        unfinished == 0,
        format!("{n} terminal within {} s", ev.bound.as_secs()),
        if unfinished == 0 {
            format!("{n} terminal")
        } else {
            format!(
                "{} terminal, {unfinished} not ({})",
                n - unfinished,
                listed(&late)
            )
        },
        format!(
            "checkout.sagas of {} polled until terminal or the bound",
            ev.scope
        ),
    )
}

fn completed(ev: &Shop) -> Result<Vec<String>, String> {
    let mut bad = Vec::new();
    for (id, o) in done(ev).filter(|(_, o)| o.completed()) {
        let reservation = ev.reservations.get(id);
        let payment = ev.payments.get(id);
        let held = reservation.is_some_and(|r| r.status == "reserved" && r.items == o.items);
        let captured_once = payment.is_some_and(|pay| {
            pay.status == "captured"
                && pay.into_captured == 1
                && pay.provider_captures == 1
                && Some(pay.amount_cents) == o.amount_cents
        });
        let as_placed = ev
            .placed
            .get(id)
            .is_none_or(|p| p.items == o.items && Some(p.amount_cents) == o.amount_cents);
        if !(held && captured_once && as_placed && !o.items.is_empty()) {
            bad.push(format!(
                "{id}: items {:?}, amount {:?}, reservation {reservation:?}, payment {payment:?}{}",
                o.items,
                o.amount_cents,
                if as_placed { "" } else { " (not as placed)" }
            ));
        }
    }
    Ok(bad)
}

fn failed(ev: &Shop) -> Result<Vec<String>, String> {
    let mut bad = Vec::new();
    for (id, o) in done(ev).filter(|(_, o)| !o.completed()) {
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
                "{id} ({} {}): reservation {reservation:?}, payment {payment:?}",
                o.state,
                o.failure.as_deref().unwrap_or("-")
            ));
        }
    }
    Ok(bad)
}

fn money(ev: &Shop, unfinished: usize) -> Invariant {
    let completed: i64 = done(ev)
        .filter(|(_, o)| o.completed())
        .map(|(_, o)| o.amount_cents.unwrap_or(0))
        .sum();
    let at_provider: i64 = ev
        .payments
        .values()
        .map(|p| p.amount_cents * p.provider_captures)
        .sum();
    let in_payments: i64 = ev
        .payments
        .values()
        .map(|p| p.amount_cents * p.into_captured)
        .sum();
    let holds = completed == at_provider && completed == in_payments;
    if unfinished > 0 && holds {
        return Invariant::unknown(
            MONEY,
            completed,
            format!("{unfinished} order(s) not terminal"),
        );
    }
    Invariant::check(
        MONEY,
        holds,
        completed,
        if at_provider == in_payments {
            at_provider.to_string()
        } else {
            format!("{at_provider} at the provider, {in_payments} in payments")
        },
        "Σ amount × provider captures (and × transitions into captured, payments) vs Σ amount_cents of completed sagas (checkout), in cents",
    )
}

/// Units bought by completed orders, per product.
fn sold(ev: &Shop) -> BTreeMap<i64, i64> {
    let mut sold = BTreeMap::new();
    for (_, o) in done(ev).filter(|(_, o)| o.completed()) {
        for (p, q) in &o.items {
            *sold.entry(*p).or_default() += q;
        }
    }
    sold
}

fn stock(ev: &Shop) -> Result<Vec<String>, String> {
    let sold = sold(ev);
    let mut bad = Vec::new();
    match &ev.stock.before {
        Some(before) => {
            for (id, start) in before {
                let now = ev.stock.now.get(id).copied();
                let sold = sold.get(id).copied().unwrap_or(0);
                if now.map(|now| now + sold) != Some(*start) {
                    bad.push(format!(
                        "product {id}: start {start}, now {now:?}, sold {sold}"
                    ));
                }
            }
        }
        None => {
            let mut held: BTreeMap<i64, i64> = BTreeMap::new();
            for (id, _) in done(ev) {
                if let Some(r) = ev.reservations.get(id).filter(|r| r.status == "reserved") {
                    for (p, q) in &r.items {
                        *held.entry(*p).or_default() += q;
                    }
                }
            }
            let products: std::collections::BTreeSet<i64> =
                held.keys().chain(sold.keys()).copied().collect();
            for p in products {
                let (h, s) = (
                    held.get(&p).copied().unwrap_or(0),
                    sold.get(&p).copied().unwrap_or(0),
                );
                if h != s {
                    bad.push(format!("product {p}: {h} units held, {s} sold"));
                }
            }
        }
    }
    Ok(bad)
}

fn outboxes(ev: &Shop) -> Invariant {
    if ev.outboxes.is_empty() {
        return Invariant::unknown(OUTBOXES, "0 pending", "outbox tables unreadable");
    }
    let names: Vec<&str> = ev.outboxes.iter().map(|o| o.name.as_str()).collect();
    let pending: Vec<String> = ev
        .outboxes
        .iter()
        .filter(|o| o.pending != 0)
        .map(|o| format!("{}: {} pending", o.name, o.pending))
        .collect();
    Invariant::check(
        OUTBOXES,
        pending.is_empty() && ev.quiesced,
        format!("0 pending in {}", names.join(" and ")),
        if !pending.is_empty() {
            pending.join(", ")
        } else if ev.quiesced {
            "0 pending".into()
        } else {
            "0 pending, but the run's messages did not settle in time (a webhook owed or a payment waiting)".into()
        },
        "outbox rows with published_at and dead_at NULL, after waiting for quiet",
    )
}

fn dead_letters(ev: &Shop) -> Invariant {
    let mut bad: Vec<String> = ev
        .outboxes
        .iter()
        .filter(|o| o.dead_since != 0)
        .map(|o| format!("{}: {} dead rows", o.name, o.dead_since))
        .collect();
    let mut unreadable = Vec::new();
    let mut older = Vec::new();
    for d in &ev.dlqs {
        match (d.baseline, d.before, d.now) {
            (true, Some(b), Some(n)) if n != b => {
                bad.push(format!("{}: {b} → {n} dead letters", d.queue))
            }
            (true, Some(_), Some(_)) => {}
            (false, _, Some(n)) => match d.since {
                Some(recent) if recent > 0 => bad.push(format!(
                    "{}: {recent} dead-lettered since the start ({n} in the queue)",
                    d.queue
                )),
                Some(_) if n > 0 => {
                    older.push(format!("{}: {n} dead-lettered before the start", d.queue))
                }
                Some(_) => {}
                None if n > 0 => bad.push(format!("{}: {n} dead letters (not dated)", d.queue)),
                None => {}
            },
            _ => unreadable.push(d.queue.clone()),
        }
    }
    if bad.is_empty() && (!unreadable.is_empty() || ev.dlqs.is_empty() || ev.outboxes.is_empty()) {
        let what = if unreadable.is_empty() {
            "no queue or outbox read".to_owned()
        } else {
            unreadable.join(", ")
        };
        return Invariant::unknown(
            DEAD_LETTERS,
            "0 new",
            format!("dead-letter depth unreadable for {what}"),
        );
    }
    let baseline = ev.dlqs.iter().any(|d| d.baseline);
    Invariant::check(
        DEAD_LETTERS,
        bad.is_empty(),
        if baseline {
            "0 new dead outbox rows, 0 new messages in the dead-letter queues"
        } else {
            "0 dead outbox rows since the start, 0 messages dead-lettered since the start"
        },
        match (bad.is_empty(), older.is_empty()) {
            (false, _) => bad.join(", "),
            (true, true) => "0 new".into(),
            (true, false) => format!("0 new ({})", older.join(", ")),
        },
        format!(
            "outbox rows dead since the start of {}; dead-letter queue depths from the broker (AMQP passive declare){}",
            ev.scope,
            if baseline {
                ", before vs after"
            } else {
                ", each message dated by its x-death time (peeked, requeued)"
            }
        ),
    )
}

fn keys(ev: &Shop) -> Invariant {
    let k = &ev.keys;
    let db_ok = k.duplicated.is_empty() && k.unique_constraint;
    let db = format!(
        "{} keys, {} with more than one order{}",
        k.keys,
        k.duplicated.len(),
        if k.unique_constraint {
            ""
        } else {
            "; unique (customer, key) constraint MISSING"
        }
    );
    let evidence = "checkout.sagas grouped by (customer_id, idempotency_key); pg_constraint sagas_customer_key";
    match ev.retries {
        Some(r) => Invariant::check(
            KEYS,
            r.total > 0 && r.same == r.total && db_ok,
            format!(
                "{} × 200 with the first order id; one order per key",
                r.total
            ),
            format!("{} of {}; {db}", r.same, r.total),
            format!("POST /checkout repeated with the key of an accepted order; {evidence}"),
        ),
        None => Invariant::check(
            KEYS,
            db_ok,
            "one order per (customer, Idempotency-Key); the unique constraint in place",
            if k.duplicated.is_empty() {
                db
            } else {
                format!("{db}: {}", listed(&k.duplicated))
            },
            evidence,
        ),
    }
}

fn timeouts(ev: &Shop) -> Result<Vec<String>, String> {
    let mut bad = Vec::new();
    let mut unjudged = Vec::new();
    let mut judged = 0;
    for (id, o) in done(ev) {
        let Some(t) = &o.timeout else { continue };
        match (&t.published_at, t.gave_up_at) {
            (None, _) | (_, None) => unjudged.push(id.to_string()),
            (Some(None), _) => bad.push(format!(
                "{id}: timed out though its authorize command was never published"
            )),
            (Some(Some(published)), Some(gave_up)) => {
                judged += 1;
                let waited = (gave_up - *published).to_std().unwrap_or_default();
                if waited + CLOCK_SLACK < ev.authorization_timeout {
                    bad.push(format!(
                        "{id}: gave up {} ms after publishing",
                        waited.as_millis()
                    ));
                }
            }
        }
    }
    if bad.is_empty() && !unjudged.is_empty() {
        return Err(format!(
            "{judged} judged; {} without their outbox row or history (deleted after retention?): {}",
            unjudged.len(),
            unjudged
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(bad)
}

#[cfg(test)]
mod tests;
