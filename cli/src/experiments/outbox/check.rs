//! The pure check: the changes payments committed against the events that
//! reached the bus. No I/O, so the tests below feed it broken evidence.
//!
//! An event is keyed by what it announces, `(payment, kind)`; a committed
//! change is an announcing row of `payment_transitions` (a payment moved
//! to `authorized`, `declined`, …). Judged:
//!
//! - **no lost event**: every committed change has at least one event on
//!   the bus with its key;
//! - **no phantom event**: every distinct message id on the bus is
//!   accounted for by a committed change: its key was committed, no other
//!   id already announces that change (a second id is a second message the
//!   consumer's inbox cannot dedupe), and, in the outbox arm, the id is a
//!   committed outbox row;
//! - **duplicates are redeliveries of one id**: a message id seen more than
//!   once (the relay publishes at least once) carries the same event every
//!   time, and every event has a UUID id, so the inbox dedupes them;
//! - **outbox drained**: every outbox row of the run is published, none
//!   dead-lettered;
//! - **every operation committed its one change** (else the run proves
//!   little).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use crate::run::Invariant;

/// Which way payments announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// The transactional outbox (the pattern).
    Outbox,
    /// The lab's naive dual write (the control arm).
    DualWrite,
}

/// What an event announces: the payment and the event type.
pub type Key = (Uuid, String);

/// A committed change that announces an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    /// The event type it announces (`payment_authorized`, …).
    pub kind: String,
}

/// An outbox row of the run's payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub kind: String,
    pub published: bool,
    pub dead: bool,
}

/// One event as the bus tap saw it published (each copy once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    /// The AMQP `message_id`, if it is a UUID.
    pub message_id: Option<Uuid>,
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub kind: String,
}

/// Everything the check reads.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub arm: Arm,
    /// The orders the run commanded (one authorization each).
    pub ops: Vec<Uuid>,
    pub committed: Vec<Committed>,
    pub outbox: Vec<OutboxRow>,
    /// The run's events, every copy.
    pub bus: Vec<BusEvent>,
}

/// What the check found, for the report's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub lost: usize,
    pub phantom: usize,
    /// Extra copies of ids already seen (at-least-once redeliveries).
    pub redelivered: usize,
    /// Ids whose copies differ, and events without a UUID id.
    pub undedupable: usize,
}

fn key_of_event(e: &BusEvent) -> Key {
    (e.payment_id, e.kind.clone())
}

/// Lost and phantom events, and duplicates, as defined in the module doc.
pub fn count(ev: &Evidence) -> Counts {
    let mut committed: HashMap<Key, usize> = HashMap::new();
    for c in &ev.committed {
        *committed.entry((c.payment_id, c.kind.clone())).or_default() += 1;
    }
    let journal: HashMap<Uuid, Key> = ev
        .outbox
        .iter()
        .map(|r| (r.id, (r.payment_id, r.kind.clone())))
        .collect();
    let mut ids: BTreeMap<Uuid, Vec<Key>> = BTreeMap::new();
    let mut counts = Counts::default();
    for e in &ev.bus {
        match e.message_id {
            Some(id) => ids.entry(id).or_default().push(key_of_event(e)),
            None => counts.undedupable += 1,
        }
    }
    let mut by_key: HashMap<Key, BTreeSet<Uuid>> = HashMap::new();
    for (id, keys) in &ids {
        counts.redelivered += keys.len() - 1;
        if keys.iter().any(|k| k != &keys[0]) {
            counts.undedupable += 1;
        }
        by_key.entry(keys[0].clone()).or_default().insert(*id);
    }
    for (key, n) in &committed {
        if !by_key.contains_key(key) {
            counts.lost += n;
        }
    }
    for (key, seen) in &by_key {
        let journaled = seen
            .iter()
            .filter(|id| journal.get(id) == Some(key))
            .count();
        let unjournaled = seen.len() - journaled;
        let changes = committed.get(key).copied().unwrap_or(0);
        // Journaled ids are committed rows; a phantom journaled id is
        // impossible. Unjournaled ids are allowed only in the dual write,
        // one per committed change not already announced by a journaled id.
        let allowed = match ev.arm {
            Arm::Outbox => 0,
            Arm::DualWrite => changes.saturating_sub(journaled),
        };
        counts.phantom += unjournaled.saturating_sub(allowed);
        // A key never committed: its journaled ids are phantoms too (cannot
        // happen with a real outbox row; counted rather than assumed).
        if changes == 0 {
            counts.phantom += journaled;
        }
    }
    counts
}

