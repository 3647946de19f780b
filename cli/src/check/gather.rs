//! Gathering the evidence: which orders are in scope, waiting (bounded)
//! until they are terminal and their messages have settled, then reading
//! checkout, catalog, payments, the outboxes, the broker's dead-letter
//! queues and claims. Nothing here judges.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::dlq;
use super::evidence::{
    ClaimsSeen, DlqSeen, KeysSeen, OrderSeen, OutboxSeen, PaymentSeen, ReservationSeen, StockSeen,
    TimeoutSeen, merged,
};
use crate::run::Lab;

/// Checkout's authorization timeout when its profile sets none (its
/// `SAGA_AUTHORIZATION_TIMEOUT_MS` default).
const DEFAULT_AUTHORIZATION_TIMEOUT: Duration = Duration::from_millis(6000);
/// Payment statuses that wait for something (a webhook, a command).
const UNSETTLED: &str =
    "('pending', 'authorized', 'capture_requested', 'capture_failed', 'void_requested')";

/// Which orders to judge.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Orders created since; also the start for dead outbox rows and claims.
    pub since: DateTime<Utc>,
    pub select: Select,
}

#[derive(Debug, Clone)]
pub enum Select {
    /// Every order created since `since`.
    Since,
    /// These orders (a client's, e.g. saga's).
    Orders(Vec<Uuid>),
    /// Orders whose Idempotency-Key starts with this (a load run's tag),
    /// created since `since`.
    KeyPrefix(String),
}

impl Scope {
    /// In words, for the report.
    pub fn describe(&self) -> String {
        let since = self.since.format("%Y-%m-%dT%H:%M:%SZ");
        match &self.select {
            Select::Since => format!("orders created since {since}"),
            Select::Orders(ids) => format!("the run's {} orders (since {since})", ids.len()),
            Select::KeyPrefix(p) => format!("orders keyed `{p}-…` since {since}"),
        }
    }

    /// The order ids in scope.
    pub async fn orders(&self, pg: &PgPool) -> Result<Vec<Uuid>> {
        let ids = match &self.select {
            Select::Orders(ids) => return Ok(ids.clone()),
            Select::Since => sqlx::query_scalar(
                "SELECT order_id FROM checkout.sagas WHERE created_at >= $1 ORDER BY created_at",
            )
            .bind(self.since)
            .fetch_all(pg)
            .await,
            Select::KeyPrefix(p) => {
                sqlx::query_scalar(
                    "SELECT order_id FROM checkout.sagas WHERE created_at >= $1 \
                 AND idempotency_key LIKE $2 ORDER BY created_at",
                )
                .bind(self.since)
                .bind(format!("{p}-%"))
                .fetch_all(pg)
                .await
            }
        };
        ids.context("reading checkout.sagas (is checkout migrated?)")
    }
}

/// What was true before the orders, when the caller could look.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// Product → stock before.
    pub stock: Option<BTreeMap<i64, i64>>,
    /// Dead-letter queue depths before.
    pub dlqs: Option<Vec<(String, Option<u64>)>>,
}

impl Baseline {
    /// Every product's stock and the dead-letter queues, now.
    pub async fn take(lab: &Lab) -> Result<Self> {
        Ok(Self {
            stock: Some(stock(&lab.pg, None).await?),
            dlqs: Some(dlq::depths(&lab.state.endpoints.amqp_url).await),
        })
    }

    /// `stock` as the caller knows it (saga's fixtures, as inserted) and
    /// the dead-letter queues now.
    pub async fn with_stock(lab: &Lab, stock: BTreeMap<i64, i64>) -> Self {
        Self {
            stock: Some(stock),
            dlqs: Some(dlq::depths(&lab.state.endpoints.amqp_url).await),
        }
    }
}

