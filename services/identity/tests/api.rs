//! The identity service over real HTTP against a real Postgres and Redis,
//! with a static login (the Vault rotation is exercised by the CLI's
//! `tests/identity.rs` on a whole fleet).
//!
//! Each test gets its own schema with the migrations (and seeded users)
//! applied. They need `TEST_DATABASE_URL` and `TEST_REDIS_URL`; without
//! them each test prints why and passes — except in CI (`CI` set), where a
//! missing URL is a failure.

use std::str::FromStr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use storefront_identity::config::Config;
use storefront_identity::startup::{AppError, Application};
use storefront_kit::Vars;
use tokio::task::JoinHandle;

/// A running identity service on a fresh schema.
struct TestApp {
    base: String,
    admin: PgPool,
    schema: String,
    redis_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), AppError>>>,
    http: reqwest::Client,
}

/// Status and JSON body of a response.
struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl TestApp {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.json().await.unwrap_or(Value::Null),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn login(&self, user: &str) -> Reply {
        self.post(
            "/token",
            &json!({"grant_type": "password", "username": user, "password": format!("{user}-password")}),
        )
        .await
    }

    async fn refresh(&self, token: &str) -> Reply {
        self.post(
            "/token",
            &json!({"grant_type": "refresh_token", "refresh_token": token}),
        )
        .await
    }

    async fn userinfo(&self, access: &str) -> Reply {
        self.send(
            self.http
                .get(format!("{}/userinfo", self.base))
                .bearer_auth(access),
        )
        .await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn cleanup(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server did not stop within 10 s")
                .unwrap()
                .unwrap();
        }
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

/// The lab admin token every test instance is given.
const LAB_TOKEN: &str = "test-lab-admin-token";

/// `None` (and a note on stderr) when the test servers aren't configured.
async fn spawn_app(lab_endpoints: bool) -> Option<TestApp> {
    spawn_app_with(lab_endpoints, &[]).await
}

/// [`spawn_app`] with extra (or overriding) environment variables.
async fn spawn_app_with(lab_endpoints: bool, extra: &[(&str, &str)]) -> Option<TestApp> {
    let (Ok(db_url), Ok(redis_url)) = (
        std::env::var("TEST_DATABASE_URL"),
        std::env::var("TEST_REDIS_URL"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST_DATABASE_URL and TEST_REDIS_URL must be set: run the tests through scripts/test.sh"
        );
        eprintln!("skipped: set TEST_DATABASE_URL and TEST_REDIS_URL (scripts/test.sh does)");
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
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate!("../../migrations/identity")
        .run(&db)
        .await
        .unwrap();
    db.close().await;

    let separator = if db_url.contains('?') { '&' } else { '?' };
    let app_db_url = format!("{db_url}{separator}options=-c%20search_path%3D{schema}");
    // Each instance counts login attempts under its own keys, so tests
    // (and runs) never share a throttle window.
    let throttle_prefix = format!("identity:test:{schema}:");
    let mut vars = vec![
        ("SERVICE_NAME", "identity-test"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", app_db_url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        (
            "LAB_ENDPOINTS",
            if lab_endpoints { "true" } else { "false" },
        ),
        ("LAB_ADMIN_TOKEN", LAB_TOKEN),
        ("LOGIN_THROTTLE_KEY_PREFIX", throttle_prefix.as_str()),
        ("LOGIN_FAILURE_WINDOW_SECS", "60"),
        ("SHUTDOWN_GRACE_SECS", "2"),
    ];
    vars.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
    vars.extend_from_slice(extra);
    let vars = Vars::from_pairs(vars);
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
        schema,
        redis_url,
        stop: Some(stop),
        server: Some(server),
        http: reqwest::Client::new(),
    })
}

/// The JWT's payload, unverified (the tests verify separately).
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[tokio::test]
async fn ready_reports_postgres_and_redis_ok() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app.get("/ready").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["checks"]["postgres"]["status"], "ok");
    assert_eq!(reply.body["checks"]["redis"]["status"], "ok");
    app.cleanup().await;
}

