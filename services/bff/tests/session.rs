//! Cookie sessions on a real BFF with its sessions in real Redis, in front
//! of a fake identity that rotates refresh tokens and detects their reuse as
//! the real one does: sign-in, who am I, sign-out; the session acting as its
//! user upstream; refresh before expiry exactly once under concurrency; and
//! the CSRF rules.

mod common;

use std::collections::HashSet;

use serde_json::Value;
use storefront_bff::session::{Session, id_hash};

use common::identity::{FakeIdentity, REFRESH_TTL, USERS};
use common::{Fake, TestBff, spawn_bff};

/// The session key prefix the tests' BFFs use (one per test).
fn prefix() -> String {
    format!("test-session:{}", uuid::Uuid::new_v4().simple())
}

struct Env {
    bff: TestBff,
    identity: FakeIdentity,
    catalog: Fake,
    prefix: String,
}

async fn env(extra: &[(&str, &str)]) -> Option<Env> {
    let catalog = Fake::start("catalog-1").await;
    let identity = FakeIdentity::start().await;
    let prefix = prefix();
    let mut vars = vec![
        ("IDENTITY_URLS", identity.base.as_str()),
        ("SESSION_KEY_PREFIX", prefix.as_str()),
    ];
    vars.extend_from_slice(extra);
    let bff = spawn_bff(&[&catalog], &vars).await?;
    Some(Env {
        bff,
        identity,
        catalog,
        prefix,
    })
}

/// A signed-in browser: its cookie value and CSRF token.
struct Browser {
    id: String,
    csrf: String,
}

impl Browser {
    fn cookie(&self) -> String {
        format!("theme=dark; sf_session={}", self.id)
    }
}

