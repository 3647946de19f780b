//! The harness the checkout integration tests share: a real checkout and a
//! real payments service (each on a fresh schema of a real Postgres,
//! messaging over a real RabbitMQ under a per-test queue prefix) and a fake
//! catalog in-process, so a test decides what stock exists and sees every
//! reservation and release.
//!
//! They need `TEST_DATABASE_URL` and `TEST_AMQP_URL` (scripts/test.sh sets
//! both); without them each test says why and passes, except in CI.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use storefront_kit::{Vars, amqp};
use tokio::task::JoinHandle;
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

async fn product(Path(id): Path<i64>) -> Result<Json<Value>, StatusCode> {
    if id == 404 {
        return Err(StatusCode::NOT_FOUND);
    }
    let price = if id == WRAPPING_PRICE_PRODUCT {
        WRAPPING_PRICE
    } else {
        PRICE
    };
    Ok(Json(
        json!({"id": id, "price_cents": price, "currency": "EUR"}),
    ))
}

async fn reserve(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let id: Uuid = serde_json::from_value(body["reservation_id"].clone()).unwrap();
    let sold_out = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["product_id"] == SOLD_OUT);
    let mut l = ledger.lock().unwrap();
    match l.reservations.get(&id) {
        Some(true) => (StatusCode::OK, Json(json!({"status": "reserved"}))),
        Some(false) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": "released"})),
        ),
        None if sold_out => (
            StatusCode::CONFLICT,
            Json(json!({"detail": "out of stock"})),
        ),
        None => {
            l.reservations.insert(id, true);
            l.takes += 1;
            (StatusCode::CREATED, Json(json!({"status": "reserved"})))
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
            .route("/products/{id}", get(product))
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

/// `(TEST_DATABASE_URL, TEST_AMQP_URL)`, or `None` after saying why.
pub fn test_urls() -> Option<(String, String)> {
    let (Ok(db), Ok(amqp)) = (
        std::env::var("TEST_DATABASE_URL"),
        std::env::var("TEST_AMQP_URL"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST_DATABASE_URL and TEST_AMQP_URL are not set: run the tests through scripts/test.sh"
        );
        eprintln!("skipped: set TEST_DATABASE_URL and TEST_AMQP_URL (scripts/test.sh does)");
        return None;
    };
    Some((db, amqp))
}

async fn fresh_schema(
    admin: &PgPool,
    db_url: &str,
    schema: &str,
    migrator: sqlx::migrate::Migrator,
) -> String {
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(admin)
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(db_url)
        .unwrap()
        .options([("search_path", schema)]);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    migrator.run(&pool).await.unwrap();
    pool.close().await;
    let separator = if db_url.contains('?') { '&' } else { '?' };
    format!("{db_url}{separator}options=-c%20search_path%3D{schema}")
}

type Stop = tokio::sync::oneshot::Sender<()>;

/// A running service task.
struct Running<E> {
    stop: Option<Stop>,
    task: JoinHandle<Result<(), E>>,
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
    checkout_db: String,
    amqp_url: String,
    prefix: String,
    checkout_vars: Vec<(String, String)>,
    checkout: Option<Running<storefront_checkout::startup::AppError>>,
    payments: Option<Running<storefront_payments::startup::AppError>>,
    /// Shared client.
    pub http: reqwest::Client,
}

/// A shop; `checkout_vars` override checkout's environment
/// (`CATALOG_URLS`, the saga's timeouts). `None` without the environment.
pub async fn spawn_shop(checkout_vars: &[(&str, &str)]) -> Option<Shop> {
    let (db_url, amqp_url) = test_urls()?;
    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db_url)
        .await
        .unwrap();
    let id = Uuid::new_v4().simple().to_string();
    let (checkout_schema, payments_schema) = (format!("test_c{id}"), format!("test_p{id}"));
    let checkout_db = fresh_schema(
        &admin,
        &db_url,
        &checkout_schema,
        sqlx::migrate!("../../migrations/checkout"),
    )
    .await;
    let payments_db = fresh_schema(
        &admin,
        &db_url,
        &payments_schema,
        sqlx::migrate!("../../migrations/payments"),
    )
    .await;
    let prefix = format!("{payments_schema}.");
    let catalog = FakeCatalog::start().await;

    let payments_vars = vec![
        ("SERVICE_NAME", "payments-test"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", payments_db.as_str()),
        ("AMQP_URL", amqp_url.as_str()),
        ("AMQP_QUEUE_PREFIX", prefix.as_str()),
        ("STRIPE_WEBHOOK_SECRET", "whsec_t"),
        ("PAYPAL_WEBHOOK_SECRET", "pp_t"),
        ("OUTBOX_POLL_MS", "100"),
    ];
    let config =
        storefront_payments::config::Config::from_vars(&Vars::from_pairs(payments_vars)).unwrap();
    let app = storefront_payments::startup::Application::build(config)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let payments = Running {
        stop: Some(stop),
        task,
    };

    let mut shop = Shop {
        base: String::new(),
        catalog,
        admin,
        checkout_schema,
        payments_schema,
        checkout_db,
        amqp_url,
        prefix,
        checkout_vars: checkout_vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        checkout: None,
        payments: Some(payments),
        http: reqwest::Client::new(),
    };
    shop.start_checkout().await;
    Some(shop)
}

impl Shop {
    /// Starts (or restarts) checkout on the same schema.
    pub async fn start_checkout(&mut self) {
        let mut vars: Vec<(String, String)> = [
            ("SERVICE_NAME", "checkout-test"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", self.checkout_db.as_str()),
            ("AMQP_URL", self.amqp_url.as_str()),
            ("AMQP_QUEUE_PREFIX", self.prefix.as_str()),
            ("CATALOG_URLS", self.catalog.base.as_str()),
            ("SAGA_AUTHORIZATION_TIMEOUT_MS", "3000"),
            ("SAGA_LEASE_MS", "500"),
            ("SAGA_SWEEP_INTERVAL_MS", "50"),
            ("OUTBOX_POLL_MS", "100"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        vars.retain(|(k, _)| !self.checkout_vars.iter().any(|(o, _)| o == k));
        vars.extend(self.checkout_vars.iter().cloned());
        let config =
            storefront_checkout::config::Config::from_vars(&Vars::from_pairs(vars)).unwrap();
        let app = storefront_checkout::startup::Application::build(config)
            .await
            .unwrap();
        self.base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        self.checkout = Some(Running {
            stop: Some(stop),
            task,
        });
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
        if let Some(running) = self.checkout.take() {
            running.task.abort();
            let _ = running.task.await;
        }
    }

    /// Messages waiting in checkout's events queue.
    pub async fn events_waiting(&self) -> u32 {
        let url = secrecy::SecretString::from(self.amqp_url.clone());
        let queues = storefront_payments::contract::Queues::with_prefix(&self.prefix);
        let Ok(connection) = amqp::connect(&url, "test-depth").await else {
            return 0;
        };
        let depth = amqp::depths(&connection, &queues.events)
            .await
            .map_or(0, |(ready, _)| ready);
        connection.close(200, "OK".into()).await.ok();
        depth
    }

    /// `POST /checkout` with `key`; status and body.
    pub async fn checkout(&self, key: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/checkout", self.base))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /checkout/{id}` body.
    pub async fn saga(&self, order_id: &str) -> Value {
        self.http
            .get(format!("{}/checkout/{order_id}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls until the saga is terminal (its body), or `None` after `within`.
    pub async fn finished(&self, order_id: &str, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(response) = self
                .http
                .get(format!("{}/checkout/{order_id}", self.base))
                .send()
                .await
                && let Ok(body) = response.json::<Value>().await
                && body["terminal"] == true
            {
                return Some(body);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }

    /// Stops everything, drops the schemas and queues.
    pub async fn cleanup(mut self) {
        if let Some(mut r) = self.checkout.take() {
            let _ = r.stop.take().map(|s| s.send(()));
            r.task.await.unwrap().unwrap();
        }
        if let Some(mut r) = self.payments.take() {
            let _ = r.stop.take().map(|s| s.send(()));
            r.task.await.unwrap().unwrap();
        }
        for schema in [&self.checkout_schema, &self.payments_schema] {
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&self.admin)
                .await
                .unwrap();
        }
        let url = secrecy::SecretString::from(self.amqp_url.clone());
        if let Ok(connection) = amqp::connect(&url, "test-cleanup").await
            && let Ok(channel) = connection.create_channel().await
        {
            let queues = storefront_payments::contract::Queues::with_prefix(&self.prefix);
            for q in [queues.commands, queues.events] {
                for name in [amqp::dead_letter_queue(&q), q] {
                    channel
                        .queue_delete(name.as_str().into(), Default::default())
                        .await
                        .ok();
                }
            }
        }
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