#[tokio::test]
async fn password_grant_issues_a_short_lived_jwt_and_a_refresh_token() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app.login("alice").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 300);
    let claims = payload(str_of(&reply.body, "access_token"));
    assert_eq!(claims["sub"], "00000000-0000-4000-8000-00000000a11c");
    assert_eq!(claims["name"], "alice");
    assert_eq!(claims["iss"], "storefront-identity");
    assert_eq!(claims["aud"], "storefront");
    assert_eq!(claims["jti"], reply.body["jti"]);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert_eq!(str_of(&reply.body, "refresh_token").len(), 43);
    app.cleanup().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_invalid_grant() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let wrong = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "alice", "password": "bob-password"}),
        )
        .await;
    let unknown = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "mallory", "password": "x"}),
        )
        .await;
    for reply in [&wrong, &unknown] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["error"], "invalid_grant");
        assert_eq!(reply.body["reason"], "bad_credentials");
    }
    assert_eq!(wrong.body, unknown.body, "no user enumeration");
    app.cleanup().await;
}

#[tokio::test]
async fn malformed_token_requests_are_400_and_say_why() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app.post("/token", &json!({"grant_type": "magic"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"], "unsupported_grant_type");
    let reply = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "alice"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(str_of(&reply.body, "detail").contains("password is required"));
    let reply = app.post("/token", &json!({})).await;
    assert_eq!(reply.body["error"], "invalid_request");
    let reply = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "alice", "password": "alice-password", "access_ttl_secs": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "lab-only parameter");
    assert!(str_of(&reply.body, "detail").contains("lab-only"));
    app.cleanup().await;
}

#[tokio::test]
async fn jwks_publishes_the_key_that_verifies_issued_tokens() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.headers["cache-control"], "public, max-age=300");
    let key = &jwks.body["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let token = app.login("bob").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // What the BFF does: pick the key by `kid`, verify locally.
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let decoding = jsonwebtoken::DecodingKey::from_ed_components(str_of(key, "x")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["storefront"]);
    validation.set_issuer(&["storefront-identity"]);
    let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap();
    assert_eq!(data.claims["name"], "bob");
    app.cleanup().await;
}

#[tokio::test]
async fn userinfo_answers_the_bearer_and_401s_without_a_usable_token() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let token = app.login("carol").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = app.userinfo(&token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "carol");
    assert_eq!(me.body["display_name"], "Carol Example");
    let missing = app.get("/userinfo").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers["www-authenticate"],
        r#"Bearer realm="storefront""#
    );
    assert_eq!(missing.body["reason"], "missing");
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let invalid = app.userinfo(&tampered).await;
    assert_eq!(invalid.status, StatusCode::UNAUTHORIZED);
    assert_eq!(invalid.body["reason"], "invalid");
    assert!(
        invalid.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
    app.cleanup().await;
}

#[tokio::test]
async fn refresh_rotates_and_reusing_an_old_token_revokes_the_family() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let first = app.login("dave").await;
    let r1 = str_of(&first.body, "refresh_token").to_owned();
    let second = app.refresh(&r1).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let r2 = str_of(&second.body, "refresh_token").to_owned();
    assert_ne!(r1, r2);
    let sid = payload(str_of(&first.body, "access_token"))["sid"].clone();
    assert_eq!(payload(str_of(&second.body, "access_token"))["sid"], sid);

    let reused = app.refresh(&r1).await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST);
    assert_eq!(reused.body["reason"], "reuse_detected");
    let successor = app.refresh(&r2).await;
    assert_eq!(successor.status, StatusCode::BAD_REQUEST);
    assert_eq!(successor.body["reason"], "family_revoked");
    let reason: String = sqlx::query_scalar(&format!(
        "SELECT revoked_reason FROM \"{}\".refresh_families WHERE id = $1::uuid",
        app.schema
    ))
    .bind(sid.as_str().unwrap())
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(reason, "reuse_detected");
    let unknown = app.refresh("not-a-token-we-issued").await;
    assert_eq!(unknown.body["reason"], "unknown_token");
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_win() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let r1 = str_of(&app.login("alice").await.body, "refresh_token").to_owned();
    let (a, b) = tokio::join!(app.refresh(&r1), app.refresh(&r1));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{} / {}", a.body, b.body);
    let winner = if a.status == StatusCode::OK { &a } else { &b };
    let after = app.refresh(str_of(&winner.body, "refresh_token")).await;
    assert_eq!(
        after.body["reason"], "family_revoked",
        "the race burned the family"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_revoked_access_token_is_denylisted_until_it_expires() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let login = app.login("bob").await;
    let token = str_of(&login.body, "access_token").to_owned();
    let jti = str_of(&login.body, "jti").to_owned();
    assert_eq!(app.userinfo(&token).await.status, StatusCode::OK);
    let revoked = app.post("/revoke", &json!({ "token": token })).await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(revoked.body["revoked"], true);
    assert_eq!(
        revoked.body["denylist_key"],
        format!("identity:revoked:{jti}")
    );
    let after = app.userinfo(&token).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.body["reason"], "revoked");

    let client = redis::Client::open(app.redis_url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("identity:revoked:{jti}"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        (290..=300).contains(&ttl),
        "TTL {ttl}: until the token's exp"
    );
    let recorded: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".revoked_access_tokens WHERE jti = $1::uuid",
        app.schema
    ))
    .bind(&jti)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(recorded, 1);
    let again = app.post("/revoke", &json!({ "token": "not.a.jwt" })).await;
    assert_eq!(
        (again.status, again.body["revoked"].clone()),
        (StatusCode::OK, json!(false))
    );
    app.cleanup().await;
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_family() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let refresh = str_of(&app.login("carol").await.body, "refresh_token").to_owned();
    let revoked = app.post("/revoke", &json!({ "token": refresh })).await;
    assert_eq!(revoked.body["revoked"], true);
    assert_eq!(app.refresh(&refresh).await.body["reason"], "family_revoked");
    app.cleanup().await;
}