/// Polls until every order of `ids` is terminal or `deadline`; how many are.
///
/// Each poll asks only about the orders not yet seen terminal: a saga in a
/// terminal state takes no more input (checkout's `saga` tests), so one
/// seen finished stays finished. Asking about every order of the run each
/// time was the run's own largest load on Postgres: in a 512-order `saga`
/// run, 56 polls read 98 buffers per saga, more than any statement of the
/// saga itself (pg_stat_statements, issue 15); asking only about the open
/// ones read 21–27k buffers a run against 35–47k.
pub async fn wait_terminal(pg: &PgPool, ids: &[Uuid], deadline: Instant) -> usize {
    let mut open: Vec<Uuid> = ids.to_vec();
    loop {
        let finished: Result<Vec<Uuid>, _> = sqlx::query_scalar(
            "SELECT order_id FROM checkout.sagas WHERE order_id = ANY($1) AND finished_at IS NOT NULL",
        )
        .bind(&open)
        .fetch_all(pg)
        .await;
        if let Ok(finished) = finished {
            let finished: HashSet<Uuid> = finished.into_iter().collect();
            open.retain(|id| !finished.contains(id));
        }
        if open.is_empty() || Instant::now() >= deadline {
            return ids.len() - open.len();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the orders' messages have settled — every outbox empty, the
/// provider owing no webhook for them, none of their payments waiting — or
/// `deadline`.
pub async fn wait_quiet(pg: &PgPool, ids: &[Uuid], deadline: Instant) -> bool {
    let tables = outbox_tables(pg).await.unwrap_or_default();
    let pending: String = tables
        .iter()
        .map(|t| {
            format!("(SELECT count(*) FROM {t} WHERE published_at IS NULL AND dead_at IS NULL) + ")
        })
        .collect();
    let sql = format!(
        "SELECT {pending}(SELECT count(*) FROM payments.provider_deliveries d JOIN payments.provider_intents i \
                     USING (intent_id) JOIN payments.payments p USING (payment_id) \
                 WHERE d.delivered_at IS NULL AND p.order_id = ANY($1)) \
              + (SELECT count(*) FROM payments.payments WHERE order_id = ANY($1) AND status IN {UNSETTLED})"
    );
    loop {
        let busy: Option<i64> = sqlx::query_scalar(&sql).bind(ids).fetch_one(pg).await.ok();
        if busy == Some(0) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every service's outbox: each schema's table named `outbox`.
pub async fn outbox_tables(pg: &PgPool) -> Result<Vec<String>> {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables \
         WHERE table_name = 'outbox' ORDER BY table_schema",
    )
    .fetch_all(pg)
    .await
    .context("listing the outbox tables")?;
    Ok(schemas.into_iter().map(|s| format!("{s}.outbox")).collect())
}

#[derive(Deserialize)]
struct Item {
    product_id: i64,
    quantity: i64,
}

/// The orders of `ids` as checkout holds them, with the evidence of
/// each authorization timeout.
pub async fn orders(pg: &PgPool, ids: &[Uuid]) -> Result<BTreeMap<Uuid, OrderSeen>> {
    type Row = (Uuid, String, Option<String>, Option<i64>, String, bool);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT order_id, state, failure, amount_cents, items::text, finished_at IS NOT NULL \
         FROM checkout.sagas WHERE order_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading checkout.sagas")?;
    let mut timeouts = timeouts(pg, ids).await?;
    let mut out = BTreeMap::new();
    for (id, state, failure, amount_cents, items, terminal) in rows {
        let items: Vec<Item> = serde_json::from_str(&items)
            .with_context(|| format!("checkout.sagas.items of {id}: not a list of items"))?;
        let order = OrderSeen {
            state,
            failure,
            amount_cents,
            items: merged(items.into_iter().map(|i| (i.product_id, i.quantity))),
            terminal,
            timeout: timeouts.remove(&id),
        };
        out.insert(id, order);
    }
    Ok(out)
}

/// For each order of `ids` that failed `authorization_timeout`: when it left
/// `awaiting_authorization` and when the latest authorize command written
/// before that was published (the moment checkout's timeout runs from).
async fn timeouts(pg: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, TimeoutSeen>> {
    type Row = (
        Uuid,
        Option<DateTime<Utc>>,
        Option<bool>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.order_id, g.at, o.found, o.published_at FROM checkout.sagas s \
         LEFT JOIN LATERAL (SELECT min(st.at) AS at FROM checkout.saga_steps st \
             WHERE st.order_id = s.order_id AND st.from_state = 'awaiting_authorization' \
               AND st.to_state <> 'awaiting_authorization') g ON true \
         LEFT JOIN LATERAL (SELECT true AS found, ob.published_at FROM checkout.outbox ob \
             WHERE ob.kind = 'authorize_payment' AND ob.payload->>'order_id' = s.order_id::text \
               AND (g.at IS NULL OR ob.created_at <= g.at) \
             ORDER BY ob.created_at DESC LIMIT 1) o ON true \
         WHERE s.order_id = ANY($1) AND s.failure = 'authorization_timeout'",
    )
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading checkout.saga_steps and checkout.outbox for timed-out authorizations")?;
    Ok(rows
        .into_iter()
        .map(|(id, gave_up_at, found, published_at)| {
            let published_at = found.map(|_| published_at);
            (
                id,
                TimeoutSeen {
                    published_at,
                    gave_up_at,
                },
            )
        })
        .collect())
}

/// Catalog's reservations of `ids` (reservation id = order id).
pub async fn reservations(pg: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, ReservationSeen>> {
    let rows: Vec<(Uuid, String, Option<i64>, Option<i32>)> = sqlx::query_as(
        "SELECT r.reservation_id, r.status, i.product_id, i.quantity FROM catalog.reservations r \
         LEFT JOIN catalog.reservation_items i USING (reservation_id) \
         WHERE r.reservation_id = ANY($1) ORDER BY r.reservation_id, i.product_id",
    )
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading catalog.reservations")?;
    let mut out: HashMap<Uuid, ReservationSeen> = HashMap::new();
    for (id, status, product, quantity) in rows {
        let r = out.entry(id).or_insert_with(|| ReservationSeen {
            status,
            items: Vec::new(),
        });
        if let (Some(p), Some(q)) = (product, quantity) {
            r.items.push((p, i64::from(q)));
        }
    }
    Ok(out)
}

/// Payments of `ids`, with captures counted by payments and by the provider.
pub async fn payments(pg: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, PaymentSeen>> {
    let rows: Vec<(Uuid, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT p.order_id, p.status, p.amount_cents, \
             (SELECT count(*) FROM payments.payment_transitions t \
              WHERE t.payment_id = p.payment_id AND t.to_status = 'captured'), \
             coalesce((SELECT i.captures FROM payments.provider_intents i \
                       WHERE i.payment_id = p.payment_id), 0)::bigint \
         FROM payments.payments p WHERE p.order_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading payments.payments")?;
    Ok(rows
        .into_iter()
        .map(
            |(id, status, amount_cents, into_captured, provider_captures)| {
                let seen = PaymentSeen {
                    status,
                    amount_cents,
                    into_captured,
                    provider_captures,
                };
                (id, seen)
            },
        )
        .collect())
}

/// Stock of `products` (every product when `None`).
pub async fn stock(pg: &PgPool, products: Option<&[i64]>) -> Result<BTreeMap<i64, i64>> {
    let rows: Vec<(i64, i64)> = match products {
        None => {
            sqlx::query_as("SELECT id, stock::bigint FROM catalog.products")
                .fetch_all(pg)
                .await
        }
        Some(ids) => {
            sqlx::query_as("SELECT id, stock::bigint FROM catalog.products WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(pg)
                .await
        }
    }
    .context("reading catalog.products")?;
    Ok(rows.into_iter().collect())
}

/// Each outbox's pending rows now and rows dead since `since`.
pub async fn outboxes(pg: &PgPool, since: DateTime<Utc>) -> Result<Vec<OutboxSeen>> {
    let mut out = Vec::new();
    for name in outbox_tables(pg).await? {
        let (pending, dead_since): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE published_at IS NULL AND dead_at IS NULL), \
                    count(*) FILTER (WHERE dead_at >= $1) FROM {name}"
        ))
        .bind(since)
        .fetch_one(pg)
        .await
        .with_context(|| format!("reading {name}"))?;
        out.push(OutboxSeen {
            name,
            pending,
            dead_since,
        });
    }
    Ok(out)
}

/// Whether `table` has the unique constraint `name`.
async fn has_unique(pg: &PgPool, table: &str, name: &str) -> Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint \
         WHERE conname = $1 AND contype = 'u' AND conrelid = to_regclass($2))",
    )
    .bind(name)
    .bind(table)
    .fetch_one(pg)
    .await
    .with_context(|| format!("reading pg_constraint for {table}"))
}

/// The Idempotency-Keys of `ids`: every order under each, in or out of scope.
pub async fn keys(pg: &PgPool, ids: &[Uuid]) -> Result<KeysSeen> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT DISTINCT coalesce(s.customer_id::text, '-'), s.idempotency_key, \
             (SELECT count(*) FROM checkout.sagas t WHERE t.idempotency_key = s.idempotency_key \
                AND t.customer_id IS NOT DISTINCT FROM s.customer_id) \
         FROM checkout.sagas s WHERE s.order_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pg)
    .await
    .context("reading checkout.sagas' Idempotency-Keys")?;
    Ok(KeysSeen {
        keys: rows.len() as i64,
        duplicated: rows
            .iter()
            .filter(|(_, _, n)| *n > 1)
            .map(|(customer, key, n)| format!("customer {customer}, key {key}: {n} orders"))
            .collect(),
        unique_constraint: has_unique(pg, "checkout.sagas", "sagas_customer_key").await?,
    })
}

/// Claims created since `since`: rows, distinct (owner, key), constraint.
pub async fn claims(pg: &PgPool, since: DateTime<Utc>) -> Result<ClaimsSeen> {
    let (rows, keys): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (coalesce(owner_id::text, '-'), idempotency_key)) \
         FROM claims.claims WHERE created_at >= $1",
    )
    .bind(since)
    .fetch_one(pg)
    .await
    .context("reading claims.claims")?;
    Ok(ClaimsSeen {
        rows,
        keys,
        unique_constraint: has_unique(pg, "claims.claims", "claims_owner_key").await?,
    })
}

