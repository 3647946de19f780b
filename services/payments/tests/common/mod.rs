//! The harness the payments integration tests share: a real payments app
//! over real HTTP, on a real Postgres (a fresh schema per test) and a real
//! RabbitMQ (queues prefixed with the schema's name, so tests running in
//! parallel on one broker never see each other's messages).
//!
//! They need `TEST_DATABASE_URL` and `TEST_AMQP_URL` (scripts/test.sh sets
//! both). Without them each test says why and passes, so `cargo test`
//! works on a machine without the servers; in CI (`CI` set) a missing URL
//! is a failure.

#![allow(dead_code)]

pub mod crc;

use std::str::FromStr;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use storefront_kit::Vars;
use storefront_kit::amqp::{self, Connected, ConsumerConfig, Handled, Outgoing, Publisher};
use storefront_payments::config::Config;
use storefront_payments::contract::{Command, Event, Provider, Queues};
use storefront_payments::signature;
use storefront_payments::startup::{AppError, Application};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The lab's webhook secrets, as in profiles/dev.toml.
pub const STRIPE_SECRET: &str = "whsec_test_secret";
/// See [`STRIPE_SECRET`].
pub const PAYPAL_SECRET: &str = "paypal_test_secret";
/// The lab admin token the tests' apps are given (`LAB_ADMIN_TOKEN`).
pub const LAB_TOKEN: &str = "lab-test-token";
/// Settings that keep the simulated provider from sending any webhook
/// during a test (its sender's first pass runs before any payment exists):
/// the provider's record changes, and the test delivers the webhooks.
pub const HOLD_WEBHOOKS: &[(&str, &str)] = &[("PROVIDER_POLL_MS", "600000")];

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

/// A fresh schema with `migrations/<service>` applied; returns the admin
/// pool and a URL whose search_path is the schema.
pub async fn fresh_schema(
    db_url: &str,
    schema: &str,
    migrator: sqlx::migrate::Migrator,
) -> (PgPool, String) {
    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect(db_url)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&admin)
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
    (
        admin,
        format!("{db_url}{separator}options=-c%20search_path%3D{schema}"),
    )
}

/// A running payments service.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The test's schema (also the queue prefix).
    pub schema: String,
    /// Admin pool, for reading the ground truth.
    pub admin: PgPool,
    /// The queue names.
    pub queues: Queues,
    /// `TEST_AMQP_URL`.
    pub amqp_url: SecretString,
    /// Events payments published, as consumed from its events queue.
    pub events: mpsc::UnboundedReceiver<(Option<Uuid>, Event)>,
    /// Shared HTTP client.
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), AppError>>>,
    consumer_stop: CancellationToken,
}