#[tokio::test]
async fn an_expired_access_token_is_rejected_as_expired() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let login = app
        .send(
            app.http
                .post(format!("{}/token", app.base))
                .bearer_auth(LAB_TOKEN)
                .json(&json!({"grant_type": "password", "username": "alice", "password": "alice-password", "access_ttl_secs": 1})),
        )
        .await;
    assert_eq!(login.body["expires_in"], 1, "{}", login.body);
    let token = str_of(&login.body, "access_token").to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    let reply = loop {
        let reply = app.userinfo(&token).await;
        if reply.status != StatusCode::OK || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["reason"], "expired");
    app.cleanup().await;
}

#[tokio::test]
async fn lab_routes_exist_only_with_lab_endpoints_and_static_logins_do_not_rotate() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    assert_eq!(app.get("/lab/lease").await.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let lease = app
        .send(
            app.http
                .get(format!("{}/lab/lease", app.base))
                .bearer_auth(LAB_TOKEN),
        )
        .await;
    assert_eq!(lease.body["generation"], 1);
    assert!(lease.body["lease_id"].is_null());
    let rotate = app
        .send(
            app.http
                .post(format!("{}/lab/rotate", app.base))
                .bearer_auth(LAB_TOKEN),
        )
        .await;
    assert_eq!(rotate.status, StatusCode::CONFLICT);
    app.cleanup().await;
}

// ---------------------------------------------------------------------------
// Guessing, hashing bounds, lab token, NUL, roles (issue 11).

fn guess(user: &str) -> Value {
    json!({"grant_type": "password", "username": user, "password": "not-the-password"})
}

