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

/// `None` (and a note on stderr) when the test servers aren't configured.
async fn spawn_app(lab_endpoints: bool) -> Option<TestApp> {
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
    let vars = Vars::from_pairs([
        ("SERVICE_NAME", "identity-test"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", app_db_url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        (
            "LAB_ENDPOINTS",
            if lab_endpoints { "true" } else { "false" },
        ),
        ("SHUTDOWN_GRACE_SECS", "2"),
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
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "alice", "password": "alice-password", "access_ttl_secs": 1}),
        )
        .await;
    assert_eq!(login.body["expires_in"], 1);
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
    let lease = app.get("/lab/lease").await;
    assert_eq!(lease.body["generation"], 1);
    assert!(lease.body["lease_id"].is_null());
    let rotate = app.post("/lab/rotate", &json!({})).await;
    assert_eq!(rotate.status, StatusCode::CONFLICT);
    app.cleanup().await;
}