/// A payments app on a fresh schema; `None` when the environment isn't set up.
pub async fn spawn_app(extra: &[(&str, &str)]) -> Option<TestApp> {
    let (db_url, amqp_url) = test_urls()?;
    let schema = format!("test_{}", Uuid::new_v4().simple());
    let (admin, app_db_url) = fresh_schema(
        &db_url,
        &schema,
        sqlx::migrate!("../../migrations/payments"),
    )
    .await;
    let prefix = format!("{schema}.");
    let mut vars = vec![
        ("SERVICE_NAME", "payments-test"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", app_db_url.as_str()),
        ("AMQP_URL", amqp_url.as_str()),
        ("AMQP_QUEUE_PREFIX", prefix.as_str()),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
        ("PAYPAL_WEBHOOK_SECRET", PAYPAL_SECRET),
        ("PROVIDER_SEED", "7"),
        ("OUTBOX_POLL_MS", "100"),
        ("LAB_ADMIN_TOKEN", LAB_TOKEN),
    ];
    vars.extend_from_slice(extra);
    let config = Config::from_vars(&Vars::from_pairs(vars)).unwrap();
    let queues = config.queues.clone();
    let app = Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let amqp_url = SecretString::from(amqp_url);
    let (tx, events) = mpsc::unbounded_channel();
    let consumer_stop = CancellationToken::new();
    tokio::spawn(amqp::consume(
        amqp_url.clone(),
        ConsumerConfig {
            queue: queues.events.clone(),
            name: format!("{schema}-test-events"),
            prefetch: 8,
        },
        Connected::default(),
        consumer_stop.clone(),
        move |message| {
            let tx = tx.clone();
            async move {
                match serde_json::from_slice::<Event>(&message.payload) {
                    Ok(event) => {
                        let _ = tx.send((message.id, event));
                        Handled::Ack
                    }
                    Err(_) => Handled::Reject,
                }
            }
        },
    ));
    Some(TestApp {
        base,
        schema,
        admin,
        queues,
        amqp_url,
        events,
        http: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
        consumer_stop,
    })
}

impl TestApp {
    /// Publishes `command` to payments with message id `id`.
    pub async fn send(&self, id: Uuid, command: &Command) {
        let connection = amqp::connect(&self.amqp_url, "test-publisher")
            .await
            .unwrap();
        let mut publisher = Publisher::open(&connection).await.unwrap();
        let results = publisher
            .publish_batch(&[Outgoing {
                id,
                queue: self.queues.commands.clone(),
                kind: command.kind().into(),
                payload: serde_json::to_vec(command).unwrap(),
                traceparent: None,
            }])
            .await
            .unwrap();
        assert_eq!(results, [Ok(())]);
        connection.close(200, "OK".into()).await.ok();
    }

    /// The next event within `within`, or `None`.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
            .map(|(_, e)| e)
    }

    /// One SQL value from the test's schema.
    pub async fn scalar<T>(&self, sql: &str, order_id: Uuid) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        let sql = sql.replace("{schema}", &format!("\"{}\"", self.schema));
        sqlx::query_scalar(&sql)
            .bind(order_id)
            .fetch_one(&self.admin)
            .await
            .unwrap()
    }

    /// `GET /payments/{order_id}` body.
    pub async fn payment(&self, order_id: Uuid) -> Value {
        self.http
            .get(format!("{}/payments/{order_id}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls until the order's payment has `status`, or `within` passes.
    pub async fn await_status(&self, order_id: Uuid, status: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.payment(order_id).await["payment"]["status"] == status {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Opens a payment for a new order (2590 EUR on `card`) and waits
    /// until it exists; the order id and the provider's session id.
    pub async fn open(&self, card: &str, provider: Provider) -> (Uuid, String) {
        let order = Uuid::new_v4();
        let command = Command::AuthorizePayment {
            order_id: order,
            amount_cents: 2590,
            currency: "EUR".into(),
            card_number: card.into(),
            provider,
        };
        self.send(Uuid::new_v4(), &command).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let payment = self.payment(order).await;
            if let Some(reference) = payment["payment"]["provider_ref"].as_str() {
                return (order, reference.to_owned());
            }
            assert!(Instant::now() < deadline, "payment of {order} never opened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs `body` to `/webhooks/paypal` under transmission `id`, signed
    /// now with the provider's secret, as the provider sends it.
    pub async fn paypal(&self, id: &str, body: &str) -> reqwest::Response {
        let time = chrono::Utc::now().to_rfc3339();
        let sig = signature::paypal_signature(PAYPAL_SECRET.as_bytes(), id, &time, body.as_bytes());
        let headers = [
            (signature::PAYPAL_TRANSMISSION_ID, id.to_owned()),
            (signature::PAYPAL_TRANSMISSION_TIME, time),
            (signature::PAYPAL_TRANSMISSION_SIG, sig),
        ];
        self.post_webhook("paypal", body, &headers).await
    }

    /// POSTs `body` to `/webhooks/stripe`, signed now with the secret.
    pub async fn stripe(&self, body: &str) -> reqwest::Response {
        let header = signature::stripe_header(
            STRIPE_SECRET.as_bytes(),
            chrono::Utc::now().timestamp(),
            body.as_bytes(),
        );
        self.post_webhook("stripe", body, &[(signature::STRIPE_SIGNATURE, header)])
            .await
    }

    /// POSTs `body` to `/webhooks/{provider}` with exactly `headers`.
    pub async fn post_webhook(
        &self,
        provider: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/webhooks/{provider}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        request.send().await.unwrap()
    }

    /// Every event about `order` that arrives within `within`.
    pub async fn events_about(&mut self, order: Uuid, within: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        while let Ok(Some((_, event))) = tokio::time::timeout_at(deadline, self.events.recv()).await
        {
            if event.order_id() == order {
                seen.push(event);
            }
        }
        seen
    }

    /// Stops the app and the test consumer, drops the schema.
    pub async fn cleanup(mut self) {
        self.consumer_stop.cancel();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(&self.admin)
            .await
            .unwrap();
        if let Ok(connection) = amqp::connect(&self.amqp_url, "test-cleanup").await
            && let Ok(channel) = connection.create_channel().await
        {
            for q in [&self.queues.commands, &self.queues.events] {
                for name in [q.clone(), amqp::dead_letter_queue(q)] {
                    channel
                        .queue_delete(name.as_str().into(), Default::default())
                        .await
                        .ok();
                }
            }
        }
    }
}