/// Joins the dead-letter depths now with the baseline's.
pub fn dlqs(before: &[(String, Option<u64>)], now: &[(String, Option<u64>)]) -> Vec<DlqSeen> {
    now.iter()
        .map(|(queue, n)| DlqSeen {
            queue: queue.clone(),
            before: before.iter().find(|x| x.0 == *queue).and_then(|x| x.1),
            now: *n,
            baseline: true,
            since: None,
        })
        .collect()
}

/// Dead-letter depths without a baseline, dated by their `x-death` time.
pub fn dlqs_dated(now: &[dlq::Depth]) -> Vec<DlqSeen> {
    now.iter()
        .map(|d| DlqSeen {
            queue: d.queue.clone(),
            before: None,
            now: d.now,
            baseline: false,
            since: d.since,
        })
        .collect()
}

/// Stock now for the baseline's products, or (without one) the products
/// the orders touched.
pub async fn stock_seen(
    pg: &PgPool,
    baseline: Option<&BTreeMap<i64, i64>>,
    orders: &BTreeMap<Uuid, OrderSeen>,
) -> Result<StockSeen> {
    let products: BTreeSet<i64> = match baseline {
        Some(b) => b.keys().copied().collect(),
        None => orders
            .values()
            .flat_map(|o| o.items.iter().map(|(p, _)| *p))
            .collect(),
    };
    let products: Vec<i64> = products.into_iter().collect();
    Ok(StockSeen {
        before: baseline.cloned(),
        now: stock(pg, Some(&products)).await?,
    })
}

/// Checkout's authorization timeout as the fleet's profile sets it.
pub fn authorization_timeout(lab: &Lab) -> Duration {
    let from_profile = || -> Option<Duration> {
        let root = crate::fleet::project_root().ok()?;
        let (profile, _) =
            crate::fleet::profile::FleetProfile::load(&root, &lab.state.profile).ok()?;
        let checkout = profile.services.iter().find(|s| s.name == "checkout")?;
        let ms: u64 = checkout
            .env
            .get("SAGA_AUTHORIZATION_TIMEOUT_MS")?
            .parse()
            .ok()?;
        Some(Duration::from_millis(ms))
    };
    from_profile().unwrap_or(DEFAULT_AUTHORIZATION_TIMEOUT)
}
