//! The claims service over real HTTP against a real Postgres.
//!
//! Each test gets its own schema with the migrations applied, so tests run
//! in parallel and leave nothing behind but a schema they drop. They need
//! `TEST_DATABASE_URL` (a role that may create schemas); without it each
//! test prints why and passes, so `cargo test` works on a machine without
//! the fleet — except in CI (`CI` set), where a missing URL is a failure.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use storefront_claims::config::Config;
use storefront_claims::retention;
use storefront_claims::startup::{AppError, Application};
use storefront_kit::Vars;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

/// The `LAB_ADMIN_TOKEN` every test app gets; [`TestApp::post_lab`] sends it.
const LAB_TOKEN: &str = "claims-test-lab-token";

/// A running claims service on a fresh schema.
struct TestApp {
    /// `http://127.0.0.1:<port>`.
    base: String,
    /// Admin pool, to drop the schema afterwards.
    admin: PgPool,
    /// A pool on the test's schema, for looking at rows directly.
    db: PgPool,
    /// The schema this test owns.
    schema: String,
    /// Stops the server when sent (or dropped).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server task, awaited on cleanup to prove shutdown completes.
    server: Option<JoinHandle<Result<(), AppError>>>,
    http: reqwest::Client,
}

/// What a response carried, body kept as raw bytes.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }
}

impl TestApp {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    /// `POST path` with the body as given (raw text) and an optional key.
    async fn post_raw(&self, path: &str, key: Option<&str>, body: &str) -> Reply {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }

    /// [`TestApp::post_raw`] with the lab admin token.
    async fn post_lab(&self, path: &str, key: Option<&str>, body: &str) -> Reply {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(LAB_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }

    async fn post_claim(&self, key: &str, body: &Value) -> Reply {
        self.post_raw("/claims", Some(key), &body.to_string()).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// Every column of the claim stored under `key`, as JSON (one object per row).
    async fn rows(&self, table: &str, key: &str) -> Vec<Value> {
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

    async fn cleanup(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let stopped = tokio::time::timeout(Duration::from_secs(10), server).await;
            stopped
                .expect("server (and its retention task) did not stop within 10 s")
                .unwrap()
                .unwrap();
        }
        self.db.close().await;
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

/// `None` (and a note on stderr) when the test database isn't configured.
async fn spawn_app(lab_endpoints: bool) -> Option<TestApp> {
    let Ok(db_url) = std::env::var("TEST_DATABASE_URL") else {
        // In CI a missing environment is a failure, never a silent pass:
        // scripts/test.sh boots Postgres and sets it.
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST_DATABASE_URL is not set: run the tests through scripts/test.sh"
        );
        eprintln!(
            "skipped: set TEST_DATABASE_URL (scripts/test.sh does) to run against a real Postgres"
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
    let db = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate!("../../migrations/claims")
        .run(&db)
        .await
        .unwrap();

    let separator = if db_url.contains('?') { '&' } else { '?' };
    let app_db_url = format!("{db_url}{separator}options=-c%20search_path%3D{schema}");
    let vars = Vars::from_pairs([
        ("SERVICE_NAME", "claims-test"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", app_db_url.as_str()),
        (
            "LAB_ENDPOINTS",
            if lab_endpoints { "true" } else { "false" },
        ),
        ("SHUTDOWN_GRACE_SECS", "2"),
        ("LAB_ADMIN_TOKEN", LAB_TOKEN),
    ]);
    let app = Application::build(Config::from_vars(&vars).unwrap())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    Some(TestApp {
        base,
        admin,
        db,
        schema,
        stop: Some(stop),
        server: Some(server),
        http: reqwest::Client::new(),
    })
}

fn claim_body() -> Value {
    json!({
        "order_id": "ord-1001",
        "customer_id": "cus-42",
        "reason": "damaged",
        "amount_cents": 2490,
        "note": "the dripper arrived in pieces"
    })
}

fn new_key() -> String {
    format!("test-{}", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn ready_reports_postgres_ok() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app.get("/ready").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["checks"]["postgres"]["status"], "ok");
    app.cleanup().await;
}

#[tokio::test]
async fn first_post_creates_the_claim_with_201_and_location() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let key = new_key();
    let reply = app.post_claim(&key, &claim_body()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json());
    assert!(!reply.replayed());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    let id = body["claim_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert_eq!(
        reply.header("location"),
        Some(format!("/claims/{id}").as_str())
    );
    assert_eq!(body["order_id"], "ord-1001");
    assert_eq!(body["customer_id"], "cus-42");
    assert_eq!(body["reason"], "damaged");
    assert_eq!(body["amount_cents"], 2490);
    assert_eq!(body["note"], "the dripper arrived in pieces");
    assert!(chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).is_ok());
    let rows = app.rows("claims", &key).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["response_status"], 201);
    assert_eq!(
        rows[0]["response_body"].as_str().unwrap().as_bytes(),
        reply.body
    );
    app.cleanup().await;
}

#[tokio::test]
async fn replay_returns_the_same_status_and_byte_identical_body() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let key = new_key();
    let first = app.post_claim(&key, &claim_body()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    // Same members, different order and whitespace: the same request.
    let reordered = r#"{ "note": "the dripper arrived in pieces", "amount_cents": 2490,
        "reason": "damaged", "customer_id": "cus-42", "order_id": "ord-1001" }"#;
    for body in [claim_body().to_string(), reordered.to_owned()] {
        let again = app.post_raw("/claims", Some(&key), &body).await;
        assert_eq!(again.status, first.status);
        assert_eq!(again.body, first.body, "replayed body differs");
        assert!(again.replayed(), "no Idempotent-Replayed header");
        assert_eq!(again.header("location"), first.header("location"));
    }
    assert_eq!(app.rows("claims", &key).await.len(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn same_key_with_a_different_body_is_422_and_changes_nothing() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let key = new_key();
    assert_eq!(
        app.post_claim(&key, &claim_body()).await.status,
        StatusCode::CREATED
    );
    let before = app.rows("claims", &key).await;

    let mut other = claim_body();
    other["amount_cents"] = json!(99_999);
    let reply = app.post_claim(&key, &other).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert!(!reply.replayed());
    let problem = reply.json();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/idempotency-key-reused"),
        "{problem}"
    );
    assert_eq!(problem["status"], 422);
    assert_eq!(problem["idempotency_key"], key.as_str());

    let after = app.rows("claims", &key).await;
    assert_eq!(after, before, "the stored claim changed");
    assert_eq!(after[0]["amount_cents"], 2490);
    app.cleanup().await;
}

#[tokio::test]
async fn missing_or_malformed_key_is_a_400_problem() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let body = claim_body().to_string();
    let missing = app.post_raw("/claims", None, &body).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    let problem = missing.json();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{problem}"
    );
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/idempotency-key-missing")
    );