fn is_problem(reply: &Reply) -> bool {
    reply.headers[reqwest::header::CONTENT_TYPE] == "application/problem+json"
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers[reqwest::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

impl TestApp {
    /// A wrong-password login, optionally claiming an `X-Forwarded-For`.
    async fn guess(&self, user: &str, forwarded_for: Option<&str>) -> Reply {
        let mut request = self
            .http
            .post(format!("{}/token", self.base))
            .json(&guess(user));
        if let Some(xff) = forwarded_for {
            request = request.header("x-forwarded-for", xff);
        }
        self.send(request).await
    }
}

#[tokio::test]
async fn guesses_past_the_account_limit_get_429_with_retry_after_even_with_the_right_password() {
    let Some(app) = spawn_app_with(false, &[("LOGIN_FAILURES_PER_ACCOUNT", "3")]).await else {
        return;
    };
    for _ in 0..3 {
        let reply = app.guess("alice", None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    }
    let refused = app.guess("alice", None).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert!(is_problem(&refused));
    assert_eq!(refused.body["scope"], "account");
    let after = retry_after(&refused);
    assert!(
        (1..=60).contains(&after),
        "Retry-After {after}: within the 60 s window"
    );
    let right = app.login("alice").await;
    assert_eq!(
        right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "locked for the window"
    );
    assert_eq!(
        app.login("bob").await.status,
        StatusCode::OK,
        "other accounts unaffected"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn successful_logins_use_up_no_attempts() {
    let Some(app) = spawn_app_with(false, &[("LOGIN_FAILURES_PER_ACCOUNT", "2")]).await else {
        return;
    };
    assert_eq!(
        app.guess("carol", None).await.status,
        StatusCode::BAD_REQUEST
    );
    for _ in 0..5 {
        let reply = app.login("carol").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(
        app.guess("carol", None).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.guess("carol", None).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the third failure is over the limit of 2; the five successes cost nothing"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_concurrent_burst_at_one_account_gets_past_the_limit_by_at_most_the_other_permits() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("LOGIN_FAILURES_PER_ACCOUNT", "5"),
            ("PASSWORD_HASH_PERMITS", "2"),
            ("PASSWORD_QUEUE_DEADLINE_MS", "60000"),
        ],
    )
    .await
    else {
        return;
    };
    let replies = futures::future::join_all((0..40).map(|_| app.guess("dave", None))).await;
    let count = |s: StatusCode| replies.iter().filter(|r| r.status == s).count();
    let (ran, refused) = (
        count(StatusCode::BAD_REQUEST),
        count(StatusCode::TOO_MANY_REQUESTS),
    );
    assert_eq!(ran + refused, 40, "only 400s and 429s");
    assert!(
        (5..=6).contains(&ran),
        "limit 5, 2 permits: 5 or 6 guesses may reach the hasher, {ran} did"
    );
    assert_eq!(
        app.guess("dave", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_successful_logins_of_one_account_are_never_throttled() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("LOGIN_FAILURES_PER_ACCOUNT", "2"),
            ("LOGIN_FAILURES_PER_ADDRESS", "2"),
            ("PASSWORD_QUEUE_DEADLINE_MS", "60000"),
        ],
    )
    .await
    else {
        return;
    };
    let replies = futures::future::join_all((0..20).map(|_| app.login("alice"))).await;
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn guesses_spread_over_accounts_are_limited_per_address() {
    let Some(app) = spawn_app_with(false, &[("LOGIN_FAILURES_PER_ADDRESS", "3")]).await else {
        return;
    };
    for user in ["u1", "u2", "u3"] {
        assert_eq!(app.guess(user, None).await.status, StatusCode::BAD_REQUEST);
    }
    let refused = app.guess("u4", None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["scope"], "address");
    let spoofed = app.guess("u5", Some("10.9.8.7")).await;
    assert_eq!(
        spoofed.status,
        StatusCode::TOO_MANY_REQUESTS,
        "X-Forwarded-For from an untrusted peer is ignored"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn refused_guesses_at_one_account_do_not_use_up_the_address_budget() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("LOGIN_FAILURES_PER_ACCOUNT", "2"),
            ("LOGIN_FAILURES_PER_ADDRESS", "4"),
        ],
    )
    .await
    else {
        return;
    };
    for _ in 0..10 {
        app.guess("alice", None).await;
    }
    assert_eq!(
        app.guess("alice", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // 2 failures counted for the address, not 11: two more guesses elsewhere run.
    assert_eq!(app.guess("bob", None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.guess("carol", None).await.status,
        StatusCode::BAD_REQUEST
    );
    let over = app.guess("dave", None).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.body["scope"], "address");
    app.cleanup().await;
}

#[tokio::test]
async fn a_trusted_proxy_s_forwarded_for_names_the_client() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("LOGIN_FAILURES_PER_ADDRESS", "2"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await
    else {
        return;
    };
    for user in ["u1", "u2"] {
        assert_eq!(
            app.guess(user, Some("10.0.0.1")).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        app.guess("u3", Some("10.0.0.1")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        app.guess("u4", Some("6.6.6.6, 10.0.0.2")).await.status,
        StatusCode::BAD_REQUEST,
        "another client behind the proxy has its own budget (right-most entry)"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn checks_beyond_the_permits_are_shed_with_503_and_retry_after_and_count_no_failure() {
    let Some(app) = spawn_app_with(
        false,
        &[
            ("PASSWORD_HASH_PERMITS", "1"),
            ("PASSWORD_QUEUE_DEADLINE_MS", "1"),
            ("LOGIN_FAILURES_PER_ACCOUNT", "1000"),
            ("LOGIN_FAILURES_PER_ADDRESS", "24"),
        ],
    )
    .await
    else {
        return;
    };
    let users: Vec<String> = (0..24).map(|i| format!("nobody-{i}")).collect();
    let replies = futures::future::join_all(users.iter().map(|u| app.guess(u, None))).await;
    let shed: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let ran = replies
        .iter()
        .filter(|r| r.status == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!(shed.len() + ran, 24, "only 400s and 503s");
    assert!(
        ran >= 1 && !shed.is_empty(),
        "ran {ran}, shed {}",
        shed.len()
    );
    for reply in &shed {
        assert!(is_problem(reply));
        assert!(retry_after(reply) >= 1);
        assert_eq!(reply.body["type"], "/problems/busy");
    }
    // Shed checks count no failure: with the address limit at 24, only the
    // checks that ran used it up, so the next guess is not refused.
    let next = app.guess("nobody-next", None).await;
    assert_ne!(next.status, StatusCode::TOO_MANY_REQUESTS, "{}", next.body);
    assert_eq!(app.login("alice").await.status, StatusCode::OK);
    app.cleanup().await;
}

#[tokio::test]
async fn a_username_with_nul_is_refused_as_a_problem_before_any_query() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "alice\u{0}", "password": "x"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(is_problem(&reply));
    let long = "a".repeat(257);
    let reply = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": long, "password": "x"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(str_of(&reply.body, "detail").contains("longer than 256"));
    app.cleanup().await;
}

#[tokio::test]
async fn lab_routes_and_the_lab_ttl_parameter_refuse_anonymous_callers_with_401() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let anonymous = app.get("/lab/lease").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(is_problem(&anonymous));
    let wrong = app
        .send(
            app.http
                .put(format!("{}/lab/rotation-mode", app.base))
                .bearer_auth("guess")
                .json(&json!({"naive": true})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let body = json!({"grant_type": "password", "username": "bob", "password": "bob-password", "access_ttl_secs": 1});
    let anonymous = app.post("/token", &body).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.body
    );
    assert!(is_problem(&anonymous));
    let wrong = app
        .send(
            app.http
                .post(format!("{}/token", app.base))
                .bearer_auth("guess")
                .json(&body),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let admin = app
        .send(
            app.http
                .post(format!("{}/token", app.base))
                .bearer_auth(LAB_TOKEN)
                .json(&body),
        )
        .await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
    assert_eq!(admin.body["expires_in"], 1);
    app.cleanup().await;
}

#[tokio::test]
async fn access_tokens_and_userinfo_carry_the_user_s_roles_through_refresh() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    for (user, roles) in [
        ("alice", json!(["customer"])),
        ("carol", json!(["customer"])),
        ("dave", json!(["staff"])),
        ("erin", json!(["customer"])),
        ("heidi", json!(["customer"])),
    ] {
        let login = app.login(user).await;
        assert_eq!(login.status, StatusCode::OK, "{user}: {}", login.body);
        let claims = payload(str_of(&login.body, "access_token"));
        assert_eq!(claims["roles"], roles, "{user}");
        assert_eq!(
            (claims["iss"].as_str(), claims["aud"].as_str()),
            (Some("storefront-identity"), Some("storefront"))
        );
        let me = app.userinfo(str_of(&login.body, "access_token")).await;
        assert_eq!(me.body["roles"], roles, "{user}");
        let refreshed = app.refresh(str_of(&login.body, "refresh_token")).await;
        assert_eq!(
            payload(str_of(&refreshed.body, "access_token"))["roles"],
            roles
        );
    }
    // A role granted shows at the next refresh.
    let login = app.login("bob").await;
    sqlx::query(&format!(
        "UPDATE \"{}\".users SET roles = ARRAY['customer','staff'] WHERE username = 'bob'",
        app.schema
    ))
    .execute(&app.admin)
    .await
    .unwrap();
    let refreshed = app.refresh(str_of(&login.body, "refresh_token")).await;
    assert_eq!(
        payload(str_of(&refreshed.body, "access_token"))["roles"],
        json!(["customer", "staff"])
    );
    let unknown_role = sqlx::query(&format!(
        "UPDATE \"{}\".users SET roles = ARRAY['root'] WHERE username = 'bob'",
        app.schema
    ))
    .execute(&app.admin)
    .await;
    assert!(unknown_role.is_err(), "the role set is closed");
    app.cleanup().await;
}

#[tokio::test]
async fn without_redis_a_password_grant_is_503_and_no_password_is_checked_uncounted() {
    let Some(app) = spawn_app_with(false, &[("REDIS_URL", "redis://127.0.0.1:1/")]).await else {
        return;
    };
    let reply = app.login("alice").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(is_problem(&reply));
    let families: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".refresh_families",
        app.schema
    ))
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(families, 0, "nothing was written");
    app.cleanup().await;
}
