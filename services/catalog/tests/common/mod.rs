//! The harness every integration test shares: real catalogs over real HTTP
//! against a real Postgres and Redis.
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

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use storefront_catalog::config::Config;
use storefront_catalog::startup::{AppError, Application};
use storefront_kit::Vars;
use tokio::task::JoinHandle;

/// The URLs of the servers the tests run against, or `None` (after saying
/// why) when they aren't configured and we're not in CI.
pub fn test_urls() -> Option<(String, String)> {
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
    Some((db_url, redis_url))
}

/// The `LAB_ADMIN_TOKEN` every test app gets; lab requests send it.
pub const LAB_TOKEN: &str = "catalog-test-lab-token";

/// One test's schema and Redis prefix, shared by the apps spawned on it.
pub struct TestEnv {
    /// Admin pool, to inspect rows directly and drop the schema afterwards.
    admin: PgPool,
    /// The schema this test owns; also its Redis key prefix.
    pub schema: String,
    /// `TEST_DATABASE_URL` with `search_path` set to the schema.
    app_db_url: String,
    /// `TEST_REDIS_URL`.
    pub redis_url: String,
}

impl TestEnv {
    /// A fresh schema with the catalog's migrations applied.
    async fn create(db_url: &str, redis_url: String) -> Self {
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
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
        Self {
            admin,
            schema,
            app_db_url,
            redis_url,
        }
    }

    /// A product's stock, read straight from Postgres (no cache).
    pub async fn stock(&self, id: i64) -> i32 {
        sqlx::query_scalar(&format!(
            "SELECT stock FROM \"{}\".products WHERE id = $1",
            self.schema
        ))
        .bind(id)
        .fetch_one(&self.admin)
        .await
        .unwrap()
    }

    /// Sets a product's stock straight in Postgres, arranging a test.
    pub async fn set_stock(&self, id: i64, stock: i32) {
        sqlx::query(&format!(
            "UPDATE \"{}\".products SET stock = $2 WHERE id = $1",
            self.schema
        ))
        .bind(id)
        .bind(stock)
        .execute(&self.admin)
        .await
        .unwrap();
    }
}

/// A running catalog.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The schema and prefix, shared with siblings; dropped with the last.
    pub env: Arc<TestEnv>,
    /// Stops the server when sent.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server, awaited on cleanup so it has let go of the schema.
    task: Option<JoinHandle<Result<(), AppError>>>,
    /// Shared HTTP client.
    pub http: reqwest::Client,
}

/// A response with everything a test might look at.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// All headers.
    pub headers: HeaderMap,
    /// The JSON body, or `Null` when there is none.
    pub body: Value,
}

impl Reply {
    /// A header as a string ("" if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// The `ETag` header.
    pub fn etag(&self) -> String {
        self.header("etag").to_owned()
    }
}

/// A catalog on a fresh schema; `None` when the environment isn't set up.
pub async fn spawn_app() -> Option<TestApp> {
    spawn_app_with(&[]).await
}

/// [`spawn_app`] with extra environment variables for the app.
pub async fn spawn_app_with(vars: &[(&str, &str)]) -> Option<TestApp> {
    let (db_url, redis_url) = test_urls()?;
    let env = Arc::new(TestEnv::create(&db_url, redis_url).await);
    Some(TestApp::start(env, vars).await)
}

impl TestApp {
    /// Builds and starts an app on `env`.
    async fn start(env: Arc<TestEnv>, extra: &[(&str, &str)]) -> Self {
        let mut vars = vec![
            ("SERVICE_NAME", "catalog-test"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", env.app_db_url.as_str()),
            ("REDIS_URL", env.redis_url.as_str()),
            ("CACHE_KEY_PREFIX", env.schema.as_str()),
            ("PG_MAX_CONNECTIONS", "20"),
            ("LAB_ADMIN_TOKEN", LAB_TOKEN),
        ];
        vars.extend_from_slice(extra);
        let config = Config::from_vars(&Vars::from_pairs(vars)).unwrap();
        let app = Application::build(config).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            env,
            stop: Some(stop),
            task: Some(task),
            http: reqwest::Client::new(),
        }
    }

    /// A second replica on the same schema and Redis prefix.
    pub async fn spawn_sibling(&self, vars: &[(&str, &str)]) -> TestApp {
        Self::start(self.env.clone(), vars).await
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
        self.send(self.http.get(self.url(path))).await
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
        self.send(self.http.post(self.url(path)).json(&body)).await
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

    /// Sends any request built on [`TestApp::http`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    /// An absolute URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The value of a counter in `/metrics` (summed over its labels), 0 if
    /// absent. The recorder is per process, so this counts every app in the
    /// test binary.
    pub async fn counter(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stops the server (waiting for it to drain) and, if no sibling still
    /// uses it, drops the schema.
    pub async fn cleanup(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        if let Ok(env) = Arc::try_unwrap(self.env) {
            sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", env.schema))
                .execute(&env.admin)
                .await
                .unwrap();
            env.admin.close().await;
        }
    }
}

/// Polls `check` until it returns `Some` or `within` passes; the deadline
/// is the assertion, so no test sleeps a fixed time and hopes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