    let long = "k".repeat(256);
    for bad in ["", "has space", "a/b", long.as_str()] {
        let reply = app.post_raw("/claims", Some(bad), &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad:?}");
        let problem = reply.json();
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("/idempotency-key-malformed"),
            "{bad:?}: {problem}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM claims")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn invalid_fields_are_a_422_problem_listing_each() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let body = json!({"order_id": "", "customer_id": "c", "reason": "lost", "amount_cents": -1});
    let reply = app.post_claim(&new_key(), &body).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    let problem = reply.json();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/invalid-claim")
    );
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["amount_cents", "order_id", "reason"]);

    let not_json = app.post_raw("/claims", Some(&new_key()), "{not json").await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        not_json.header("content-type"),
        Some("application/problem+json")
    );
    app.cleanup().await;
}

#[tokio::test]
async fn fifty_concurrent_identical_posts_create_exactly_one_claim() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let app = Arc::new(app);
    let key = new_key();
    let n = 50;
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (app, barrier, key) = (app.clone(), barrier.clone(), key.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            app.post_claim(&key, &claim_body()).await
        });
    }
    let replies = tasks.join_all().await;
    let created: Vec<&Reply> = replies.iter().filter(|r| !r.replayed()).collect();
    let replayed = replies.iter().filter(|r| r.replayed()).count();
    assert_eq!(
        created.len(),
        1,
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(replayed, n - 1);
    assert!(replies.iter().all(|r| r.status == StatusCode::CREATED));
    assert!(
        replies.iter().all(|r| r.body == created[0].body),
        "bodies differ"
    );
    assert_eq!(app.rows("claims", &key).await.len(), 1);
    Arc::into_inner(app).unwrap().cleanup().await;
}

#[tokio::test]
async fn get_returns_the_claim_as_created_and_404_or_400_otherwise() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let created = app.post_claim(&new_key(), &claim_body()).await;
    let location = created.header("location").unwrap().to_owned();
    let fetched = app.get(&location).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.json(), created.json());
    assert_eq!(
        fetched.body, created.body,
        "GET renders the claim differently"
    );

    let missing = app.get(&format!("/claims/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(missing.json()["status"], 404);

    let malformed = app.get("/claims/not-a-uuid").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.header("content-type"),
        Some("application/problem+json")
    );
    app.cleanup().await;
}

