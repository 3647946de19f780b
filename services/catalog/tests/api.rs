//! The catalog over real HTTP against a real Postgres and Redis.
//!
//! Each test gets its own schema with the migrations applied, so tests run
//! in parallel and leave nothing behind but a schema they drop. They need
//! `TEST_DATABASE_URL` (a role that may create schemas) and `TEST_REDIS_URL`;
//! without them each test prints why and passes, so `cargo test` works on a
//! machine without the fleet.

use std::str::FromStr;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use storefront_catalog::config::Config;
use storefront_catalog::startup::Application;
use storefront_kit::Vars;

/// A running catalog on a fresh schema.
struct TestApp {
    /// `http://127.0.0.1:<port>`.
    base: String,
    /// Admin pool, to drop the schema afterwards.
    admin: PgPool,
    /// The schema this test owns.
    schema: String,
    /// Stops the server when dropped or sent.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: reqwest::Client,
}

impl TestApp {
    async fn get(&self, path: &str) -> (StatusCode, Option<String>, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.json().await.unwrap_or(Value::Null);
        (status, content_type, body)
    }

    async fn cleanup(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

/// `None` (and a note on stderr) when the test environment isn't set up.
async fn spawn_app() -> Option<TestApp> {
    let (Ok(db_url), Ok(redis_url)) = (
        std::env::var("TEST_DATABASE_URL"),
        std::env::var("TEST_REDIS_URL"),
    ) else {
        // In CI a missing environment is a failure, never a silent pass:
        // scripts/test.sh boots the servers and sets both.
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST_DATABASE_URL and TEST_REDIS_URL are not set: run the tests through scripts/test.sh"
        );
        eprintln!(
            "skipped: set TEST_DATABASE_URL and TEST_REDIS_URL (scripts/test.sh does) to run against real services"
        );
        return None;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db_url)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&admin)
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(&db_url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let migrator = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate!("../../migrations/catalog")
        .run(&migrator)
        .await
        .unwrap();
    migrator.close().await;

    let separator = if db_url.contains('?') { '&' } else { '?' };
    let app_db_url = format!("{db_url}{separator}options=-c%20search_path%3D{schema}");
    let vars = Vars::from_pairs([
        ("SERVICE_NAME", "catalog-test"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", app_db_url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
    ]);
    let app = Application::build(Config::from_vars(&vars).unwrap())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    Some(TestApp {
        base,
        admin,
        schema,
        stop: Some(stop),
        http: reqwest::Client::new(),
    })
}

#[tokio::test]
async fn ready_reports_postgres_and_redis_ok() {
    let Some(app) = spawn_app().await else { return };
    let (status, _, body) = app.get("/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    assert_eq!(body["checks"]["redis"]["status"], "ok");
    app.cleanup().await;
}

#[tokio::test]
async fn pages_walk_the_whole_seeded_catalog_without_gaps_or_repeats() {
    let Some(app) = spawn_app().await else { return };
    let mut ids = Vec::new();
    let mut path = "/products?limit=50".to_owned();
    loop {
        let (status, _, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        ids.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        match body["next_after"].as_i64() {
            Some(after) => path = format!("/products?limit=50&after={after}"),
            None => break,
        }
    }
    assert!(ids.len() >= 120, "only {} products", ids.len());
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not strictly increasing"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn category_filter_returns_only_that_category() {
    let Some(app) = spawn_app().await else { return };
    let (status, _, body) = app.get("/products?category=tea&limit=100").await;
    assert_eq!(status, StatusCode::OK);
    let items = body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|p| p["category"] == "tea"));
    assert!(body["next_after"].is_null());
    app.cleanup().await;
}

#[tokio::test]
async fn product_by_id_has_the_documented_shape() {
    let Some(app) = spawn_app().await else { return };
    let (status, _, body) = app.get("/products/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], 1);
    assert_eq!(body["sku"], "COF-0001");
    assert_eq!(body["currency"], "EUR");
    assert!(body["price_cents"].is_i64());
    assert!(body["stock"].is_i64());
    let updated_at = body["updated_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(updated_at).is_ok(),
        "{updated_at}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn unknown_product_is_a_404_problem() {
    let Some(app) = spawn_app().await else { return };
    let (status, content_type, body) = app.get("/products/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(body["status"], 404);
    app.cleanup().await;
}

#[tokio::test]
async fn bad_parameters_are_400_problems() {
    let Some(app) = spawn_app().await else { return };
    for path in [
        "/products?limit=0",
        "/products?limit=101",
        "/products?limit=abc",
        "/products?after=x",
        "/products/abc",
    ] {
        let (status, content_type, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{path}"
        );
        assert_eq!(body["status"], 400, "{path}");
    }
    app.cleanup().await;
}
