//! The catalog's integration-test harness: real catalogs over real HTTP
//! against a real Postgres and Redis, booted by the kit's
//! [`storefront_kit::testing::spawn_app`].
//!
//! Each test gets its own schema with the migrations applied, and its own
//! Redis key prefix (the schema's name), so tests run in parallel and leave
//! nothing behind but a schema they drop. Siblings spawned from one app
//! share its schema and prefix: two replicas, as in the fleet.
//!
//! They need `TEST_DATABASE_URL` (a role that may create schemas) and
//! `TEST_REDIS_URL`. Without them each test prints why and passes, so
//! `cargo test` works on a machine without the fleet; in CI (`CI` set) a
//! missing URL is a failure.

// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::Value;
use storefront_kit::testing::{self, Infra, Service};

pub use storefront_kit::testing::Reply;

/// The `LAB_ADMIN_TOKEN` every test app gets; lab requests send it.
pub const LAB_TOKEN: &str = "catalog-test-lab-token";

storefront_kit::test_service! {
    /// The catalog, as the kit's harness boots it.
    Catalog: storefront_catalog, "catalog", [Postgres, Redis],
    migrations "../../migrations/catalog",
    |env| [
        ("CACHE_KEY_PREFIX", env.name.as_str()),
        ("PG_MAX_CONNECTIONS", "20"),
        ("LAB_ADMIN_TOKEN", LAB_TOKEN),
    ]
}

/// `(TEST_DATABASE_URL, TEST_REDIS_URL)`, or `None` (after saying why).
pub fn test_urls() -> Option<(String, String)> {
    let infra = Infra::from_env(Catalog::SERVERS)?;
    Some((
        infra.database_url().to_owned(),
        infra.redis_url().to_owned(),
    ))
}

storefront_kit::test_app! {
    /// A running catalog, with the catalog's own request helpers.
    TestApp for Catalog
}

/// A catalog on a fresh schema; `None` when the environment isn't set up.
pub async fn spawn_app() -> Option<TestApp> {
    spawn_app_with(&[]).await
}

/// [`spawn_app`] with extra environment variables for the app.
pub async fn spawn_app_with(vars: &[(&str, &str)]) -> Option<TestApp> {
    testing::spawn_app::<Catalog>(vars).await.map(TestApp)
}

impl TestApp {
    /// A second replica on the same schema and Redis prefix.
    pub async fn spawn_sibling(&self, vars: &[(&str, &str)]) -> TestApp {
        TestApp(self.0.spawn_sibling(vars).await)
    }

    /// `GET path`: status, content type and JSON body.
    pub async fn get(&self, path: &str) -> (StatusCode, Option<String>, Value) {
        let reply = self.fetch(path).await;
        let content_type = reply
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        (reply.status, content_type, reply.body)
    }

    /// `GET path` with the whole response.
    pub async fn fetch(&self, path: &str) -> Reply {
        self.0.get(path).await
    }

    /// `GET /products/{id}`.
    pub async fn product(&self, id: i64) -> Reply {
        self.fetch(&format!("/products/{id}")).await
    }

    /// `PATCH /products/{id}` with `If-Match` when given.
    pub async fn patch(&self, id: i64, if_match: Option<&str>, body: Value) -> Reply {
        let mut request = self
            .http
            .patch(self.url(&format!("/products/{id}")))
            .json(&body);
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        self.send(request).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.0.post(path, &body).await
    }

    /// `POST path` with a JSON body and the lab admin token.
    pub async fn post_lab(&self, path: &str, body: Value) -> Reply {
        let request = self.http.post(self.url(path)).bearer_auth(LAB_TOKEN);
        self.send(request.json(&body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(self.url(path))).await
    }

    /// Counter `name` in `/metrics`, summed over its labels; 0 if absent.
    pub async fn counter(&self, name: &str) -> f64 {
        self.0.counter(name, "").await
    }

    /// A product's stock, read straight from Postgres (no cache).
    pub async fn stock(&self, id: i64) -> i32 {
        let schema = self.schema();
        sqlx::query_scalar(&schema.sql("SELECT stock FROM {schema}.products WHERE id = $1"))
            .bind(id)
            .fetch_one(&schema.admin)
            .await
            .unwrap()
    }

    /// Sets a product's stock straight in Postgres, arranging a test.
    pub async fn set_stock(&self, id: i64, stock: i32) {
        let schema = self.schema();
        sqlx::query(&schema.sql("UPDATE {schema}.products SET stock = $2 WHERE id = $1"))
            .bind(id)
            .bind(stock)
            .execute(&schema.admin)
            .await
            .unwrap();
    }

    /// Stops the server (waiting for it to drain) and, if no sibling still
    /// uses it, drops the schema.
    pub async fn cleanup(self) {
        self.0.cleanup().await;
    }
}
