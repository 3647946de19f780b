//! The harness the checkout integration tests share (booted by the kit's
//! [`storefront_kit::testing`]): a real checkout and a real payments service (each on a fresh schema of a real Postgres,
//! messaging over a real RabbitMQ under a per-test queue prefix) and a fake
//! catalog in-process, so a test decides what stock exists and sees every
//! reservation and release.
//!
//! They need `TEST_DATABASE_URL` and `TEST_AMQP_URL` (scripts/test.sh sets
//! both); without them each test says why and passes, except in CI.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use serde_json::{Value, json};
use sqlx::PgPool;
use storefront_kit::amqp;
use storefront_kit::testing::{self, Reply, TestApp, TestEnv};
use storefront_payments::contract::Queues;
use uuid::Uuid;

/// The product the fake catalog never has in stock.
pub const SOLD_OUT: i64 = 999;
/// Every product's price in the fake catalog.
pub const PRICE: i64 = 1250;

/// The product whose price wraps an `i64` total when bought 4 times
/// (2^62 + 1: 4 × it is 4 mod 2^64), as if written past catalog's bounds.
pub const WRAPPING_PRICE_PRODUCT: i64 = 778;
/// Its price.
pub const WRAPPING_PRICE: i64 = (1 << 62) + 1;
/// A product with the same wrapping price for which the fake catalog
/// ignores `max_amount_cents`, as a catalog that let the price through
/// would: it reserves, and answers the priced lines.
pub const UNCHECKED_WRAPPING_PRODUCT: i64 = 779;

/// What the fake catalog holds: reservation id → still reserved?
#[derive(Default)]
pub struct Ledger {
    /// `true` while reserved, `false` once released.
    pub reservations: BTreeMap<Uuid, bool>,
    /// How many POSTs took stock (a retry of the same id doesn't).
    pub takes: usize,
}

/// A fake catalog on port 0.
pub struct FakeCatalog {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its state.
    pub ledger: Arc<Mutex<Ledger>>,
}

/// The fake catalog's price of `id`; `None` for the product it doesn't
/// have (404).
fn price_of(id: i64) -> Option<i64> {
    match id {
        404 => None,
        WRAPPING_PRICE_PRODUCT | UNCHECKED_WRAPPING_PRODUCT => Some(WRAPPING_PRICE),
        _ => Some(PRICE),
    }
}

/// `POST /reservations` as catalog answers it: every line priced, a total
/// above `max_amount_cents` (summed without overflow) refused with 422
/// before anything is taken, an unknown product 422, a sold-out one 409.
async fn reserve(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let id: Uuid = serde_json::from_value(body["reservation_id"].clone()).unwrap();
    let items = body["items"].as_array().unwrap();
    let lines: Vec<(i64, i64, Option<i64>)> = items
        .iter()
        .map(|i| {
            let product_id = i["product_id"].as_i64().unwrap();
            let quantity = i["quantity"].as_i64().unwrap();
            (product_id, quantity, price_of(product_id))
        })
        .collect();
    let priced: Vec<Value> = lines
        .iter()
        .map(|(product_id, quantity, price)| {
            json!({"product_id": product_id, "quantity": quantity, "price_cents": price})
        })
        .collect();
    let total: i128 = lines
        .iter()
        .map(|(_, quantity, price)| i128::from(*quantity) * i128::from(price.unwrap_or(0)))
        .sum();
    let unchecked = lines
        .iter()
        .any(|(product_id, ..)| *product_id == UNCHECKED_WRAPPING_PRODUCT);
    let too_much = !unchecked
        && body["max_amount_cents"]
            .as_i64()
            .is_some_and(|max| total > i128::from(max));
    let sold_out = lines.iter().any(|(product_id, ..)| *product_id == SOLD_OUT);
    let unknown = lines.iter().any(|(_, _, price)| price.is_none());
    let reserved = json!({"reservation_id": id, "status": "reserved", "items": priced});
    let mut l = ledger.lock().unwrap();
    match l.reservations.get(&id) {
        Some(true) => (StatusCode::OK, Json(reserved)),
        Some(false) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": "released"})),
        ),
        None if unknown => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": "no such product"})),
        ),
        None if sold_out => (
            StatusCode::CONFLICT,
            Json(json!({"detail": "out of stock"})),
        ),
        None if too_much => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": "the total is above max_amount_cents"})),
        ),
        None => {
            l.reservations.insert(id, true);
            l.takes += 1;
            (StatusCode::CREATED, Json(reserved))
        }
    }
}