/// The invariants, in report order.
pub fn invariants(ev: &Evidence) -> Vec<Invariant> {
    let c = count(ev);
    let distinct: BTreeSet<Uuid> = ev.bus.iter().filter_map(|e| e.message_id).collect();
    let source = "committed: announcing rows of payments.payment_transitions for the run's \
                  orders; bus: every publish to checkout.events seen by the RabbitMQ firehose";
    let mut per_op: HashMap<Uuid, usize> = ev.ops.iter().map(|o| (*o, 0)).collect();
    for c in &ev.committed {
        if let Some(n) = per_op.get_mut(&c.order_id) {
            *n += 1;
        }
    }
    let once = per_op.values().filter(|n| **n == 1).count();
    let pending = ev.outbox.iter().filter(|r| !r.published && !r.dead).count();
    let dead = ev.outbox.iter().filter(|r| r.dead).count();
    vec![
        Invariant::check(
            "every operation committed exactly one event-causing change",
            once == ev.ops.len() && !ev.ops.is_empty(),
            format!("{} of {}", ev.ops.len(), ev.ops.len()),
            format!("{once} of {}", ev.ops.len()),
            "payments.payment_transitions joined to payments by order id",
        ),
        Invariant::check(
            "no lost event: every committed change's event reached the bus",
            c.lost == 0,
            "0 lost",
            format!("{} lost of {} committed", c.lost, ev.committed.len()),
            source,
        ),
        Invariant::check(
            "no phantom event: every message id on the bus is a committed change's",
            c.phantom == 0,
            match ev.arm {
                Arm::Outbox => "0 phantom (each id a committed outbox row of a committed change)",
                Arm::DualWrite => "0 phantom (one id per committed change)",
            },
            format!("{} phantom of {} distinct ids", c.phantom, distinct.len()),
            source,
        ),
        Invariant::check(
            "duplicates are redeliveries of one message id (the inbox dedupes them)",
            c.undedupable == 0,
            "0 ids carrying different events, 0 events without a UUID id",
            format!(
                "{} undedupable; {} redelivered copies of {} ids",
                c.undedupable,
                c.redelivered,
                distinct.len()
            ),
            "message ids (AMQP message_id) of every copy the firehose saw",
        ),
        Invariant::check(
            "outbox drained: every row of the run published, none dead",
            pending == 0 && dead == 0,
            "0 pending, 0 dead",
            format!("{pending} pending, {dead} dead of {} rows", ev.outbox.len()),
            "payments.outbox rows whose payload names the run's orders",
        ),
    ]
}

/// What the faults did.
#[derive(Debug, Default)]
pub struct Faults {
    /// Transactions held when payments was killed, and the restart's time.
    pub kill: Option<Result<(u64, std::time::Duration), String>>,
    /// Transactions held when RabbitMQ froze.
    pub pause: Option<Result<u64, String>>,
}