#[tokio::test]
async fn retention_deletes_expired_claims_and_frees_their_keys() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let fresh_key = new_key();
    assert_eq!(
        app.post_claim(&fresh_key, &claim_body()).await.status,
        StatusCode::CREATED
    );
    let old_key = new_key();
    sqlx::query(
        "INSERT INTO claims (claim_id, idempotency_key, request_hash, response_status, response_body, \
                             order_id, customer_id, reason, amount_cents, note, created_at) \
         VALUES ($1, $2, 'h', 201, '{}', 'o', 'c', 'other', 0, NULL, now() - interval '2 days')",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(&old_key)
    .execute(&app.db)
    .await
    .unwrap();

    let deleted = retention::run_once(&app.db, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(
        app.rows("claims", &old_key).await.is_empty(),
        "old claim survived"
    );
    assert_eq!(
        app.rows("claims", &fresh_key).await.len(),
        1,
        "fresh claim deleted"
    );

    // The expired key is usable again, for any body.
    let reused = app.post_claim(&old_key, &claim_body()).await;
    assert_eq!(reused.status, StatusCode::CREATED);
    assert!(!reused.replayed());
    app.cleanup().await;
}

#[tokio::test]
async fn lab_route_is_404_when_lab_endpoints_are_off() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app
        .post_raw(
            "/lab/claims/check-then-insert",
            Some(&new_key()),
            &claim_body().to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
}

#[tokio::test]
async fn lab_check_then_insert_replays_when_requests_are_sequential() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let key = new_key();
    let path = "/lab/claims/check-then-insert";
    let body = claim_body().to_string();
    let first = app.post_lab(path, Some(&key), &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app.post_lab(path, Some(&key), &body).await;
    assert!(again.replayed());
    assert_eq!(again.body, first.body);
    assert_eq!(app.rows("lab_claims", &key).await.len(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn lab_check_then_insert_duplicates_under_concurrency() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let app = Arc::new(app);
    let (rounds, n) = (10, 20);
    let mut observed = Vec::new();
    for round in 0..rounds {
        let key = format!("lab-{round}-{}", uuid::Uuid::new_v4());
        let barrier = Arc::new(Barrier::new(n));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (app, barrier, key) = (app.clone(), barrier.clone(), key.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let body = claim_body().to_string();
                app.post_lab("/lab/claims/check-then-insert", Some(&key), &body)
                    .await
                    .status
            });
        }
        let statuses = tasks.join_all().await;
        let errors = statuses.iter().filter(|s| s.is_server_error()).count();
        let rows = app.rows("lab_claims", &key).await.len();
        observed.push((rows, errors));
        if rows > 1 || errors > 0 {
            break;
        }
    }
    eprintln!("check-then-insert (rows, 5xx) per round: {observed:?}");
    assert!(
        observed
            .iter()
            .any(|&(rows, errors)| rows > 1 || errors > 0),
        "check-then-insert never misbehaved in {rounds} rounds of {n}: (rows, 5xx) per round {observed:?}"
    );
    Arc::into_inner(app).unwrap().cleanup().await;
}

#[tokio::test]
async fn a_nul_in_order_id_or_note_is_a_400_problem_and_writes_no_row() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    for field in ["order_id", "note"] {
        let key = new_key();
        let mut body = claim_body();
        body[field] = json!("ord\u{0}1001");
        let reply = app.post_claim(&key, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{field}: {}",
            reply.json()
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(reply.json()["type"], "/problems/nul-byte");
        assert!(app.rows("claims", &key).await.is_empty(), "{field}");
    }
    // An escaped backslash followed by u0000 is six ordinary characters.
    let key = new_key();
    let mut body = claim_body();
    body["note"] = json!("\\u0000 is text");
    let reply = app.post_claim(&key, &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json());
    assert_eq!(reply.json()["note"], "\\u0000 is text");
    app.cleanup().await;
}

#[tokio::test]
async fn the_lab_route_needs_the_lab_admin_token() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let key = new_key();
    let path = "/lab/claims/check-then-insert";
    let body = claim_body().to_string();
    let anonymous = app.post_raw(path, Some(&key), &body).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.header("content-type"),
        Some("application/problem+json")
    );
    assert!(app.rows("lab_claims", &key).await.is_empty());
    let allowed = app.post_lab(path, Some(&key), &body).await;
    assert_eq!(allowed.status, StatusCode::CREATED);
    assert_eq!(app.rows("lab_claims", &key).await.len(), 1);
    app.cleanup().await;
}

// Whose claim (issue 11): through the BFF, `X-User-Id` is the verified
// customer.