async fn sign_in(env: &Env, name: &str) -> Browser {
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .json(&serde_json::json!({"username": name, "password": format!("{name}-password")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let id = set
        .strip_prefix("sf_session=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    Browser { id, csrf }
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(common::redis_url().unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn stored(env: &Env, b: &Browser) -> Option<Session> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("{}:{}", env.prefix, id_hash(&b.id)))
        .query_async(&mut redis().await)
        .await
        .unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}

#[tokio::test]
async fn signing_in_sets_an_http_only_strict_cookie_and_keeps_the_tokens_server_side() {
    let Some(env) = env(&[]).await else { return };
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .json(&serde_json::json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("sf_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "not asked for: {cookie}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"], USERS[0].0);
    assert_eq!(body["roles"], serde_json::json!(["customer"]));
    assert_eq!(body["csrf_token"].as_str().unwrap().len(), 64);
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());

    let id = cookie["sf_session=".len()..].split(';').next().unwrap();
    let b = Browser {
        id: id.to_owned(),
        csrf: String::new(),
    };
    let s = stored(&env, &b).await.expect("stored under the id's hash");
    assert_eq!(s.name, "alice");
    let mut conn = redis().await;
    let raw_key: bool = redis::cmd("EXISTS")
        .arg(format!("{}:{id}", env.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!raw_key, "the raw id is never a key");
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}:{}", env.prefix, id_hash(id)))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= REFRESH_TTL as i64, "ttl {ttl}");

    let who = env
        .bff
        .http
        .get(env.bff.url("/api/session"))
        .header("cookie", b.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(who.status(), 200);
    let who: Value = who.json().await.unwrap();
    assert_eq!(who["name"], "alice");

    let anonymous = env
        .bff
        .http
        .get(env.bff.url("/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn secure_is_added_to_the_cookie_when_configured() {
    let Some(env) = env(&[("COOKIE_SECURE", "true")]).await else {
        return;
    };
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .json(&serde_json::json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
}

#[tokio::test]
async fn a_request_with_the_cookie_reaches_the_upstream_as_the_sessions_user() {
    let Some(env) = env(&[]).await else { return };
    let b = sign_in(&env, "alice").await;
    let s = stored(&env, &b).await.unwrap();
    let r = env
        .bff
        .http
        .get(env.bff.url("/api/catalog/products/1"))
        .header("cookie", b.cookie())
        .header("x-user-roles", "staff")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    let h = &echoed["headers"];
    assert_eq!(h["x-user-id"], USERS[0].0);
    assert_eq!(
        h["x-user-roles"], "customer",
        "the client's claim is dropped"
    );
    assert_eq!(h["authorization"], format!("Bearer {}", s.access_token));
    assert!(h.get("cookie").is_none(), "the cookie stays at the edge");
}

#[tokio::test]
async fn a_wrong_password_is_401_and_identitys_throttle_is_passed_on_with_retry_after() {
    let Some(env) = env(&[]).await else { return };
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .json(&serde_json::json!({"username": "alice", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .json(&serde_json::json!({"username": "throttled", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "42");
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .header("content-type", "application/json")
        .body("{\"username\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16() / 100, 4, "a malformed body is a 4xx");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
}

#[tokio::test]
async fn signing_out_revokes_both_tokens_deletes_the_entry_and_clears_the_cookie() {
    let Some(env) = env(&[]).await else { return };
    let b = sign_in(&env, "alice").await;
    let s = stored(&env, &b).await.unwrap();
    let r = env
        .bff
        .http
        .delete(env.bff.url("/api/session"))
        .header("cookie", b.cookie())
        .header("x-csrf-token", &b.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(
        env.identity.family_revoked(&s.refresh_token),
        "refresh family revoked"
    );
    assert_eq!(env.identity.revoked_access(), vec![s.access_token.clone()]);
    assert!(stored(&env, &b).await.is_none(), "entry deleted");

    let r = env
        .bff
        .http
        .get(env.bff.url("/api/session"))
        .header("cookie", b.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the old cookie is nobody");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test]
async fn twenty_concurrent_requests_on_an_expiring_session_refresh_exactly_once() {
    let Some(env) = env(&[]).await else { return };
    // Signed in with 30 s left: inside the 60 s margin, so due at once.
    env.identity
        .inner
        .password_access_ttl
        .store(30, std::sync::atomic::Ordering::SeqCst);
    env.identity
        .inner
        .refresh_delay_ms
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let b = sign_in(&env, "alice").await;
    let before = stored(&env, &b).await.unwrap();
    let hits = env.catalog.hits();

    let requests = (0..20).map(|_| {
        let http = env.bff.http.clone();
        let url = env.bff.url("/api/catalog/products/1");
        let cookie = b.cookie();
        tokio::spawn(async move {
            let r = http.get(url).header("cookie", cookie).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or_default();
            (
                status,
                body["headers"]["authorization"].as_str().map(str::to_owned),
            )
        })
    });
    let results = futures::future::join_all(requests).await;
    let mut tokens = HashSet::new();
    for r in results {
        let (status, auth) = r.unwrap();
        assert_eq!(status, 200);
        tokens.insert(auth.unwrap());
    }
    let after = stored(&env, &b).await.unwrap();
    assert_eq!(
        env.identity.refresh_grants(),
        1,
        "exactly one refresh grant"
    );
    assert_eq!(env.identity.reuse_detected(), 0, "no reuse detected");
    assert_ne!(after.access_token, before.access_token);
    assert_ne!(after.refresh_token, before.refresh_token);
    assert_eq!(
        after.csrf_token, before.csrf_token,
        "the CSRF token survives"
    );
    assert_eq!(
        tokens,
        HashSet::from([format!("Bearer {}", after.access_token)]),
        "every request went up with the new token"
    );
    assert_eq!(env.catalog.hits(), hits + 20);

    // Fresh now: the next request refreshes nothing.
    let r = env
        .bff
        .http
        .get(env.bff.url("/api/catalog/products/1"))
        .header("cookie", b.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.identity.refresh_grants(), 1);
}

#[tokio::test]
async fn a_session_whose_refresh_identity_refuses_ends_with_401_and_a_cleared_cookie() {
    let Some(env) = env(&[]).await else { return };
    env.identity
        .inner
        .password_access_ttl
        .store(30, std::sync::atomic::Ordering::SeqCst);
    let b = sign_in(&env, "alice").await;
    env.identity.revoke_everything();
    let hits = env.catalog.hits();
    let r = env
        .bff
        .http
        .get(env.bff.url("/api/catalog/products/1"))
        .header("cookie", b.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(
        stored(&env, &b).await.is_none(),
        "the dead session is deleted"
    );
    assert_eq!(env.catalog.hits(), hits, "nothing reached the upstream");
}

#[tokio::test]
async fn unsafe_methods_on_a_cookie_session_need_the_csrf_token() {
    let Some(env) = env(&[]).await else { return };
    // dave is staff: a catalog write is his to make once CSRF passes.
    let b = sign_in(&env, "dave").await;
    let hits = env.catalog.hits();
    let patch = |token: Option<&str>| {
        let mut r = env
            .bff
            .http
            .patch(env.bff.url("/api/catalog/products/1"))
            .header("cookie", b.cookie())
            .json(&serde_json::json!({"price_cents": 1}));
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r.send()
    };
    let r = patch(None).await.unwrap();
    assert_eq!(r.status(), 403, "no token");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let mut wrong = b.csrf.clone();
    wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
    assert_eq!(
        patch(Some(&wrong)).await.unwrap().status(),
        403,
        "wrong token"
    );
    assert_eq!(
        patch(Some("short")).await.unwrap().status(),
        403,
        "short token"
    );
    let r = env
        .bff
        .http
        .delete(env.bff.url("/api/session"))
        .header("cookie", b.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "signing out needs it too");
    assert_eq!(
        env.catalog.hits(),
        hits,
        "nothing refused reached the upstream"
    );
    assert_eq!(
        patch(Some(&b.csrf)).await.unwrap().status(),
        200,
        "the right token"
    );
    assert_eq!(env.catalog.hits(), hits + 1);
}

#[tokio::test]
async fn a_cross_site_request_with_the_cookie_is_refused_even_a_read() {
    let Some(env) = env(&[]).await else { return };
    let b = sign_in(&env, "alice").await;
    let hits = env.catalog.hits();
    for (name, value) in [
        ("origin", "https://evil.test"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = env
            .bff
            .http
            .get(env.bff.url("/api/catalog/products/1"))
            .header("cookie", b.cookie())
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
    }
    // A cross-site sign-in (login CSRF) too.
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .header("origin", "https://evil.test")
        .json(&serde_json::json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(env.catalog.hits(), hits);
    // Same origin: fine.
    let r = env
        .bff
        .http
        .get(env.bff.url("/api/catalog/products/1"))
        .header("cookie", b.cookie())
        .header("origin", env.bff.base.clone())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_bearer_request_needs_no_csrf_token() {
    let Some(env) = env(&[]).await else { return };
    let b = sign_in(&env, "dave").await;
    let s = stored(&env, &b).await.unwrap();
    let r = env
        .bff
        .http
        .patch(env.bff.url("/api/catalog/products/1"))
        .bearer_auth(&s.access_token)
        .json(&serde_json::json!({"price_cents": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_stale_cookie_is_anonymous_and_cleared() {
    let Some(env) = env(&[]).await else { return };
    let r = env
        .bff
        .http
        .get(env.bff.url("/api/catalog/products/1"))
        .header("cookie", format!("sf_session={}", "ab".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let echoed: Value = r.json().await.unwrap();
    assert!(echoed["headers"].get("x-user-id").is_none());
}
