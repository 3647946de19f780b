//! The harness the payments integration tests share (booted by the kit's
//! [`storefront_kit::testing::spawn_app`]): a real payments app over real
//! HTTP, on a real Postgres (a fresh schema per test) and a real
//! RabbitMQ (queues prefixed with the schema's name, so tests running in
//! parallel on one broker never see each other's messages).
//!
//! They need `TEST_DATABASE_URL` and `TEST_AMQP_URL` (scripts/test.sh sets
//! both). Without them each test says why and passes, so `cargo test`
//! works on a machine without the servers; in CI (`CI` set) a missing URL
//! is a failure.

#![allow(dead_code)]

pub mod crc;

use std::ops::Deref;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use storefront_kit::amqp::{self, Connected, ConsumerConfig, Handled, Outgoing, Publisher};
use storefront_kit::testing::{self, CancellationToken};
use storefront_payments::contract::{Command, Event, Provider, Queues};
use storefront_payments::signature;
use tokio::sync::mpsc;
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
pub const HOLD_WEBHOOKS: &[(&str, &str)] = &[
    ("PROVIDER_POLL_MS", "600000"),
    ("PROVIDER_WAKE_AT_DUE", "false"),
];

storefront_kit::test_service! {
    /// Payments, as the kit's harness boots it.
    Payments: storefront_payments, "payments", [Postgres, Amqp],
    migrations "../../migrations/payments",
    |env| [
        ("AMQP_QUEUE_PREFIX", &format!("{}.", env.name)),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
        ("PAYPAL_WEBHOOK_SECRET", PAYPAL_SECRET),
        ("PROVIDER_SEED", "7"),
        ("OUTBOX_POLL_MS", "100"),
        ("LAB_ADMIN_TOKEN", LAB_TOKEN),
    ]
}

/// A running payments service, and a consumer of the events it publishes.
pub struct TestApp {
    app: testing::TestApp<Payments>,
    /// The queue names.
    pub queues: Queues,
    /// `TEST_AMQP_URL`.
    pub amqp_url: SecretString,
    /// Events payments published, as consumed from its events queue.
    pub events: mpsc::UnboundedReceiver<(Option<Uuid>, Event)>,
    consumer_stop: CancellationToken,
}

impl Deref for TestApp {
    type Target = testing::TestApp<Payments>;

    fn deref(&self) -> &Self::Target {
        &self.app
    }
}

/// A payments app on a fresh schema; `None` when the environment isn't set up.
pub async fn spawn_app(extra: &[(&str, &str)]) -> Option<TestApp> {
    let app = testing::spawn_app::<Payments>(extra).await?;
    let queues = Queues::with_prefix(&format!("{}.", app.env.name));
    let amqp_url = SecretString::from(app.env.infra.amqp_url().to_owned());
    let (tx, events) = mpsc::unbounded_channel();
    let consumer_stop = CancellationToken::new();
    tokio::spawn(amqp::consume(
        amqp_url.clone(),
        ConsumerConfig {
            queue: queues.events.clone(),
            name: format!("{}-test-events", app.env.name),
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
        app,
        queues,
        amqp_url,
        events,
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
        let schema = self.schema();
        sqlx::query_scalar(&schema.sql(sql))
            .bind(order_id)
            .fetch_one(&schema.admin)
            .await
            .unwrap()
    }

    /// `GET /payments/{order_id}` body.
    pub async fn payment(&self, order_id: Uuid) -> Value {
        self.get(&format!("/payments/{order_id}")).await.body
    }

    /// Polls until the order's payment has `status`, or `within` passes.
    pub async fn await_status(&self, order_id: Uuid, status: &str, within: Duration) -> bool {
        testing::until(within, || async {
            self.payment(order_id).await["payment"]["status"] == status
        })
        .await
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

    /// Stops the app and the test consumer, drops the schema and queues.
    pub async fn cleanup(self) {
        self.consumer_stop.cancel();
        self.app.cleanup().await;
        let url = self.amqp_url.expose_secret();
        testing::delete_queues(url, &[self.queues.commands, self.queues.events]).await;
    }
}