/// The faults as invariants: a fault that did not land at its moment
/// leaves the run unjudged (unknown), not passed.
pub fn faults(f: &Faults, pause_secs: u64) -> Vec<Invariant> {
    let name = "payments was SIGKILLed between an event's write and its commit, and restarted";
    let kill = match &f.kill {
        Some(Ok((held, _))) => Invariant::check(
            name,
            true,
            "≥ 1 transaction held",
            format!("{held} held; restarted and ready"),
            "GET /lab/outbox `held` just before SIGKILL; the control plane's start",
        ),
        Some(Err(why)) => Invariant::unknown(name, "≥ 1 transaction held", why),
        None => Invariant::unknown(
            name,
            "≥ 1 transaction held",
            "the run stopped before the kill",
        ),
    };
    let name = "RabbitMQ was frozen (SIGSTOP) mid-publish, then thawed";
    let expected = format!("frozen {pause_secs} s with ≥ 1 transaction held");
    let pause = match &f.pause {
        Some(Ok(held)) => Invariant::check(
            name,
            true,
            &expected,
            format!("frozen {pause_secs} s, {held} held"),
            "GET /lab/outbox `held` just before SIGSTOP",
        ),
        Some(Err(why)) => Invariant::unknown(name, &expected, why),
        None => Invariant::unknown(name, &expected, "the run stopped before the pause"),
    };
    vec![kill, pause]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Verdict;

    struct Op {
        order: Uuid,
        payment: Uuid,
    }

    fn op() -> Op {
        Op {
            order: Uuid::new_v4(),
            payment: Uuid::new_v4(),
        }
    }

    const KIND: &str = "payment_authorized";

    fn committed(o: &Op) -> Committed {
        Committed {
            order_id: o.order,
            payment_id: o.payment,
            kind: KIND.into(),
        }
    }

    fn row(o: &Op, id: Uuid) -> OutboxRow {
        OutboxRow {
            id,
            payment_id: o.payment,
            kind: KIND.into(),
            published: true,
            dead: false,
        }
    }

    fn event(o: &Op, id: Uuid) -> BusEvent {
        BusEvent {
            message_id: Some(id),
            order_id: o.order,
            payment_id: o.payment,
            kind: KIND.into(),
        }
    }

    /// Three operations through the outbox, each published once.
    fn healthy() -> (Vec<Op>, Vec<Uuid>, Evidence) {
        let ops: Vec<Op> = (0..3).map(|_| op()).collect();
        let ids: Vec<Uuid> = ops.iter().map(|_| Uuid::new_v4()).collect();
        let ev = Evidence {
            arm: Arm::Outbox,
            ops: ops.iter().map(|o| o.order).collect(),
            committed: ops.iter().map(committed).collect(),
            outbox: ops.iter().zip(&ids).map(|(o, id)| row(o, *id)).collect(),
            bus: ops.iter().zip(&ids).map(|(o, id)| event(o, *id)).collect(),
        };
        (ops, ids, ev)
    }

    fn verdict(ev: &Evidence, name_starts: &str) -> Verdict {
        invariants(ev)
            .into_iter()
            .find(|i| i.name.starts_with(name_starts))
            .expect("invariant exists")
            .verdict
    }

    #[test]
    fn a_clean_outbox_run_passes_every_invariant() {
        let (_, _, ev) = healthy();
        assert_eq!(count(&ev), Counts::default());
        assert!(invariants(&ev).iter().all(|i| i.verdict == Verdict::Pass));
    }

    #[test]
    fn a_committed_change_whose_event_never_arrived_is_lost() {
        let (_, _, mut ev) = healthy();
        ev.bus.remove(1);
        assert_eq!(count(&ev).lost, 1);
        assert_eq!(verdict(&ev, "no lost event"), Verdict::Fail);
    }

    #[test]
    fn an_event_for_a_change_never_committed_is_a_phantom() {
        let (ops, _, mut ev) = healthy();
        ev.arm = Arm::DualWrite;
        ev.outbox.clear();
        ev.committed.retain(|c| c.payment_id != ops[0].payment);
        let c = count(&ev);
        assert_eq!((c.phantom, c.lost), (1, 0));
        assert_eq!(verdict(&ev, "no phantom event"), Verdict::Fail);
    }

    #[test]
    fn a_change_announced_under_two_ids_has_one_phantom_the_inbox_cannot_dedupe() {
        // The dual write published, was killed before commit; the webhook
        // came again and this time committed with a fresh id.
        let (ops, _, mut ev) = healthy();
        ev.arm = Arm::DualWrite;
        ev.outbox.clear();
        ev.bus.push(event(&ops[2], Uuid::new_v4()));
        let c = count(&ev);
        assert_eq!((c.phantom, c.lost, c.redelivered), (1, 0, 0));
        assert_eq!(verdict(&ev, "no phantom event"), Verdict::Fail);
        assert_eq!(verdict(&ev, "no lost event"), Verdict::Pass);
    }

    #[test]
    fn in_the_outbox_arm_an_id_that_is_no_outbox_row_is_a_phantom() {
        let (ops, _, mut ev) = healthy();
        ev.bus[0] = event(&ops[0], Uuid::new_v4());
        let c = count(&ev);
        // The change itself was announced (under an id no row holds).
        assert_eq!((c.phantom, c.lost), (1, 0));
        assert_eq!(verdict(&ev, "no phantom event"), Verdict::Fail);
    }

    #[test]
    fn the_same_id_twice_is_a_redelivery_not_a_phantom() {
        let (_, _, mut ev) = healthy();
        let again = ev.bus[0].clone();
        ev.bus.push(again.clone());
        ev.bus.push(again);
        let c = count(&ev);
        assert_eq!((c.redelivered, c.phantom, c.undedupable), (2, 0, 0));
        assert!(invariants(&ev).iter().all(|i| i.verdict == Verdict::Pass));
    }

    #[test]
    fn one_id_carrying_two_different_events_cannot_be_deduped() {
        let (ops, ids, mut ev) = healthy();
        ev.bus.push(event(&ops[1], ids[0]));
        assert_eq!(count(&ev).undedupable, 1);
        assert_eq!(verdict(&ev, "duplicates are"), Verdict::Fail);
    }

    #[test]
    fn an_event_without_a_message_id_cannot_be_deduped() {
        let (_, _, mut ev) = healthy();
        ev.bus[0].message_id = None;
        assert_eq!(count(&ev).undedupable, 1);
        assert_eq!(verdict(&ev, "duplicates are"), Verdict::Fail);
    }

    #[test]
    fn an_unpublished_or_dead_outbox_row_is_not_drained() {
        let (_, _, mut ev) = healthy();
        ev.outbox[0].published = false;
        assert_eq!(verdict(&ev, "outbox drained"), Verdict::Fail);
        ev.outbox[0].dead = true;
        assert_eq!(verdict(&ev, "outbox drained"), Verdict::Fail);
    }

    #[test]
    fn an_operation_that_committed_nothing_or_twice_fails_and_none_never_passes() {
        let (_, _, mut ev) = healthy();
        let twice = ev.committed[0].clone();
        ev.committed.push(twice);
        ev.committed.remove(1);
        assert_eq!(verdict(&ev, "every operation committed"), Verdict::Fail);
        let empty = Evidence {
            arm: Arm::Outbox,
            ops: vec![],
            committed: vec![],
            outbox: vec![],
            bus: vec![],
        };
        assert_eq!(verdict(&empty, "every operation committed"), Verdict::Fail);
    }

    #[test]
    fn faults_that_landed_pass_and_one_that_did_not_leaves_the_run_unjudged() {
        let landed = Faults {
            kill: Some(Ok((2, std::time::Duration::from_secs(1)))),
            pause: Some(Ok(1)),
        };
        let v: Vec<Verdict> = faults(&landed, 4).iter().map(|i| i.verdict).collect();
        assert_eq!(v, [Verdict::Pass, Verdict::Pass]);
        let missed = Faults {
            kill: Some(Err("no transaction was ever held open".into())),
            pause: None,
        };
        let inv = faults(&missed, 4);
        assert!(inv.iter().all(|i| i.verdict == Verdict::Unknown), "{inv:?}");
        assert!(inv[0].evidence.contains("held open"));
        assert!(inv[1].evidence.contains("before the pause"));
    }
}
