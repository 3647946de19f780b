//! The claims harness: the claims service over real HTTP against a real
//! Postgres, booted by the kit's [`storefront_kit::testing::spawn_app`].
//!
//! Each test gets its own schema with the migrations applied, so tests run
//! in parallel and leave nothing behind but a schema they drop. They need
//! `TEST_DATABASE_URL` (a role that may create schemas); without it each
//! test prints why and passes, so `cargo test` works on a machine without
//! the fleet — except in CI (`CI` set), where a missing URL is a failure.

// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use std::ops::Deref;

use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use storefront_kit::testing;

pub use storefront_kit::testing::Reply;

/// The `LAB_ADMIN_TOKEN` every test app gets; [`TestApp::post_lab`] sends it.
pub const LAB_TOKEN: &str = "claims-test-lab-token";

storefront_kit::test_service! {
    /// The claims service, as the kit's harness boots it.
    Claims: storefront_claims, "claims", [Postgres],
    migrations "../../migrations/claims",
    |_env| [
        ("LAB_ENDPOINTS", "false"),
        ("SHUTDOWN_GRACE_SECS", "2"),
        ("LAB_ADMIN_TOKEN", LAB_TOKEN),
    ]
}

/// A running claims service on a fresh schema.
pub struct TestApp {
    app: testing::TestApp<Claims>,
    /// A pool on the test's schema, for looking at rows directly.
    pub db: PgPool,
}

impl Deref for TestApp {
    type Target = testing::TestApp<Claims>;

    fn deref(&self) -> &Self::Target {
        &self.app
    }
}

/// `None` (and a note on stderr) when the test database isn't configured.
pub async fn spawn_app(lab_endpoints: bool) -> Option<TestApp> {
    let lab = if lab_endpoints { "true" } else { "false" };
    let app = testing::spawn_app::<Claims>(&[("LAB_ENDPOINTS", lab)]).await?;
    let db = app.schema().pool(2).await;
    Some(TestApp { app, db })
}

/// Whether a reply is a replay of a stored one.
pub trait Replayed {
    /// It carries `Idempotent-Replayed: true`.
    fn replayed(&self) -> bool;
}

impl Replayed for Reply {
    fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == "true"
    }
}

impl TestApp {
    /// `POST path` with the body as given (raw text) and an optional key.
    pub async fn post_raw(&self, path: &str, key: Option<&str>, body: &str) -> Reply {
        self.post_text(self.http.post(self.url(path)), key, body)
            .await
    }

    /// [`TestApp::post_raw`] with the lab admin token.
    pub async fn post_lab(&self, path: &str, key: Option<&str>, body: &str) -> Reply {
        let request = self.http.post(self.url(path)).bearer_auth(LAB_TOKEN);
        self.post_text(request, key, body).await
    }

    async fn post_text(
        &self,
        request: reqwest::RequestBuilder,
        key: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }

    /// `POST /claims` under `key`.
    pub async fn post_claim(&self, key: &str, body: &Value) -> Reply {
        self.post_raw("/claims", Some(key), &body.to_string()).await
    }

    /// `POST /claims` as `user` (its `X-User-Id`).
    pub async fn post_as(&self, user: &str, key: &str, body: &Value) -> Reply {
        self.send(
            self.http
                .post(self.url("/claims"))
                .header("idempotency-key", key)
                .header("x-user-id", user)
                .json(body),
        )
        .await
    }

    /// `GET path` as `user`.
    pub async fn get_as(&self, user: &str, path: &str) -> Reply {
        self.send(self.http.get(self.url(path)).header("x-user-id", user))
            .await
    }

    /// Every column of the claim stored under `key`, as JSON (one object per row).
    pub async fn rows(&self, table: &str, key: &str) -> Vec<Value> {
        sqlx::query(&format!(
            "SELECT to_jsonb(t) - 'id' AS row FROM {table} t WHERE idempotency_key = $1 ORDER BY created_at"
        ))
        .bind(key)
        .fetch_all(&self.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get::<Value, _>("row"))
        .collect()
    }

    /// How many claims there are.
    pub async fn count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM claims")
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Stops the server (and its retention task) within 10 s and drops
    /// the schema.
    pub async fn cleanup(self) {
        self.db.close().await;
        self.app.cleanup().await;
    }
}

/// A valid claim.
pub fn claim_body() -> Value {
    json!({
        "order_id": "ord-1001",
        "customer_id": "cus-42",
        "reason": "damaged",
        "amount_cents": 2490,
        "note": "the dripper arrived in pieces"
    })
}

/// [`claim_body`] without its `customer_id`.
pub fn body_without_customer() -> Value {
    let mut body = claim_body();
    body.as_object_mut().unwrap().remove("customer_id");
    body
}

/// A fresh idempotency key.
pub fn new_key() -> String {
    format!("test-{}", uuid::Uuid::new_v4())
}