async fn release(State(ledger): State<Arc<Mutex<Ledger>>>, Path(id): Path<Uuid>) -> StatusCode {
    match ledger.lock().unwrap().reservations.get_mut(&id) {
        Some(held) => {
            *held = false;
            StatusCode::OK
        }
        None => StatusCode::NOT_FOUND,
    }
}

impl FakeCatalog {
    /// Starts it.
    pub async fn start() -> Self {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let app = axum::Router::new()
            .route("/reservations", post(reserve))
            .route("/reservations/{id}", delete(release))
            .with_state(ledger.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { base, ledger }
    }

    /// The reservation of `order_id`: `Some(true)` held, `Some(false)` released.
    pub fn reservation(&self, order_id: Uuid) -> Option<bool> {
        self.ledger
            .lock()
            .unwrap()
            .reservations
            .get(&order_id)
            .copied()
    }
}

storefront_kit::test_service! {
    /// Checkout, as the kit's harness boots it.
    Checkout: storefront_checkout, "checkout", [Postgres, Amqp],
    migrations "../../migrations/checkout",
    |_env| [
        ("SAGA_AUTHORIZATION_TIMEOUT_MS", "3000"),
        ("SAGA_LEASE_MS", "500"),
        ("SAGA_SWEEP_INTERVAL_MS", "50"),
        ("OUTBOX_POLL_MS", "100"),
    ]
}

storefront_kit::test_service! {
    /// Payments beside checkout, as the kit's harness boots it.
    Payments: storefront_payments, "payments", [Postgres, Amqp],
    migrations "../../migrations/payments",
    |env| [
        ("AMQP_QUEUE_PREFIX", &queue_prefix(env)),
        ("STRIPE_WEBHOOK_SECRET", "whsec_t"),
        ("PAYPAL_WEBHOOK_SECRET", "pp_t"),
        ("OUTBOX_POLL_MS", "100"),
    ]
}

/// The queue prefix of the shop whose payments run on `env`.
fn queue_prefix(env: &TestEnv) -> String {
    format!("{}.", env.name)
}

/// Checkout + payments + fake catalog for one test.
pub struct Shop {
    /// Checkout's base URL.
    pub base: String,
    /// The fake catalog.
    pub catalog: FakeCatalog,
    /// Admin pool.
    pub admin: PgPool,
    /// Checkout's schema.
    pub checkout_schema: String,
    /// Payments' schema (also the queue prefix).
    pub payments_schema: String,
    checkout_env: Arc<TestEnv>,
    checkout_vars: Vec<(String, String)>,
    checkout: Option<TestApp<Checkout>>,
    payments: TestApp<Payments>,
    /// Shared client.
    pub http: reqwest::Client,
}

/// A shop; `checkout_vars` override checkout's environment
/// (`CATALOG_URLS`, the saga's timeouts). `None` without the environment.
pub async fn spawn_shop(checkout_vars: &[(&str, &str)]) -> Option<Shop> {
    let payments = testing::spawn_app::<Payments>(&[]).await?;
    let checkout_env = Arc::new(TestEnv::create::<Checkout>().await?);
    let catalog = FakeCatalog::start().await;
    let mut vars = vec![
        ("AMQP_QUEUE_PREFIX".to_owned(), queue_prefix(&payments.env)),
        ("CATALOG_URLS".to_owned(), catalog.base.clone()),
    ];
    vars.extend(
        checkout_vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut shop = Shop {
        base: String::new(),
        catalog,
        admin: checkout_env.schema().admin.clone(),
        checkout_schema: checkout_env.schema().name.clone(),
        payments_schema: payments.schema().name.clone(),
        checkout_env,
        checkout_vars: vars,
        checkout: None,
        http: payments.http.clone(),
        payments,
    };
    shop.start_checkout().await;
    Some(shop)
}

impl Shop {
    /// Starts (or restarts) checkout on the same schema.
    pub async fn start_checkout(&mut self) {
        let vars: Vec<(&str, &str)> = self
            .checkout_vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let app = TestApp::start(self.checkout_env.clone(), &vars).await;
        self.base.clone_from(&app.base);
        self.checkout = Some(app);
    }

    /// Sets one of checkout's variables for its next start.
    pub fn set_checkout_var(&mut self, name: &str, value: &str) {
        self.checkout_vars.retain(|(k, _)| k != name);
        self.checkout_vars.push((name.to_owned(), value.to_owned()));
    }

    /// Checkout's variables as overridden at spawn, with `name` removed.
    pub fn unset_checkout_var(&mut self, name: &str) {
        self.checkout_vars.retain(|(k, _)| k != name);
    }

    /// Kills checkout the hard way: its task is aborted mid-whatever.
    pub async fn crash_checkout(&mut self) {
        if let Some(app) = self.checkout.take() {
            app.crash().await;
        }
    }

    fn queues(&self) -> Queues {
        Queues::with_prefix(&queue_prefix(&self.payments.env))
    }

    /// Messages waiting in checkout's events queue.
    pub async fn events_waiting(&self) -> u32 {
        let url = secrecy::SecretString::from(self.payments.env.infra.amqp_url().to_owned());
        let Ok(connection) = amqp::connect(&url, "test-depth").await else {
            return 0;
        };
        let depth = amqp::depths(&connection, &self.queues().events)
            .await
            .map_or(0, |(ready, _)| ready);
        connection.close(200, "OK".into()).await.ok();
        depth
    }

    /// `POST /checkout` with `key`; status and body.
    pub async fn checkout(&self, key: &str, body: &Value) -> (StatusCode, Value) {
        let request = self
            .http
            .post(format!("{}/checkout", self.base))
            .header("idempotency-key", key)
            .json(body);
        let reply = Reply::read(request.send().await.unwrap()).await;
        let status = StatusCode::from_u16(reply.status.as_u16()).unwrap();
        (status, reply.body)
    }

    /// `GET /checkout/{id}` body.
    pub async fn saga(&self, order_id: &str) -> Value {
        let url = format!("{}/checkout/{order_id}", self.base);
        Reply::read(self.http.get(url).send().await.unwrap())
            .await
            .body
    }

    /// Polls until the saga is terminal (its body), or `None` after `within`.
    pub async fn finished(&self, order_id: &str, within: Duration) -> Option<Value> {
        let url = format!("{}/checkout/{order_id}", self.base);
        testing::eventually(within, || async {
            let response = self.http.get(&url).send().await.ok()?;
            let body = response.json::<Value>().await.ok()?;
            (body["terminal"] == true).then_some(body)
        })
        .await
    }

    /// Stops everything, drops the schemas and queues.
    pub async fn cleanup(mut self) {
        let queues = self.queues();
        let amqp_url = self.payments.env.infra.amqp_url().to_owned();
        if let Some(app) = self.checkout.take() {
            app.cleanup().await;
        }
        self.payments.cleanup().await;
        if let Ok(env) = Arc::try_unwrap(self.checkout_env)
            && let Some(schema) = env.schema
        {
            schema.drop().await;
        }
        testing::delete_queues(&amqp_url, &[queues.commands, queues.events]).await;
    }
}

/// The states a saga went through, repeats collapsed.
pub fn path(saga: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for step in saga["history"].as_array().unwrap() {
        let to = step["to_state"].as_str().unwrap().to_owned();
        if out.last() != Some(&to) {
            out.push(to);
        }
    }
    out
}

/// A checkout body.
pub fn order(products: &[i64], card: &str) -> Value {
    let items: Vec<Value> = products
        .iter()
        .map(|p| json!({"product_id": p, "quantity": 2}))
        .collect();
    json!({"items": items, "card_number": card, "provider": "stripe"})
}

/// Distinct keys per test.
pub fn key() -> String {
    Uuid::new_v4().to_string()
}
