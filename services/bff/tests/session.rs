//! Cookie sessions on a real BFF with its sessions in real Redis, in front
//! of a fake identity that rotates refresh tokens and detects their reuse as
//! the real one does: sign-in, who am I, sign-out, and the session acting
//! as its user upstream (the harness is `common/session.rs`).

mod common;

use serde_json::Value;
use storefront_bff::session::id_hash;

use common::identity::{REFRESH_TTL, USERS};
use common::session::{Browser, env, redis, sign_in, stored};

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
