//! What the shop checker reads, as plain data: the orders in scope as
//! checkout holds them, their reservations (catalog) and payments
//! (payments and the simulated provider), stock, outboxes, dead letters,
//! Idempotency-Keys and claims. [`super::judge`] is a pure function of it,
//! so unit tests feed it bad evidence and see each invariant fail.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// An order (a checkout saga) as checkout's schema holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSeen {
    /// `checkout.sagas.state`.
    pub state: String,
    pub failure: Option<String>,
    pub amount_cents: Option<i64>,
    /// `(product_id, units)`, merged by product, ascending.
    pub items: Vec<(i64, i64)>,
    pub terminal: bool,
    /// The authorize command behind a timed-out authorization (issue 12,
    /// defect c); `None` for orders that did not time out.
    pub timeout: Option<TimeoutSeen>,
}

impl OrderSeen {
    pub fn completed(&self) -> bool {
        self.state == "completed"
    }
}

/// When an order that failed `authorization_timeout` had its authorize
/// command published and when it gave up waiting. The timeout runs from
/// when checkout's outbox handed the command to the broker (not from when
/// the saga wrote it), so a paused broker cannot time out an order payments
/// never saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutSeen {
    /// The latest `authorize_payment` outbox row written before the saga gave
    /// up: `None` if no row is left (deleted after the outbox's retention),
    /// `Some(None)` if it was never published.
    pub published_at: Option<Option<DateTime<Utc>>>,
    /// When the saga left `awaiting_authorization` (its history's step).
    pub gave_up_at: Option<DateTime<Utc>>,
}

/// A reservation (id = order id) as catalog's schema holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationSeen {
    /// `reserved` or `released`.
    pub status: String,
    /// `(product_id, units)` ascending.
    pub items: Vec<(i64, i64)>,
}

/// A payment as payments' schema holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSeen {
    pub status: String,
    pub amount_cents: i64,
    /// History rows entering `captured` (payments' own record).
    pub into_captured: i64,
    /// Captures in the simulated provider's ledger (money actually moved).
    pub provider_captures: i64,
}

/// Stock: a snapshot from before the orders, when the caller took one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockSeen {
    /// Product → stock before (saga's fixtures, load's every product).
    pub before: Option<BTreeMap<i64, i64>>,
    /// Product → stock now, for the products in `before` or touched by the
    /// orders in scope.
    pub now: BTreeMap<i64, i64>,
}

/// An outbox table after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxSeen {
    /// `schema.outbox`.
    pub name: String,
    /// Rows neither published nor dead.
    pub pending: i64,
    /// Rows given up on (dead) since the scope's start.
    pub dead_since: i64,
}

/// A dead-letter queue's depth as the broker reports it (`None`: not
/// readable): before the orders when a baseline was taken, and now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqSeen {
    pub queue: String,
    /// `None` without a baseline: then every message in it is unexplained.
    pub before: Option<u64>,
    pub now: Option<u64>,
    /// Whether `before` was read (a baseline was taken).
    pub baseline: bool,
    /// Without a baseline: how many of `now` were dead-lettered since the
    /// scope's start (their `x-death` time); `None` if not dated.
    pub since: Option<u64>,
}

/// Idempotency-Keys of the orders in scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeysSeen {
    /// Keys (per customer) with more than one order.
    pub duplicated: Vec<String>,
    /// Whether `checkout.sagas` still has its unique (customer, key) constraint.
    pub unique_constraint: bool,
    /// Distinct keys in scope.
    pub keys: i64,
}

/// A client's own evidence: requests repeated with the key of an accepted
/// order, and how many got the same order back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    pub same: u64,
    pub total: u64,
}

/// Claims created in scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimsSeen {
    pub rows: i64,
    /// Distinct (owner, Idempotency-Key).
    pub keys: i64,
    /// Whether `claims.claims` still has its unique (owner, key) constraint.
    pub unique_constraint: bool,
}

/// What a client meant to order, when it knows (saga's plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub items: Vec<(i64, i64)>,
    pub amount_cents: i64,
}

/// Everything the judge reads.
#[derive(Debug, Clone, Default)]
pub struct Shop {
    /// Which orders were judged, in words (`orders since 10:02:11Z`).
    pub scope: String,
    pub orders: BTreeMap<Uuid, OrderSeen>,
    /// Orders a client tried to place that were never accepted.
    pub not_accepted: Vec<String>,
    /// What the client placed, by order id (optional).
    pub placed: HashMap<Uuid, Placed>,
    pub reservations: HashMap<Uuid, ReservationSeen>,
    pub payments: HashMap<Uuid, PaymentSeen>,
    pub stock: StockSeen,
    /// Empty: unreadable.
    pub outboxes: Vec<OutboxSeen>,
    pub dlqs: Vec<DlqSeen>,
    pub keys: KeysSeen,
    pub retries: Option<Retries>,
    /// `None`: claims not asked for.
    pub claims: Option<ClaimsSeen>,
    /// Orders had to be terminal within this.
    pub bound: Duration,
    /// Whether the messages settled (outboxes empty, no webhook owed, no
    /// payment waiting) before the deadline.
    pub quiesced: bool,
    /// Checkout's authorization timeout (its `SAGA_AUTHORIZATION_TIMEOUT_MS`).
    pub authorization_timeout: Duration,
}

/// Merges `(product, units)` pairs by product, ascending.
pub fn merged(items: impl IntoIterator<Item = (i64, i64)>) -> Vec<(i64, i64)> {
    let mut m: BTreeMap<i64, i64> = BTreeMap::new();
    for (p, q) in items {
        *m.entry(p).or_default() += q;
    }
    m.into_iter().collect()
}