impl TestApp {
    /// `POST /claims` as `user` (its `X-User-Id`).
    async fn post_as(&self, user: &str, key: &str, body: &Value) -> Reply {
        self.send(
            self.http
                .post(format!("{}/claims", self.base))
                .header("idempotency-key", key)
                .header("x-user-id", user)
                .json(body),
        )
        .await
    }

    /// `GET path` as `user`.
    async fn get_as(&self, user: &str, path: &str) -> Reply {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .header("x-user-id", user),
        )
        .await
    }

    async fn count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM claims")
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

fn body_without_customer() -> Value {
    let mut body = claim_body();
    body.as_object_mut().unwrap().remove("customer_id");
    body
}

#[tokio::test]
async fn a_customers_claim_is_theirs_and_another_customer_gets_404() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let (alice, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let created = app
        .post_as(&alice.to_string(), &new_key(), &body_without_customer())
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json()["customer_id"], alice.to_string());
    let location = created.header("location").unwrap().to_owned();

    assert_eq!(
        app.get_as(&alice.to_string(), &location).await.body,
        created.body
    );
    let theirs = app.get_as(&bob.to_string(), &location).await;
    let missing = app
        .get_as(
            &bob.to_string(),
            &format!("/claims/{}", uuid::Uuid::new_v4()),
        )
        .await;
    assert_eq!(
        (theirs.status, missing.status),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(theirs.json()["type"], missing.json()["type"]);
    assert!(!String::from_utf8_lossy(&theirs.body).contains(&alice.to_string()));
    // The lab (direct, no X-User-Id) still reads every claim.
    assert_eq!(app.get(&location).await.status, StatusCode::OK);
    let owner: Option<uuid::Uuid> = sqlx::query_scalar("SELECT owner_id FROM claims")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(owner, Some(alice));
    app.cleanup().await;
}

#[tokio::test]
async fn a_body_customer_id_naming_someone_else_is_403_and_writes_no_row() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let alice = uuid::Uuid::new_v4();
    for other in [json!("cus-42"), json!(uuid::Uuid::new_v4().to_string())] {
        let mut body = claim_body();
        body["customer_id"] = other.clone();
        let refused = app.post_as(&alice.to_string(), &new_key(), &body).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{other}");
        assert_eq!(
            refused.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(refused.json()["type"], "/problems/foreign-customer");
    }
    assert_eq!(app.count().await, 0);
    // Naming yourself is fine (any UUID spelling), and stored canonically.
    let mut body = claim_body();
    body["customer_id"] = json!(alice.to_string().to_uppercase());
    let own = app.post_as(&alice.to_string(), &new_key(), &body).await;
    assert_eq!(own.status, StatusCode::CREATED);
    assert_eq!(own.json()["customer_id"], alice.to_string());
    app.cleanup().await;
}

#[tokio::test]
async fn another_customer_replaying_a_key_gets_a_claim_of_their_own() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let (alice, bob) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let key = new_key();
    let body = body_without_customer();
    let first = app.post_as(&alice, &key, &body).await;
    let again = app.post_as(&alice, &key, &body).await;
    assert_eq!(
        (first.status, again.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(again.replayed(), "the owner's retry is a replay");
    assert_eq!(first.body, again.body);

    let theirs = app.post_as(&bob, &key, &body).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert!(!theirs.replayed());
    assert_ne!(theirs.json()["claim_id"], first.json()["claim_id"]);
    assert_eq!(theirs.json()["customer_id"], bob.as_str());
    let mut different = body.clone();
    different["amount_cents"] = json!(1);
    let reused = app.post_as(&bob, &key, &different).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        !String::from_utf8_lossy(&reused.body).contains(first.json()["claim_id"].as_str().unwrap())
    );
    // The lab's key space is a third one.
    let lab = app.post_claim(&key, &claim_body()).await;
    assert_eq!(lab.status, StatusCode::CREATED);
    assert!(!lab.replayed());
    assert_eq!(app.count().await, 3);
    app.cleanup().await;
}

#[tokio::test]
async fn a_malformed_x_user_id_is_a_400_problem_and_writes_no_row() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    for bad in ["alice", "", "42", "00000000-0000-0000-0000-00000000000z"] {
        let refused = app.post_as(bad, &new_key(), &claim_body()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(refused.json()["type"], "/problems/user-id-malformed");
        let read = app
            .get_as(bad, &format!("/claims/{}", uuid::Uuid::new_v4()))
            .await;
        assert_eq!(read.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(app.count().await, 0);
    app.cleanup().await;
}
